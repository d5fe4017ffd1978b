"""Transports, servers and streams: create_server/create_connection, the Unix variants,
asyncio streams, flow control, TLS, start_tls and loop.sendfile. Real sockets only."""

import asyncio
import contextvars
import errno
import hashlib
import itertools
import os
import socket
import ssl
import stat
import struct

import pytest
import trustme
from conftest import STDLIB, capture_exception_contexts, pattern, temporary_file

TIMEOUT = 1.5


def run(loop, coro, timeout=TIMEOUT):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


# ----------------------------------------------------------------------------------------
# protocols that record what happens to them
# ----------------------------------------------------------------------------------------


class Recorder(asyncio.Protocol):
    """Records every callback; ``echo`` writes received data back; ``keep_open`` is what
    eof_received returns."""

    def __init__(self, *, echo=False, keep_open=False):
        self.loop = asyncio.get_running_loop()
        self.echo = echo
        self.keep_open = keep_open
        self.transport = None
        self.events = []
        self.data = bytearray()
        self.lost_calls = []
        self.made = self.loop.create_future()
        self.eof = self.loop.create_future()
        self.lost = self.loop.create_future()
        self._waiter = None

    def _wake(self):
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        assert isinstance(data, bytes)
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data
        if self.echo:
            self.transport.write(data)
        self._wake()

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(None)
        self._wake()
        return self.keep_open

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_calls.append(exc)
        if not self.lost.done():
            self.lost.set_result(exc)
        self._wake()

    async def wait_bytes(self, n):
        while len(self.data) < n:
            assert not self.lost.done(), f"connection lost after {len(self.data)} bytes"
            self._waiter = self.loop.create_future()
            await self._waiter
        return bytes(self.data)


class Collector:
    """A protocol factory for servers that keeps every protocol it made."""

    def __init__(self, cls=Recorder, **kwargs):
        self.cls = cls
        self.kwargs = kwargs
        self.protocols = []
        self._event = asyncio.Event()

    def __call__(self):
        proto = self.cls(**self.kwargs)
        self.protocols.append(proto)
        self._event.set()
        return proto

    async def first(self):
        """The first protocol made, once its connection_made() ran."""
        await self._event.wait()
        proto = self.protocols[0]
        if isinstance(proto, Recorder):
            await proto.made
        return proto

    async def all_lost(self):
        for proto in self.protocols:
            await proto.lost


async def closed(server):
    server.close()
    await server.wait_closed()


# -- the context protocol callbacks run in -----------------------------------------------

WHERE = contextvars.ContextVar("where", default="unset")


class ContextProbe(Recorder):
    """Records the value of WHERE seen by each callback, and sets its own in connection_made."""

    def __init__(self, name, **kwargs):
        super().__init__(**kwargs)
        self.name = name
        self.seen = []

    def connection_made(self, transport):
        self.seen.append(("made", WHERE.get()))
        WHERE.set(self.name)
        super().connection_made(transport)

    def data_received(self, data):
        self.seen.append(("data", WHERE.get()))
        super().data_received(data)

    def connection_lost(self, exc):
        self.seen.append(("lost", WHERE.get()))
        super().connection_lost(exc)


def test_protocol_callbacks_context(loop, net):
    # 3.15: each connection's protocol runs in a context of its own (for a server, a copy of
    # the server's, taken when the server was made; for a client, a copy of the caller's), so
    # what connection_made sets is seen by data_received and connection_lost. Before, each
    # callback ran in a copy of the context current where asyncio scheduled it.
    async def main():
        WHERE.set("server")
        collector = Collector(ContextProbe, name="server-conn", echo=True)
        server = await net.server(collector)
        WHERE.set("client")
        transport, client = await net.connect(lambda: ContextProbe("client-conn"), server)
        WHERE.set("elsewhere")
        transport.write(b"ping")
        await client.wait_bytes(4)
        srv = await collector.first()
        transport.close()
        await client.lost
        await srv.lost
        await closed(server)
        return srv.seen, client.seen

    server_seen, client_seen = run(loop, main())
    if STDLIB.TRANSPORT_CONTEXT:
        assert server_seen == [("made", "server"), ("data", "server-conn"), ("lost", "server-conn")]
        assert client_seen == [("made", "client"), ("data", "client-conn"), ("lost", "client-conn")]
    else:
        assert server_seen == [("made", "server"), ("data", "server"), ("lost", "server")]
        assert client_seen == [("made", "client"), ("data", "client"), ("lost", "elsewhere")]


async def hang_up(transport, client, collector, server):
    """Close the client side, wait for connection_lost on both sides, close the server."""
    transport.close()
    await client.lost
    await collector.all_lost()
    await closed(server)


# ----------------------------------------------------------------------------------------
# TCP / Unix endpoints
# ----------------------------------------------------------------------------------------


class Net:
    """Create servers/connections of one family with the same calls."""

    def __init__(self, family, tmp):
        self.family = family
        self.tmp = tmp
        self._paths = (os.path.join(tmp, f"s{i}") for i in itertools.count())

    @property
    def is_unix(self):
        return self.family == "unix"

    def address(self, server):
        name = server.sockets[0].getsockname()
        return name if self.is_unix else name[:2]

    async def server(self, factory, **kwargs):
        loop = asyncio.get_running_loop()
        if self.is_unix:
            return await loop.create_unix_server(factory, next(self._paths), **kwargs)
        return await loop.create_server(factory, "127.0.0.1", 0, **kwargs)

    async def connect(self, factory, server, **kwargs):
        loop = asyncio.get_running_loop()
        addr = self.address(server)
        if self.is_unix:
            return await loop.create_unix_connection(factory, addr, **kwargs)
        return await loop.create_connection(factory, *addr, **kwargs)

    async def start_server(self, handler, **kwargs):
        if self.is_unix:
            return await asyncio.start_unix_server(handler, next(self._paths), **kwargs)
        return await asyncio.start_server(handler, "127.0.0.1", 0, **kwargs)

    async def open_connection(self, server, **kwargs):
        addr = self.address(server)
        if self.is_unix:
            return await asyncio.open_unix_connection(addr, **kwargs)
        return await asyncio.open_connection(*addr, **kwargs)

    def raw_client(self):
        return socket.socket(socket.AF_UNIX if self.is_unix else socket.AF_INET)


@pytest.fixture(params=["tcp", "unix"])
def net(request, short_tmp):
    return Net(request.param, short_tmp)


async def eof_then_server_closes(transport, client, srv, server):
    """The client sends EOF, the server closes on it; wait for both sides, close the server."""
    transport.write_eof()
    await srv.eof
    srv.transport.close()
    await client.lost
    await srv.lost
    await closed(server)


async def serve_and_connect(net):
    """A ``Collector`` server and a ``Recorder`` client connected to it.

    Returns (collector, server, client transport, client protocol).
    """
    collector = Collector()
    server = await net.server(collector)
    transport, client = await net.connect(Recorder, server)
    return collector, server, transport, client


