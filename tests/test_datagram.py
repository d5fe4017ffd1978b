"""create_datagram_endpoint: UDP and AF_UNIX datagram transports on real sockets."""

import asyncio
import contextlib
import errno
import os
import re
import socket

import pytest
from conftest import STDLIB, closing_transport

TIMEOUT = 1.5


def run(loop, coro, timeout=TIMEOUT):
    """Run ``coro`` on ``loop`` with a deadline well under the 2 s budget."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


class Recorder(asyncio.DatagramProtocol):
    """Records every protocol callback; futures/queues to await them."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.events = []
        self.transport = None
        self.datagrams = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.lost = loop.create_future()
        self.lost_calls = []
        self.paused = 0
        self.resumed = 0

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def datagram_received(self, data, addr):
        self.events.append("datagram")
        self.datagrams.put_nowait((data, addr))

    def error_received(self, exc):
        self.events.append("error")
        self.errors.put_nowait(exc)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_calls.append(exc)
        if not self.lost.done():
            self.lost.set_result(exc)

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        self.resumed += 1


async def endpoint(**kwargs):
    return await asyncio.get_running_loop().create_datagram_endpoint(Recorder, **kwargs)


async def close_all(*transports):
    """Close transports and wait until their protocols saw connection_lost."""
    # get_protocol() is None once connection_lost has run.
    protocols = [tr.get_protocol() for tr in transports]
    for tr in transports:
        tr.close()
    for proto in protocols:
        if proto is not None:
            await proto.lost


LOCAL = ("127.0.0.1", 0)


def opened(**kwargs):
    """An endpoint ``(transport, protocol)``, closed (connection_lost awaited) on exit."""
    return closing_transport(endpoint(**kwargs))


@contextlib.asynccontextmanager
async def connected_pair(**client_kwargs):
    """``(server, sproto, client, cproto)``: a local server and a client connected to it."""
    async with opened(local_addr=LOCAL) as (server, sproto):
        saddr = server.get_extra_info("sockname")
        async with opened(remote_addr=saddr, **client_kwargs) as (client, cproto):
            yield server, sproto, client, cproto


def udp_socket(bind=("127.0.0.1", 0)):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if bind is not None:
        s.bind(bind)
    return s


def free_udp_port():
    """A UDP port on 127.0.0.1 that nobody listens on (right now)."""
    s = udp_socket()
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------------------
# UDP basics
# --------------------------------------------------------------------------------------


def test_local_addr_receives_with_sender_address(loop):
    async def main():
        async with opened(local_addr=LOCAL) as (tr, proto):
            with udp_socket() as peer:
                assert proto.transport is tr
                assert proto.events == ["made"]
                addr = tr.get_extra_info("sockname")
                assert addr[0] == "127.0.0.1" and addr[1] > 0
                peer.sendto(b"hello", addr)
                peer.sendto(b"world", addr)
                got = [await proto.datagrams.get(), await proto.datagrams.get()]
                assert got == [(b"hello", peer.getsockname()), (b"world", peer.getsockname())]
                # Reply to the sender's address.
                tr.sendto(b"reply", peer.getsockname())
                peer.settimeout(1)
                assert peer.recvfrom(100) == (b"reply", addr)
        return proto

    proto = run(loop, main())
    assert proto.events == ["made", "datagram", "datagram", "lost"]
    assert proto.lost_calls == [None]


def test_extra_info_unconnected(loop):
    async def main():
        async with opened(local_addr=LOCAL) as (tr, proto):
            sock = tr.get_extra_info("socket")
            assert sock.family == socket.AF_INET
            assert sock.type == socket.SOCK_DGRAM
            assert sock.fileno() >= 0
            assert sock.getsockname() == tr.get_extra_info("sockname")
            assert tr.get_extra_info("peername") is None
            assert tr.get_extra_info("no-such-key") is None
            assert tr.get_extra_info("no-such-key", "dflt") == "dflt"
            assert tr.get_protocol() is proto
            assert not tr.is_closing()
            assert tr.get_write_buffer_size() == 0

    run(loop, main())


