"""Low-level socket coroutines: sock_recv*, sock_send*, sock_connect, sock_accept,
sock_sendfile. Real sockets only."""

import asyncio
import errno
import io
import os
import socket
import struct
import tempfile

import pytest
from conftest import pattern, temporary_file

TIMEOUT = 1.5


def run(loop, coro, timeout=TIMEOUT):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


@pytest.fixture
def sockets():
    """Register sockets to close at teardown."""
    made = []

    def track(*socks):
        made.extend(socks)
        return socks[0] if len(socks) == 1 else socks

    yield track
    for s in made:
        s.close()


@pytest.fixture
def pair(sockets):
    a, b = sockets(*socket.socketpair())
    a.setblocking(False)
    b.setblocking(False)
    return a, b


@pytest.fixture
def tcp_pair(sockets):
    """A connected non-blocking TCP pair (client, server-side)."""
    lsock = sockets(socket.create_server(("127.0.0.1", 0)))
    client = sockets(socket.create_connection(lsock.getsockname()))
    conn, _ = lsock.accept()
    sockets(conn)
    client.setblocking(False)
    conn.setblocking(False)
    return client, conn


@pytest.fixture
def udp_pair(sockets):
    a = sockets(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    b = sockets(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def refused_address(sockets):
    """A TCP address with a bound socket that is not listening: connecting is refused."""
    s = sockets(socket.socket())
    s.bind(("127.0.0.1", 0))
    return s.getsockname()


# ----------------------------------------------------------------------------------------
# sock_recv / sock_recv_into
# ----------------------------------------------------------------------------------------


def test_sock_recv_waits_for_data(loop, pair):
    a, b = pair

    async def main():
        loop.call_later(0.02, b.send, b"hello")
        return await loop.sock_recv(a, 100)

    assert run(loop, main()) == b"hello"


def test_sock_recv_data_already_there(loop, pair):
    a, b = pair
    b.send(b"ready")

    async def main():
        first = await loop.sock_recv(a, 3)
        second = await loop.sock_recv(a, 100)
        return first, second

    assert run(loop, main()) == (b"rea", b"dy")


def test_sock_recv_eof_returns_empty(loop, pair):
    a, b = pair
    b.send(b"last")
    b.shutdown(socket.SHUT_WR)

    async def main():
        return [await loop.sock_recv(a, 100), await loop.sock_recv(a, 100)]

    assert run(loop, main()) == [b"last", b""]


def test_sock_recv_of_nothing_returns_at_once(loop, pair):
    # socket.recv(0) and recv_into of an empty buffer do not wait for data (CPython does not
    # even make the syscall).
    a, _ = pair

    async def main():
        return await loop.sock_recv(a, 0), await loop.sock_recv_into(a, bytearray(0))

    assert run(loop, main()) == (b"", 0)


def test_sock_recv_of_a_huge_size_is_memory_error(loop, pair):
    # The size is the caller's: one that cannot be allocated is a MemoryError, not an abort.
    a, b = pair

    async def main():
        with pytest.raises(MemoryError):
            await loop.sock_recv(a, 2**40)
        with pytest.raises(ValueError, match="negative buffersize in recv"):
            await loop.sock_recv(a, -1)
        b.send(b"still works")
        return await loop.sock_recv(a, 2**20)

    assert run(loop, main()) == b"still works"


def test_sock_sendall_holds_its_buffer_until_done(loop, pair):
    # Like asyncio, a pending sock_sendall keeps a view of its data: a bytearray cannot be
    # resized under it (BufferError), so what is sent is exactly what was given.
    a, b = pair
    data = bytearray(pattern(8 << 20))

    async def main():
        pending = asyncio.ensure_future(loop.sock_sendall(a, data))
        await asyncio.sleep(0.05)
        assert not pending.done()  # the peer does not read: the send waits
        with pytest.raises(BufferError):
            del data[100:]
        received = bytearray()
        b.setblocking(False)
        while len(received) < len(data):
            chunk = await loop.sock_recv(b, 1 << 20)
            received += chunk
        await pending
        del data[100:]  # released once done
        return received

    assert run(loop, main()) == pattern(8 << 20)


def test_sock_recv_into(loop, pair):
    a, b = pair
    buf = bytearray(10)

    async def main():
        loop.call_later(0.02, b.send, b"abcdef")
        n = await loop.sock_recv_into(a, buf)
        b.send(b"XYZ")
        m = await loop.sock_recv_into(a, memoryview(buf)[n:])
        return n, m

    n, m = run(loop, main())
    assert (n, m) == (6, 3)
    assert bytes(buf) == b"abcdefXYZ\x00"


def test_sock_recv_into_eof(loop, pair):
    a, b = pair
    b.close()
    buf = bytearray(4)
    assert run(loop, loop.sock_recv_into(a, buf)) == 0
    assert buf == bytearray(4)


def test_sock_recv_peer_reset_raises(loop, tcp_pair):
    client, conn = tcp_pair
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def main():
        loop.call_later(0.02, conn.close)
        return await loop.sock_recv(client, 100)

    with pytest.raises(ConnectionResetError):
        run(loop, main())


# ----------------------------------------------------------------------------------------
# datagrams: sock_recvfrom / sock_recvfrom_into / sock_sendto
# ----------------------------------------------------------------------------------------


def test_sock_recvfrom(loop, udp_pair):
    a, b = udp_pair

    async def main():
        loop.call_later(0.02, b.sendto, b"datagram", a.getsockname())
        return await loop.sock_recvfrom(a, 100)

    data, addr = run(loop, main())
    assert data == b"datagram"
    assert addr == b.getsockname()


def test_sock_recvfrom_truncates_to_bufsize(loop, udp_pair):
    a, b = udp_pair
    b.sendto(b"0123456789", a.getsockname())
    data, addr = run(loop, loop.sock_recvfrom(a, 4))
    assert data == b"0123"
    assert addr == b.getsockname()


def test_sock_recvfrom_into(loop, udp_pair):
    a, b = udp_pair
    buf = bytearray(16)

    async def main():
        loop.call_later(0.02, b.sendto, b"into-me", a.getsockname())
        first = await loop.sock_recvfrom_into(a, buf)
        b.sendto(b"abcdef", a.getsockname())
        second = await loop.sock_recvfrom_into(a, memoryview(buf)[8:], 3)
        return first, second

    first, second = run(loop, main())
    assert first == (7, b.getsockname())
    assert second == (3, b.getsockname())
    assert bytes(buf[:11]) == b"into-me\x00abc"


def test_sock_sendto(loop, udp_pair):
    a, b = udp_pair

    async def main():
        sent = await loop.sock_sendto(a, b"to-b", b.getsockname())
        got = await loop.sock_recvfrom(b, 100)
        return sent, got

    sent, (data, addr) = run(loop, main())
    assert sent == 4
    assert data == b"to-b"
    assert addr == a.getsockname()


def test_sock_sendto_many_datagrams_keep_boundaries(loop, udp_pair):
    a, b = udp_pair
    messages = [bytes([i]) * (i + 1) for i in range(50)]

    async def main():
        for m in messages:
            await loop.sock_sendto(a, m, b.getsockname())
        return [(await loop.sock_recvfrom(b, 1000))[0] for _ in messages]

    assert run(loop, main()) == messages


def test_sock_sendall_recv_on_connected_udp(loop, udp_pair):
    a, b = udp_pair

    async def main():
        await loop.sock_connect(a, b.getsockname())
        await loop.sock_sendall(a, b"connected-udp")
        return await loop.sock_recvfrom(b, 100)

    data, addr = run(loop, main())
    assert data == b"connected-udp"
    assert addr == a.getsockname()


# ----------------------------------------------------------------------------------------
# sock_sendall
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["socketpair", "tcp"])
def test_sock_sendall_large_payload(loop, pair, tcp_pair, kind):
    a, b = pair if kind == "socketpair" else tcp_pair
    payload = pattern(8 * 1024 * 1024)

    async def reader():
        buf = bytearray(len(payload))
        view = memoryview(buf)
        got = 0
        while got < len(payload):
            n = await loop.sock_recv_into(b, view[got:])
            assert n > 0
            got += n
        assert await loop.sock_recv(b, 1) == b""
        return bytes(buf)

    async def writer():
        result = await loop.sock_sendall(a, payload)
        a.shutdown(socket.SHUT_WR)
        return result

    async def main():
        return await asyncio.gather(writer(), reader())

    sent, received = run(loop, main())
    assert sent is None
    assert len(received) == len(payload)
    assert received == payload


def test_sock_sendall_accepts_memoryview_and_bytearray(loop, pair):
    a, b = pair

    async def main():
        await loop.sock_sendall(a, bytearray(b"ab"))
        await loop.sock_sendall(a, memoryview(b"--cd--")[2:4])
        await loop.sock_sendall(a, b"")
        a.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := await loop.sock_recv(b, 100):
            chunks.append(chunk)
        return b"".join(chunks)

    assert run(loop, main()) == b"abcd"


def test_sock_sendall_to_closed_peer_raises(loop, pair):
    a, b = pair
    b.close()

    async def main():
        await loop.sock_sendall(a, b"x" * (4 * 1024 * 1024))

    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        run(loop, main())


# ----------------------------------------------------------------------------------------
# sock_connect / sock_accept
# ----------------------------------------------------------------------------------------


def test_sock_connect_and_accept_tcp(loop, sockets):
    lsock = sockets(socket.socket())
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    lsock.setblocking(False)
    client = sockets(socket.socket())
    client.setblocking(False)

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(lsock))
        result = await loop.sock_connect(client, lsock.getsockname())
        conn, addr = await accept
        sockets(conn)
        await loop.sock_sendall(client, b"ping")
        data = await loop.sock_recv(conn, 100)
        return result, conn, addr, data

    result, conn, addr, data = run(loop, main())
    assert result is None
    assert addr == client.getsockname()
    assert conn.getpeername() == client.getsockname()
    assert client.getpeername() == lsock.getsockname()
    assert conn.gettimeout() == 0  # accepted sockets are non-blocking
    assert data == b"ping"


