"""`Server.close_clients()` / `Server.abort_clients()` (the Python 3.13 API) on rose.

rose-only: stdlib 3.11, the oracle of the other tests, has no such methods; the expected
behaviour is 3.13's documentation: every connection the server accepted is closed (or
aborted) through its transport, and the server itself keeps serving.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from conftest import import_rose


@pytest.fixture
def rose_loop():
    loop = import_rose().new_event_loop()
    yield loop
    loop.close()


class Recorder(asyncio.Protocol):
    def __init__(self, lost):
        self.lost = lost

    def connection_lost(self, exc):
        self.lost.append(exc)


async def _serve_and_connect(loop, nclients, **server_kwargs):
    lost = []
    server = await loop.create_server(lambda: Recorder(lost), "127.0.0.1", 0, **server_kwargs)
    clients = [await asyncio.open_connection(*server.sockets[0].getsockname()) for _ in range(nclients)]
    for _ in range(50):  # until the server has accepted every connection
        if server._active_count == nclients:
            break
        await asyncio.sleep(0.01)
    return server, clients, lost


@pytest.mark.parametrize("method", ["close_clients", "abort_clients"])
def test_clients_are_closed_and_server_keeps_serving(rose_loop, method):
    async def main():
        server, clients, lost = await _serve_and_connect(rose_loop, 3)
        assert isinstance(server, asyncio.AbstractServer)
        getattr(server, method)()
        for reader, writer in clients:
            assert await asyncio.wait_for(reader.read(), 2) == b""
            writer.close()
            await writer.wait_closed()
        for _ in range(50):
            if len(lost) == 3:
                break
            await asyncio.sleep(0.01)
        assert lost == [None, None, None]
        assert server.is_serving()
        # New connections are still accepted after the old ones were dropped.
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    rose_loop.run_until_complete(main())


def test_close_clients_with_no_connections_is_harmless(rose_loop):
    async def main():
        server = await rose_loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        server.close_clients()
        server.abort_clients()
        assert server.is_serving()
        server.close()
        await server.wait_closed()

    rose_loop.run_until_complete(main())


def test_unix_server_close_clients(rose_loop, tmp_path):
    async def main():
        lost = []
        path = str(tmp_path / "s.sock")
        server = await rose_loop.create_unix_server(lambda: Recorder(lost), path)
        reader, writer = await asyncio.open_unix_connection(path)
        for _ in range(50):
            if server._active_count:
                break
            await asyncio.sleep(0.01)
        server.close_clients()
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        assert lost == [None]

    rose_loop.run_until_complete(main())


def test_server_class_is_asyncio_server(rose_loop):
    async def main():
        server = await rose_loop.create_server(asyncio.Protocol, "127.0.0.1", 0, family=socket.AF_INET)
        try:
            assert isinstance(server, asyncio.base_events.Server)
            assert server.get_loop() is rose_loop
        finally:
            server.close()
            await server.wait_closed()

    rose_loop.run_until_complete(main())
