"""Stream transports under abuse: peers that reset mid-write, half-close, never read or
vanish; writes after close/EOF/connection loss; accept() out of file descriptors.

Real sockets on loopback (TCP, and AF_UNIX where the ``family`` fixture says so); the
client side is often a raw non-blocking socket driven with ``loop.sock_*`` so the test
controls exactly when it reads, half-closes or resets. Every expectation is stdlib
asyncio's own behaviour (``asyncio/selector_events.py``, ``transports.py``).
"""

import array
import asyncio
import errno
import logging
import os
import resource
import select
import socket
import struct

import pytest
from conftest import STDLIB, capture_exception_contexts, pattern

TIMEOUT = 2.5
KiB = 1024
MiB = 1024 * KiB

# asyncio counts writes on a lost connection in `_conn_lost`, which close()/abort()/a fatal
# error already set to 1; write() warns once `_conn_lost` has reached the threshold (5), so
# the first 4 writes after the loss are silent and every later one logs a warning.
CONNLOST_WARNING = "socket.send() raised exception."
SILENT_WRITES_AFTER_LOSS = asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES - 1


def run(loop, coro, timeout=TIMEOUT):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def _settle(fut, value):
    if not fut.done():
        fut.set_result(value)


# ----------------------------------------------------------------------------------------
# protocols, servers, raw clients
# ----------------------------------------------------------------------------------------


class Peer(asyncio.Protocol):
    """Records every callback in ``events``; ``keep_open`` is what eof_received returns."""

    def __init__(self, keep_open=None):
        self.loop = asyncio.get_running_loop()
        self.keep_open = keep_open
        self.transport = None
        self.events = []
        self.data = bytearray()
        self.lost_calls = []
        self.made = self.loop.create_future()
        self.eof = self.loop.create_future()
        self.lost = self.loop.create_future()
        self.paused = self.loop.create_future()
        self.resumed = self.loop.create_future()

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        _settle(self.made, None)

    def data_received(self, data):
        assert isinstance(data, bytes)
        if self.events[-1] != "data":
            self.events.append("data")
        self.data += data

    def eof_received(self):
        self.events.append("eof")
        _settle(self.eof, None)
        return self.keep_open

    def pause_writing(self):
        self.events.append("pause")
        _settle(self.paused, self.transport.get_write_buffer_size())

    def resume_writing(self):
        self.events.append("resume")
        _settle(self.resumed, self.transport.get_write_buffer_size())

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_calls.append(exc)
        _settle(self.lost, exc)


class Accepted:
    """Protocol factory for a server; ``first`` resolves to the first protocol made, once
    its connection_made() ran."""

    def __init__(self, cls=Peer, **kwargs):
        self.cls = cls
        self.kwargs = kwargs
        self.protocols = []
        self.first = asyncio.get_running_loop().create_future()

    def __call__(self):
        proto = self.cls(**self.kwargs)
        self.protocols.append(proto)
        proto.made.add_done_callback(lambda _: _settle(self.first, proto))
        return proto


async def closed(server):
    server.close()
    await server.wait_closed()


class Endpoints:
    """Servers and clients of one family (``"tcp"`` or ``"unix"``) with the same calls."""

    def __init__(self, family, tmp, loop):
        self.family = family
        self.tmp = tmp
        self.loop = loop
        self.raw = []
        self.servers = []
        self.factories = []
        self.clients = []
        self._count = 0

    def cleanup(self):
        """Teardown: close what a failed test left open, so it cannot leak into others."""
        for sock in self.raw:
            sock.close()
        if self.loop.is_closed() or self.loop.is_running():
            return
        for server in self.servers:
            server.close()
        for proto in [p for f in self.factories for p in f.protocols] + self.clients:
            if proto.transport is not None and not proto.lost.done():
                proto.transport.abort()
        for _ in range(3):
            self.loop.run_until_complete(asyncio.sleep(0))

    @property
    def af(self):
        return socket.AF_UNIX if self.family == "unix" else socket.AF_INET

    def address(self, server):
        name = server.sockets[0].getsockname()
        return name if self.family == "unix" else name[:2]

    async def server(self, factory):
        loop = asyncio.get_running_loop()
        self.factories.append(factory)
        if self.family == "unix":
            self._count += 1
            path = os.path.join(self.tmp, f"s{self._count}")
            server = await loop.create_unix_server(factory, path)
        else:
            server = await loop.create_server(factory, "127.0.0.1", 0)
        self.servers.append(server)
        return server

    async def connect(self, factory, server):
        loop = asyncio.get_running_loop()
        if self.family == "unix":
            tr, proto = await loop.create_unix_connection(factory, self.address(server))
        else:
            tr, proto = await loop.create_connection(factory, *self.address(server))
        self.clients.append(proto)
        return tr, proto

    async def raw_client(self, server, *, rcvbuf=None):
        """A connected non-blocking raw socket (closed at teardown)."""
        sock = socket.socket(self.af, socket.SOCK_STREAM)
        self.raw.append(sock)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, self.address(server))
        return sock

    async def accepted(self, factory=None, **client_kwargs):
        """A server, a raw client connected to it and the server side's protocol once
        accepted: ``(server, raw, srv)``."""
        factory = factory or Accepted()
        server = await self.server(factory)
        raw = await self.raw_client(server, **client_kwargs)
        return server, raw, await factory.first