def test_sock_accept_waits_for_client(loop, sockets):
    lsock = sockets(socket.socket())
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    lsock.setblocking(False)
    client = sockets(socket.socket())

    def connect():
        client.connect(lsock.getsockname())

    async def main():
        loop.call_later(0.05, connect)
        conn, addr = await loop.sock_accept(lsock)
        sockets(conn)
        return addr

    assert run(loop, main()) == client.getsockname()


def test_sock_accept_several_clients(loop, sockets):
    lsock = sockets(socket.create_server(("127.0.0.1", 0)))
    lsock.setblocking(False)

    async def one_client(i):
        c = sockets(socket.socket())
        c.setblocking(False)
        await loop.sock_connect(c, lsock.getsockname())
        await loop.sock_sendall(c, b"%d" % i)
        return c.getsockname()

    async def main():
        clients = asyncio.gather(*(one_client(i) for i in range(5)))
        accepted = {}
        for _ in range(5):
            conn, addr = await loop.sock_accept(lsock)
            sockets(conn)
            accepted[addr] = await loop.sock_recv(conn, 10)
        return await clients, accepted

    names, accepted = run(loop, main())
    assert sorted(accepted) == sorted(names)
    assert sorted(accepted.values()) == [b"%d" % i for i in range(5)]


def test_sock_connect_refused(loop, sockets):
    addr = refused_address(sockets)
    client = sockets(socket.socket())
    client.setblocking(False)
    with pytest.raises(ConnectionRefusedError) as info:
        run(loop, loop.sock_connect(client, addr))
    assert info.value.errno == errno.ECONNREFUSED


