"""`Server.close_clients()` / `Server.abort_clients()` (the Python 3.13 API).

On 3.13+ they are stdlib's own and every test runs on stdlib and on rose. On the Pythons whose
asyncio lacks them (3.11) rose adds them, and the tests run on rose only (there is no oracle
there; the expected behaviour is 3.13's: every connection the server accepted is closed, or
aborted, through its transport, and the server itself keeps serving).
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from conftest import STDLIB, import_rose

IMPLS_WITH_CLOSE_CLIENTS = ["asyncio", "rose"] if STDLIB.SERVER_HAS_CLOSE_CLIENTS else ["rose"]


@pytest.fixture(params=IMPLS_WITH_CLOSE_CLIENTS)
def server_loop(request):
    factory = import_rose().new_event_loop if request.param == "rose" else asyncio.new_event_loop
    loop = factory()
    yield loop
    loop.close()


class Recorder(asyncio.Protocol):
    def __init__(self, made, lost):
        self.made = made
        self.lost = lost

    def connection_made(self, transport):
        self.made.append(transport)

    def connection_lost(self, exc):
        self.lost.append(exc)


async def until(predicate):
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def _serve_and_connect(loop, nclients, **server_kwargs):
    made, lost = [], []
    server = await loop.create_server(
        lambda: Recorder(made, lost), "127.0.0.1", 0, **server_kwargs
    )
    address = server.sockets[0].getsockname()
    clients = [await asyncio.open_connection(*address) for _ in range(nclients)]
    await until(lambda: len(made) == nclients)  # the server has accepted every connection
    return server, clients, lost


@pytest.mark.parametrize("method", ["close_clients", "abort_clients"])
def test_clients_are_closed_and_server_keeps_serving(server_loop, method):
    async def main():
        server, clients, lost = await _serve_and_connect(server_loop, 3)
        assert isinstance(server, asyncio.AbstractServer)
        getattr(server, method)()
        for reader, writer in clients:
            assert await asyncio.wait_for(reader.read(), 2) == b""
            writer.close()
            await writer.wait_closed()
        await until(lambda: len(lost) == 3)
        assert lost == [None, None, None]
        assert server.is_serving()
        # New connections are still accepted after the old ones were dropped.
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.close()
        await writer.wait_closed()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 2)

    server_loop.run_until_complete(main())


def test_close_clients_with_no_connections_is_harmless(server_loop):
    async def main():
        server = await server_loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        server.close_clients()
        server.abort_clients()
        assert server.is_serving()
        server.close()
        await server.wait_closed()

    server_loop.run_until_complete(main())


def test_unix_server_close_clients(server_loop, tmp_path):
    async def main():
        made, lost = [], []
        path = str(tmp_path / "s.sock")
        server = await server_loop.create_unix_server(lambda: Recorder(made, lost), path)
        reader, writer = await asyncio.open_unix_connection(path)
        await until(lambda: made)
        server.close_clients()
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 2)
        assert lost == [None]

    server_loop.run_until_complete(main())


def test_server_class_is_asyncio_server(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, family=socket.AF_INET)
        try:
            assert isinstance(server, asyncio.base_events.Server)
            assert server.get_loop() is loop
        finally:
            server.close()
            await server.wait_closed()

    loop.run_until_complete(main())