@pytest.fixture
def sockets():
    """Register raw sockets to close at teardown."""
    made = []

    def track(sock):
        made.append(sock)
        return sock

    yield track
    for s in made:
        s.close()


# ----------------------------------------------------------------------------------------
# Protocol echo, transports
# ----------------------------------------------------------------------------------------


def test_protocol_echo(loop, net):
    async def main():
        collector = Collector(echo=True)
        server = await net.server(collector)
        transport, client = await net.connect(Recorder, server)
        transport.write(b"hello ")
        transport.writelines([b"wor", bytearray(b"ld"), memoryview(b"!")])
        await client.wait_bytes(12)
        await hang_up(transport, client, collector, server)
        return transport, client, collector.protocols

    transport, client, servers = run(loop, main())
    assert client.data == b"hello world!"
    assert isinstance(transport, asyncio.Transport)
    assert client.events == ["made", "data", "lost"]
    assert client.lost_calls == [None]
    assert len(servers) == 1
    # The client closed: the server saw all the data, then EOF; eof_received returned
    # None, so the transport closed itself.
    assert servers[0].data == b"hello world!"
    assert servers[0].events == ["made", "data", "eof", "lost"]
    assert servers[0].lost_calls == [None]
    assert servers[0].transport.is_closing()


def test_protocol_echo_large_payload(loop, net):
    payload = pattern(4 * 1024 * 1024)

    async def main():
        collector = Collector(echo=True)
        server = await net.server(collector)
        transport, client = await net.connect(Recorder, server)
        for i in range(0, len(payload), 100_000):
            transport.write(payload[i : i + 100_000])
        got = await client.wait_bytes(len(payload))
        await hang_up(transport, client, collector, server)
        return got

    assert run(loop, main()) == payload


def test_transport_types_and_protocol_switch(loop, net):
    async def main():
        collector = Collector()
        server = await net.server(collector)
        transport, first = await net.connect(Recorder, server)
        peer = await collector.first()
        await peer.made
        checks = {
            "types": all(
                isinstance(transport, t)
                for t in (
                    asyncio.BaseTransport,
                    asyncio.ReadTransport,
                    asyncio.WriteTransport,
                    asyncio.Transport,
                )
            ),
            "get_protocol": transport.get_protocol() is first,
            "not_closing": not transport.is_closing(),
            "can_write_eof": transport.can_write_eof(),
            "buffer_size": transport.get_write_buffer_size() == 0,
        }
        second = Recorder()
        transport.set_protocol(second)
        checks["switched"] = transport.get_protocol() is second
        peer.transport.write(b"for-second")
        await second.wait_bytes(10)
        transport.close()
        checks["closing"] = transport.is_closing()
        await second.lost
        await collector.all_lost()
        await closed(server)
        return checks, first, second

    checks, first, second = run(loop, main())
    assert checks == dict.fromkeys(checks, True)
    assert first.events == ["made"]  # the old protocol hears nothing after the switch
    assert second.data == b"for-second"
    assert second.events == ["data", "lost"]
    assert second.lost_calls == [None]


def safe_repr(obj):
    try:
        return repr(obj)
    except Exception as exc:  # reported by the test, after the cleanup
        return exc


def test_transport_repr(loop, net):
    """The repr shows the fd and whether the loop polls it for reading/writing."""

    async def main():
        collector, server, transport, client = await serve_and_connect(net)
        srv = await collector.first()
        srv.transport.pause_reading()  # so that the client's writes back up
        fd = transport.get_extra_info("socket").fileno()
        reprs = {"open": safe_repr(transport)}
        transport.pause_reading()
        reprs["paused"] = safe_repr(transport)
        transport.resume_reading()
        while transport.get_write_buffer_size() == 0:
            transport.write(b"w" * 65536)
        bufsize = transport.get_write_buffer_size()
        reprs["writing"] = safe_repr(transport)
        transport.abort()
        await client.lost
        reprs["closed"] = safe_repr(transport)
        srv.transport.resume_reading()
        await collector.all_lost()
        await closed(server)
        return fd, bufsize, reprs

    fd, bufsize, reprs = run(loop, main())
    for name, text in reprs.items():
        assert isinstance(text, str), f"repr of the {name} transport raised {text!r}"
    assert f"fd={fd}" in reprs["open"]
    assert "read=polling" in reprs["open"]
    assert "write=<idle, bufsize=0>" in reprs["open"]
    assert "read=idle" in reprs["paused"]
    assert "read=polling" in reprs["writing"]
    assert f"write=<polling, bufsize={bufsize}>" in reprs["writing"]
    assert "closed" in reprs["closed"]


def test_get_extra_info(loop, net):
    async def main():
        collector, server, transport, client = await serve_and_connect(net)
        peer = await collector.first()
        await peer.made
        info = {
            side: {
                key: t.get_extra_info(key)
                for key in ("socket", "sockname", "peername", "no-such-key")
            }
            for side, t in (("client", transport), ("server", peer.transport))
        }
        sock = info["client"]["socket"]
        details = {
            "family": sock.family,
            "type": sock.type,
            "sockname": sock.getsockname(),
            "default": transport.get_extra_info("no-such-key", "dflt"),
            "server_sock_name": info["server"]["socket"].getsockname(),
        }
        if not net.is_unix:
            details["nodelay"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        server_name = server.sockets[0].getsockname()
        await hang_up(transport, client, collector, server)
        return info, details, server_name

    info, details, server_name = run(loop, main())
    client, srv = info["client"], info["server"]
    assert client["no-such-key"] is None and details["default"] == "dflt"
    assert details["type"] == socket.SOCK_STREAM
    assert details["sockname"] == client["sockname"]
    assert client["peername"] == server_name
    assert srv["sockname"] == server_name
    assert details["server_sock_name"] == server_name
    if net.is_unix:
        assert details["family"] == socket.AF_UNIX
        assert client["sockname"] == ""  # an unbound client
        assert srv["peername"] == ""
    else:
        assert details["family"] == socket.AF_INET
        assert srv["peername"] == client["sockname"]
        assert details["nodelay"] != 0


# ----------------------------------------------------------------------------------------
# streams
# ----------------------------------------------------------------------------------------


def test_streams_echo(loop, net):
    payload = pattern(1024 * 1024 + 3)

    async def main():
        handled = loop.create_future()

        async def handle(reader, writer):
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            body = await reader.read()  # until EOF
            writer.write(hashlib.sha256(body).hexdigest().encode() + b"\n")
            writer.write(body[:10])
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            handled.set_result(len(body))

        server = await net.start_server(handle)
        reader, writer = await net.open_connection(server)
        writer.write(b"hello streams\n")
        await writer.drain()
        first = await reader.readline()
        writer.write(payload)
        writer.write_eof()
        await writer.drain()
        digest = await reader.readline()
        rest = await reader.read()
        at_eof = reader.at_eof()
        writer.close()
        await writer.wait_closed()
        body_len = await handled
        await closed(server)
        return first, digest, rest, at_eof, body_len

    first, digest, rest, at_eof, body_len = run(loop, main())
    assert first == b"HELLO STREAMS\n"
    assert digest == hashlib.sha256(payload).hexdigest().encode() + b"\n"
    assert rest == payload[:10]
    assert at_eof
    assert body_len == len(payload)


def test_streams_readexactly_and_incomplete_read(loop, net):
    async def main():
        handled = loop.create_future()

        async def handle(reader, writer):
            writer.write(b"0123456789")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            handled.set_result(None)

        server = await net.start_server(handle)
        reader, writer = await net.open_connection(server)
        exact = await reader.readexactly(4)
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await reader.readexactly(100)
        writer.close()
        await writer.wait_closed()
        await handled
        await closed(server)
        return exact, info.value.partial

    assert run(loop, main()) == (b"0123", b"456789")


def test_streams_drain_blocks_until_peer_reads(loop, net):
    async def main():
        go = asyncio.Event()
        handled = loop.create_future()

        async def handle(reader, writer):
            await go.wait()
            total = len(await reader.read())
            writer.close()
            await writer.wait_closed()
            handled.set_result(total)

        server = await net.start_server(handle)
        reader, writer = await net.open_connection(server)
        transport = writer.transport
        _, high = transport.get_write_buffer_limits()
        sent = 0
        chunk = b"d" * 65536
        while transport.get_write_buffer_size() <= high and sent < 256 * 1024 * 1024:
            writer.write(chunk)
            sent += len(chunk)
            await asyncio.sleep(0)
        drain = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.05)
        blocked = not drain.done()
        go.set()
        await drain
        writer.write_eof()
        received = await handled
        writer.close()
        await writer.wait_closed()
        await closed(server)
        return blocked, sent, received

    blocked, sent, received = run(loop, main())
    assert blocked
    assert received == sent