@pytest.fixture(params=["tcp", "unix"])
def family(request, short_tmp, loop):
    ends = Endpoints(request.param, short_tmp, loop)
    yield ends
    ends.cleanup()


@pytest.fixture
def tcp(short_tmp, loop):
    ends = Endpoints("tcp", short_tmp, loop)
    yield ends
    ends.cleanup()


async def recv_until_eof(sock):
    loop = asyncio.get_running_loop()
    received = bytearray()
    while chunk := await loop.sock_recv(sock, 256 * KiB):
        received += chunk
    return bytes(received)


async def recv_exactly(sock, n):
    loop = asyncio.get_running_loop()
    received = bytearray()
    while len(received) < n:
        chunk = await loop.sock_recv(sock, n - len(received))
        assert chunk, f"EOF after {len(received)} of {n} bytes"
        received += chunk
    return bytes(received)


def connlost_warnings(caplog):
    return [r for r in caplog.records if r.name == "asyncio" and r.getMessage() == CONNLOST_WARNING]


def without_flow(events):
    """``events`` without pause/resume, after checking that those alternate properly."""
    flow = [e for e in events if e in ("pause", "resume")]
    assert flow == ["pause", "resume"] * (len(flow) // 2) + ["pause"] * (len(flow) % 2)
    return [e for e in events if e not in ("pause", "resume")]


def small_send_buffer(transport):
    """Pin the transport's kernel send buffer small, so its own buffer fills early."""
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)


# ----------------------------------------------------------------------------------------
# 1. the peer resets the connection while the server is writing
# ----------------------------------------------------------------------------------------


class BigWriter(Peer):
    """Writes ``payload`` at once from connection_made()."""

    def __init__(self, payload):
        super().__init__()
        self.payload = payload
        self.buffered_after_write = None

    def connection_made(self, transport):
        super().connection_made(transport)
        transport.write(self.payload)
        self.buffered_after_write = transport.get_write_buffer_size()


def test_peer_reset_mid_write(loop, tcp, caplog):
    caplog.set_level(logging.WARNING, logger="asyncio")
    payload = pattern(8 * MiB)

    async def main():
        server, raw, srv = await tcp.accepted(Accepted(BigWriter, payload=payload), rcvbuf=64 * KiB)
        head = await recv_exactly(raw, 64 * KiB)  # the transfer is under way
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()  # RST
        exc = await srv.lost
        tr = srv.transport
        after = (tr.is_closing(), tr.get_write_buffer_size())
        # The connection is gone: writes are dropped, then warned about.
        for _ in range(SILENT_WRITES_AFTER_LOSS):
            tr.write(b"dropped")
        silent = len(connlost_warnings(caplog))
        tr.write(b"dropped")
        warned = len(connlost_warnings(caplog))
        await closed(server)
        return srv, head, exc, after, silent, warned

    contexts = capture_exception_contexts(loop)
    srv, head, exc, after, silent, warned = run(loop, main())
    assert srv.buffered_after_write > 64 * KiB  # most of the 8 MiB waited in the transport
    assert head == payload[: len(head)]
    assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
    assert srv.lost_calls == [exc]
    # Paused by the big write; the reset drops the buffer without resume_writing().
    assert srv.events == ["made", "pause", "lost"]
    assert after == (True, 0)
    # An OSError on a transport is only logged at debug level, never handed to the loop's
    # exception handler.
    assert contexts == []
    assert (silent, warned) == (0, 1)


def wait_for_reset(transport):
    """Block (bounded) until the kernel has the peer's RST on the transport's socket, so the
    next call on the transport meets it before any loop callback did."""
    poller = select.poll()
    poller.register(transport.get_extra_info("socket").fileno(), select.POLLIN)
    events = poller.poll(TIMEOUT * 1000)
    assert events and events[0][1] & select.POLLERR, events