def test_ipv6_local_addr(loop):
    async def main():
        async with opened(local_addr=("::1", 0)) as (tr, proto):
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as peer:
                peer.bind(("::1", 0))
                sockname = tr.get_extra_info("sockname")
                assert len(sockname) == 4 and sockname[0] == "::1"
                assert tr.get_extra_info("socket").family == socket.AF_INET6
                peer.sendto(b"six", sockname)
                data, addr = await proto.datagrams.get()
                assert data == b"six"
                assert addr == peer.getsockname()

    run(loop, main())


def test_remote_addr_connected_roundtrip(loop):
    async def main():
        async with connected_pair() as (server, sproto, client, cproto):
            saddr = server.get_extra_info("sockname")
            assert client.get_extra_info("peername") == saddr
            caddr = client.get_extra_info("sockname")
            assert caddr[0] == "127.0.0.1" and caddr[1] > 0
            assert client.get_extra_info("socket").getpeername() == saddr

            client.sendto(b"ping")
            client.sendto(b"ping2", saddr)  # the connected address is allowed too
            assert await sproto.datagrams.get() == (b"ping", caddr)
            assert await sproto.datagrams.get() == (b"ping2", caddr)

            server.sendto(b"pong", caddr)
            assert await cproto.datagrams.get() == (b"pong", saddr)

    run(loop, main())


def test_connected_endpoint_ignores_other_senders(loop):
    """A connected UDP socket only receives from its peer (kernel filter)."""

    async def main():
        async with connected_pair() as (server, _, client, cproto):
            with udp_socket() as stranger:
                saddr = server.get_extra_info("sockname")
                caddr = client.get_extra_info("sockname")
                stranger.sendto(b"intruder", caddr)
                server.sendto(b"legit", caddr)
                assert await cproto.datagrams.get() == (b"legit", saddr)
                await asyncio.sleep(0.05)
                assert cproto.datagrams.empty()

    run(loop, main())


def test_connected_sendto_other_address_raises(loop):
    async def main():
        async with connected_pair() as (server, _, client, _):
            saddr = server.get_extra_info("sockname")
            with pytest.raises(ValueError, match="Invalid address: must be None or"):
                client.sendto(b"x", ("127.0.0.1", saddr[1] + 1 if saddr[1] < 65535 else 1))

    run(loop, main())


def test_sendto_data_types(loop):
    async def main():
        async with opened(local_addr=LOCAL) as (tr, proto):
            addr = tr.get_extra_info("sockname")
            with pytest.raises(TypeError, match="data argument must be a bytes-like object"):
                tr.sendto("text", addr)
            with pytest.raises(TypeError, match="not 'int'"):
                tr.sendto(42, addr)
            # Empty payloads: sent since 3.12, dropped before.
            tr.sendto(b"", addr)
            tr.sendto(bytearray(b"ba"), addr)
            tr.sendto(memoryview(b"-mv-")[1:3], addr)
            expected = [b"", b"ba", b"mv"] if STDLIB.DATAGRAM_SENDS_EMPTY else [b"ba", b"mv"]
            got = [(await proto.datagrams.get())[0] for _ in expected]
            assert got == expected
            await asyncio.sleep(0.05)
            assert proto.datagrams.empty()

    run(loop, main())


def test_large_datagram_intact(loop):
    payload = bytes(range(256)) * 250  # 64000 bytes: under the UDP limit

    async def main():
        async with connected_pair() as (_, proto, client, _):
            client.sendto(payload)
            data, addr = await proto.datagrams.get()
            assert data == payload
            assert addr == client.get_extra_info("sockname")

    run(loop, main())


def test_many_datagrams_in_order(loop):
    async def main():
        async with connected_pair() as (_, sproto, client, _):
            for i in range(200):
                client.sendto(b"%d" % i)
            got = [(await sproto.datagrams.get())[0] for _ in range(200)]
            assert got == [b"%d" % i for i in range(200)]

    run(loop, main())