# ----------------------------------------------------------------------------------------
# BufferedProtocol
# ----------------------------------------------------------------------------------------


class BufferedRecorder(asyncio.BufferedProtocol):
    def __init__(self, *, echo=False, size=1000):
        self.loop = asyncio.get_running_loop()
        self.echo = echo
        self.buf = bytearray(size)
        self.data = bytearray()
        self.hints = []
        self.events = []
        self.lost_calls = []
        self.lost = self.loop.create_future()
        self.transport = None
        self._waiter = None

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def get_buffer(self, sizehint):
        self.hints.append(sizehint)
        return self.buf

    def buffer_updated(self, nbytes):
        assert 0 < nbytes <= len(self.buf)
        chunk = bytes(self.buf[:nbytes])
        self.data += chunk
        if self.echo:
            self.transport.write(chunk)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_calls.append(exc)
        self.lost.set_result(exc)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait_bytes(self, n):
        while len(self.data) < n:
            assert not self.lost.done()
            self._waiter = self.loop.create_future()
            await self._waiter


def test_buffered_protocol_both_sides(loop, net):
    payload = pattern(128 * 1024 + 5)

    async def main():
        collector = Collector(BufferedRecorder, echo=True, size=4096)
        server = await net.server(collector)
        transport, client = await net.connect(lambda: BufferedRecorder(size=1000), server)
        transport.write(payload)
        await client.wait_bytes(len(payload))
        transport.write_eof()
        await client.lost
        await collector.all_lost()
        await closed(server)
        return client, collector.protocols[0]

    client, srv = run(loop, main())
    assert srv.data == payload
    assert client.data == payload
    # Neither buffer is ever overrun: many small reads happened.
    assert len(srv.hints) >= len(payload) // 4096
    assert len(client.hints) >= len(payload) // 1000
    assert all(isinstance(h, int) for h in srv.hints + client.hints)
    assert srv.events == ["made", "eof", "lost"]
    assert client.events == ["made", "eof", "lost"]
    assert srv.lost_calls == client.lost_calls == [None]


async def server_protocol_fails(net, cls, data):
    """Connect to a server whose ``cls`` protocol fails on ``data``.

    Returns (the server's connection_lost exception, server protocol, client protocol).
    """
    collector = Collector(cls)
    server = await net.server(collector)
    transport, client = await net.connect(Recorder, server)
    transport.write(data)
    srv = await collector.first()
    exc = await srv.lost
    await client.lost
    transport.close()
    await closed(server)
    return exc, srv, client


def test_buffered_protocol_empty_buffer_is_fatal(loop, net):
    """get_buffer() returning an empty buffer is a fatal error of the transport."""

    class Empty(BufferedRecorder):
        def get_buffer(self, sizehint):
            return bytearray()

    handler_calls = capture_exception_contexts(loop)
    lost, srv, client = run(loop, server_protocol_fails(net, Empty, b"boom"))
    assert isinstance(lost, RuntimeError)
    assert "get_buffer() returned an empty buffer" in str(lost)
    assert srv.lost_calls == [lost]
    # The server dropped the connection with "boom" unread: the client may see a reset.
    assert len(client.lost_calls) == 1
    assert client.lost_calls[0] is None or isinstance(client.lost_calls[0], ConnectionResetError)
    assert [ctx["exception"] for ctx in handler_calls] == [lost]


# ----------------------------------------------------------------------------------------
# half-close, connection_lost
# ----------------------------------------------------------------------------------------


def test_write_eof_half_close(loop, net):
    async def main():
        collector = Collector(keep_open=True)
        server = await net.server(collector)
        transport, client = await net.connect(Recorder, server)
        assert transport.can_write_eof()
        transport.write(b"question")
        transport.write_eof()
        with pytest.raises(RuntimeError, match="write_eof"):
            transport.write(b"more")
        srv = await collector.first()
        await srv.eof
        half_open = not srv.transport.is_closing() and not transport.is_closing()
        srv.transport.write(b"answer")
        srv.transport.close()
        await client.lost
        await srv.lost
        await closed(server)
        return half_open, client, srv

    half_open, client, srv = run(loop, main())
    assert half_open
    assert srv.data == b"question"
    assert srv.events == ["made", "data", "eof", "lost"]
    assert client.data == b"answer"
    assert client.events == ["made", "data", "eof", "lost"]
    assert client.lost_calls == srv.lost_calls == [None]


def test_connection_lost_once_on_repeated_close_and_abort(loop, net):
    async def main():
        collector, server, transport, client = await serve_and_connect(net)
        transport.close()
        transport.close()
        transport.abort()
        await client.lost
        for _ in range(5):
            await asyncio.sleep(0)
        await collector.all_lost()
        await closed(server)
        return client, collector.protocols[0]

    client, srv = run(loop, main())
    assert client.lost_calls == [None]
    assert client.events == ["made", "lost"]
    assert srv.lost_calls == [None]


