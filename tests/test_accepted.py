"""Connections a server accepted: what their transports tell and do.

rose accepts in Rust and makes a connection's socket object only when someone asks for it
(`get_extra_info("socket")`, `transport._sock`); its names come from the raw addresses. These
tests pin what asyncio's accepted transports answer, so that the lazy path gives the same:
peer and local names for IPv4, IPv6 and Unix sockets (named, unnamed, abstract), before and
after close; the socket itself (family, type, protocol, fd, non-blocking, TCP_NODELAY by
asyncio's rule); bytes still flowing once the socket was made; and no fd left behind, when the
connection closes or the protocol factory fails.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import warnings

import pytest

TIMEOUT = 10


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


class Server(asyncio.Protocol):
    """Echoes; records its transport and what it saw."""

    def __init__(self, made):
        self.made = made
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(self)

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


async def serve_one(loop, start, connect):
    """Start a server with `start(factory)`, connect a blocking client with `connect(server)`;
    returns (server, the server-side protocol, client socket)."""
    made = loop.create_future()
    server = await start(lambda: Server(made))
    client = await loop.run_in_executor(None, connect, server)
    proto = await made
    return server, proto, client


async def echo(loop, client, data):
    await loop.run_in_executor(None, client.sendall, data)
    got = b""
    while len(got) < len(data):
        chunk = await loop.run_in_executor(None, client.recv, 65536)
        assert chunk, "connection closed early"
        got += chunk
    return got


async def finish(server, proto, client):
    client.close()
    await proto.lost
    server.close()
    await server.wait_closed()


def tcp_connect():
    def connect(server):
        return socket.create_connection(server.sockets[0].getsockname()[:2], timeout=TIMEOUT)

    return connect


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_tcp_names_socket_and_bytes(loop, host):
    if host == "::1" and not ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback")  # an environment without ::1

    async def main():
        server, proto, client = await serve_one(
            loop, lambda f: loop.create_server(f, host, 0), tcp_connect()
        )
        tr = proto.transport
        assert tr.get_extra_info("peername") == client.getsockname()
        assert tr.get_extra_info("sockname") == client.getpeername()
        # The same objects each time, as asyncio's extra dict gives them.
        assert tr.get_extra_info("peername") is tr.get_extra_info("peername")
        assert await echo(loop, client, b"before the socket") == b"before the socket"
        tsock = tr.get_extra_info("socket")
        assert tsock is tr.get_extra_info("socket")
        listener = server.sockets[0]
        assert (tsock.family, tsock.type, tsock.proto) == (listener.family, listener.type, listener.proto)
        assert tsock.fileno() == tr._sock.fileno() >= 0
        assert tsock.getpeername() == client.getsockname()
        assert tsock.getsockname() == client.getpeername()
        assert tsock.gettimeout() == 0
        assert tsock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        # Bytes still flow, both ways, once the socket object exists and owns the fd.
        data = os.urandom(200_000)
        assert await echo(loop, client, data) == data
        peer, local = tr.get_extra_info("peername"), tr.get_extra_info("sockname")
        await finish(server, proto, client)
        # The names outlive the connection; the socket is closed.
        assert tr.get_extra_info("peername") == peer
        assert tr.get_extra_info("sockname") == local
        assert tr.get_extra_info("socket").fileno() == -1
        assert tr._sock is None

    run(loop, main())


def test_socket_asked_only_after_close(loop):
    """A connection whose socket nobody asked for while it was open: after close,
    get_extra_info("socket") is a closed socket of the listener's kind; the names remain."""

    async def main():
        server, proto, client = await serve_one(
            loop, lambda f: loop.create_server(f, "127.0.0.1", 0), tcp_connect()
        )
        tr = proto.transport
        expected_peer = client.getsockname()
        await finish(server, proto, client)
        assert tr.is_closing()
        assert tr.get_extra_info("peername") == expected_peer
        assert tr.get_extra_info("sockname")[0] == "127.0.0.1"
        tsock = tr.get_extra_info("socket")
        assert tsock.fileno() == -1
        assert (tsock.family, tsock.type) == (socket.AF_INET, socket.SOCK_STREAM)
        assert tr.get_extra_info("socket") is tsock

    run(loop, main())


@pytest.mark.parametrize("proto", [0, socket.IPPROTO_TCP])
def test_nodelay_follows_the_listeners_protocol(loop, proto):
    """asyncio sets TCP_NODELAY on a transport whose socket's protocol is IPPROTO_TCP: on
    connections of a listener made with proto=0 it stays off."""

    async def main():
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
        listener.bind(("127.0.0.1", 0))
        server, sproto, client = await serve_one(
            loop, lambda f: loop.create_server(f, sock=listener), tcp_connect()
        )
        tsock = sproto.transport.get_extra_info("socket")
        assert tsock.proto == proto
        nodelay = tsock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await finish(server, sproto, client)
        return nodelay

    assert bool(run(loop, main())) == (proto == socket.IPPROTO_TCP)


@pytest.mark.parametrize("client_name", ["unnamed", "abstract"])
@pytest.mark.parametrize("server_name", ["path", "abstract"])
def test_unix_names(loop, short_tmp, server_name, client_name):
    """Unix names as the socket module gives them: a path as str, an abstract name as bytes,
    an unnamed peer as ''."""
    tag = os.urandom(6).hex()
    address = os.path.join(short_tmp, "s") if server_name == "path" else f"\0rose-srv-{tag}".encode()
    client_address = f"\0rose-cli-{tag}".encode() if client_name == "abstract" else None

    def connect(server):
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(TIMEOUT)
        if client_address is not None:
            c.bind(client_address)
        c.connect(address)
        return c

    async def main():
        server, proto, client = await serve_one(loop, lambda f: loop.create_unix_server(f, address), connect)
        tr = proto.transport
        peer, local = tr.get_extra_info("peername"), tr.get_extra_info("sockname")
        assert peer == client.getsockname()
        assert local == client.getpeername()
        assert await echo(loop, client, b"unix") == b"unix"
        tsock = tr.get_extra_info("socket")
        assert tsock.family == socket.AF_UNIX
        assert tsock.getpeername() == peer
        await finish(server, proto, client)
        assert tr.get_extra_info("peername") == peer
        return peer, local

    peer, local = run(loop, main())
    if client_name == "unnamed":
        assert peer == ""
    else:
        assert peer == client_address
    assert local == address
    assert isinstance(local, str if server_name == "path" else bytes)


def _fds():
    return set(os.listdir("/proc/self/fd"))


def test_failing_factory_leaves_no_fd(loop):
    """A protocol factory that raises: the connection is closed (the client reads EOF) and no
    fd stays open in the server's process."""
    calls = []

    def factory():
        calls.append(None)
        raise RuntimeError("no protocol today")

    # (in debug mode asyncio reports each failure; the report would keep the socket alive)
    loop.set_exception_handler(lambda lp, context: None)

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()[:2]
        before = _fds()
        clients = [socket.create_connection(addr, timeout=TIMEOUT) for _ in range(5)]
        while len(calls) < 5:
            await asyncio.sleep(0.01)
        gc.collect()  # asyncio's unclaimed sockets are closed when collected
        eofs = [await loop.run_in_executor(None, c.recv, 10) for c in clients]
        for c in clients:
            c.close()
        left = _fds() - before
        server.close()
        await server.wait_closed()
        return eofs, left

    with warnings.catch_warnings():
        # asyncio leaves each unclaimed socket to the collector, which warns as it closes it
        warnings.simplefilter("ignore", ResourceWarning)
        eofs, left = run(loop, main())
    assert eofs == [b""] * 5
    assert left == set()
