"""Fault tests: what goes wrong around the loop (a child killed mid-stream, a fork while a
server and clients are live, a signal at the wrong moment) and must leave it working, on rose
and on stdlib asyncio.

The reliability tier's other fault tests live next to the feature they strain: peer resets
mid-write, half-closes and never-reading peers in tests/test_stream_abuse.py, Ctrl-C while
busy and idle in tests/test_signals.py, calls from other threads in
tests/test_foreign_threads.py, fds that change hands in tests/test_fd_ownership.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from conftest import pattern, run_child

TIMEOUT = 10


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_child_killed_mid_pipe(loop):
    # A child writing as fast as it can is killed with SIGKILL: the reader gets what was
    # written and then EOF, the exit code is -9, and nothing is left open.
    loop.run_until_complete(asyncio.sleep(0))  # (rose makes its reactor on first use)
    before = open_fds()

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys\nwhile True: sys.stdout.buffer.write(b'x' * 65536)",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        first = await proc.stdout.readexactly(1 << 20)
        proc.send_signal(signal.SIGKILL)
        rest = await proc.stdout.read()
        return first, rest, await proc.wait()

    first, rest, code = run(loop, main())
    assert first == b"x" * (1 << 20) and set(rest) <= {ord("x")}
    assert code == -signal.SIGKILL
    assert open_fds() <= before


def test_child_killed_while_it_reads_our_writes(loop):
    # The reader of our pipe dies mid-stream: the writer gets a broken pipe, not a hang.
    async def main():
        proc = await asyncio.create_subprocess_exec(
            # it reads what we send, then waits to be killed (exiting on its own, as a loaded
            # machine's scheduling may let it, would make the exit status 0)
            sys.executable, "-c", "import sys, time; sys.stdin.buffer.read(1 << 20); time.sleep(60)",
            stdin=asyncio.subprocess.PIPE,
        )  # fmt: skip
        proc.stdin.write(b"y" * (1 << 20))
        await proc.stdin.drain()
        proc.kill()
        code = await proc.wait()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(100):
                proc.stdin.write(b"z" * 65536)
                await proc.stdin.drain()
        return code

    assert run(loop, main()) == -signal.SIGKILL


FORK_WITH_LIVE_SERVER = """
import socket, time

DATA = bytes(range(256)) * 4096  # 1 MiB

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)

async def echo_through(port, data):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    got = await reader.readexactly(len(data))
    writer.close()
    await writer.wait_closed()
    return got == data

async def parent():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # A client connected before the fork, in the middle of a conversation.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"before")
    assert await reader.readexactly(6) == b"before"
    pid = os.fork()
    if pid == 0:
        # The child: the parent's loop is not usable here; a new one must work, with its own
        # server and client, without touching the parent's sockets' state.
        try:
            def child():
                async def main():
                    srv = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
                    ok = await echo_through(srv.sockets[0].getsockname()[1], DATA)
                    srv.close()
                    await srv.wait_closed()
                    return ok
                return run(main())
            os._exit(0 if child() else 1)
        except BaseException:
            os._exit(2)
    # The parent goes on: the old connection and new ones still work.
    writer.write(b"after")
    after = await reader.readexactly(5)
    fresh = await echo_through(port, DATA)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        await asyncio.sleep(0.01)
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return after, fresh, os.waitstatus_to_exitcode(status)

print(run(parent()))
"""


def test_fork_with_live_server_and_client(impl):
    proc = run_child(impl, FORK_WITH_LIVE_SERVER, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(b'after', True, 0)", proc.stderr


SIGNAL_STORM = """
import signal, time
got = []

async def main():
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, got.append, 1)
    pid = os.getpid()
    for i in range(200):
        os.kill(pid, signal.SIGUSR1)
        if i % 20 == 0:
            time.sleep(0.001)  # busy
        else:
            await asyncio.sleep(0)  # idle or nearly
    await asyncio.sleep(0.1)
    loop.remove_signal_handler(signal.SIGUSR1)
    return len(got) > 0, await asyncio.sleep(0.01, "still running")

print(run(main()))
"""


def test_signal_storm_busy_and_idle(impl):
    # Signals coalesce (a burst may run the handler fewer times), but the handler runs,
    # and the loop keeps going.
    proc = run_child(impl, SIGNAL_STORM)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(True, 'still running')", proc.stderr


def test_peer_reset_while_writing_a_stream(loop):
    # Reset by the peer in the middle of a large write: the writer gets ConnectionResetError
    # (or a broken pipe) and the transport closes; the loop goes on.
    async def main():
        accepted = loop.create_future()

        async def on_client(reader, writer):
            accepted.set_result((reader, writer))

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        srv_reader, srv_writer = await accepted
        sock = srv_writer.get_extra_info("socket")
        import socket as socket_module
        import struct

        sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_LINGER, struct.pack("ii", 1, 0))
        srv_writer.transport.abort()  # RST
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            for _ in range(200):
                writer.write(pattern(1 << 16))
                await writer.drain()
        writer.close()
        server.close()
        await server.wait_closed()
        return await asyncio.sleep(0, "alive")

    assert run(loop, main()) == "alive"