def test_abort_discards_buffer_and_reports_none(loop, net):
    async def main():
        collector = Collector()
        server = await net.server(collector)
        srv_made = asyncio.ensure_future(collector.first())
        transport, client = await net.connect(Recorder, server)
        srv = await srv_made
        srv.transport.pause_reading()
        chunk = b"a" * 65536
        while transport.get_write_buffer_size() == 0:
            transport.write(chunk)
        transport.abort()
        closing = transport.is_closing()
        exc = await client.lost
        srv.transport.resume_reading()
        await srv.lost
        await closed(server)
        return closing, exc, client, srv

    closing, exc, client, srv = run(loop, main())
    assert closing
    assert exc is None
    assert client.lost_calls == [None]
    assert len(srv.lost_calls) == 1
    assert srv.lost_calls[0] is None or isinstance(srv.lost_calls[0], ConnectionResetError)


def test_connection_lost_with_reset_error(loop, sockets):
    """The peer resets (SO_LINGER 0): connection_lost gets the error, exactly once."""

    async def main():
        collector = Collector()
        server = await loop.create_server(collector, "127.0.0.1", 0)
        raw = sockets(socket.create_connection(server.sockets[0].getsockname()))
        srv = await collector.first()
        await srv.made
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
        exc = await srv.lost
        await asyncio.sleep(0.02)
        await closed(server)
        return exc, srv

    exc, srv = run(loop, main())
    assert isinstance(exc, ConnectionResetError)
    assert srv.lost_calls == [exc]
    assert "eof" not in srv.events


def test_connection_lost_with_write_error(loop, net, sockets):
    """Writing to a peer that is gone: connection_lost gets the write error, once."""

    async def main():
        collector = Collector(keep_open=True)
        server = await net.server(collector)
        raw = sockets(net.raw_client())
        raw.connect(net.address(server))
        srv = await collector.first()
        raw.close()
        await srv.eof
        for _ in range(100):
            if srv.lost.done():
                break
            srv.transport.write(b"x" * 1000)
            await asyncio.sleep(0.005)
        exc = await srv.lost
        await closed(server)
        return exc, srv

    handler_calls = capture_exception_contexts(loop)
    exc, srv = run(loop, main())
    assert isinstance(exc, (BrokenPipeError, ConnectionResetError))
    assert srv.lost_calls == [exc]
    assert srv.events == ["made", "eof", "lost"]
    # An OSError on a transport is not reported to the exception handler.
    assert handler_calls == []


def test_exception_in_data_received_closes_transport(loop, net):
    class Bad(Recorder):
        def data_received(self, data):
            raise ZeroDivisionError("bad protocol")

    handler_calls = capture_exception_contexts(loop)
    exc, srv, client = run(loop, server_protocol_fails(net, Bad, b"trigger"))
    assert isinstance(exc, ZeroDivisionError)
    assert srv.lost_calls == [exc]
    assert client.lost_calls == [None]
    assert len(handler_calls) == 1
    assert handler_calls[0]["exception"] is exc
    assert "data_received" in handler_calls[0]["message"]


# ----------------------------------------------------------------------------------------
# reading flow control
# ----------------------------------------------------------------------------------------


def test_pause_and_resume_reading(loop, net):
    async def main():
        collector, server, transport, client = await serve_and_connect(net)
        srv = await collector.first()
        states = [transport.is_reading()]
        transport.pause_reading()
        transport.pause_reading()  # no-op
        states.append(transport.is_reading())
        srv.transport.write(b"while paused")
        srv.transport.close()  # EOF is not seen while paused either
        await srv.lost
        await asyncio.sleep(0.05)
        seen_while_paused = (bytes(client.data), list(client.events))
        transport.resume_reading()
        transport.resume_reading()  # no-op
        states.append(transport.is_reading())
        await client.lost
        states.append(transport.is_reading())
        await closed(server)
        return states, seen_while_paused, client

    states, seen_while_paused, client = run(loop, main())
    assert states == [True, False, True, False]
    assert seen_while_paused == (b"", ["made"])
    assert client.data == b"while paused"
    assert client.events == ["made", "data", "eof", "lost"]
    assert client.lost_calls == [None]


# ----------------------------------------------------------------------------------------
# writing flow control
# ----------------------------------------------------------------------------------------


class FlowClient(Recorder):
    def __init__(self):
        super().__init__()
        self.flow = []
        self.resumed = self.loop.create_future()

    def pause_writing(self):
        self.flow.append(("pause", self.transport.get_write_buffer_size()))

    def resume_writing(self):
        self.flow.append(("resume", self.transport.get_write_buffer_size()))
        self.resumed.set_result(None)


class HashingServer(Recorder):
    def __init__(self):
        super().__init__()
        self.hash = hashlib.sha256()
        self.count = 0

    def connection_made(self, transport):
        super().connection_made(transport)
        transport.pause_reading()  # the peer does not read

    def data_received(self, data):
        self.hash.update(data)
        self.count += len(data)


def test_write_buffer_limits_and_flow_control(loop, net):
    async def main():
        collector = Collector(HashingServer)
        server = await net.server(collector)
        transport, client = await net.connect(FlowClient, server)
        defaults = transport.get_write_buffer_limits()
        with pytest.raises(ValueError):
            transport.set_write_buffer_limits(high=10, low=20)
        transport.set_write_buffer_limits(high=256 * 1024, low=32 * 1024)
        limits = transport.get_write_buffer_limits()
        srv = await collector.first()
        await srv.made
        sent = hashlib.sha256()
        total = 0
        for i in itertools.count():
            if client.flow or total >= 256 * 1024 * 1024:
                break
            chunk = i.to_bytes(4, "big") * 16384
            transport.write(chunk)
            sent.update(chunk)
            total += len(chunk)
        paused_size = transport.get_write_buffer_size()
        srv.transport.resume_reading()
        await client.resumed
        await eof_then_server_closes(transport, client, srv, server)
        return defaults, limits, client.flow, paused_size, total, sent.digest(), srv

    defaults, limits, flow, paused_size, total, digest, srv = run(loop, main())
    assert defaults == (16 * 1024, 64 * 1024)
    assert limits == (32 * 1024, 256 * 1024)
    assert [name for name, _ in flow] == ["pause", "resume"]
    assert flow[0][1] > 256 * 1024
    assert paused_size > 256 * 1024
    assert flow[1][1] <= 32 * 1024
    assert srv.count == total
    assert srv.hash.digest() == digest


# ----------------------------------------------------------------------------------------
# servers
# ----------------------------------------------------------------------------------------


async def refused(net, server_address, closed=True):
    """Nothing listens at the server's address (not yet, or, if `closed`, no more: since 3.13
    a Unix server removes the socket file it made when it closes, so the path is gone)."""
    loop = asyncio.get_running_loop()
    sock = net.raw_client()
    sock.setblocking(False)
    gone = closed and net.is_unix and STDLIB.UNIX_SERVER_CLEANUP
    try:
        with pytest.raises(FileNotFoundError if gone else ConnectionRefusedError):
            await loop.sock_connect(sock, server_address)
    finally:
        sock.close()
    return True


