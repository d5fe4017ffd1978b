"""connect_read_pipe / connect_write_pipe over pipes, FIFOs, socketpairs and ptys."""

import asyncio
import errno
import os
import tty

import pytest
from conftest import capture_exception_contexts, closing_transport

TIMEOUT = 1.5


def run(loop, coro, timeout=TIMEOUT):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


class ReadRecorder(asyncio.Protocol):
    """Protocol for read pipes: records events; futures to await them."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.lost = loop.create_future()
        self.lost_calls = []
        self._want = None

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def data_received(self, data):
        assert isinstance(data, bytes) and data
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data
        if self._want and len(self.data) >= self._want[0] and not self._want[1].done():
            self._want[1].set_result(None)

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_calls.append(exc)
        if not self.lost.done():
            self.lost.set_result(exc)

    async def wait_bytes(self, n):
        """Wait until at least ``n`` bytes arrived in total."""
        if len(self.data) >= n:
            return
        fut = asyncio.get_running_loop().create_future()
        self._want = (n, fut)
        try:
            await fut
        finally:
            self._want = None


class WriteRecorder(asyncio.BaseProtocol):
    """Protocol for write pipes."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.events = []
        self.transport = None
        self.lost = loop.create_future()
        self.lost_calls = []
        self.resumed_fut = loop.create_future()

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")
        if not self.resumed_fut.done():
            self.resumed_fut.set_result(None)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_calls.append(exc)
        if not self.lost.done():
            self.lost.set_result(exc)


async def read_pipe(fileobj):
    return await asyncio.get_running_loop().connect_read_pipe(ReadRecorder, fileobj)


async def write_pipe(fileobj):
    return await asyncio.get_running_loop().connect_write_pipe(WriteRecorder, fileobj)


async def close_pipe(tr, proto):
    tr.close()
    await proto.lost


async def read_and_write_pipes(rf, wf):
    """Read transport on ``rf``, write transport on ``wf``: (rtr, rproto, wtr, wproto)."""
    rtr, rproto = await read_pipe(rf)
    wtr, wproto = await write_pipe(wf)
    return rtr, rproto, wtr, wproto


async def peer_closes_after_write(write_end, close_peer, data):
    """Write ``data`` through a write transport on ``write_end``, then ``close_peer()``.

    Returns (transport, protocol, write buffer size right after the write, the exception
    connection_lost got).
    """
    tr, proto = await write_pipe(write_end)
    tr.write(data)
    buffered = tr.get_write_buffer_size()
    await asyncio.sleep(0.01)
    assert not proto.lost.done()
    close_peer()
    return tr, proto, buffered, await proto.lost


def write_all(fileobj, data):
    """Blocking write of all of ``data`` (FileIO.write may write only part)."""
    view = memoryview(data)
    while view:
        view = view[fileobj.write(view) :]


def fd_is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def pipe():
    """(read file object, write file object) of an os.pipe(), both unbuffered."""
    r, w = os.pipe()
    rf = os.fdopen(r, "rb", buffering=0)
    wf = os.fdopen(w, "wb", buffering=0)
    yield rf, wf
    rf.close()
    wf.close()


@pytest.fixture
def fifo(tmp_path):
    """(read file object, write file object) of a FIFO made with os.mkfifo."""
    path = tmp_path / "fifo"
    os.mkfifo(path)
    # Open the read end first (non-blocking, or open() would wait for a writer).
    r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    w = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    os.set_blocking(r, True)
    os.set_blocking(w, True)
    rf = os.fdopen(r, "rb", buffering=0)
    wf = os.fdopen(w, "wb", buffering=0)
    yield rf, wf
    rf.close()
    wf.close()