def test_family_only_endpoint_autobinds(loop):
    async def main():
        async with (
            opened(local_addr=LOCAL) as (server, sproto),
            opened(family=socket.AF_INET) as (tr, proto),
        ):
            assert tr.get_extra_info("socket").family == socket.AF_INET
            assert tr.get_extra_info("peername") is None
            tr.sendto(b"auto", server.get_extra_info("sockname"))
            data, addr = await sproto.datagrams.get()
            assert data == b"auto"
            # The kernel bound the socket (to INADDR_ANY) on the first send.
            assert addr[1] == tr.get_extra_info("socket").getsockname()[1] > 0
            server.sendto(b"back", addr)
            assert (await proto.datagrams.get())[0] == b"back"

    run(loop, main())


# --------------------------------------------------------------------------------------
# Errors reported to the protocol
# --------------------------------------------------------------------------------------


def test_error_received_port_unreachable(loop):
    async def main():
        port = free_udp_port()
        async with opened(remote_addr=("127.0.0.1", port)) as (tr, proto):
            tr.sendto(b"anyone?")
            exc = await proto.errors.get()
            assert isinstance(exc, ConnectionRefusedError)
            assert exc.errno == errno.ECONNREFUSED
            # An error is not fatal: the endpoint stays open and usable.
            assert not tr.is_closing()
            assert not proto.lost.done()
            tr.sendto(b"again?")
            exc = await proto.errors.get()
            assert isinstance(exc, ConnectionRefusedError)
            assert proto.datagrams.empty()
        return proto

    proto = run(loop, main())
    assert proto.events == ["made", "error", "error", "lost"]
    assert proto.lost_calls == [None]


def test_sendto_broadcast_without_permission_reports_error(loop):
    async def main():
        async with opened(local_addr=LOCAL) as (tr, proto):
            tr.sendto(b"bc", ("127.255.255.255", free_udp_port()))
            exc = proto.errors.get_nowait()  # reported synchronously by sendto()
            assert isinstance(exc, PermissionError)
            assert exc.errno == errno.EACCES
            assert not tr.is_closing()

    run(loop, main())


# --------------------------------------------------------------------------------------
# Socket options and sock=
# --------------------------------------------------------------------------------------


def test_allow_broadcast(loop):
    async def main():
        async with opened(local_addr=("0.0.0.0", 0)) as (receiver, rproto):
            port = receiver.get_extra_info("sockname")[1]
            async with opened(local_addr=LOCAL, allow_broadcast=True) as (tr, proto):
                sock = tr.get_extra_info("socket")
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) != 0
                tr.sendto(b"to-all", ("127.255.255.255", port))
                data, addr = await rproto.datagrams.get()
                assert data == b"to-all"
                assert addr == tr.get_extra_info("sockname")
                assert proto.errors.empty()

    run(loop, main())


def test_no_broadcast_by_default(loop):
    async def main():
        async with opened(local_addr=LOCAL) as (tr, _):
            sock = tr.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 0

    run(loop, main())


def test_allow_broadcast_with_remote_addr_does_not_connect(loop):
    async def main():
        async with connected_pair(allow_broadcast=True) as (_, sproto, tr, _):
            # stdlib does not connect() a broadcast endpoint: no peer name ...
            assert tr.get_extra_info("peername") is None
            with pytest.raises(OSError):
                tr.get_extra_info("socket").getpeername()
            # ... but datagrams without an address still go to remote_addr.
            tr.sendto(b"implicit")
            data, _ = await sproto.datagrams.get()
            assert data == b"implicit"
            with pytest.raises(ValueError, match="Invalid address"):
                tr.sendto(b"x", ("127.0.0.1", 9))

    run(loop, main())


