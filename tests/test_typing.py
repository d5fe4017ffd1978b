"""What a type checker and `inspect` see of rose's public API.

mypy --strict runs on a small user program, with this interpreter's typeshed: it passes, and
it catches a wrong return type (so `rose.run` is typed, not Any). The loop's methods show
their signatures and docstrings, as asyncio's loop's do.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import STDLIB

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

USER_PROGRAM = """
import asyncio

import rose


async def main() -> int:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    server.close()
    await server.wait_closed()
    return 42


result: int = rose.run(main())
result = rose.run(main(), debug=True)
loop: rose.Loop = rose.new_event_loop()
timer = loop.call_later(0.1, print, "hi")
timer.cancel()
when: float = loop.call_at(loop.time() + 1.0, print).when()
loop.call_soon(print, "a", context=None).cancel()
loop.run_until_complete(asyncio.sleep(0))
loop.close()
direct = rose.Loop()
direct.close()
with asyncio.Runner(loop_factory=rose.new_event_loop) as runner:
    value: int = runner.run(main())
as_asyncio: asyncio.AbstractEventLoop = rose.new_event_loop()
as_asyncio.close()
"""

POLICY_LINES = """
policy = rose.EventLoopPolicy()
new_loop: asyncio.AbstractEventLoop = policy.new_event_loop()
new_loop.close()
rose.install()
"""

WRONG_RETURN = """
import asyncio

import rose


async def main() -> int:
    await asyncio.sleep(0)
    return 42


text: str = rose.run(main())
"""


def mypy(tmp_path, source):
    path = tmp_path / "program.py"
    path.write_text(textwrap.dedent(source))
    env = dict(os.environ, MYPYPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file=", str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.timeout(300)
def test_mypy_strict_accepts_a_user_program(tmp_path):
    source = USER_PROGRAM + (POLICY_LINES if STDLIB.POLICY_BASE is not None else "")
    result = mypy(tmp_path, source)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found")


@pytest.mark.timeout(300)
def test_mypy_strict_catches_a_wrong_return_type(tmp_path):
    result = mypy(tmp_path, WRONG_RETURN)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Incompatible types in assignment (expression has type "int", variable has type "str")' in (
        result.stdout
    )


METHODS = [
    "call_soon",
    "call_later",
    "call_at",
    "call_soon_threadsafe",
    "create_server",
    "create_unix_server",
    "create_connection",
    "create_datagram_endpoint",
    "run_in_executor",
    "add_reader",
]


@pytest.mark.parametrize("name", METHODS)
def test_methods_have_asyncios_signature(loop, name):
    reference = asyncio.new_event_loop()
    try:
        assert inspect.signature(getattr(loop, name)) == inspect.signature(getattr(reference, name))
    finally:
        reference.close()


@pytest.mark.parametrize("name", ["create_server", "create_unix_server"])
def test_server_methods_have_asyncios_docstring(loop, name):
    reference = asyncio.new_event_loop()
    try:
        assert getattr(loop, name).__doc__ == getattr(reference, name).__doc__
    finally:
        reference.close()
    assert inspect.iscoroutinefunction(getattr(loop, name))
    if name == "create_server":
        assert getattr(loop, name).__doc__.strip().startswith("Create a TCP server")
