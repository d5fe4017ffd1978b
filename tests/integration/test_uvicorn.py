"""uvicorn serving a FastAPI app in a child: `python -m uvicorn --loop rose:new_event_loop`
on rose, `--loop asyncio` on stdlib; driven by httpx and aiohttp on the loop under test."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile

import aiohttp
import httpx
import pytest
from frameworks import (
    LOOP_NAMES,
    UVICORN_AUTO_LOOP,
    Server,
    assert_impl_loop,
    free_port,
    python,
    rose_or_plain,
    run,
    server_fixture,  # noqa: F401 -- the `server` fixture
)

LOOP_FLAG = {"rose": "rose:new_event_loop", "asyncio": "asyncio"}


def uvicorn_args(impl, *args):
    return python("-m", "uvicorn", "--loop", LOOP_FLAG[impl], *args, "fastapi_app:app")


@pytest.fixture(scope="module")
def _servers():
    servers = {}

    def get(impl):
        if impl not in servers:
            port = free_port()
            srv = Server(uvicorn_args(impl, "--port", str(port)))
            servers[impl] = (srv, port)
            srv.wait_for("Application startup complete")
            srv.wait_port(port)
        return servers[impl]

    yield get
    for srv, _ in servers.values():
        srv.kill()


@pytest.fixture
def base_url(impl, _servers):
    srv, port = _servers(impl)
    assert srv.proc.poll() is None, srv.out
    return f"http://127.0.0.1:{port}"


def test_loop_is_the_impls(impl, loop_factory, base_url):
    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        async with httpx.AsyncClient() as client:
            resp = await client.get(base_url + "/loop")
        assert resp.status_code == 200
        return resp.json()

    assert run(loop_factory, main())["loop"] == LOOP_NAMES[impl]


def test_json_with_httpx_and_aiohttp(impl, loop_factory, base_url):
    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        async with httpx.AsyncClient(base_url=base_url) as client:
            resp = await client.get("/items/21", params={"q": "x"})
            assert resp.status_code == 200
            assert resp.json() == {"id": 21, "q": "x", "double": 42}
            resp = await client.get("/items/nope")
            assert resp.status_code == 422
            assert resp.json()["detail"][0]["loc"] == ["path", "item_id"]
            results = await asyncio.gather(*(client.get(f"/items/{i}") for i in range(50)))
            assert [r.json()["double"] for r in results] == [2 * i for i in range(50)]
        async with aiohttp.ClientSession(base_url) as session:
            async with session.get("/items/7", params={"q": "aio"}) as resp:
                assert resp.status == 200
                assert await resp.json() == {"id": 7, "q": "aio", "double": 14}
            async with session.get("/nothing") as resp:
                assert resp.status == 404

    run(loop_factory, main())


def test_websocket(impl, loop_factory, base_url):
    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(base_url + "/ws") as ws:
                await ws.send_str("hello")
                assert await ws.receive_str(timeout=5) == "echo: hello"
                await ws.send_bytes(b"\x00\x01\x02" * 5000)
                assert await ws.receive_bytes(timeout=5) == (b"\x00\x01\x02" * 5000)[::-1]
                await ws.send_str("close")
                msg = await ws.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.CLOSE
                assert (msg.data, msg.extra) == (4002, "done")

    run(loop_factory, main())


def test_uds_then_sigint(impl, loop_factory, server):
    with tempfile.TemporaryDirectory(prefix="rose-") as d:
        path = os.path.join(d, "uvicorn.sock")
        srv = server(uvicorn_args(impl, "--uds", path))
        srv.wait_for("Application startup complete")

        async def main():
            assert_impl_loop(impl, asyncio.get_running_loop())
            transport = httpx.AsyncHTTPTransport(uds=path)
            async with httpx.AsyncClient(transport=transport, base_url="http://uvicorn") as client:
                loop_resp = await client.get("/loop")
                item = await client.get("/items/5")
            connector = aiohttp.UnixConnector(path=path)
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get("http://uvicorn/items/6") as resp:
                    assert resp.status == 200
                    assert (await resp.json())["double"] == 12
            return loop_resp.json()["loop"], item.json()

        assert run(loop_factory, main()) == (LOOP_NAMES[impl], {"id": 5, "q": "", "double": 10})
        assert srv.stop(signal.SIGINT) == 0, srv.out
        assert f"lifespan shutdown {srv.pid}" in srv.out
        assert "Finished server process" in srv.out
        assert not os.path.exists(path)  # uvicorn removes its socket file


async def worker_loops(port, expected_workers):
    """{pid: loop name} of the workers behind ``port`` (new connection for each request)."""
    seen = {}
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits) as client:
        for _ in range(400):
            data = (await client.get(f"http://127.0.0.1:{port}/loop")).json()
            seen[data["pid"]] = data["loop"]
            if len(seen) == expected_workers:
                break
    return seen


def test_two_workers_then_sigterm(impl, loop_factory, server):
    port = free_port()
    srv = server(uvicorn_args(impl, "--port", str(port), "--workers", "2"))
    srv.wait_for("Application startup complete")
    srv.wait_port(port)

    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        return await worker_loops(port, 2)

    seen = run(loop_factory, main())
    assert list(seen.values()) == [LOOP_NAMES[impl]] * 2, (seen, srv.out)
    assert srv.pid not in seen
    assert srv.stop(signal.SIGTERM) == 0, srv.out
    for pid in seen:
        assert f"lifespan shutdown {pid}" in srv.out


# `python -m rose -m uvicorn` (rose's policy, no --loop given to uvicorn): uvicorn's default
# `--loop auto` passes asyncio.Runner an explicit factory (uvloop's if installed, else
# asyncio.SelectorEventLoop), so the app runs on stdlib despite `python -m rose`. `--loop none`
# lets asyncio.Runner ask the policy, so the app runs on rose, but only in a single process:
# `--workers N` starts its workers as fresh interpreters (multiprocessing's spawn), where
# rose's policy is not installed. The stdlib counterpart is `python -m uvicorn` itself.
@pytest.mark.parametrize(
    "flags, workers, on_impl",
    [(["--loop", "auto"], 1, False), (["--loop", "none"], 1, True), (["--loop", "none", "--workers", "2"], 2, False)],
    ids=["loop-auto", "loop-none", "loop-none-2-workers"],
)
def test_python_m_rose_m_uvicorn(impl, loop_factory, server, flags, workers, on_impl):
    port = free_port()
    srv = server(rose_or_plain(impl, "-m", "uvicorn", *flags, "--port", str(port), "fastapi_app:app"))
    srv.wait_for("Application startup complete")
    srv.wait_port(port)

    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        return await worker_loops(port, workers)

    seen = run(loop_factory, main())
    if on_impl:
        expected = LOOP_NAMES[impl]
    elif "auto" in flags:
        expected = UVICORN_AUTO_LOOP
    else:  # fresh worker interpreters ask asyncio's own policy
        expected = LOOP_NAMES["asyncio"]
    assert list(seen.values()) == [expected] * workers, (seen, srv.out)
    # uvicorn re-raises the signal it caught once it has shut down: a single process then
    # dies of SIGTERM (its supervisor, with workers, exits 0); SIGINT ends in exit status 0.
    sig = signal.SIGTERM if workers == 1 and "none" in flags else signal.SIGINT
    code = -signal.SIGTERM if sig == signal.SIGTERM else 0
    assert srv.stop(sig) == code, srv.out
    assert "Finished server process" in srv.out