def test_reuse_port(loop):
    async def main():
        async with opened(local_addr=LOCAL, reuse_port=True) as (a, _):
            port = a.get_extra_info("sockname")[1]
            async with opened(local_addr=("127.0.0.1", port), reuse_port=True) as (b, _):
                for tr in (a, b):
                    sock = tr.get_extra_info("socket")
                    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
                assert b.get_extra_info("sockname") == a.get_extra_info("sockname")

    run(loop, main())


def test_address_in_use_without_reuse_port(loop):
    async def main():
        async with opened(local_addr=LOCAL) as (a, _):
            with pytest.raises(OSError) as info:
                await endpoint(local_addr=a.get_extra_info("sockname"))
            assert info.value.errno == errno.EADDRINUSE

    run(loop, main())


def test_sock_argument(loop):
    sock = udp_socket()
    assert sock.getblocking()
    fd = sock.fileno()

    async def main():
        async with opened(sock=sock) as (tr, proto):
            with udp_socket() as peer:
                assert not sock.getblocking()  # the loop made it non-blocking
                assert tr.get_extra_info("socket").fileno() == fd
                assert tr.get_extra_info("sockname") == sock.getsockname()
                assert tr.get_extra_info("peername") is None
                peer.sendto(b"via sock=", sock.getsockname())
                assert await proto.datagrams.get() == (b"via sock=", peer.getsockname())
                tr.sendto(b"answer", peer.getsockname())
                peer.settimeout(1)
                assert peer.recv(100) == b"answer"

    try:
        run(loop, main())
        assert sock.fileno() == -1  # closing the transport closed the socket
    finally:
        sock.close()


def test_sock_argument_connected(loop):
    async def main():
        async with opened(local_addr=LOCAL) as (server, sproto):
            saddr = server.get_extra_info("sockname")
            sock = udp_socket()
            sock.connect(saddr)
            async with opened(sock=sock) as (tr, _):
                assert tr.get_extra_info("peername") == saddr
                tr.sendto(b"from connected sock")
                assert await sproto.datagrams.get() == (b"from connected sock", sock.getsockname())

    run(loop, main())


@pytest.mark.parametrize(
    "kwargs, shown",
    [
        ({"local_addr": ("127.0.0.1", 0)}, "local_addr=('127.0.0.1', 0)"),
        ({"remote_addr": ("127.0.0.1", 9)}, "remote_addr=('127.0.0.1', 9)"),
        ({"family": socket.AF_INET}, f"family={int(socket.AF_INET)}"),
        ({"proto": socket.IPPROTO_UDP}, "proto=17"),
        ({"flags": 1}, "flags=1"),
        ({"reuse_port": True}, "reuse_port=True"),
        ({"allow_broadcast": True}, "allow_broadcast=True"),
    ],
)
def test_sock_with_modifiers_raises(loop, kwargs, shown):
    sock = udp_socket(bind=None)
    try:
        with pytest.raises(ValueError) as info:
            run(loop, endpoint(sock=sock, **kwargs))
        assert str(info.value) == (
            f"socket modifier keyword arguments can not be used when sock is specified. ({shown})"
        )
        assert sock.fileno() >= 0  # not closed on error
    finally:
        sock.close()


def test_sock_stream_socket_raises(loop):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    oracle = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError) as expected:
            oracle.run_until_complete(
                oracle.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
            )
        with pytest.raises(ValueError) as got:
            run(loop, endpoint(sock=sock))
        # 3.11: "A UDP Socket was expected, got ...", 3.12+: "A datagram socket ..."
        assert re.match("A (UDP Socket|datagram socket) was expected, got", str(got.value))
        assert str(got.value) == str(expected.value)
        assert sock.fileno() >= 0
    finally:
        oracle.close()
        sock.close()


# --------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------


