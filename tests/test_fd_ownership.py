"""A transport or a pending sock_* call acts only on the fd its socket owns.

The user may close a socket that a transport (`create_connection(sock=s)`,
`create_datagram_endpoint(sock=s)`) or a pending `sock_recv` still uses, and the kernel gives
the fd number to the next socket at once. asyncio makes its calls through the socket object,
so they fail with EBADF; no byte may reach, or come from, the number's new owner.
"""

import asyncio
import errno
import socket

import pytest

TIMEOUT = 2


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


def take_number(fd, family=socket.AF_INET, type=socket.SOCK_STREAM):
    """A new socket that got the number `fd` (just freed), connected to a fresh peer."""
    sock = socket.socket(family, type)
    assert sock.fileno() == fd, "the kernel did not reuse the number"
    return sock


class Lost(asyncio.Protocol):
    def __init__(self):
        self.lost = asyncio.get_running_loop().create_future()
        self.errors = []

    def connection_lost(self, exc):
        self.lost.set_result(exc)

    def error_received(self, exc):
        self.errors.append(exc)


def test_stream_write_after_the_user_closed_the_socket(loop):
    async def main():
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        client.setblocking(False)
        transport, protocol = await loop.create_connection(Lost, sock=client)
        listener = socket.create_server(("127.0.0.1", 0))
        fd = client.fileno()
        client.close()
        stranger = take_number(fd)
        stranger.connect(listener.getsockname())
        peer, _ = listener.accept()
        transport.write(b"not for the stranger")
        exc = await protocol.lost
        peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            peer.recv(100)  # nothing reached the socket that now has the number
        for s in (stranger, peer, listener, accepted, server):
            s.close()
        return exc, transport.is_closing()

    exc, closing = run(loop, main())
    assert isinstance(exc, OSError) and exc.errno == errno.EBADF
    assert closing


def test_datagram_sendto_after_the_user_closed_the_socket(loop):
    async def main():
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        transport, protocol = await loop.create_datagram_endpoint(Lost, sock=sock)
        fd = sock.fileno()
        sock.close()
        stranger = take_number(fd, type=socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.1", 0))
        # Sent through the number, this would leave from the stranger's port.
        transport.sendto(b"not through the stranger", receiver.getsockname())
        await asyncio.sleep(0.05)
        receiver.setblocking(False)
        with pytest.raises(BlockingIOError):
            receiver.recv(100)
        errors = list(protocol.errors)
        transport.abort()
        await protocol.lost
        stranger.close()
        receiver.close()
        return errors

    errors = run(loop, main())
    assert [e.errno for e in errors] == [errno.EBADF]


def test_pending_sock_recv_after_the_user_closed_the_socket(loop):
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        pending = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0)
        fd = a.fileno()
        a.close()
        x, y = socket.socketpair()
        if x.fileno() != fd:  # the number went to y: swap so that x has it
            x, y = y, x
        assert x.fileno() == fd
        y.send(b"the stranger's data")
        # The closed socket's watch is gone with it (epoll forgets a closed fd): the call
        # waits on, and must never hand out what the number's new owner receives.
        done, _ = await asyncio.wait([pending], timeout=0.2)
        pending.cancel()
        x.setblocking(False)
        left = x.recv(100)
        for s in (b, x, y):
            s.close()
        return done, left

    done, left = run(loop, main())
    assert done == set()
    assert left == b"the stranger's data"