def test_peer_reset_then_write_before_loop_notices(loop, tcp, caplog):
    """write() meets the reset itself: no exception from write(), the transport closes at
    once and connection_lost gets the error, once."""
    caplog.set_level(logging.WARNING, logger="asyncio")

    async def main():
        server, raw, srv = await tcp.accepted()
        tr = srv.transport
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
        wait_for_reset(tr)
        tr.write(b"into the void")
        right_after = (tr.is_closing(), srv.lost.done())
        # The write that met the error is not counted; the next ones are.
        for _ in range(SILENT_WRITES_AFTER_LOSS):
            tr.write(b"dropped")
        silent = len(connlost_warnings(caplog))
        tr.write(b"dropped")
        warned = len(connlost_warnings(caplog))
        exc = await srv.lost
        await closed(server)
        return srv, right_after, exc, silent, warned

    contexts = capture_exception_contexts(loop)
    srv, right_after, exc, silent, warned = run(loop, main())
    assert right_after == (True, False)
    assert isinstance(exc, ConnectionResetError)
    assert srv.lost_calls == [exc]
    assert srv.events == ["made", "lost"]
    assert (silent, warned) == (0, 1)
    assert contexts == []


def test_peer_reset_then_write_eof_raises(loop, tcp):
    """write_eof() on a reset socket raises shutdown()'s OSError (ENOTCONN) to the caller;
    the transport is then in EOF state and connection_lost still reports the reset."""

    async def main():
        server, raw, srv = await tcp.accepted()
        tr = srv.transport
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
        wait_for_reset(tr)
        with pytest.raises(OSError) as info:
            tr.write_eof()
        with pytest.raises(RuntimeError, match=r"^Cannot call write\(\) after write_eof\(\)$"):
            tr.write(b"x")
        tr.write_eof()  # already in EOF state: a no-op now
        exc = await srv.lost
        await closed(server)
        return srv, info.value, exc

    contexts = capture_exception_contexts(loop)
    srv, eof_error, exc = run(loop, main())
    assert type(eof_error) is OSError
    assert eof_error.errno == errno.ENOTCONN
    assert eof_error.strerror == os.strerror(errno.ENOTCONN)
    assert isinstance(exc, ConnectionResetError)
    assert srv.lost_calls == [exc]
    assert contexts == []


# ----------------------------------------------------------------------------------------
# 2. half-closed peers
# ----------------------------------------------------------------------------------------


def test_client_half_close_server_keeps_open_and_replies(loop, family):
    reply = pattern(2 * MiB)

    async def main():
        server, raw, srv = await family.accepted(Accepted(keep_open=True))
        await loop.sock_sendall(raw, b"request")
        raw.shutdown(socket.SHUT_WR)
        await srv.eof
        tr = srv.transport
        state = (tr.is_closing(), tr.can_write_eof(), srv.lost.done())
        tr.write(reply)
        tr.close()
        received = await recv_until_eof(raw)
        lost = await srv.lost
        await closed(server)
        return srv, state, received, lost

    srv, state, received, lost = run(loop, main())
    assert state == (False, True, False)
    assert received == reply
    assert srv.data == b"request"
    # The 2 MiB reply may or may not pause the protocol, depending on kernel buffers.
    assert without_flow(srv.events) == ["made", "data", "eof", "lost"]
    assert lost is None
    assert srv.lost_calls == [None]


@pytest.mark.parametrize("keep_open", [False, None])
def test_client_half_close_server_closes_itself(loop, family, keep_open):
    async def main():
        server, raw, srv = await family.accepted(Accepted(keep_open=keep_open))
        await loop.sock_sendall(raw, b"last words")
        raw.shutdown(socket.SHUT_WR)
        await srv.eof
        state = (srv.transport.is_closing(), srv.lost.done())
        lost = await srv.lost
        received = await recv_until_eof(raw)
        await closed(server)
        return srv, state, lost, received

    srv, state, lost, received = run(loop, main())
    assert state == (True, False)  # closed by the transport, connection_lost follows
    assert lost is None
    assert srv.lost_calls == [None]
    assert srv.events == ["made", "data", "eof", "lost"]
    assert srv.data == b"last words"
    assert received == b""  # the client sees EOF


@pytest.mark.parametrize("size", [5, 4 * MiB], ids=["small", "buffered"])
def test_server_write_eof_then_reads_on(loop, family, size):
    """write_eof() with nothing buffered shuts down at once; with a buffer, once it is
    flushed. Either way the client gets every byte, then EOF, and can still send."""
    greeting = pattern(size)

    async def main():
        server, raw, srv = await family.accepted()
        tr = srv.transport
        small_send_buffer(tr)
        can = tr.can_write_eof()
        tr.write(greeting)
        tr.write_eof()
        tr.write_eof()  # no-op
        state = (tr.is_closing(), size > 5 and tr.get_write_buffer_size() > 0)
        received = await recv_until_eof(raw)
        await loop.sock_sendall(raw, b"still talking")
        raw.shutdown(socket.SHUT_WR)
        await srv.eof
        lost = await srv.lost
        await closed(server)
        return srv, can, state, received, lost

    srv, can, state, received, lost = run(loop, main())
    assert can is True
    assert state == (False, size > 5)
    assert received == greeting
    assert srv.data == b"still talking"
    assert without_flow(srv.events) == ["made", "data", "eof", "lost"]
    assert lost is None
    assert srv.lost_calls == [None]