@pytest.fixture
def pty():
    """(master fd, slave fd) of os.openpty(), slave in raw mode (no echo, no \\r\\n)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    fds = [master, slave]
    yield fds
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# --------------------------------------------------------------------------------------
# os.pipe: read side
# --------------------------------------------------------------------------------------


def test_read_pipe_data_then_eof(loop, pipe):
    rf, wf = pipe
    payload = b"".join(b"line %d\n" % i for i in range(1000))

    async def main():
        tr, proto = await read_pipe(rf)
        assert proto.transport is tr
        assert proto.events == ["made"]
        assert tr.get_extra_info("pipe") is rf
        assert tr.get_protocol() is proto
        assert tr.is_reading()
        assert not tr.is_closing()
        wf.write(payload[:10])
        await proto.wait_bytes(10)
        wf.write(payload[10:])
        wf.close()  # EOF
        assert await proto.lost is None
        return tr, proto

    tr, proto = run(loop, main())
    assert bytes(proto.data) == payload
    assert proto.events == ["made", "data", "eof", "lost"]
    assert proto.lost_calls == [None]
    assert tr.is_closing()
    assert rf.closed  # the transport closed the pipe it owned


def test_read_pipe_is_made_non_blocking(loop, pipe):
    rf, _ = pipe
    assert os.get_blocking(rf.fileno())

    async def main():
        async with closing_transport(read_pipe(rf)) as (tr, proto):
            assert not os.get_blocking(rf.fileno())

    run(loop, main())


def test_read_pipe_large_transfer(loop, pipe):
    rf, wf = pipe
    payload = os.urandom(3 * 1024 * 1024)

    async def main():
        lp = asyncio.get_running_loop()
        tr, proto = await read_pipe(rf)
        # Blocking writes from a thread: the pipe fills up many times.
        writer = lp.run_in_executor(None, lambda: (write_all(wf, payload), wf.close()))
        assert await proto.lost is None
        await writer
        return proto

    proto = run(loop, main())
    assert len(proto.data) == len(payload)
    assert proto.data == payload
    assert proto.events == ["made", "data", "eof", "lost"]


def test_read_pipe_close(loop, pipe):
    rf, wf = pipe

    async def main():
        tr, proto = await read_pipe(rf)
        fd = rf.fileno()
        tr.close()
        assert tr.is_closing()
        assert not tr.is_reading()
        tr.close()  # idempotent
        assert await proto.lost is None
        assert not fd_is_open(fd)
        # Data written after close() is never delivered.
        with pytest.raises(BrokenPipeError):
            wf.write(b"too late")
        return proto

    proto = run(loop, main())
    assert proto.events == ["made", "lost"]
    assert proto.lost_calls == [None]
    assert proto.data == b""


def test_read_pipe_close_drops_unread_data(loop, pipe):
    rf, wf = pipe

    async def main():
        tr, proto = await read_pipe(rf)
        tr.pause_reading()
        wf.write(b"never read")
        await asyncio.sleep(0.02)
        tr.close()
        assert await proto.lost is None
        return proto

    proto = run(loop, main())
    assert proto.events == ["made", "lost"]
    assert proto.data == b""


def test_read_pipe_pause_resume(loop, pipe):
    rf, wf = pipe

    async def main():
        async with closing_transport(read_pipe(rf), wait_lost=False) as (tr, proto):
            wf.write(b"first")
            await proto.wait_bytes(5)
            tr.pause_reading()
            assert not tr.is_reading()
            tr.pause_reading()  # idempotent
            wf.write(b"second")
            await asyncio.sleep(0.1)
            assert proto.data == b"first"  # nothing delivered while paused
            tr.resume_reading()
            assert tr.is_reading()
            tr.resume_reading()  # idempotent
            await proto.wait_bytes(11)
            assert proto.data == b"firstsecond"
            # EOF is also held back while paused.
            tr.pause_reading()
            wf.close()
            await asyncio.sleep(0.05)
            assert not proto.lost.done()
            assert "eof" not in proto.events
            tr.resume_reading()
            assert await proto.lost is None
        return proto

    proto = run(loop, main())
    assert proto.events == ["made", "data", "eof", "lost"]


def test_read_pipe_pause_resume_after_close_are_noops(loop, pipe):
    rf, _ = pipe

    async def main():
        tr, proto = await read_pipe(rf)
        tr.close()
        tr.pause_reading()
        tr.resume_reading()
        assert not tr.is_reading()
        assert await proto.lost is None
        return proto

    proto = run(loop, main())
    assert proto.events == ["made", "lost"]


def test_read_pipe_rejects_regular_file(loop, tmp_path):
    path = tmp_path / "regular"
    path.write_bytes(b"data")
    with open(path, "rb") as f:
        with pytest.raises(ValueError, match=r"^Pipe transport is for pipes/sockets only\.$"):
            run(loop, read_pipe(f))
        assert not f.closed


def test_write_pipe_rejects_regular_file(loop, tmp_path):
    path = tmp_path / "regular"
    with open(path, "wb") as f:
        with pytest.raises(
            ValueError,
            match=r"^Pipe transport is only for pipes, sockets and character devices$",
        ):
            run(loop, write_pipe(f))
        assert not f.closed


def test_read_pipe_repr(loop, pipe):
    rf, _ = pipe
    fd = rf.fileno()

    async def main():
        async with closing_transport(read_pipe(rf)) as (tr, proto):
            assert repr(tr) == f"<_UnixReadPipeTransport fd={fd} polling>"
            tr.pause_reading()
            assert repr(tr) == f"<_UnixReadPipeTransport fd={fd} idle>"
            tr.close()
            assert repr(tr) == f"<_UnixReadPipeTransport closing fd={fd} idle>"
        assert repr(tr) == f"<_UnixReadPipeTransport closed fd={fd} closed>"

    run(loop, main())


# --------------------------------------------------------------------------------------
# os.pipe: write side
# --------------------------------------------------------------------------------------


def test_write_pipe_data_and_write_eof(loop, pipe):
    rf, wf = pipe

    async def main():
        tr, proto = await write_pipe(wf)
        assert proto.events == ["made"]
        assert tr.get_extra_info("pipe") is wf
        assert not os.get_blocking(wf.fileno())
        assert tr.can_write_eof()
        assert tr.get_write_buffer_size() == 0
        tr.write(b"hello ")
        tr.write(bytearray(b"pipe "))
        tr.write(memoryview(b"world"))
        tr.writelines([b"!", b"\n"])
        tr.write(b"")  # no-op
        assert tr.get_write_buffer_size() == 0  # everything fitted in the pipe
        tr.write_eof()
        assert tr.is_closing()
        assert await proto.lost is None
        return tr, proto

    tr, proto = run(loop, main())
    assert proto.events == ["made", "lost"]
    assert wf.closed
    assert rf.read() == b"hello pipe world!\n"
    assert rf.read() == b""  # EOF: the transport closed the write end


def test_write_pipe_to_read_pipe_same_loop(loop, pipe):
    rf, wf = pipe
    payload = os.urandom(2 * 1024 * 1024)

    async def main():
        rtr, rproto, wtr, wproto = await read_and_write_pipes(rf, wf)
        wtr.write(payload)  # far more than the pipe holds: buffered by the transport
        assert wtr.get_write_buffer_size() > 0
        wtr.close()  # close() flushes first, then closes
        assert await wproto.lost is None
        assert await rproto.lost is None
        return rproto, wproto

    rproto, wproto = run(loop, main())
    assert rproto.data == payload
    assert rproto.events == ["made", "data", "eof", "lost"]
    assert wproto.lost_calls == [None]


def test_write_pipe_flow_control(loop, pipe):
    rf, wf = pipe

    async def main():
        lp = asyncio.get_running_loop()
        async with closing_transport(write_pipe(wf)) as (tr, proto):
            tr.set_write_buffer_limits(high=4096, low=1024)
            assert tr.get_write_buffer_limits() == (1024, 4096)
            chunk = b"x" * 65536
            total = 0
            # Fill the kernel pipe buffer and then the transport's buffer.
            while tr.get_write_buffer_size() <= 4096:
                tr.write(chunk)
                total += len(chunk)
            assert proto.events == ["made", "pause"]
            buffered = tr.get_write_buffer_size()
            assert buffered > 4096
            # Nobody reads: the buffer stays put.
            await asyncio.sleep(0.05)
            assert tr.get_write_buffer_size() == buffered
            # Drain the pipe from the other end.
            os.set_blocking(rf.fileno(), False)
            received = 0

            def on_readable():
                nonlocal received
                try:
                    received += len(os.read(rf.fileno(), 1 << 20))
                except BlockingIOError:
                    pass

            lp.add_reader(rf.fileno(), on_readable)
            try:
                await proto.resumed_fut
                assert tr.get_write_buffer_size() <= 1024
                while received < total:
                    await asyncio.sleep(0.005)
            finally:
                lp.remove_reader(rf.fileno())
            assert received == total
            assert tr.get_write_buffer_size() == 0
        return proto

    proto = run(loop, main())
    assert proto.events == ["made", "pause", "resume", "lost"]
    assert proto.lost_calls == [None]


def test_write_pipe_close_waits_for_buffer(loop, pipe):
    rf, wf = pipe
    payload = b"y" * (512 * 1024)

    async def main():
        lp = asyncio.get_running_loop()
        tr, proto = await write_pipe(wf)
        tr.write(payload)
        assert tr.get_write_buffer_size() > 0
        tr.close()
        assert tr.is_closing()
        tr.write(b"ignored after close")  # silently dropped
        await asyncio.sleep(0.05)
        assert not proto.lost.done()  # still has data to flush
        got = await lp.run_in_executor(None, rf.read)  # reads until EOF
        assert await proto.lost is None
        return got, proto

    got, proto = run(loop, main())
    assert got == payload
    assert proto.events == ["made", "pause", "resume", "lost"]


def test_write_pipe_abort_discards_buffer(loop, pipe):
    rf, wf = pipe

    async def main():
        tr, proto = await write_pipe(wf)
        tr.write(b"z" * (512 * 1024))
        assert tr.get_write_buffer_size() > 0
        tr.abort()
        assert tr.is_closing()
        assert tr.get_write_buffer_size() == 0
        assert await proto.lost is None
        return proto

    proto = run(loop, main())
    assert proto.lost_calls == [None]
    assert proto.events == ["made", "pause", "lost"]  # no resume_writing on abort
    # Only what the kernel took before abort() can be read; then EOF.
    os.set_blocking(rf.fileno(), True)
    data = rf.read()
    assert 0 < len(data) < 512 * 1024
    assert data == b"z" * len(data)


def test_write_pipe_repr(loop, pipe):
    _, wf = pipe
    fd = wf.fileno()

    async def main():
        tr, proto = await write_pipe(wf)
        try:
            assert repr(tr) == f"<_UnixWritePipeTransport fd={fd} idle bufsize=0>"
            tr.write(b"r" * (128 * 1024))
            size = tr.get_write_buffer_size()
            assert size > 0
            assert repr(tr) == f"<_UnixWritePipeTransport fd={fd} polling bufsize={size}>"
        finally:
            tr.abort()
            await proto.lost
        assert repr(tr) == f"<_UnixWritePipeTransport closed fd={fd} closed>"

    run(loop, main())


def test_write_pipe_peer_closed_empty_buffer(loop, pipe):
    """The write end notices the reader went away even when idle: connection_lost(None)."""
    rf, wf = pipe

    async def main():
        tr, proto, buffered, exc = await peer_closes_after_write(wf, rf.close, b"some data")
        assert buffered == 0
        assert exc is None
        assert tr.is_closing()
        tr.write(b"after loss")  # ignored
        return proto

    proto = run(loop, main())
    assert proto.events == ["made", "lost"]
    assert proto.lost_calls == [None]
    assert wf.closed


def test_write_pipe_peer_closed_with_buffer(loop, pipe):
    """Reader goes away while data is buffered: connection_lost(BrokenPipeError)."""
    rf, wf = pipe

    async def main():
        tr, proto, buffered, exc = await peer_closes_after_write(wf, rf.close, b"w" * (256 * 1024))
        assert buffered > 0
        assert isinstance(exc, BrokenPipeError)
        assert tr.get_write_buffer_size() == 0
        return proto

    proto = run(loop, main())
    assert len(proto.lost_calls) == 1
    assert wf.closed


def test_write_pipe_write_after_peer_closed(loop, pipe):
    """os.write() raising EPIPE inside write(): connection_lost(BrokenPipeError)."""
    rf, wf = pipe

    async def main():
        tr, proto = await write_pipe(wf)
        rf.close()
        tr.write(b"into the void")  # synchronous EPIPE, before any poll
        assert tr.is_closing()
        exc = await proto.lost
        assert isinstance(exc, BrokenPipeError)
        assert exc.errno == errno.EPIPE
        return proto

    proto = run(loop, main())
    assert proto.events == ["made", "lost"]


def test_write_pipe_rejects_non_bytes(loop, pipe):
    _, wf = pipe

    async def main():
        async with closing_transport(write_pipe(wf)) as (tr, proto):
            with pytest.raises((TypeError, AssertionError)):
                tr.write("text")

    run(loop, main())


# --------------------------------------------------------------------------------------
# FIFO (named pipe)
# --------------------------------------------------------------------------------------


def test_fifo_write_to_read(loop, fifo):
    rf, wf = fifo

    async def main():
        rtr, rproto, wtr, wproto = await read_and_write_pipes(rf, wf)
        wtr.write(b"through the fifo")
        await rproto.wait_bytes(16)
        assert rproto.data == b"through the fifo"
        wtr.write_eof()
        assert await wproto.lost is None
        assert await rproto.lost is None
        return rproto

    rproto = run(loop, main())
    assert rproto.events == ["made", "data", "eof", "lost"]


def test_fifo_reader_closing_ends_writer(loop, fifo):
    rf, wf = fifo

    async def main():
        rtr, rproto, wtr, wproto = await read_and_write_pipes(rf, wf)
        wtr.write(b"ping")
        await rproto.wait_bytes(4)
        rtr.close()
        assert await rproto.lost is None
        # The read end is gone: the write transport notices by itself.
        assert await wproto.lost is None
        return wproto

    wproto = run(loop, main())
    assert wproto.events == ["made", "lost"]


def test_fifo_large_transfer(loop, fifo):
    rf, wf = fifo
    payload = os.urandom(1024 * 1024 + 17)

    async def main():
        rtr, rproto, wtr, wproto = await read_and_write_pipes(rf, wf)
        for i in range(0, len(payload), 100_000):
            wtr.write(payload[i : i + 100_000])
        wtr.close()
        await wproto.lost
        await rproto.lost
        return rproto

    rproto = run(loop, main())
    assert rproto.data == payload


# --------------------------------------------------------------------------------------
# socketpair
# --------------------------------------------------------------------------------------


def test_socketpair_read_and_write_pipes(loop, sockpair):
    a, b = sockpair

    async def main():
        rtr, rproto, wtr, wproto = await read_and_write_pipes(a, b)
        assert rtr.get_extra_info("pipe") is a
        assert wtr.get_extra_info("pipe") is b
        wtr.write(b"sock-data")
        await rproto.wait_bytes(9)
        wtr.write_eof()  # closes the socket: the reader sees EOF
        assert await wproto.lost is None
        assert await rproto.lost is None
        return rproto

    rproto = run(loop, main())
    assert rproto.data == b"sock-data"
    assert rproto.events == ["made", "data", "eof", "lost"]
    assert a.fileno() == -1 and b.fileno() == -1


def test_socketpair_peer_close_ends_write_pipe(loop, sockpair):
    a, b = sockpair

    async def main():
        _, wproto, _, exc = await peer_closes_after_write(b, a.close, b"x")
        assert exc is None
        return wproto

    wproto = run(loop, main())
    assert wproto.events == ["made", "lost"]


def test_socketpair_peer_close_with_buffer_is_broken_pipe(loop, sockpair):
    a, b = sockpair

    async def main():
        _, wproto, buffered, exc = await peer_closes_after_write(
            b, a.close, b"q" * (4 * 1024 * 1024)
        )
        assert buffered > 0
        assert isinstance(exc, (BrokenPipeError, ConnectionResetError))
        return wproto

    wproto = run(loop, main())
    assert len(wproto.lost_calls) == 1


def test_socketpair_read_pipe_peer_close(loop, sockpair):
    a, b = sockpair

    async def main():
        rtr, rproto = await read_pipe(a)
        b.sendall(b"bye")
        b.close()
        assert await rproto.lost is None
        return rproto

    rproto = run(loop, main())
    assert rproto.data == b"bye"
    assert rproto.events == ["made", "data", "eof", "lost"]


# --------------------------------------------------------------------------------------
# pty
# --------------------------------------------------------------------------------------


def test_pty_master_read_pipe(loop, pty):
    master, slave = pty
    mf = os.fdopen(master, "rb", buffering=0)

    async def main():
        rtr, rproto = await read_pipe(mf)
        os.write(slave, b"from the slave\n")
        await rproto.wait_bytes(15)
        assert rproto.data == b"from the slave\n"  # raw mode: no \r\n translation
        # Last slave fd closed: Linux reports EIO on the master, which stdlib passes
        # to connection_lost (without calling the exception handler).
        os.close(slave)
        pty[1] = -1
        exc = await rproto.lost
        assert isinstance(exc, OSError)
        assert exc.errno == errno.EIO
        return rproto

    errors = capture_exception_contexts(loop)
    try:
        rproto = run(loop, main())
    finally:
        mf.close()
        pty[0] = -1
    assert rproto.events == ["made", "data", "lost"]
    assert errors == []


def test_pty_write_pipe_to_slave(loop, pty):
    master, slave = pty
    mf = os.fdopen(master, "wb", buffering=0)
    sf = os.fdopen(slave, "rb", buffering=0)
    pty[0] = pty[1] = -1

    async def main():
        wtr, wproto = await write_pipe(mf)
        rtr, rproto = await read_pipe(sf)
        assert not os.get_blocking(mf.fileno())
        wtr.write(b"typed on the master")
        await rproto.wait_bytes(19)
        assert rproto.data == b"typed on the master"
        rtr.close()
        wtr.close()
        assert await rproto.lost is None
        assert await wproto.lost is None
        return rproto, wproto

    try:
        rproto, wproto = run(loop, main())
    finally:
        mf.close()
        sf.close()
    assert rproto.events == ["made", "data", "lost"]
    assert wproto.events == ["made", "lost"]


def test_pty_pause_resume_reading(loop, pty):
    master, slave = pty
    mf = os.fdopen(master, "rb", buffering=0)
    pty[0] = -1

    async def main():
        async with closing_transport(read_pipe(mf)) as (rtr, rproto):
            rtr.pause_reading()
            os.write(slave, b"held")
            await asyncio.sleep(0.05)
            assert rproto.data == b""
            rtr.resume_reading()
            await rproto.wait_bytes(4)
            assert rproto.data == b"held"

    try:
        run(loop, main())
    finally:
        mf.close()