def test_no_address_and_no_family_raises(loop):
    with pytest.raises(ValueError, match="^unexpected address family$"):
        run(loop, endpoint())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"local_addr": "127.0.0.1"},
        {"remote_addr": ("127.0.0.1", 9, 0)},
        {"local_addr": ["127.0.0.1", 0]},
    ],
)
def test_inet_address_not_2_tuple_raises(loop, kwargs):
    with pytest.raises(TypeError, match="^2-tuple is expected$"):
        run(loop, endpoint(**kwargs))


def test_reuse_address_keyword_is_gone(loop):
    # Removed in 3.11 (it was a security hazard for UDP): a plain TypeError.
    with pytest.raises(TypeError, match="reuse_address"):
        run(loop, endpoint(local_addr=("127.0.0.1", 0), reuse_address=True))


def test_family_mismatch_raises(loop):
    with pytest.raises(ValueError, match="^can not get address information$"):
        run(loop, endpoint(local_addr=("127.0.0.1", 0), remote_addr=("::1", 9)))


def test_unix_address_not_string_raises(loop):
    with pytest.raises(TypeError, match="^string is expected$"):
        run(loop, endpoint(family=socket.AF_UNIX, local_addr=("/tmp/x", 0)))


def test_add_reader_on_transport_fd_raises(loop):
    async def main():
        async with opened(local_addr=LOCAL) as (tr, _):
            fd = tr.get_extra_info("socket").fileno()
            lp = asyncio.get_running_loop()
            with pytest.raises(RuntimeError, match=f"File descriptor {fd} is used by transport"):
                lp.add_reader(fd, lambda: None)
            with pytest.raises(RuntimeError, match="is used by transport"):
                lp.remove_writer(fd)

    run(loop, main())


# --------------------------------------------------------------------------------------
# AF_UNIX datagram sockets
# --------------------------------------------------------------------------------------


def test_unix_datagram_with_paths(loop, tmp_path):
    spath = str(tmp_path / "server.sock")
    cpath = str(tmp_path / "client.sock")

    async def main():
        async with (
            opened(family=socket.AF_UNIX, local_addr=spath) as (server, sproto),
            opened(family=socket.AF_UNIX, local_addr=cpath, remote_addr=spath) as (client, cproto),
        ):
            assert os.path.exists(spath) and os.path.exists(cpath)
            assert server.get_extra_info("sockname") == spath
            assert server.get_extra_info("socket").family == socket.AF_UNIX
            assert client.get_extra_info("sockname") == cpath
            assert client.get_extra_info("peername") == spath

            client.sendto(b"over unix")
            assert await sproto.datagrams.get() == (b"over unix", cpath)
            server.sendto(b"back over unix", cpath)
            assert await cproto.datagrams.get() == (b"back over unix", spath)

    run(loop, main())


def test_unix_datagram_unbound_sender(loop, tmp_path):
    spath = str(tmp_path / "s.sock")

    async def main():
        async with (
            opened(family=socket.AF_UNIX, local_addr=spath) as (_, sproto),
            opened(family=socket.AF_UNIX, remote_addr=spath) as (client, _),
        ):
            client.sendto(b"anon")
            data, addr = await sproto.datagrams.get()
            assert data == b"anon"
            # An unbound AF_UNIX sender has no address: the kernel reports None.
            assert addr is None

    run(loop, main())


def test_unix_stale_socket_file_is_replaced(loop, tmp_path):
    path = str(tmp_path / "stale.sock")
    old = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    old.bind(path)
    old.close()
    assert os.path.exists(path)  # a leftover socket file

    async def main():
        async with opened(family=socket.AF_UNIX, local_addr=path) as (tr, proto):
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as peer:
                assert tr.get_extra_info("sockname") == path
                peer.sendto(b"fresh", path)
                assert (await proto.datagrams.get())[0] == b"fresh"

    run(loop, main())


def test_unix_remote_missing_path_raises(loop, tmp_path):
    with pytest.raises(FileNotFoundError):
        run(loop, endpoint(family=socket.AF_UNIX, remote_addr=str(tmp_path / "nobody")))