def test_sock_connect_resolves_hostname(loop, sockets):
    lsock = sockets(socket.create_server(("127.0.0.1", 0)))
    client = sockets(socket.socket(socket.AF_INET))
    client.setblocking(False)
    port = lsock.getsockname()[1]
    run(loop, loop.sock_connect(client, ("localhost", port)))
    conn, addr = lsock.accept()
    sockets(conn)
    assert addr == client.getsockname()
    assert client.getpeername() == ("127.0.0.1", port)


def test_sock_connect_unix(loop, sockets, short_tmp):
    path = os.path.join(short_tmp, "s")
    lsock = sockets(socket.socket(socket.AF_UNIX))
    lsock.bind(path)
    lsock.listen()
    lsock.setblocking(False)
    client = sockets(socket.socket(socket.AF_UNIX))
    client.setblocking(False)

    async def main():
        await loop.sock_connect(client, path)
        conn, _ = await loop.sock_accept(lsock)
        sockets(conn)
        await loop.sock_sendall(conn, b"unix")
        return await loop.sock_recv(client, 10)

    assert run(loop, main()) == b"unix"
    assert client.getpeername() == path


def test_sock_connect_unix_missing_path(loop, sockets, short_tmp):
    client = sockets(socket.socket(socket.AF_UNIX))
    client.setblocking(False)
    with pytest.raises(FileNotFoundError):
        run(loop, loop.sock_connect(client, os.path.join(short_tmp, "nope")))


