"""A connection's reads and writes as asyncio schedules them, without asyncio's objects.

rose's transports watch their sockets themselves (no handle, no bound method per connection:
see src/selector.rs), accept without a task per connection, keep `loop._transports` in the
core and hand `write` out as a method of the class. These tests pin what that must not
change, on rose and on stdlib asyncio alike: the context each protocol callback runs in, a
read queued for a transport that closes before its turn, `loop._transports` and
`loop._selector` as asyncio code reads them, the names a transport gives, and `write` as a
method.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import selectors
import socket

import pytest

TIMEOUT = 10

var = contextvars.ContextVar("var", default="unset")


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


class Recording(asyncio.Protocol):
    """Records what the context var holds in each callback; sets it to a value of its own."""

    count = 0

    def __init__(self):
        Recording.count += 1
        self.n = Recording.count
        self.seen = {"factory": var.get()}
        var.set(f"factory{self.n}")
        self.reads = []
        self.made = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()
        self.got = asyncio.Queue()

    def connection_made(self, transport):
        self.transport = transport
        self.seen["made"] = var.get()
        self.made.set_result(None)

    def data_received(self, data):
        self.reads.append(var.get())
        var.set(f"read{self.n}-{len(self.reads)}")
        self.got.put_nowait(data)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


async def tcp_server(loop, factory):
    server = await loop.create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[:2]


class Accepted(asyncio.Protocol):
    """The server side of one connection: its transport, and connection_lost as a future."""

    def __init__(self, made):
        self.made = made
        self.lost = made.get_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(self)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


@contextlib.asynccontextmanager
async def one_connection(loop, protocol=Accepted):
    """(server-side protocol, its transport, the blocking client socket) of one TCP connection
    to a fresh server; the client and the server are closed on exit."""
    made = loop.create_future()
    server, addr = await tcp_server(loop, lambda: protocol(made))
    client = socket.create_connection(addr, timeout=TIMEOUT)
    try:
        proto = await made
        yield proto, proto.transport, client
    finally:
        client.close()
        server.close()
        await server.wait_closed()


def test_callbacks_run_in_the_connections_own_context(loop):
    """The protocol factory runs in a copy of the server's context, connection_made sees what
    the factory set, and each connection's reads share one context of their own (a value set
    in data_received is there at the next read, and at no other connection's)."""
    protocols = []

    def factory():
        p = Recording()
        protocols.append(p)
        return p

    async def main():
        var.set("server")
        server, addr = await tcp_server(loop, factory)
        clients = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection(*addr)
            clients.append((reader, writer))
        while len(protocols) < 2:
            await asyncio.sleep(0.01)
        for p in protocols:
            await p.made
        for _round in range(3):
            for _, writer in clients:
                writer.write(b"x")
                await writer.drain()
            for p in protocols:
                await p.got.get()
        for _, writer in clients:
            writer.close()
        for p in protocols:
            await p.lost
        server.close()
        await server.wait_closed()
        return var.get()

    assert run(loop, main()) == "server"  # nothing leaked into the caller's context
    for p in protocols:
        assert p.seen == {"factory": "server", "made": f"factory{p.n}"}
        assert p.reads == [f"factory{p.n}", f"read{p.n}-1", f"read{p.n}-2"]


