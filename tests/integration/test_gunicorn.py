"""gunicorn with aiohttp's and uvicorn's worker classes, on rose and on stdlib.

Neither stock worker class takes a loop factory (see apps/rose_workers.py): on rose the
tests use the two small subclasses there (`-k rose_workers.RoseWebWorker`,
`-k rose_workers.RoseUvicornWorker`); on stdlib the stock classes. And what
`python -m rose -m gunicorn` does with the stock classes: gunicorn forks its workers, so
rose's policy reaches them, and aiohttp's worker (asyncio.new_event_loop()) runs on rose,
while uvicorn's (an explicit asyncio loop factory) still runs on stdlib.
"""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest
from frameworks import (
    LOOP_NAMES,
    UVICORN_AUTO_LOOP,
    assert_impl_loop,
    free_port,
    rose_or_plain,
    run,
    server_fixture,  # noqa: F401 -- the `server` fixture
)

AIOHTTP = ("aiohttp.worker.GunicornWebWorker", "rose_workers.RoseWebWorker", "gunicorn_aiohttp:app")
UVICORN = ("uvicorn_worker.UvicornWorker", "rose_workers.RoseUvicornWorker", "fastapi_app:app")


def start_gunicorn(server, impl, worker, app, *, python_m_rose=False):
    port = free_port()
    args = ["-m", "gunicorn", "-k", worker, "-w", "1", "-b", f"127.0.0.1:{port}",
            "--graceful-timeout", "5", "--no-control-socket", app]  # fmt: skip
    srv = server(rose_or_plain(impl if python_m_rose else "asyncio", *args))
    srv.wait_port(port)
    return srv, port


def worker_loop(impl, loop_factory, port):
    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        async with httpx.AsyncClient(timeout=20) as client:
            resp = await client.get(f"http://127.0.0.1:{port}/loop")
        assert resp.status_code == 200
        return resp.json()

    return run(loop_factory, main())


def stop(srv, worker_pid, classes):
    assert srv.stop(signal.SIGTERM) == 0, srv.out
    assert "Shutting down: Master" in srv.out, srv.out
    assert "Traceback" not in srv.out, srv.out
    if classes is AIOHTTP:
        assert f"on_shutdown ran {worker_pid}" in srv.out
        assert f"on_cleanup ran {worker_pid}" in srv.out
    else:
        assert f"lifespan shutdown {worker_pid}" in srv.out


@pytest.mark.parametrize("classes", [AIOHTTP, UVICORN], ids=["aiohttp-worker", "uvicorn-worker"])
def test_worker_class_on_the_impl(impl, loop_factory, server, classes):
    stock, rose_class, app = classes
    srv, port = start_gunicorn(server, impl, stock if impl == "asyncio" else rose_class, app)
    data = worker_loop(impl, loop_factory, port)
    # uvicorn-worker's stock class runs uvicorn's `--loop auto`
    expected = UVICORN_AUTO_LOOP if impl == "asyncio" and classes is UVICORN else LOOP_NAMES[impl]
    assert data["loop"] == expected, srv.out
    assert data["pid"] != srv.pid
    stop(srv, data["pid"], classes)


@pytest.mark.parametrize(
    "classes, on_impl", [(AIOHTTP, True), (UVICORN, False)], ids=["aiohttp-worker", "uvicorn-worker"]
)
def test_python_m_rose_m_gunicorn_stock_worker(impl, loop_factory, server, classes, on_impl):
    stock, _, app = classes
    srv, port = start_gunicorn(server, impl, stock, app, python_m_rose=True)
    data = worker_loop(impl, loop_factory, port)
    assert data["loop"] == (LOOP_NAMES[impl] if on_impl else UVICORN_AUTO_LOOP), srv.out
    stop(srv, data["pid"], classes)