# ----------------------------------------------------------------------------------------
# blocking sockets in debug mode
# ----------------------------------------------------------------------------------------


SOCK_CALLS = {
    "sock_recv": lambda loop, s, peer: loop.sock_recv(s, 10),
    "sock_recv_into": lambda loop, s, peer: loop.sock_recv_into(s, bytearray(10)),
    "sock_sendall": lambda loop, s, peer: loop.sock_sendall(s, b"x"),
    "sock_connect": lambda loop, s, peer: loop.sock_connect(s, peer),
    "sock_accept": lambda loop, s, peer: loop.sock_accept(s),
    "sock_recvfrom": lambda loop, s, peer: loop.sock_recvfrom(s, 10),
    "sock_recvfrom_into": lambda loop, s, peer: loop.sock_recvfrom_into(s, bytearray(10)),
    "sock_sendto": lambda loop, s, peer: loop.sock_sendto(s, b"x", peer),
}


@pytest.mark.parametrize("method", sorted(SOCK_CALLS))
def test_blocking_socket_rejected_in_debug(loop, sockets, method):
    loop.set_debug(True)
    peer = sockets(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    peer.bind(("127.0.0.1", 0))
    s = sockets(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    s.bind(("127.0.0.1", 0))
    assert s.gettimeout() is None  # blocking
    with pytest.raises(ValueError, match="the socket must be non-blocking"):
        run(loop, SOCK_CALLS[method](loop, s, peer.getsockname()))
    # Nothing was sent, nothing was registered: the socket is still usable.
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(10)
    assert s.gettimeout() is None


def test_sock_sendfile_rejects_blocking_socket_in_debug(loop, tcp_pair):
    loop.set_debug(True)
    client, conn = tcp_pair
    client.setblocking(True)
    with temporary_file(b"not sent") as f:
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            run(loop, loop.sock_sendfile(client, f))
        assert f.tell() == 0
    with pytest.raises(BlockingIOError):
        conn.recv(10)


# ----------------------------------------------------------------------------------------
# cancellation
# ----------------------------------------------------------------------------------------


def test_cancelled_sock_recv_leaves_fd_reusable(loop, pair):
    a, b = pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0.02)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The data sent after the cancellation is not swallowed by a stale watcher.
        b.send(b"after-cancel")
        await asyncio.sleep(0.02)
        first = await loop.sock_recv(a, 100)
        # Plain add_reader works on the fd: no watcher was left behind.
        fut = loop.create_future()
        loop.add_reader(a.fileno(), lambda: fut.done() or fut.set_result(a.recv(100)))
        b.send(b"reader")
        try:
            second = await fut
        finally:
            removed = loop.remove_reader(a.fileno())
        return first, second, removed

    assert run(loop, main()) == (b"after-cancel", b"reader", True)


def test_cancelled_sock_recv_then_sock_recv_again(loop, pair):
    a, b = pair

    async def main():
        for _ in range(3):
            task = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        loop.call_later(0.02, b.send, b"still-works")
        return await loop.sock_recv(a, 100)

    assert run(loop, main()) == b"still-works"


def test_sock_recv_timeout_then_reuse(loop, pair):
    a, b = pair

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loop.sock_recv(a, 100), 0.05)
        loop.call_later(0.02, b.send, b"later")
        return await loop.sock_recv(a, 100)

    assert run(loop, main()) == b"later"


