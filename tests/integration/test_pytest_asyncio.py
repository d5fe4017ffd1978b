"""pytest-asyncio 1.x on rose: its `pytest_asyncio_loop_factories` hook, in a conftest, names
the loop factories its async tests and fixtures run on. A child pytest runs a generated test
file, on rose (the hook returns {"rose": rose.new_event_loop}) and on stdlib (no hook: the
plugin's default loop)."""

from __future__ import annotations

import re

from frameworks import LOOP_NAMES, run_child_pytest

CONFTEST_ROSE = '''
import rose


def pytest_asyncio_loop_factories(config, item):
    return {"rose": rose.new_event_loop}
'''

TESTS = '''
import asyncio

import pytest
import pytest_asyncio

EXPECTED = {expected!r}


def name(loop):
    return type(loop).__module__ + "." + type(loop).__qualname__


@pytest_asyncio.fixture
async def fixture_loop():
    yield asyncio.get_running_loop()


@pytest.mark.asyncio
async def test_loop(fixture_loop):
    loop = asyncio.get_running_loop()
    assert name(loop) == EXPECTED
    assert loop is fixture_loop


@pytest.mark.asyncio
async def test_tcp_echo():
    async def handle(reader, writer):
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping\\n")
    assert await reader.readline() == b"PING\\n"
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()


MODULE_LOOPS = []


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_1():
    MODULE_LOOPS.append(asyncio.get_running_loop())
    assert name(MODULE_LOOPS[-1]) == EXPECTED


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_2():
    MODULE_LOOPS.append(asyncio.get_running_loop())
    assert MODULE_LOOPS[0] is MODULE_LOOPS[1]
'''


def test_child_pytest_runs_on_the_impls_loop(impl, tmp_path):
    files = {"test_generated.py": TESTS.format(expected=LOOP_NAMES[impl])}
    if impl == "rose":
        files["conftest.py"] = CONFTEST_ROSE
    proc = run_child_pytest(tmp_path, files)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"^4 passed in ", proc.stdout, re.M), out