def test_server_close_and_wait_closed(loop, net):
    async def main():
        collector = Collector(echo=True)
        server = await net.server(collector)
        before = (server.is_serving(), len(server.sockets), server.get_loop() is loop)
        address = net.address(server)
        transport, client = await net.connect(Recorder, server)
        await collector.first()
        server.close()
        server.close()  # idempotent
        after = (server.is_serving(), server.sockets)
        waiting = asyncio.ensure_future(server.wait_closed())
        await refused(net, address)
        # Connections accepted before close() are not closed by it.
        transport.write(b"still here")
        await client.wait_bytes(10)
        # Since 3.12.1 wait_closed() also waits for the server's connections to go.
        done_with_clients = waiting.done()
        transport.close()
        await client.lost
        await collector.all_lost()
        await asyncio.wait_for(waiting, 1)
        return before, after, client, done_with_clients

    before, after, client, done_with_clients = run(loop, main())
    assert before == (True, 1, True)
    assert after == (False, ())
    assert client.data == b"still here"
    assert done_with_clients is not STDLIB.SERVER_WAIT_CLOSED_WAITS_FOR_CLIENTS


def test_server_async_with(loop, net):
    async def main():
        collector = Collector()
        async with await net.server(collector) as server:
            inside = server.is_serving()
            address = net.address(server)
            transport, client = await net.connect(Recorder, server)
            transport.close()
            await client.lost
            await collector.all_lost()
        after = (server.is_serving(), server.sockets)
        await refused(net, address)
        return inside, after

    inside, after = run(loop, main())
    assert inside is True
    assert after == (False, ())


def test_serve_forever_cancellation(loop, net):
    async def main():
        collector = Collector()
        server = await net.server(collector, start_serving=False)
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        serving = server.is_serving()
        with pytest.raises(RuntimeError, match="already being awaited"):
            await server.serve_forever()
        transport, client = await net.connect(Recorder, server)
        transport.close()
        await client.lost
        await collector.all_lost()
        address = net.address(server)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = (server.is_serving(), server.sockets)
        with pytest.raises(RuntimeError, match="is closed"):
            await server.serve_forever()
        await refused(net, address)
        return serving, after, task.cancelled()

    serving, after, cancelled = run(loop, main())
    assert serving is True
    assert after == (False, ())
    assert cancelled


def test_server_close_ends_serve_forever(loop, net):
    async def main():
        server = await net.server(Collector())
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        loop.call_soon(server.close)
        with pytest.raises(asyncio.CancelledError):
            await task
        return server.is_serving()

    assert run(loop, main()) is False


def test_start_serving_false(loop, net):
    async def main():
        collector = Collector(echo=True)
        server = await net.server(collector, start_serving=False)
        address = net.address(server)
        not_yet = server.is_serving()
        # Bound but not listening yet.
        await refused(net, address, closed=False)
        await server.start_serving()
        serving = server.is_serving()
        transport, client = await net.connect(Recorder, server)
        transport.write(b"now")
        await client.wait_bytes(3)
        await hang_up(transport, client, collector, server)
        return not_yet, serving

    assert run(loop, main()) == (False, True)


def test_server_port_zero_and_options(loop):
    async def main():
        server = await loop.create_server(Collector(), "127.0.0.1", 0)
        sock = server.sockets[0]
        info = (
            sock.getsockname(),
            sock.family,
            sock.type,
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR),
        )
        await closed(server)
        return info

    (host, port), family, type_, reuseaddr = run(loop, main())
    assert host == "127.0.0.1"
    assert port > 0
    assert family == socket.AF_INET
    assert type_ == socket.SOCK_STREAM
    assert reuseaddr != 0  # the default on POSIX


def test_server_reuse_port(loop):
    async def main():
        first = await loop.create_server(Collector(), "127.0.0.1", 0, reuse_port=True)
        port = first.sockets[0].getsockname()[1]
        second = await loop.create_server(Collector(), "127.0.0.1", port, reuse_port=True)
        opts = [
            s.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in (first, second)
        ]
        names = [s.sockets[0].getsockname() for s in (first, second)]
        with pytest.raises(OSError) as info:
            await loop.create_server(Collector(), "127.0.0.1", port)
        await closed(first)
        await closed(second)
        return opts, names, info.value.errno

    opts, names, err = run(loop, main())
    assert all(opts)
    assert names[0] == names[1]
    assert err == errno.EADDRINUSE


def test_server_host_list(loop):
    async def main():
        collector = Collector(echo=True)
        server = await loop.create_server(collector, ["127.0.0.1", "127.0.0.2"], 0)
        names = sorted(s.getsockname() for s in server.sockets)
        replies = []
        for host, port in names:
            transport, client = await loop.create_connection(Recorder, host, port)
            transport.write(host.encode())
            replies.append(await client.wait_bytes(len(host)))
            peer = transport.get_extra_info("peername")
            transport.close()
            await client.lost
            assert peer == (host, port)
        await collector.all_lost()
        await closed(server)
        return names, replies

    names, replies = run(loop, main())
    assert [host for host, _ in names] == ["127.0.0.1", "127.0.0.2"]
    assert replies == [b"127.0.0.1", b"127.0.0.2"]


def test_server_all_interfaces(loop):
    async def main():
        server = await loop.create_server(Collector(), None, 0)
        socks = [
            (
                s.family,
                s.getsockname()[0],
                s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
                if s.family == socket.AF_INET6
                else None,
            )
            for s in server.sockets
        ]
        await closed(server)
        return socks

    socks = run(loop, main())
    assert (socket.AF_INET, "0.0.0.0", None) in socks
    for family, host, v6only in socks:
        if family == socket.AF_INET6:
            assert host == "::" and v6only


def test_server_with_sock(loop, net, sockets):
    async def main():
        if net.is_unix:
            lsock = sockets(socket.socket(socket.AF_UNIX))
            lsock.bind(os.path.join(net.tmp, "given"))
        else:
            lsock = sockets(socket.socket())
            lsock.bind(("127.0.0.1", 0))
        collector = Collector(echo=True)
        if net.is_unix:
            server = await loop.create_unix_server(collector, sock=lsock)
        else:
            server = await loop.create_server(collector, sock=lsock)
        same = server.sockets[0].fileno() == lsock.fileno()
        transport, client = await net.connect(Recorder, server)
        transport.write(b"via sock=")
        await client.wait_bytes(9)
        await hang_up(transport, client, collector, server)
        return same, lsock.fileno()

    same, fd_after = run(loop, main())
    assert same
    assert fd_after == -1  # the server owns and closed the socket