@pytest.fixture
def slow_receiver(tmp_path):
    """``(path, socket)``: a non-blocking AF_UNIX datagram socket nobody reads from."""
    rpath = str(tmp_path / "slow.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        receiver.bind(rpath)
        receiver.setblocking(False)
        yield rpath, receiver
    finally:
        receiver.close()


def test_unix_write_buffer_and_flow_control(loop, slow_receiver):
    """A full receive queue makes sends buffer in the transport; pause/resume_writing."""
    rpath, receiver = slow_receiver
    count = 200
    size = 2000

    async def main():
        lp = asyncio.get_running_loop()
        async with opened(family=socket.AF_UNIX, remote_addr=rpath) as (tr, proto):
            tr.set_write_buffer_limits(high=4 * size, low=size)
            assert tr.get_write_buffer_limits() == (size, 4 * size)
            assert tr.get_write_buffer_size() == 0
            for i in range(count):
                tr.sendto(i.to_bytes(4, "big") * (size // 4))
            # The receiver does not read: the kernel queue filled, the rest is buffered.
            buffered = tr.get_write_buffer_size()
            # Each queued datagram counts its size, plus 8 bytes since 3.12.
            per_datagram = size + STDLIB.DATAGRAM_HEADER_SIZE
            assert 0 < buffered <= count * per_datagram
            assert buffered % per_datagram == 0
            assert proto.paused == 1 and proto.resumed == 0

            got = []
            while len(got) < count:
                data = await lp.sock_recv(receiver, 65536)
                got.append(data)
            assert got == [i.to_bytes(4, "big") * (size // 4) for i in range(count)]
            await asyncio.sleep(0)
            assert tr.get_write_buffer_size() == 0
            assert proto.paused == 1 and proto.resumed == 1
            assert proto.errors.empty()

    run(loop, main())


def test_unix_close_flushes_buffer_before_connection_lost(loop, slow_receiver):
    rpath, receiver = slow_receiver
    count = 100

    async def main():
        lp = asyncio.get_running_loop()
        tr, proto = await endpoint(family=socket.AF_UNIX, remote_addr=rpath)
        for i in range(count):
            tr.sendto(b"%04d" % i * 500)
        assert tr.get_write_buffer_size() > 0
        tr.close()
        assert tr.is_closing()
        await asyncio.sleep(0.05)
        assert not proto.lost.done()  # still flushing
        got = []
        while len(got) < count:
            got.append(await lp.sock_recv(receiver, 65536))
        assert await proto.lost is None
        assert got == [b"%04d" % i * 500 for i in range(count)]
        return proto

    proto = run(loop, main())
    assert proto.lost_calls == [None]


def test_unix_abort_drops_buffer(loop, slow_receiver):
    rpath, receiver = slow_receiver

    async def main():
        tr, proto = await endpoint(family=socket.AF_UNIX, remote_addr=rpath)
        for i in range(100):
            tr.sendto(b"%04d" % i * 500)
        assert tr.get_write_buffer_size() > 0
        sock = tr.get_extra_info("socket")
        tr.abort()
        assert tr.is_closing()
        assert await proto.lost is None
        assert sock.fileno() == -1
        # Only what the kernel accepted before abort() arrives.
        got = []
        while True:
            try:
                got.append(receiver.recv(65536))
            except BlockingIOError:
                break
        assert 0 < len(got) < 100
        assert got == [b"%04d" % i * 500 for i in range(len(got))]
        return proto

    proto = run(loop, main())
    assert proto.lost_calls == [None]


# --------------------------------------------------------------------------------------
# close / abort / reading control
# --------------------------------------------------------------------------------------


def test_close_calls_connection_lost_once(loop):
    async def main():
        tr, proto = await endpoint(local_addr=LOCAL)
        sock = tr.get_extra_info("socket")
        tr.close()
        assert tr.is_closing()
        assert not proto.lost.done()  # connection_lost is called soon, not inside close()
        tr.close()  # idempotent
        assert await proto.lost is None
        await asyncio.sleep(0.01)
        assert sock.fileno() == -1
        assert tr.get_protocol() is None
        tr.close()
        return proto

    proto = run(loop, main())
    assert proto.events == ["made", "lost"]
    assert proto.lost_calls == [None]


def test_close_stops_receiving(loop):
    async def main():
        tr, proto = await endpoint(local_addr=LOCAL)
        addr = tr.get_extra_info("sockname")
        with udp_socket() as peer:
            tr.close()
            peer.sendto(b"late", addr)
            await proto.lost
            await asyncio.sleep(0.02)
            assert proto.datagrams.empty()
        return proto

    proto = run(loop, main())
    assert proto.events == ["made", "lost"]


def test_abort_calls_connection_lost(loop):
    async def main():
        server, sproto = await endpoint(local_addr=LOCAL)
        client, cproto = await endpoint(remote_addr=server.get_extra_info("sockname"))
        client.abort()
        assert client.is_closing()
        assert await cproto.lost is None
        client.abort()  # no second connection_lost
        client.sendto(b"after abort")  # ignored on a lost connected endpoint
        await asyncio.sleep(0.02)
        assert sproto.datagrams.empty()
        await close_all(server)
        return cproto

    cproto = run(loop, main())
    assert cproto.events == ["made", "lost"]
    assert cproto.lost_calls == [None]


def test_pause_resume_reading(loop):
    async def main():
        async with opened(local_addr=LOCAL) as (tr, proto):
            with udp_socket() as peer:
                addr = tr.get_extra_info("sockname")
                assert tr.is_reading()
                tr.pause_reading()
                tr.pause_reading()  # idempotent
                assert not tr.is_reading()
                peer.sendto(b"queued", addr)
                await asyncio.sleep(0.05)
                assert proto.datagrams.empty()
                tr.resume_reading()
                assert tr.is_reading()
                assert await proto.datagrams.get() == (b"queued", peer.getsockname())
        assert not tr.is_reading()

    run(loop, main())


def test_transport_repr(loop):
    async def main():
        async with opened(local_addr=LOCAL) as (tr, _):
            fd = tr.get_extra_info("socket").fileno()
            assert repr(tr) == (
                f"<_SelectorDatagramTransport fd={fd} read=polling write=<idle, bufsize=0>>"
            )
            tr.pause_reading()
            assert repr(tr) == (
                f"<_SelectorDatagramTransport fd={fd} read=idle write=<idle, bufsize=0>>"
            )
        assert repr(tr) == f"<_SelectorDatagramTransport closed fd={fd}>"

    run(loop, main())


def test_set_protocol(loop):
    async def main():
        tr, first = await endpoint(local_addr=LOCAL)
        addr = tr.get_extra_info("sockname")
        second = Recorder()
        tr.set_protocol(second)
        assert tr.get_protocol() is second
        try:
            with udp_socket() as peer:
                peer.sendto(b"for second", addr)
                assert (await second.datagrams.get())[0] == b"for second"
                assert first.datagrams.empty()
        finally:
            await close_all(tr)
        assert await second.lost is None
        assert not first.lost.done()

    run(loop, main())


# --------------------------------------------------------------------------------------
# Addresses: numeric ones are converted natively by rose, the rest by the socket module
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_sendto_host_name_or_number(loop, host):
    async def main():
        async with opened(local_addr=LOCAL) as (server, sproto):
            port = server.get_extra_info("sockname")[1]
            async with opened(family=socket.AF_INET) as (client, _):
                client.sendto(b"by " + host.encode(), (host, port))
                data, addr = await sproto.datagrams.get()
                assert data == b"by " + host.encode()
                # the client was bound by its first sendto
                port = client.get_extra_info("socket").getsockname()[1]
                assert addr == ("127.0.0.1", port)

    run(loop, main())


def test_ipv6_sender_address_is_a_4_tuple(loop):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")

    async def main():
        async with opened(local_addr=("::1", 0)) as (server, sproto):
            saddr = server.get_extra_info("sockname")
            async with opened(local_addr=("::1", 0)) as (client, _):
                client.sendto(b"six", (saddr[0], saddr[1], 0, 0))
                data, addr = await sproto.datagrams.get()
                assert data == b"six"
                assert addr == client.get_extra_info("sockname")
                assert len(addr) == 4 and addr[0] == "::1"
                # a 2-tuple destination works as well
                client.sendto(b"two", saddr[:2])
                assert (await sproto.datagrams.get())[0] == b"two"

    run(loop, main())


@pytest.mark.parametrize(
    ("addr", "exc_type"),
    [(("127.0.0.1", 70000), OverflowError), (None, TypeError), ("127.0.0.1", TypeError)],
)
def test_sendto_unusable_address_is_fatal(loop, addr, exc_type):
    """The socket module's own error, reported as asyncio reports a non-OSError on send:
    the exception handler and connection_lost(exc)."""
    contexts = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        tr, proto = await endpoint(family=socket.AF_INET)
        tr.sendto(b"x", addr)
        exc = await proto.lost
        assert isinstance(exc, exc_type)
        assert tr.is_closing()
        return exc

    exc = run(loop, main())
    assert [c["message"] for c in contexts] == ["Fatal write error on datagram transport"]
    assert contexts[0]["exception"] is exc


def test_datagram_received_exception_goes_to_the_handler(loop):
    contexts = []

    class Failing(Recorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            raise ZeroDivisionError(data)

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        tr, proto = await asyncio.get_running_loop().create_datagram_endpoint(
            Failing, local_addr=LOCAL
        )
        try:
            with udp_socket() as s:
                s.sendto(b"one", tr.get_extra_info("sockname"))
                await proto.datagrams.get()
                s.sendto(b"two", tr.get_extra_info("sockname"))
                await proto.datagrams.get()
            # not fatal: the endpoint keeps receiving
            assert not tr.is_closing()
        finally:
            await close_all(tr)

    run(loop, main())
    assert [c["message"] for c in contexts] == [
        "Exception in callback _SelectorDatagramTransport._read_ready()"
    ] * 2
    assert [c["exception"].args for c in contexts] == [(b"one",), (b"two",)]


def test_sendto_after_connection_lost_never_reaches_the_fds_next_owner(loop):
    """Once connection_lost ran, the socket is closed and its fd number can be reused at
    once: a late sendto must not send through it (asyncio raises AttributeError there)."""

    async def main():
        with udp_socket() as sink:
            sink.setblocking(False)
            tr, proto = await endpoint(family=socket.AF_INET)
            fd = tr.get_extra_info("socket").fileno()
            tr.close()
            await proto.lost
            # the lowest free fd number: the one just closed
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.connect(sink.getsockname())
                assert other.fileno() == fd
                with contextlib.suppress(AttributeError):
                    tr.sendto(b"LEAK", sink.getsockname())
                await asyncio.sleep(0.05)
                with pytest.raises(BlockingIOError):
                    sink.recv(100)

    run(loop, main())


def test_alternating_senders_get_their_own_addresses_and_replies(loop):
    """Each datagram reports its own sender, however senders alternate, and a reply sent to
    the reported address reaches that sender (rose reuses the tuple of a repeated sender)."""

    async def main():
        async with opened(local_addr=LOCAL) as (server, sproto):
            saddr = server.get_extra_info("sockname")
            with udp_socket() as a, udp_socket() as b:
                for i, s in enumerate([a, a, b, a, b, b, a]):
                    s.sendto(b"%d" % i, saddr)
                    data, addr = await sproto.datagrams.get()
                    assert (data, addr) == (b"%d" % i, s.getsockname())
                    server.sendto(b"re" + data, addr)
                    s.settimeout(1)
                    assert s.recvfrom(100) == (b"re" + data, saddr)

    run(loop, main())