def test_cancelled_sock_accept_leaves_fd_reusable(loop, sockets):
    lsock = sockets(socket.create_server(("127.0.0.1", 0)))
    lsock.setblocking(False)

    async def main():
        task = asyncio.ensure_future(loop.sock_accept(lsock))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        client = sockets(socket.socket())
        client.setblocking(False)
        await loop.sock_connect(client, lsock.getsockname())
        conn, addr = await loop.sock_accept(lsock)
        sockets(conn)
        return client.getsockname(), addr

    name, addr = run(loop, main())
    assert name == addr


def test_cancelled_sock_sendall_stops_sending(loop, pair):
    a, b = pair

    async def main():
        task = asyncio.ensure_future(loop.sock_sendall(a, b"z" * (32 * 1024 * 1024)))
        await asyncio.sleep(0.02)
        assert not task.done()  # the peer is not reading
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Drain what was sent; no more bytes trickle in afterwards.
        total = 0
        while True:
            try:
                chunk = b.recv(1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0.02)
                try:
                    chunk = b.recv(1 << 20)
                except BlockingIOError:
                    break
            total += len(chunk)
        return total

    total = run(loop, main())
    assert 0 < total < 32 * 1024 * 1024


# ----------------------------------------------------------------------------------------
# sock_sendfile
# ----------------------------------------------------------------------------------------


DATA = pattern(256 * 1024 + 17)


@pytest.fixture
def datafile():
    with temporary_file(DATA) as f:
        yield f