def test_create_server_argument_errors(loop, sockets):
    udp = sockets(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    tcp = sockets(socket.socket())

    async def main():
        with pytest.raises(ValueError, match="Stream Socket was expected"):
            await loop.create_server(Collector(), sock=udp)
        with pytest.raises(ValueError, match="can not be specified at the same time"):
            await loop.create_server(Collector(), "127.0.0.1", 0, sock=tcp)
        with pytest.raises(ValueError, match="Neither host/port nor sock were specified"):
            await loop.create_server(Collector())
        with pytest.raises(ValueError, match="path and sock can not be specified"):
            await loop.create_unix_server(Collector(), "/tmp/x", sock=tcp)

    run(loop, main())


def test_create_connection_with_sock_and_connect_accepted_socket(loop, sockets):
    lsock = sockets(socket.create_server(("127.0.0.1", 0)))
    raw_client = socket.create_connection(lsock.getsockname())
    raw_server, _ = lsock.accept()

    async def main():
        c_transport, client = await loop.create_connection(Recorder, sock=raw_client)
        s_transport, srv = await loop.connect_accepted_socket(
            lambda: Recorder(echo=True), raw_server
        )
        blocking = (raw_client.gettimeout(), raw_server.gettimeout())
        c_transport.write(b"accepted")
        await client.wait_bytes(8)
        names = (
            c_transport.get_extra_info("peername"),
            s_transport.get_extra_info("sockname"),
        )
        c_transport.close()
        await client.lost
        await srv.lost
        return blocking, names, client, srv

    blocking, names, client, srv = run(loop, main())
    assert blocking == (0.0, 0.0)  # the loop made them non-blocking
    assert names[0] == names[1] == lsock.getsockname()
    assert client.data == srv.data == b"accepted"
    assert raw_client.fileno() == raw_server.fileno() == -1


def test_create_connection_refused(loop, sockets):
    s = sockets(socket.socket())
    s.bind(("127.0.0.1", 0))  # bound, not listening
    with pytest.raises(ConnectionRefusedError):
        run(loop, loop.create_connection(Recorder, *s.getsockname()))
    with pytest.raises(ConnectionRefusedError):
        run(loop, asyncio.open_connection(*s.getsockname()))


def test_create_unix_connection_missing_path(loop, short_tmp):
    with pytest.raises(FileNotFoundError):
        run(loop, loop.create_unix_connection(Recorder, os.path.join(short_tmp, "nope")))


def test_create_connection_local_addr(loop):
    async def main():
        collector = Collector()
        server = await loop.create_server(collector, "127.0.0.1", 0)
        transport, client = await loop.create_connection(
            Recorder, *server.sockets[0].getsockname(), local_addr=("127.0.0.1", 0)
        )
        local = transport.get_extra_info("sockname")
        srv = await collector.first()
        await srv.made
        seen = srv.transport.get_extra_info("peername")
        await hang_up(transport, client, collector, server)
        return local, seen

    local, seen = run(loop, main())
    assert local == seen
    assert local[0] == "127.0.0.1" and local[1] > 0


# ----------------------------------------------------------------------------------------
# Unix specifics
# ----------------------------------------------------------------------------------------


def test_unix_abstract_namespace(loop, short_tmp):
    name = f"\0rose-test-{os.getpid()}-{id(loop)}"

    async def main():
        collector = Collector(echo=True)
        server = await loop.create_unix_server(collector, name)
        sockname = server.sockets[0].getsockname()
        transport, client = await loop.create_unix_connection(Recorder, name)
        transport.write(b"abstract")
        await client.wait_bytes(8)
        peer = transport.get_extra_info("peername")
        transport.close()
        await client.lost
        reader, writer = await asyncio.open_unix_connection(name)
        writer.write(b"streams")
        echoed = await reader.readexactly(7)
        writer.close()
        await writer.wait_closed()
        await collector.all_lost()
        await closed(server)
        # Closed: nobody listens on the name any more.
        with pytest.raises(ConnectionRefusedError):
            await loop.create_unix_connection(Recorder, name)
        return sockname, peer, echoed

    sockname, peer, echoed = run(loop, main())
    assert sockname == name.encode()
    assert peer == name.encode()
    assert echoed == b"streams"
    assert not os.path.exists(name[1:])


async def unix_echo_once(loop, path, data):
    """Echo ``data`` once through a Unix server at ``path``: (server sockname, echoed bytes)."""
    collector = Collector(echo=True)
    server = await loop.create_unix_server(collector, path)
    transport, client = await loop.create_unix_connection(Recorder, path)
    transport.write(data)
    await client.wait_bytes(len(data))
    transport.close()
    await client.lost
    await collector.all_lost()
    name = server.sockets[0].getsockname()
    await closed(server)
    return name, bytes(client.data)


def test_unix_stale_socket_file_is_replaced(loop, short_tmp):
    path = os.path.join(short_tmp, "stale")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    assert stat.S_ISSOCK(os.stat(path).st_mode)

    assert run(loop, unix_echo_once(loop, path, b"fresh")) == (path, b"fresh")


def test_unix_server_refuses_to_replace_regular_file(loop, short_tmp):
    path = os.path.join(short_tmp, "regular")
    with open(path, "wb") as f:
        f.write(b"keep me")
    with pytest.raises(OSError) as info:
        run(loop, loop.create_unix_server(Collector(), path))
    assert info.value.errno == errno.EADDRINUSE
    with open(path, "rb") as f:
        assert f.read() == b"keep me"


def test_unix_server_pathlike(loop, short_tmp):
    import pathlib

    path = pathlib.Path(short_tmp) / "pl"

    assert run(loop, unix_echo_once(loop, path, b"p")) == (str(path), b"p")


# ----------------------------------------------------------------------------------------
# TLS
# ----------------------------------------------------------------------------------------


class TLS:
    def __init__(self):
        self.ca = trustme.CA()
        self.server_cert = self.ca.issue_cert("localhost", "127.0.0.1")
        self.client_cert = self.ca.issue_cert("client.example")
        self.server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(self.server_ctx)
        self.client_ctx = ssl.create_default_context()
        self.ca.configure_trust(self.client_ctx)

    def mutual_contexts(self):
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(server_ctx)
        server_ctx.verify_mode = ssl.CERT_REQUIRED
        self.ca.configure_trust(server_ctx)
        client_ctx = ssl.create_default_context()
        self.ca.configure_trust(client_ctx)
        self.client_cert.configure_cert(client_ctx)
        return server_ctx, client_ctx


@pytest.fixture(scope="module")
def tls():
    return TLS()


def test_tls_echo_and_extra_info(loop, net, tls):
    async def main():
        collector = Collector(echo=True)
        server = await net.server(collector, ssl=tls.server_ctx)
        transport, client = await net.connect(
            Recorder, server, ssl=tls.client_ctx, server_hostname="localhost"
        )
        transport.write(b"secret " * 1000)
        await client.wait_bytes(7000)
        srv = await collector.first()
        info = {
            key: transport.get_extra_info(key)
            for key in ("peercert", "cipher", "ssl_object", "sslcontext", "compression")
        }
        server_info = {key: srv.transport.get_extra_info(key) for key in ("peercert", "ssl_object")}
        extra = {
            "is_transport": isinstance(transport, asyncio.Transport),
            "can_write_eof": transport.can_write_eof(),
            "socket": transport.get_extra_info("socket") is not None,
            "version": info["ssl_object"].version(),
            "server_side": (info["ssl_object"].server_side, server_info["ssl_object"].server_side),
            "hostname": info["ssl_object"].server_hostname,
        }
        await hang_up(transport, client, collector, server)
        return client, collector.protocols[0], info, server_info, extra

    client, srv, info, server_info, extra = run(loop, main())
    assert bytes(client.data) == b"secret " * 1000
    assert srv.data == b"secret " * 1000
    assert client.lost_calls == [None] and srv.lost_calls == [None]
    assert ("DNS", "localhost") in info["peercert"]["subjectAltName"]
    assert isinstance(info["cipher"], tuple) and len(info["cipher"]) == 3
    assert info["cipher"][1].startswith("TLS")
    assert isinstance(info["ssl_object"], ssl.SSLObject)
    assert info["sslcontext"] is tls.client_ctx
    assert server_info["peercert"] is None  # no client certificate was asked for
    assert extra == {
        "is_transport": True,
        "can_write_eof": False,
        "socket": True,
        "version": extra["version"],
        "server_side": (False, True),
        "hostname": "localhost",
    }
    assert extra["version"].startswith("TLS")


def test_tls_client_certificate(loop, tls):
    server_ctx, client_ctx = tls.mutual_contexts()

    async def main():
        collector = Collector(echo=True)
        server = await loop.create_server(collector, "127.0.0.1", 0, ssl=server_ctx)
        transport, client = await loop.create_connection(
            Recorder, *server.sockets[0].getsockname(), ssl=client_ctx
        )
        transport.write(b"mutual")
        await client.wait_bytes(6)
        srv = await collector.first()
        peercert = srv.transport.get_extra_info("peercert")
        await hang_up(transport, client, collector, server)
        return peercert

    peercert = run(loop, main())
    assert ("DNS", "client.example") in peercert["subjectAltName"]


def test_tls_streams(loop, net, tls):
    async def main():
        handled = loop.create_future()

        async def handle(reader, writer):
            line = await reader.readline()
            cert = writer.get_extra_info("peercert")
            writer.write(line[::-1])
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            handled.set_result(cert)

        server = await net.start_server(handle, ssl=tls.server_ctx)
        reader, writer = await net.open_connection(
            server, ssl=tls.client_ctx, server_hostname="localhost"
        )
        writer.write(b"abc")
        writer.write(b"def\n")
        got = await reader.read()
        ssl_object = writer.get_extra_info("ssl_object")
        writer.close()
        await writer.wait_closed()
        server_peercert = await handled
        await closed(server)
        return got, ssl_object, server_peercert

    got, ssl_object, server_peercert = run(loop, main())
    assert got == b"\nfedcba"
    assert isinstance(ssl_object, ssl.SSLObject)
    assert server_peercert is None


def test_tls_unix_requires_server_hostname(loop, short_tmp, tls):
    path = os.path.join(short_tmp, "tls")
    with pytest.raises(ValueError, match="server_hostname"):
        run(loop, loop.create_unix_connection(Recorder, path, ssl=tls.client_ctx))


def test_start_tls_streams_upgrade(loop, net, tls):
    async def main():
        handled = loop.create_future()

        async def handle(reader, writer):
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"OK\n")
            await writer.drain()
            await writer.start_tls(tls.server_ctx)
            line = await reader.readline()
            writer.write(b"tls:" + line)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            handled.set_result(writer.get_extra_info("ssl_object") is not None)

        server = await net.start_server(handle)
        reader, writer = await net.open_connection(server)
        plain = writer.get_extra_info("ssl_object")
        writer.write(b"STARTTLS\n")
        ok = await reader.readline()
        await writer.start_tls(tls.client_ctx, server_hostname="localhost")
        upgraded = writer.get_extra_info("ssl_object")
        writer.write(b"over tls\n")
        answer = await reader.readline()
        eof = await reader.read()
        writer.close()
        await writer.wait_closed()
        server_upgraded = await handled
        await closed(server)
        return plain, ok, upgraded, answer, eof, server_upgraded

    plain, ok, upgraded, answer, eof, server_upgraded = run(loop, main())
    assert plain is None
    assert ok == b"OK\n"
    assert isinstance(upgraded, ssl.SSLObject)
    assert answer == b"tls:over tls\n"
    assert eof == b""
    assert server_upgraded


