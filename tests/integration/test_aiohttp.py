"""aiohttp: `web.run_app` in a child (`python -m rose app.py` on rose, `python app.py` on
stdlib), driven by aiohttp's client on the loop under test; and aiohttp's pytest plugin."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal

import aiohttp
import pytest
from frameworks import (
    LOOP_NAMES,
    Server,
    assert_impl_loop,
    free_port,
    python,
    rose_or_plain,
    run,
    run_child_pytest,
    server_fixture,  # noqa: F401 -- the `server` fixture
    stream_digest,
)

FILE_SIZE = 3 * 1024 * 1024 + 17  # not a multiple of any buffer size
STREAM_CHUNKS = 160  # the app's /stream: 160 x 64 KiB = 10 MiB


@pytest.fixture(scope="module")
def served_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("aiohttp") / "data.bin"
    path.write_bytes(os.urandom(FILE_SIZE))
    return path


@pytest.fixture(scope="module")
def _servers(served_file):
    """One app server per implementation for the module (started on first use)."""
    servers = {}

    def get(impl):
        if impl not in servers:
            port = free_port()
            srv = Server(rose_or_plain(impl, "aiohttp_app.py", str(port), str(served_file)))
            servers[impl] = (srv, port)
            srv.wait_port(port)
        return servers[impl]

    yield get
    for srv, _ in servers.values():
        srv.kill()


@pytest.fixture
def app_url(impl, _servers):
    srv, port = _servers(impl)
    assert srv.proc.poll() is None, srv.out
    return f"http://127.0.0.1:{port}"


async def get_text(session, url):
    async with session.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


def test_requests(impl, loop_factory, app_url):
    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        async with aiohttp.ClientSession() as session:
            assert await get_text(session, app_url + "/loop") == LOOP_NAMES[impl]
            assert await get_text(session, app_url + "/hello?name=rose") == "hello, rose"
            async with session.get(app_url + "/missing") as resp:
                assert resp.status == 404
            async with session.post(app_url + "/hello") as resp:
                assert resp.status == 405

    run(loop_factory, main())


def test_streamed_10mb(impl, loop_factory, app_url):
    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        h, n = hashlib.sha256(), 0
        async with aiohttp.ClientSession() as session:
            async with session.get(app_url + "/stream") as resp:
                assert resp.status == 200
                assert resp.headers["Transfer-Encoding"] == "chunked"
                async for chunk in resp.content.iter_chunked(100_000):
                    h.update(chunk)
                    n += len(chunk)
        assert n == STREAM_CHUNKS * 65536
        assert h.hexdigest() == stream_digest(STREAM_CHUNKS)

    run(loop_factory, main())


def test_file_response(impl, loop_factory, app_url, served_file):
    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        async with aiohttp.ClientSession() as session:
            async with session.get(app_url + "/file") as resp:
                assert resp.status == 200
                assert int(resp.headers["Content-Length"]) == FILE_SIZE
                body = await resp.read()
            # a range request: FileResponse sends a slice of the file (sendfile with an offset)
            async with session.get(app_url + "/file", headers={"Range": "bytes=1000-1999"}) as resp:
                assert resp.status == 206
                part = await resp.read()
        data = served_file.read_bytes()
        assert body == data
        assert part == data[1000:2000]

    run(loop_factory, main())


def test_websocket_echo(impl, loop_factory, app_url):
    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(app_url + "/ws") as ws:
                await ws.send_str("hi")
                assert await ws.receive_str(timeout=5) == "echo: hi"
                payload = bytes(range(256)) * 1000
                await ws.send_bytes(payload)
                assert await ws.receive_bytes(timeout=5) == payload[::-1]
                await ws.send_str("close")
                msg = await ws.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.CLOSE
                assert msg.data == 4001 and msg.extra == "asked to"
            assert ws.closed and ws.close_code == 4001

    run(loop_factory, main())


def test_500_concurrent_requests(impl, loop_factory, app_url):
    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        connector = aiohttp.TCPConnector(limit=500)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(n):
                async with session.get(app_url + "/slow", params={"n": n}) as resp:
                    assert resp.status == 200
                    return (await resp.json())["n"]

            return await asyncio.gather(*(one(n) for n in range(500)))

    assert run(loop_factory, main()) == list(range(500))


# SIGINT to `python -m rose app.py`; SIGTERM to an app given its loop by `run_app(loop=...)`.
@pytest.mark.parametrize(
    "sig, how", [(signal.SIGINT, "python-m-rose"), (signal.SIGTERM, "loop-argument")],
    ids=["SIGINT", "SIGTERM"],
)
def test_shutdown_by_signal(impl, loop_factory, server, served_file, sig, how):
    port = free_port()
    args = ["aiohttp_app.py", str(port), str(served_file)]
    if how == "python-m-rose":
        srv = server(rose_or_plain(impl, *args))
    else:
        srv = server(python(*args, f"--loop={impl}"))
    srv.wait_port(port)

    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        async with aiohttp.ClientSession() as session:
            assert await get_text(session, f"http://127.0.0.1:{port}/loop") == LOOP_NAMES[impl]

    run(loop_factory, main())
    assert srv.stop(sig) == 0, srv.out
    out = srv.out
    assert "Traceback" not in out, out
    assert out.splitlines() == [
        "cleanup_ctx started",
        "on_shutdown ran",
        "cleanup_ctx cleaned up",
        "run_app returned",
    ], out


# aiohttp's pytest plugin is pytest-aiohttp (1.x), whose fixtures (aiohttp_client,
# aiohttp_server, ...) are pytest-asyncio fixtures: pytest-asyncio's
# `pytest_asyncio_loop_factories` hook puts them, and the tests, on rose. (The older
# aiohttp.pytest_plugin, deprecated by aiohttp, offers only --aiohttp-loop=pyloop|uvloop.)
PLUGIN_CONFTEST_ROSE = '''
import rose


def pytest_asyncio_loop_factories(config, item):
    return {"rose": rose.new_event_loop}
'''

PLUGIN_TESTS = '''
import asyncio

import pytest
from aiohttp import web

EXPECTED = {expected!r}


async def handler(request):
    loop = asyncio.get_running_loop()
    return web.json_response({{"loop": type(loop).__module__ + "." + type(loop).__qualname__}})


@pytest.mark.asyncio
async def test_client(aiohttp_client):
    app = web.Application()
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    resp = await client.get("/")
    assert resp.status == 200
    assert await resp.json() == {{"loop": EXPECTED}}
    loop = asyncio.get_running_loop()
    assert type(loop).__module__ + "." + type(loop).__qualname__ == EXPECTED


@pytest.mark.asyncio
async def test_raw_server(aiohttp_raw_server, aiohttp_client):
    async def raw(request):
        return web.Response(text="raw")

    server = await aiohttp_raw_server(raw)
    client = await aiohttp_client(server)
    resp = await client.get("/anything")
    assert (resp.status, await resp.text()) == (200, "raw")
'''


def test_pytest_aiohttp_plugin(impl, tmp_path):
    files = {"test_generated.py": PLUGIN_TESTS.format(expected=LOOP_NAMES[impl])}
    if impl == "rose":
        files["conftest.py"] = PLUGIN_CONFTEST_ROSE
    proc = run_child_pytest(tmp_path, files)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"^2 passed in ", proc.stdout, re.M), out