async def read_all(loop, sock):
    chunks = []
    while chunk := await loop.sock_recv(sock, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


async def sendfile_and_read(loop, sender, receiver, file, *args, **kwargs):
    """``sock_sendfile`` from ``sender`` (then SHUT_WR) while ``receiver`` reads to EOF.

    Returns (bytes sent, bytes received).
    """
    reader = asyncio.ensure_future(read_all(loop, receiver))
    sent = await loop.sock_sendfile(sender, file, *args, **kwargs)
    sender.shutdown(socket.SHUT_WR)
    return sent, await reader


@pytest.mark.parametrize("fallback", [True, False])
def test_sock_sendfile_whole_file(loop, tcp_pair, datafile, fallback):
    client, conn = tcp_pair
    sent, received = run(loop, sendfile_and_read(loop, client, conn, datafile, fallback=fallback))
    assert sent == len(DATA)
    assert received == DATA
    assert datafile.tell() == len(DATA)


def test_sock_sendfile_offset_and_count(loop, tcp_pair, datafile):
    client, conn = tcp_pair
    # fallback=False: this must take the zero-copy os.sendfile path.
    sent, received = run(
        loop, sendfile_and_read(loop, client, conn, datafile, 1000, 100_000, fallback=False)
    )
    assert sent == 100_000
    assert received == DATA[1000:101_000]
    # The file position is moved past what was sent, as with a read().
    assert datafile.tell() == 101_000


def test_sock_sendfile_count_past_eof(loop, tcp_pair, datafile):
    client, conn = tcp_pair
    sent, received = run(
        loop, sendfile_and_read(loop, client, conn, datafile, len(DATA) - 10, 1000)
    )
    assert sent == 10
    assert received == DATA[-10:]


def test_sock_sendfile_offset_at_eof_sends_nothing(loop, tcp_pair, datafile):
    client, conn = tcp_pair
    assert run(loop, sendfile_and_read(loop, client, conn, datafile, len(DATA))) == (0, b"")


def test_sock_sendfile_unix_socket(loop, pair, datafile):
    a, b = pair
    sent, received = run(loop, sendfile_and_read(loop, a, b, datafile, 5, 5000))
    assert sent == 5000
    assert received == DATA[5:5005]


def test_sock_sendfile_bytesio_falls_back(loop, tcp_pair):
    client, conn = tcp_pair
    f = io.BytesIO(DATA)

    sent, received = run(loop, sendfile_and_read(loop, client, conn, f, 7, 70_000))
    assert sent == 70_000
    assert received == DATA[7:70_007]
    assert f.tell() == 70_007


def test_sock_sendfile_bytesio_without_fallback(loop, tcp_pair):
    client, conn = tcp_pair
    f = io.BytesIO(DATA)
    with pytest.raises(asyncio.SendfileNotAvailableError, match="not a regular file"):
        run(loop, loop.sock_sendfile(client, f, fallback=False))
    assert f.tell() == 0
    with pytest.raises(BlockingIOError):
        conn.recv(10)


def test_sock_sendfile_parameter_checks(loop, sockets, tcp_pair, datafile):
    client, _ = tcp_pair
    udp = sockets(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    udp.setblocking(False)

    async def main():
        with pytest.raises(ValueError, match="only SOCK_STREAM"):
            await loop.sock_sendfile(udp, datafile)
        with pytest.raises(ValueError, match="count must be a positive integer"):
            await loop.sock_sendfile(client, datafile, 0, 0)
        with pytest.raises(TypeError, match="count must be a positive integer"):
            await loop.sock_sendfile(client, datafile, 0, "10")
        with pytest.raises(ValueError, match="offset must be a non-negative integer"):
            await loop.sock_sendfile(client, datafile, -1)
        with pytest.raises(TypeError, match="offset must be a non-negative integer"):
            await loop.sock_sendfile(client, datafile, 1.5)
        with tempfile.TemporaryFile("w+") as text:
            with pytest.raises(ValueError, match="binary mode"):
                await loop.sock_sendfile(client, text)

    run(loop, main())


def test_sock_sendfile_to_closed_peer_raises(loop, tcp_pair):
    client, conn = tcp_pair
    conn.close()
    with tempfile.TemporaryFile() as f:
        f.write(b"q" * (8 * 1024 * 1024))
        f.seek(0)
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            run(loop, loop.sock_sendfile(client, f))


def test_sock_recv_on_transport_socket_is_refused(loop, tcp_pair):
    client, conn = tcp_pair

    async def main():
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=client)
        try:
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.sock_recv(client, 10)
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.sock_recv_into(client, bytearray(10))
        finally:
            transport.close()
            await asyncio.sleep(0)

    run(loop, main())


# ----------------------------------------------------------------------------------------
# many fds, full duplex, fd number reuse
# ----------------------------------------------------------------------------------------


def test_many_sockets_concurrently(loop, sockets):
    pairs = []
    for _ in range(64):
        a, b = sockets(*socket.socketpair())
        a.setblocking(False)
        b.setblocking(False)
        pairs.append((a, b))

    async def main():
        tasks = [asyncio.ensure_future(loop.sock_recv(a, 100)) for a, _ in pairs]
        await asyncio.sleep(0.01)
        for i, (_, b) in reversed(list(enumerate(pairs))):
            b.send(b"msg-%d" % i)
        return await asyncio.gather(*tasks)

    assert run(loop, main()) == [b"msg-%d" % i for i in range(64)]


def test_full_duplex_on_one_socket(loop, tcp_pair):
    """A reader and a writer on the same fd at the same time, both directions large."""
    client, conn = tcp_pair
    up = pattern(4 * 1024 * 1024)
    down = pattern(3 * 1024 * 1024 + 1)[::-1]

    async def receive(sock, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = await loop.sock_recv(sock, 1 << 16)
            assert chunk
            buf += chunk
        return bytes(buf)

    async def main():
        return await asyncio.gather(
            loop.sock_sendall(client, up),
            loop.sock_sendall(conn, down),
            receive(conn, len(up)),
            receive(client, len(down)),
        )

    _, _, got_up, got_down = run(loop, main())
    assert got_up == up
    assert got_down == down


def test_fd_number_reuse_after_close(loop):
    """A closed socket's fd number, reused by a new socket, is watched afresh."""

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        fd = a.fileno()
        task = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        a.close()
        b.close()
        c, d = socket.socketpair()
        try:
            c.setblocking(False)
            reused = c.fileno() == fd
            loop.call_later(0.01, d.send, b"new")
            return reused, await loop.sock_recv(c, 10)
        finally:
            c.close()
            d.close()

    reused, data = run(loop, main())
    assert reused
    assert data == b"new"


def test_fd_number_reuse_with_add_reader(loop):
    async def main():
        a, b = socket.socketpair()
        fd = a.fileno()
        loop.add_reader(fd, lambda: None)
        assert loop.remove_reader(fd)
        a.close()
        b.close()
        c, d = socket.socketpair()
        try:
            c.setblocking(False)
            fut = loop.create_future()
            loop.add_reader(c.fileno(), lambda: fut.done() or fut.set_result(c.recv(10)))
            d.send(b"again")
            try:
                return c.fileno() == fd, await fut
            finally:
                loop.remove_reader(c.fileno())
        finally:
            c.close()
            d.close()

    assert run(loop, main()) == (True, b"again")


# --------------------------------------------------------------------------------------
# An fd that sock_recv watched, used again: rose leaves such fds in its epoll set, disarmed
# (selector.rs); these are the ways the fd can come back.
# --------------------------------------------------------------------------------------


def test_add_reader_after_sock_recv_on_same_socket(loop, pair):
    a, b = pair

    async def main():
        recv = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        b.send(b"first")
        assert await recv == b"first"
        got = loop.create_future()
        loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(10)))
        try:
            b.send(b"second")
            assert await got == b"second"
        finally:
            assert loop.remove_reader(a)

    run(loop, main())