def test_a_read_queued_for_a_transport_closed_meanwhile_does_not_run(loop):
    """Two connections readable in the same iteration: whichever reads first closes the other,
    whose queued read must then not run (asyncio cancels its reader handle)."""
    protocols = []

    class ClosesTheOther(asyncio.Protocol):
        def __init__(self):
            self.reads = 0
            self.lost = asyncio.get_running_loop().create_future()
            protocols.append(self)

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.reads += 1
            for p in protocols:
                if p is not self:
                    p.transport.close()

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        server, addr = await tcp_server(loop, ClosesTheOther)
        clients = [socket.create_connection(addr, timeout=TIMEOUT) for _ in range(2)]
        try:
            while len(protocols) < 2 or not all(hasattr(p, "transport") for p in protocols):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # both are reading
            for c in clients:
                c.sendall(b"ping")
            await asyncio.sleep(0.1)  # both readable before the loop polls again
            await asyncio.wait([protocols[0].lost, protocols[1].lost], timeout=0.5,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            return sum(p.reads for p in protocols)
        finally:
            for c in clients:
                c.close()
            for p in protocols:
                p.transport.close()
                await p.lost
            server.close()
            await server.wait_closed()

    assert run(loop, main()) == 1


def test_transports_map_and_selector_view(loop):
    """What asyncio code reads: `loop._transports[fd]` is the transport while it is open (so
    `add_reader` on its fd is refused), and `loop._selector.get_key(fd)` shows it reading."""

    async def main():
        async with one_connection(loop) as (proto, tr, client):
            await asyncio.sleep(0.05)  # reading
            fd = tr.get_extra_info("socket").fileno()
            assert loop._transports[fd] is tr
            assert fd in loop._transports
            assert tr in loop._transports.values()
            key = loop._selector.get_key(fd)
            assert key.events & selectors.EVENT_READ
            with pytest.raises(RuntimeError, match="is used by transport"):
                loop.add_reader(fd, lambda: None)
            with pytest.raises(RuntimeError, match="is used by transport"):
                loop.remove_reader(fd)
            tr.pause_reading()
            with pytest.raises(RuntimeError, match="is used by transport"):
                loop.add_writer(fd, lambda: None)
            tr.close()
            await proto.lost
            # closed: no longer a transport's fd (asyncio's map may keep it, closing)
            other = loop._transports.get(fd)
            assert other is None or other.is_closing()

    run(loop, main())


def test_extra_info_of_an_accepted_connection_is_stable(loop):
    """The names and the socket a transport gives: the same objects each time, and after
    close the socket is the closed one, the names as they were."""

    async def main():
        async with one_connection(loop) as (proto, tr, client):
            sock = tr.get_extra_info("socket")
            assert tr.get_extra_info("socket") is sock
            assert tr.get_extra_info("peername") == client.getsockname()
            assert tr.get_extra_info("peername") is tr.get_extra_info("peername")
            assert tr.get_extra_info("sockname") == client.getpeername()
            assert tr.get_extra_info("nothing", "default") == "default"
            with pytest.raises(TypeError):
                tr.get_extra_info([])  # unhashable, as a dict lookup
            tr.close()
            await proto.lost
            assert tr.get_extra_info("socket") is sock
            assert sock.fileno() == -1
            assert tr.get_extra_info("peername") == client.getsockname()
            assert tr.get_extra_info("sockname") == client.getpeername()

    run(loop, main())


def test_extra_given_to_a_transport_is_kept(loop):
    """`extra=` of a transport made on a socket: its peername wins over the socket's, its
    "socket" and "sockname" do not (asyncio sets its own)."""
    a, b = socket.socketpair()

    async def main():
        tr, proto = await loop.connect_accepted_socket(asyncio.Protocol, a)
        tr.close()
        assert tr.get_extra_info("peername") == ""  # an unnamed Unix peer
        t2 = loop._make_socket_transport(
            b, asyncio.Protocol(), extra={"peername": "given", "sockname": "given", "other": 1}
        )
        try:
            assert t2.get_extra_info("peername") == "given"
            assert t2.get_extra_info("sockname") == ""
            assert t2.get_extra_info("other") == 1
            assert t2.get_extra_info("socket").fileno() == b.fileno()
        finally:
            t2.close()
            await asyncio.sleep(0)

    run(loop, main())


def test_write_is_a_method_of_the_transport_class(loop):
    """`write` works bound and unbound, refuses what is not bytes-like with asyncio's error,
    and reaches the peer; the transport's other hot methods answer as asyncio's."""

    async def main():
        async with one_connection(loop) as (proto, tr, client):
            tr.write(b"one,")
            type(tr).write(tr, bytearray(b"two,"))
            write = tr.write
            write(memoryview(b"three"))
            with pytest.raises(TypeError, match="bytes"):  # (the words differ by version)
                tr.write("text")
            got = b""
            while len(got) < 13:
                got += await loop.run_in_executor(None, client.recv, 100)
            assert got == b"one,two,three"
            assert type(tr).is_closing(tr) is False
            assert tr.is_reading() is True
            assert tr.get_write_buffer_size() == 0
            assert tr.get_protocol() is proto
            tr.close()
            assert tr.is_closing() is True
            assert tr.is_reading() is False
            await proto.lost
            assert tr.get_protocol() is None  # asyncio lets the protocol go

    run(loop, main())


def test_a_transports_method_can_be_patched_on_the_instance(loop):
    """asyncio's transports take attributes of their own: a method patched on one transport
    (CPython's test_ssl wraps `write` with mock.patch.object) is what callers get, and the
    class's comes back when the patch is undone."""
    from unittest import mock

    async def main():
        async with one_connection(loop) as (proto, tr, client):
            with mock.patch.object(tr, "write", wraps=tr.write) as patched:
                tr.write(b"through the mock")
                assert patched.call_count == 1
            assert not isinstance(tr.write, mock.Mock)
            tr.write(b"!")
            tr.custom = "mine"  # an attribute of the caller's own
            assert tr.custom == "mine"
            got = b""
            while len(got) < 17:
                got += await loop.run_in_executor(None, client.recv, 100)
            assert got == b"through the mock!"
            tr.close()
            await proto.lost

    run(loop, main())


def test_a_slow_read_is_reported_as_the_transports_reader(loop, caplog):
    """Debug mode's slow-callback warning names a connection's reader as asyncio's does:
    `Executing <Handle _SelectorSocketTransport._read_ready() ...> took ... seconds`."""
    import logging
    import re
    import time

    class Slow(Accepted):
        def data_received(self, data):
            time.sleep(0.06)
            self.got.set_result(data)

    loop.set_debug(True)
    loop.slow_callback_duration = 0.05

    async def main():
        async with one_connection(loop, Slow) as (proto, tr, client):
            proto.got = loop.create_future()
            client.sendall(b"x")
            await proto.got
            tr.close()
            await proto.lost

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run(loop, main())
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Executing")]
    pattern = r"Executing <Handle _SelectorSocketTransport\._read_ready\(\)( created at .*)?> took 0\.\d{3} seconds$"
    assert any(re.match(pattern, m) for m in messages), messages