def test_loop_start_tls_protocols(loop, tls):
    async def main():
        collector = Collector()
        server = await loop.create_server(collector, "127.0.0.1", 0)
        transport, client = await loop.create_connection(Recorder, *server.sockets[0].getsockname())
        srv = await collector.first()
        await srv.made
        transport.write(b"plain")
        await srv.wait_bytes(5)
        server_tls, client_tls = await asyncio.gather(
            loop.start_tls(srv.transport, srv, tls.server_ctx, server_side=True),
            loop.start_tls(transport, client, tls.client_ctx, server_hostname="localhost"),
        )
        old_closing = transport.is_closing()
        client_tls.write(b"+encrypted")
        await srv.wait_bytes(15)
        info = (
            client_tls.get_extra_info("peercert")["subjectAltName"],
            server_tls.get_extra_info("ssl_object").server_side,
            client_tls.get_protocol() is client,
            isinstance(client_tls, asyncio.Transport),
        )
        client_tls.close()
        await client.lost
        await srv.lost
        await closed(server)
        return old_closing, info, srv, client

    old_closing, info, srv, client = run(loop, main())
    # The plain transport was handed over, not closed.
    assert old_closing is False
    assert ("DNS", "localhost") in info[0]
    assert info[1:] == (True, True, True)
    assert srv.data == b"plain+encrypted"
    assert client.lost_calls == [None] and srv.lost_calls == [None]


def untrusting_context():
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata=trustme.CA().cert_pem.bytes().decode())
    return ctx


@pytest.mark.parametrize("case", ["unknown-ca", "wrong-hostname"])
def test_tls_handshake_failure(loop, tls, sockets, case):
    lsock = sockets(socket.create_server(("127.0.0.1", 0)))
    raw_client = socket.socket()
    raw_client.connect(lsock.getsockname())
    raw_server, _ = lsock.accept()
    if case == "unknown-ca":
        ctx, hostname = untrusting_context(), "localhost"
    else:
        ctx, hostname = tls.client_ctx, "wrong.example"

    async def main():
        made = []

        def factory():
            proto = Recorder()
            made.append(proto)
            return proto

        return (
            await asyncio.gather(
                loop.create_connection(factory, sock=raw_client, ssl=ctx, server_hostname=hostname),
                loop.connect_accepted_socket(factory, raw_server, ssl=tls.server_ctx),
                return_exceptions=True,
            ),
            made,
        )

    (client_exc, server_exc), made = run(loop, main())
    assert isinstance(client_exc, ssl.SSLCertVerificationError)
    if case == "unknown-ca":
        assert "unable to get local issuer certificate" in str(client_exc)
    else:
        assert "wrong.example" in str(client_exc)
    assert isinstance(server_exc, (ssl.SSLError, ConnectionError))
    # The handshake never completed: no application protocol was connected.
    assert [p.events for p in made] == [[], []]
    # Both sockets were closed by their failed transports.
    assert raw_client.fileno() == raw_server.fileno() == -1