def test_fd_number_reused_after_sock_recv(loop, sockets):
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        recv = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        b.send(b"old")
        assert await recv == b"old"
        fd = a.fileno()
        a.close()
        b.close()
        # the lowest free number: the one just closed
        c, d = sockets(*socket.socketpair())
        assert fd in (c.fileno(), d.fileno())
        reader = c if c.fileno() == fd else d
        writer = d if reader is c else c
        reader.setblocking(False)
        recv = asyncio.ensure_future(loop.sock_recv(reader, 10))
        await asyncio.sleep(0)
        writer.send(b"new")
        assert await recv == b"new"
        got = loop.create_future()
        loop.add_reader(reader, lambda: got.done() or got.set_result(reader.recv(10)))
        try:
            writer.send(b"newer")
            assert await got == b"newer"
        finally:
            loop.remove_reader(reader)

    run(loop, main())


def test_sock_recv_survives_a_closed_duplicate(loop, sockets):
    """A duplicate of a watched socket, closed while the original lives on: the original's
    next sock_recv still completes, and data for the file wakes nobody else."""
    a, b = sockets(*socket.socketpair())
    a.setblocking(False)

    async def main():
        for round_ in range(3):
            recv = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            b.send(b"r%d" % round_)
            assert await recv == b"r%d" % round_
            dup = a.dup()
            dup.close()
        b.send(b"unread")
        await asyncio.sleep(0.05)
        assert a.recv(10) == b"unread"

    run(loop, main())


def test_sock_recv_and_sendall_interleaved_many_times(loop, tcp_pair):
    a, b = tcp_pair

    async def echo():
        while True:
            data = await loop.sock_recv(b, 65536)
            if not data:
                return
            await loop.sock_sendall(b, data)

    async def main():
        server = asyncio.ensure_future(echo())
        for i in range(200):
            msg = b"%d:" % i + b"x" * (i * 37 % 3000)
            await loop.sock_sendall(a, msg)
            got = b""
            while len(got) < len(msg):
                got += await loop.sock_recv(a, 65536)
            assert got == msg
        a.shutdown(socket.SHUT_WR)
        await server

    run(loop, main(), timeout=5)