# ----------------------------------------------------------------------------------------
# 3. writes after close(), after connection_lost, after write_eof(); wrong types
# ----------------------------------------------------------------------------------------


def test_writes_after_close_are_dropped_then_warned(loop, family, caplog):
    caplog.set_level(logging.WARNING, logger="asyncio")

    async def main():
        server, raw, srv = await family.accepted()
        tr = srv.transport
        tr.write(b"before close")
        assert tr.get_write_buffer_size() == 0
        tr.close()
        tr.write(b"after close")
        tr.write(b"")  # empty writes are not counted
        tr.writelines([b"after ", b"close"])
        before_lost = (srv.lost.done(), tr.get_write_buffer_size())
        await srv.lost
        counts = [len(connlost_warnings(caplog))]
        tr.write(bytearray(b"after lost"))
        tr.write(b"")
        tr.write(b"after lost")  # the 4th write since close(): still silent
        counts.append(len(connlost_warnings(caplog)))
        tr.write(memoryview(b"warned"))  # the 5th write since close()
        counts.append(len(connlost_warnings(caplog)))
        tr.write(b"warned again")
        tr.write(b"")
        counts.append(len(connlost_warnings(caplog)))
        received = await recv_until_eof(raw)
        await closed(server)
        return srv, before_lost, counts, received

    srv, before_lost, counts, received = run(loop, main())
    assert before_lost == (False, 0)
    assert counts == [0, 0, 1, 2]
    assert SILENT_WRITES_AFTER_LOSS == 4
    assert all(r.levelno == logging.WARNING for r in connlost_warnings(caplog))
    assert received == b"before close"
    assert srv.lost_calls == [None]
    assert srv.events == ["made", "lost"]


def test_write_after_write_eof_raises(loop, family):
    message = "Cannot call write() after write_eof()"
    # 3.12+ transports have their own writelines(), with its own message.
    writelines_message = (
        "Cannot call writelines() after write_eof()" if STDLIB.WRITELINES_OWN else message
    )

    async def main():
        server, raw, srv = await family.accepted()
        tr = srv.transport
        tr.write(b"payload")
        tr.write_eof()
        errors = []
        for call in (
            lambda: tr.write(b"more"),
            lambda: tr.write(b""),
            lambda: tr.writelines([b"a", b"b"]),
        ):
            with pytest.raises(RuntimeError) as info:
                call()
            errors.append(str(info.value))
        received = await recv_until_eof(raw)
        raw.close()
        await srv.lost
        with pytest.raises(RuntimeError) as info:
            tr.write(b"after lost")  # the EOF check comes before the lost-connection one
        errors.append(str(info.value))
        await closed(server)
        return srv, errors, received

    srv, errors, received = run(loop, main())
    assert errors == [message, message, writelines_message, message]
    assert received == b"payload"
    assert srv.lost_calls == [None]


def test_write_rejects_non_bytes(loop, family):
    bad = ["text", 42, None, array.array("B", b"ab"), [b"x"]]
    prefix = STDLIB.type_error_prefix("write")
    expected = [f"{prefix}, not {type(obj).__name__!r}" for obj in bad]

    async def main():
        server, raw, srv = await family.accepted()
        tr = srv.transport
        tr.write(b"ok")

        def messages(exc_type=TypeError):
            out = []
            for obj in bad:
                with pytest.raises(exc_type) as info:
                    tr.write(obj)
                out.append(str(info.value))
            return out

        while_open = messages()
        with pytest.raises(TypeError) as info:
            tr.writelines(["text"])
        joined = str(info.value)
        tr.write_eof()
        after_eof = messages()  # the type check comes first
        received = await recv_until_eof(raw)
        raw.close()
        await srv.lost
        after_lost = messages()
        await closed(server)
        return while_open, joined, after_eof, after_lost, received

    while_open, joined, after_eof, after_lost, received = run(loop, main())
    assert while_open == after_eof == after_lost == expected
    if STDLIB.WRITELINES_OWN:  # 3.12+: each chunk becomes a memoryview
        assert joined == "memoryview: a bytes-like object is required, not 'str'"
    else:  # 3.11: WriteTransport.writelines joins them
        assert joined == "sequence item 0: expected a bytes-like object, str found"
    assert received == b"ok"


def test_write_type_error_reprs_the_type_name(loop, tcp):
    """asyncio formats the rejected type's ``__name__`` with ``!r`` (not its qualname, and
    with repr's quoting)."""

    class Local:
        pass

    bad = [Local(), type("it's", (), {})(), type('say "hi"', (), {})()]

    async def main():
        factory = Accepted()
        server = await tcp.server(factory)
        await tcp.raw_client(server)
        srv = await factory.first
        out = []
        for obj in bad:
            with pytest.raises(TypeError) as info:
                srv.transport.write(obj)
            out.append(str(info.value))
        srv.transport.close()
        await srv.lost
        await closed(server)
        return out

    prefix = STDLIB.type_error_prefix("write") + ", not "
    assert run(loop, main()) == [
        prefix + "'Local'",
        prefix + '"it\'s"',
        prefix + "'say \"hi\"'",
    ]