def test_tls_handshake_timeout(loop, sockets, tls):
    lsock = sockets(socket.create_server(("127.0.0.1", 0)))  # accepts, never answers

    async def main():
        with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer"):
            await loop.create_connection(
                Recorder,
                *lsock.getsockname(),
                ssl=tls.client_ctx,
                server_hostname="localhost",
                ssl_handshake_timeout=0.2,
            )

    run(loop, main())


def test_tls_server_rejects_plain_client(loop, tls):
    async def main():
        collector = Collector()
        server = await loop.create_server(collector, "127.0.0.1", 0, ssl=tls.server_ctx)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        try:
            reply = await reader.read()
        except ConnectionResetError:
            reply = b""
        writer.close()
        await writer.wait_closed()
        await closed(server)
        return reply, collector.protocols

    reply, protocols = run(loop, main())
    # No TLS session was established; the server only sent (at most) an alert.
    assert not reply.startswith(b"HTTP")
    assert protocols == [] or all(p.events == [] for p in protocols)


# ----------------------------------------------------------------------------------------
# loop.sendfile
# ----------------------------------------------------------------------------------------


FILE_DATA = pattern(300 * 1024 + 3)


@pytest.fixture
def datafile():
    with temporary_file(FILE_DATA) as f:
        yield f


@pytest.mark.parametrize("fallback", [False, True])
def test_loop_sendfile_plain_transport(loop, net, datafile, fallback):
    async def main():
        collector, server, transport, client = await serve_and_connect(net)
        srv = await collector.first()
        transport.write(b"head:")
        sent = await loop.sendfile(transport, datafile, 100, 200_000, fallback=fallback)
        transport.write(b":tail")
        expected = b"head:" + FILE_DATA[100:200_100] + b":tail"
        await srv.wait_bytes(len(expected))
        still_usable = not transport.is_closing() and transport.is_reading()
        srv.transport.write(b"back")
        await client.wait_bytes(4)
        transport.close()
        await client.lost
        await srv.lost
        await closed(server)
        return sent, bytes(srv.data) == expected, still_usable, datafile.tell()

    sent, same, still_usable, pos = run(loop, main())
    assert sent == 200_000
    assert same
    assert still_usable
    assert pos == 200_100


def test_loop_sendfile_whole_file(loop, net, datafile):
    async def main():
        collector, server, transport, client = await serve_and_connect(net)
        srv = await collector.first()
        sent = await loop.sendfile(transport, datafile)
        await eof_then_server_closes(transport, client, srv, server)
        return sent, bytes(srv.data)

    sent, data = run(loop, main())
    assert sent == len(FILE_DATA)
    assert data == FILE_DATA


def test_loop_sendfile_over_tls(loop, tls, datafile):
    async def main():
        collector = Collector()
        server = await loop.create_server(collector, "127.0.0.1", 0, ssl=tls.server_ctx)
        transport, client = await loop.create_connection(
            Recorder, *server.sockets[0].getsockname(), ssl=tls.client_ctx
        )
        srv = await collector.first()
        with pytest.raises(RuntimeError, match="fallback is disabled"):
            await loop.sendfile(transport, datafile, fallback=False)
        sent = await loop.sendfile(transport, datafile, 10, 50_000)
        await srv.wait_bytes(50_000)
        await hang_up(transport, client, collector, server)
        return sent, bytes(srv.data)

    sent, data = run(loop, main())
    assert sent == 50_000
    assert data == FILE_DATA[10:50_010]


# ----------------------------------------------------------------------------------------
# many connections, fd reuse
# ----------------------------------------------------------------------------------------


def test_many_concurrent_stream_clients(loop, net):
    async def main():
        done = []

        async def handle(reader, writer):
            data = await reader.readline()
            writer.write(data * 2)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            done.append(data)

        server = await net.start_server(handle)

        async def client(i):
            reader, writer = await net.open_connection(server)
            writer.write(b"client %d\n" % i)
            reply = await reader.read()
            writer.close()
            await writer.wait_closed()
            return reply

        replies = await asyncio.gather(*(client(i) for i in range(40)))
        while len(done) < 40:
            await asyncio.sleep(0.005)
        await closed(server)
        return replies, done

    replies, done = run(loop, main())
    assert replies == [b"client %d\n" % i * 2 for i in range(40)]
    assert sorted(done) == sorted(b"client %d\n" % i for i in range(40))


def test_sequential_connections_reuse_fds(loop, net):
    async def main():
        collector = Collector(echo=True)
        server = await net.server(collector)
        fds = []
        for i in range(20):
            transport, client = await net.connect(Recorder, server)
            fds.append(transport.get_extra_info("socket").fileno())
            transport.write(b"%02d" % i)
            await client.wait_bytes(2)
            transport.close()
            await client.lost
            await collector.protocols[-1].lost
            assert client.data == b"%02d" % i
        await closed(server)
        return fds

    fds = run(loop, main())
    assert len(set(fds)) < len(fds)  # fd numbers were reused, and each worked


def test_fd_of_transport_is_protected(loop, net):
    async def main():
        collector, server, transport, client = await serve_and_connect(net)
        fd = transport.get_extra_info("socket").fileno()
        errors = []
        for call in (
            lambda: loop.add_reader(fd, lambda: None),
            lambda: loop.add_writer(fd, lambda: None),
            lambda: loop.remove_reader(fd),
            lambda: loop.remove_writer(fd),
        ):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))
        # The transport still works: its watchers were not replaced.
        srv = await collector.first()
        srv.transport.write(b"ok")
        await client.wait_bytes(2)
        await hang_up(transport, client, collector, server)
        return fd, errors

    fd, errors = run(loop, main())
    assert len(errors) == 4
    assert all(f"File descriptor {fd} is used by transport" in e for e in errors)


def test_extra_info_names_outlive_the_connection(loop):
    """sockname, peername and the socket are the same before and after connection_lost."""

    async def main():
        lost = loop.create_future()

        class Proto(asyncio.Protocol):
            def connection_lost(self, exc):
                lost.set_result(exc)

        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        try:
            tr, _ = await loop.create_connection(Proto, *server.sockets[0].getsockname())
            peer = tr.get_extra_info("peername")
            assert peer == server.sockets[0].getsockname()
            sock = tr.get_extra_info("socket")
            name = sock.getsockname()
            tr.close()
            assert await lost is None
            assert tr.get_extra_info("sockname") == name
            assert tr.get_extra_info("peername") == peer
            assert tr.get_extra_info("socket") is sock
            assert tr.get_extra_info("missing", "dflt") == "dflt"
        finally:
            server.close()
            await server.wait_closed()

    loop.run_until_complete(asyncio.wait_for(main(), 5))