def test_write_after_flushed_close_never_reaches_the_fds_next_owner(loop, family):
    """close() with data still buffered: writes made while it drains are still sent (asyncio
    appends them to the buffer); once connection_lost ran, the socket is closed and its fd
    number goes to the next socket created. A later write() must send nothing to it."""
    payload = pattern(1 * MiB)

    async def main():
        server, raw, srv = await family.accepted(rcvbuf=64 * KiB)
        tr = srv.transport
        fd = tr.get_extra_info("socket").fileno()
        small_send_buffer(tr)
        tr.write(payload)
        tr.close()
        pending = tr.get_write_buffer_size()
        tr.write(b"tail")  # the buffer is not empty yet: queued behind it and sent
        received = await recv_until_eof(raw)
        await srv.lost
        pairs = []
        while len(pairs) < 32 and not any(fd in (a.fileno(), b.fileno()) for a, b in pairs):
            pairs.append(socket.socketpair())
        try:
            reused = any(fd in (a.fileno(), b.fileno()) for a, b in pairs)
            try:
                tr.write(b"LEAK")
            except AttributeError:
                # asyncio 3.11 on this path: its transport has already dropped _sock and
                # _loop, so write() fails on None; nothing is sent.
                pass
            leaked = []
            for end in (end for pair in pairs for end in pair):
                end.setblocking(False)
                try:
                    leaked.append(end.recv(100))
                except BlockingIOError:
                    pass
        finally:
            for a, b in pairs:
                a.close()
                b.close()
        await closed(server)
        return srv, pending, received, reused, leaked

    contexts = capture_exception_contexts(loop)
    srv, pending, received, reused, leaked = run(loop, main())
    assert pending > 0
    assert received == payload + b"tail"
    assert srv.lost_calls == [None]
    assert reused  # the test did hand the fd number to a new socket
    assert leaked == []
    assert contexts == []


def test_write_of_non_contiguous_memoryview_is_a_fatal_write_error(loop, tcp):
    """A strided memoryview passes write()'s type check; with nothing buffered asyncio hands
    it to socket.send(), whose BufferError becomes a fatal write error: reported to the
    exception handler, the connection closed, connection_lost(exc). write() itself returns."""

    async def main():
        server, raw, srv = await tcp.accepted()
        tr = srv.transport
        tr.write(memoryview(b"abcdef")[::2])
        closing = tr.is_closing()
        exc = await srv.lost
        received = await recv_until_eof(raw)
        await closed(server)
        return srv, closing, exc, received

    contexts = capture_exception_contexts(loop)
    srv, closing, exc, received = run(loop, main())
    assert closing
    assert isinstance(exc, BufferError)
    assert str(exc) == "memoryview: underlying buffer is not C-contiguous"
    assert srv.lost_calls == [exc]
    assert received == b""
    assert len(contexts) == 1
    assert contexts[0]["message"] == "Fatal write error on socket transport"
    assert contexts[0]["exception"] is exc
    assert contexts[0]["transport"] is srv.transport
    assert contexts[0]["protocol"] is srv


# ----------------------------------------------------------------------------------------
# 4. a client that never reads: write flow control
# ----------------------------------------------------------------------------------------

CHUNK = 1 * MiB


class Firehose(Peer):
    """Writes ``payload`` in 1 MiB chunks whenever not paused, then closes."""

    def __init__(self, payload, limits):
        super().__init__()
        self.payload = payload
        self.limits = limits
        self.offset = 0
        self.writing_paused = False
        self.max_buffered = 0
        self.client_reading = False
        self.flow = []  # (event, buffer size, client reading?)

    def connection_made(self, transport):
        super().connection_made(transport)
        small_send_buffer(transport)
        if self.limits is not None:
            transport.set_write_buffer_limits(**self.limits)
        self.pump()

    def pump(self):
        tr = self.transport
        while not self.writing_paused and self.offset < len(self.payload):
            tr.write(self.payload[self.offset : self.offset + CHUNK])
            self.offset += CHUNK
            self.max_buffered = max(self.max_buffered, tr.get_write_buffer_size())
        if self.offset >= len(self.payload) and not tr.is_closing():
            tr.close()

    def pause_writing(self):
        super().pause_writing()
        self.flow.append(("pause", self.transport.get_write_buffer_size(), self.client_reading))
        self.writing_paused = True

    def resume_writing(self):
        super().resume_writing()
        self.flow.append(("resume", self.transport.get_write_buffer_size(), self.client_reading))
        self.writing_paused = False
        self.pump()


@pytest.mark.parametrize(
    "limits", [None, {"high": 2 * MiB, "low": 512 * KiB}], ids=["default", "custom"]
)
def test_never_reading_client_flow_control(loop, family, limits):
    payload = pattern(16 * MiB)

    async def main():
        server, raw, srv = await family.accepted(
            Accepted(Firehose, payload=payload, limits=limits), rcvbuf=64 * KiB
        )
        paused_at = await srv.paused
        water = srv.transport.get_write_buffer_limits()
        srv.client_reading = True
        received = await recv_until_eof(raw)
        lost = await srv.lost
        await closed(server)
        return srv, paused_at, water, received, lost

    srv, paused_at, water, received, lost = run(loop, main())
    low, high = water
    assert water == ((16 * KiB, 64 * KiB) if limits is None else (512 * KiB, 2 * MiB))
    assert paused_at > high
    assert srv.max_buffered <= high + CHUNK
    names = [name for name, _, _ in srv.flow]
    assert names[:2] == ["pause", "resume"]
    assert names == ["pause", "resume"] * (len(names) // 2)  # strictly alternating
    pauses = [size for name, size, _ in srv.flow if name == "pause"]
    resumes = [size for name, size, _ in srv.flow if name == "resume"]
    assert all(high < size <= high + CHUNK for size in pauses)
    assert all(size <= low for size in resumes)
    # Nothing resumed the writer before the client started reading.
    assert all(reading for name, _, reading in srv.flow if name == "resume")
    assert received == payload  # every byte, in order
    assert lost is None
    assert srv.lost_calls == [None]


def test_write_buffer_limits_arguments_and_lowering(loop, family):
    async def main():
        server, raw, srv = await family.accepted(rcvbuf=64 * KiB)
        tr = srv.transport
        limits = [tr.get_write_buffer_limits()]
        errors = []
        for kwargs in ({"high": 10, "low": 20}, {"low": -1}, {"high": -8, "low": -2}):
            with pytest.raises(ValueError) as info:
                tr.set_write_buffer_limits(**kwargs)
            errors.append(str(info.value))
        limits.append(tr.get_write_buffer_limits())  # failed calls change nothing
        for kwargs in ({"high": 100}, {"low": 100}, {"high": 0}, {"high": 7, "low": 7}, {}):
            tr.set_write_buffer_limits(**kwargs)
            limits.append(tr.get_write_buffer_limits())
        # A buffer that fits under a huge high-water mark; lowering the mark below the
        # buffered size pauses the protocol at once.
        tr.set_write_buffer_limits(high=64 * MiB)
        small_send_buffer(tr)
        payload = pattern(4 * MiB)
        tr.write(payload)
        buffered = tr.get_write_buffer_size()
        events_before = list(srv.events)
        tr.set_write_buffer_limits(high=0)
        events_after = list(srv.events)
        tr.close()
        received = await recv_until_eof(raw)
        await srv.lost
        await closed(server)
        return srv, limits, errors, buffered, events_before, events_after, received, payload

    srv, limits, errors, buffered, before, after, received, payload = run(loop, main())
    assert limits == [
        (16 * KiB, 64 * KiB),
        (16 * KiB, 64 * KiB),
        (25, 100),
        (100, 400),
        (0, 0),
        (7, 7),
        (16 * KiB, 64 * KiB),
    ]
    assert errors == [
        "high (10) must be >= low (20) must be >= 0",
        "high (-4) must be >= low (-1) must be >= 0",
        "high (-8) must be >= low (-2) must be >= 0",
    ]
    assert buffered > 0
    assert before == ["made"]
    assert after == ["made", "pause"]
    # low is 0: resume_writing() once the buffer is empty, then connection_lost.
    assert srv.events == ["made", "pause", "resume", "lost"]
    assert received == payload


def test_write_buffer_limits_accept_any_real_number(loop, tcp):
    """asyncio only compares the marks (`high >= low >= 0`): floats and ints beyond 64 bits
    are accepted, kept as given, and flow control works with them."""

    async def main():
        server, raw, srv = await tcp.accepted(rcvbuf=64 * KiB)
        tr = srv.transport
        limits = []
        for kwargs in ({"high": 1000.0}, {"low": 10.5}, {"high": 2**64}, {"high": 2**64 + 1.0}):
            tr.set_write_buffer_limits(**kwargs)
            limits.append(tr.get_write_buffer_limits())
        tr.set_write_buffer_limits(high=100_000.5, low=5_000.25)
        small_send_buffer(tr)
        payload = pattern(2 * MiB)
        tr.write(payload)
        paused_at = await srv.paused
        tr.close()
        received = await recv_until_eof(raw)
        await srv.lost
        await closed(server)
        return srv, limits, paused_at, received, payload

    srv, limits, paused_at, received, payload = run(loop, main())
    assert limits == [(250.0, 1000.0), (10.5, 42.0), (2**62, 2**64), (2**62 + 0.0, 2**64 + 1.0)]
    assert [type(x) for pair in limits[:2] for x in pair] == [float] * 4
    assert paused_at > 100_000.5
    assert srv.events == ["made", "pause", "resume", "lost"]
    assert received == payload


def test_write_buffer_limits_whose_float_calls_back_into_the_transport(loop, tcp):
    """A watermark is any real number, and its `__float__` is Python code that may use the
    transport itself (even set the limits again): no crash, and the outer call wins."""

    class Reentrant:
        def __init__(self, transport, value):
            self.transport, self.value = transport, value

        def __float__(self):
            self.transport.get_write_buffer_size()
            self.transport.get_write_buffer_limits()
            self.transport.set_write_buffer_limits(high=10, low=1)
            return self.value

        def __ge__(self, other):
            return self.value >= other

        def __le__(self, other):
            return self.value <= other

    async def main():
        server, raw, srv = await tcp.accepted()
        tr = srv.transport
        high = Reentrant(tr, 1000.0)
        tr.set_write_buffer_limits(high=high, low=0)
        limits = tr.get_write_buffer_limits()
        tr.write(b"after")
        tr.close()
        received = await recv_until_eof(raw)
        await srv.lost
        await closed(server)
        return limits, high, received

    limits, high, received = run(loop, main())
    assert limits == (0, high)
    assert received == b"after"


# ----------------------------------------------------------------------------------------
# 5. accept() out of file descriptors
# ----------------------------------------------------------------------------------------


class Echo(Peer):
    def connection_made(self, transport):
        super().connection_made(transport)
        self.accepted_at = self.loop.time()

    def data_received(self, data):
        super().data_received(data)
        self.transport.write(data)


BACKLOG = 5


def stdlib_accept_attempts_at_emfile(backlog):
    """How many accept() calls the running asyncio's `_accept_connection` makes for one
    readiness event when each fails with EMFILE: its own code, run on stand-ins."""

    class Listener:
        calls = 0

        def accept(self):
            Listener.calls += 1
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

        def fileno(self):
            return -1

    class StandInLoop:
        _debug = False

        def call_exception_handler(self, context):
            pass

        def _remove_reader(self, fd):
            pass

        def call_later(self, *args):
            pass

        _start_serving = None

    accept = asyncio.selector_events.BaseSelectorEventLoop._accept_connection
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(asyncio.trsock, "TransportSocket", lambda sock: sock)
        accept(StandInLoop(), None, Listener(), backlog=backlog)
    return Listener.calls


def _open_fds():
    return [int(name) for name in os.listdir("/proc/self/fd")]


def test_accept_emfile_server_survives(loop, caplog):
    caplog.set_level(logging.WARNING, logger="asyncio")
    contexts = capture_exception_contexts(loop)
    record = loop.get_exception_handler()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    dummies = []
    clients = []
    socknames = []

    def release():
        """Close the fd-table filler and restore the limit (idempotent)."""
        while dummies:
            os.close(dummies.pop())
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    async def echo(sock, data):
        await loop.sock_sendall(sock, data)
        return await recv_exactly(sock, len(data))

    async def main():
        seen = asyncio.Event()

        def handler(lp, ctx):
            record(lp, ctx)
            socknames.append(ctx["socket"].getsockname()[:2])
            seen.set()

        loop.set_exception_handler(handler)
        factory = Accepted(Echo)
        server = await loop.create_server(factory, "127.0.0.1", 0, backlog=BACKLOG)
        addr = server.sockets[0].getsockname()[:2]
        # Client sockets exist before the table is filled: connect() needs no new fd.
        first, second = socket.socket(), socket.socket()
        clients.extend([first, second])
        filler_r, filler_w = os.pipe()
        dummies.extend([filler_r, filler_w])
        limit = max(_open_fds()) + 8
        assert hard == resource.RLIM_INFINITY or limit <= hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        try:
            while True:
                dummies.append(os.dup(filler_r))
        except OSError as exc:
            assert exc.errno == errno.EMFILE
        first.settimeout(TIMEOUT)
        first.connect(addr)  # completes in the kernel: the server's backlog holds it
        first.setblocking(False)
        await seen.wait()
        failed_at = loop.time()
        table_was_full = len(dummies) > 2
        release()
        # accept() is retried after ACCEPT_RETRY_DELAY: the pending connection is served.
        first_echo = await echo(first, b"first")
        second.setblocking(False)
        await loop.sock_connect(second, addr)
        second_echo = await echo(second, b"second")
        delay = factory.protocols[0].accepted_at - failed_at
        for sock in clients:
            sock.close()
        await asyncio.gather(*(p.lost for p in factory.protocols))
        await closed(server)
        return addr, table_was_full, first_echo, second_echo, delay, factory.protocols

    try:
        addr, full, first_echo, second_echo, delay, protos = run(loop, main(), timeout=8)
    finally:
        release()
        for sock in clients:
            sock.close()
    assert full
    assert (first_echo, second_echo) == (b"first", b"second")
    assert len(protos) == 2
    assert [p.lost_calls for p in protos] == [[None], [None]]
    retry = asyncio.constants.ACCEPT_RETRY_DELAY
    assert retry - 0.05 <= delay < retry + 2
    # asyncio's _accept_connection does not stop at EMFILE: it goes on through its loop
    # (`range(backlog)` in 3.11, `range(backlog + 1)` since 3.12), reporting (and scheduling
    # a retry) each time.
    attempts = stdlib_accept_attempts_at_emfile(BACKLOG)
    assert attempts in (BACKLOG, BACKLOG + 1)
    assert len(contexts) == attempts
    for ctx in contexts:
        assert ctx["message"] == "socket.accept() out of system resource"
        assert isinstance(ctx["exception"], OSError)
        assert ctx["exception"].errno == errno.EMFILE
        assert ctx["socket"].family == socket.AF_INET
    assert socknames == [addr] * attempts


# ----------------------------------------------------------------------------------------
# 6. clean close by either side; abort()
# ----------------------------------------------------------------------------------------


class Reentrant(Peer):
    """Closes its transport again from eof_received() and connection_lost()."""

    def eof_received(self):
        super().eof_received()
        self.transport.close()
        self.transport.close()
        return False

    def connection_lost(self, exc):
        super().connection_lost(exc)
        self.transport.close()


@pytest.mark.parametrize("closer", ["client", "server"])
def test_clean_close_connection_lost_once(loop, family, closer):
    """The closer flushes 1 MiB, then closes; the peer closes on EOF. Each side gets
    connection_lost(None) exactly once, even when it closes again inside callbacks."""
    payload = pattern(1 * MiB)

    async def main():
        factory = Accepted(Reentrant)
        server = await family.server(factory)
        tr, client = await family.connect(Reentrant, server)
        srv = await factory.first
        ends = {"client": client, "server": srv}
        active = ends[closer]
        passive = ends["server" if closer == "client" else "client"]
        active.transport.write(payload)
        active.transport.close()
        active.transport.close()
        await asyncio.gather(client.lost, srv.lost)
        await closed(server)  # a few more loop iterations for any stray callback
        for _ in range(3):
            await asyncio.sleep(0)
        return active, passive

    contexts = capture_exception_contexts(loop)
    active, passive = run(loop, main())
    assert active.lost_calls == passive.lost_calls == [None]
    assert bytes(passive.data) == payload
    assert without_flow(active.events) == ["made", "lost"]
    assert without_flow(passive.events) == ["made", "data", "eof", "lost"]
    assert active.transport.is_closing() and passive.transport.is_closing()
    assert contexts == []


@pytest.mark.parametrize("close_first", [False, True], ids=["abort", "close-then-abort"])
def test_abort_drops_buffer(loop, family, caplog, close_first):
    """abort() drops the buffer and schedules connection_lost(None) for the next loop
    iteration, also while a close() is still waiting for the buffer to drain."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    payload = pattern(8 * MiB)

    async def main():
        server, raw, srv = await family.accepted(rcvbuf=64 * KiB)
        tr = srv.transport
        small_send_buffer(tr)
        tr.write(payload)
        buffered = tr.get_write_buffer_size()
        if close_first:
            tr.close()  # waits for the buffer to drain...
            assert not srv.lost.done()
        tr.abort()  # ... which abort() cuts short
        right_after = (tr.is_closing(), tr.get_write_buffer_size(), list(srv.lost_calls))
        iterations = 0
        while not srv.lost.done() and iterations < 3:
            await asyncio.sleep(0)
            iterations += 1
        lost_done = srv.lost.done()
        tr.abort()  # again: no second connection_lost
        tr.close()
        for _ in range(SILENT_WRITES_AFTER_LOSS):
            tr.write(b"dropped")
        silent = len(connlost_warnings(caplog))
        tr.write(b"dropped")
        warned = len(connlost_warnings(caplog))
        try:
            received = await recv_until_eof(raw)
        except ConnectionResetError:  # pragma: no cover - a reset is allowed, not expected
            received = None
        await closed(server)
        return srv, buffered, right_after, lost_done, silent, warned, received

    contexts = capture_exception_contexts(loop)
    srv, buffered, right_after, lost_done, silent, warned, received = run(loop, main())
    assert buffered > 64 * KiB
    assert right_after == (True, 0, [])  # buffer dropped; connection_lost not synchronous
    assert lost_done  # ... but within a few loop iterations, with no I/O needed
    assert srv.lost_calls == [None]
    assert srv.events == ["made", "pause", "lost"]  # no resume_writing on abort
    assert (silent, warned) == (0, 1)
    assert contexts == []
    if received is not None:
        assert len(received) < len(payload)  # the buffered part never left
        assert received == payload[: len(received)]
