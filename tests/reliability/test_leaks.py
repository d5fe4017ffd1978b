"""Leak and soak checks: open fds and RSS stay flat over repeated cycles of each kind of work,
on rose and on stdlib asyncio.

Each check runs a warm-up (allocators, caches and pools reach their steady size), measures,
runs many more cycles and measures again: no fd may be left, and RSS may grow by no more than
a small allowance (allocator noise). `make soak` runs the same with ROSE_SOAK=1: a million
callbacks, 100,000 connections and so on.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
import warnings

import pytest
from conftest import import_rose

SOAK = os.environ.get("ROSE_SOAK") == "1"
RSS_ALLOWANCE = 8 << 20  # bytes of growth tolerated once warm


def cycles(short, long):
    return long if SOAK else short


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def flat(run, n, warmup):
    """Run `run(k)` for a warm-up, then for `n`; return (fd growth, RSS growth)."""
    run(warmup)
    gc.collect()
    fds, mem = open_fds(), rss()
    run(n)
    gc.collect()
    return open_fds() - fds, rss() - mem


def assert_flat(run, n, warmup):
    fds, mem = flat(run, n, warmup)
    assert fds <= 0, f"{fds} fds left after {n} cycles"
    assert mem < RSS_ALLOWANCE, f"RSS grew by {mem >> 10} KiB over {n} cycles"


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Client(asyncio.Protocol):
    def __init__(self):
        loop = asyncio.get_running_loop()
        self.got = loop.create_future()
        self.lost = loop.create_future()

    def data_received(self, data):
        if not self.got.done():
            self.got.set_result(data)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_callbacks(loop):
    def run(n):
        left = [n]

        def step():
            left[0] -= 1
            if left[0]:
                loop.call_soon(step)
            else:
                loop.stop()

        loop.call_soon(step)
        loop.run_forever()

    assert_flat(run, cycles(200_000, 1_000_000), 20_000)


def test_timers_and_cancellation(loop):
    def run(n):
        async def main():
            for _ in range(n // 100):
                handles = [loop.call_later(10, print) for _ in range(100)]
                for h in handles:
                    h.cancel()
                await asyncio.sleep(0)

        loop.run_until_complete(main())

    assert_flat(run, cycles(100_000, 1_000_000), 10_000)


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_connections(loop, family, short_tmp):
    path = os.path.join(short_tmp, "s")

    async def serve():
        if family == "unix":
            return await loop.create_unix_server(Echo, path)
        return await loop.create_server(Echo, "127.0.0.1", 0)

    server = loop.run_until_complete(serve())

    async def one():
        if family == "unix":
            tr, proto = await loop.create_unix_connection(Client, path)
        else:
            tr, proto = await loop.create_connection(Client, *server.sockets[0].getsockname())
        tr.write(b"ping")
        assert await proto.got == b"ping"
        tr.close()
        await proto.lost

    def run(n):
        async def main():
            for _ in range(n):
                await one()
            await asyncio.sleep(0.01)  # the server side's connection_lost

        loop.run_until_complete(main())

    try:
        assert_flat(run, cycles(1000, 100_000), 200)
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())


def test_datagram_endpoints(loop):
    def run(n):
        async def main():
            for _ in range(n):
                tr, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
                )
                tr.sendto(b"x", tr.get_extra_info("sockname"))
                tr.close()
                await asyncio.sleep(0)

        loop.run_until_complete(main())

    assert_flat(run, cycles(1000, 20_000), 100)


def test_pipes(loop):
    def run(n):
        async def main():
            for _ in range(n):
                r, w = os.pipe()
                rtr, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(r, "rb", 0))
                wtr, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(w, "wb", 0))
                wtr.write(b"x")
                wtr.close()
                rtr.close()
                await asyncio.sleep(0)

        loop.run_until_complete(main())

    assert_flat(run, cycles(500, 20_000), 50)


def test_subprocesses(loop):
    def run(n):
        async def main():
            for _ in range(n):
                proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
                assert await proc.wait() == 0

        loop.run_until_complete(main())

    assert_flat(run, cycles(30, 1000), 5)


def test_loops(loop_factory):
    def run(n):
        for _ in range(n):
            lp = loop_factory()
            lp.run_until_complete(asyncio.sleep(0))
            lp.close()

    assert_flat(run, cycles(300, 5000), 30)


def test_unclosed_loops_with_work_pending():
    """rose only: asyncio's loop, finalized by the collector after its self-pipe socket
    (3.13 does that here), fails in __del__ ("Invalid file descriptor: -1") and leaves one of
    the pair open. (A pending task would make asyncio log "Task was destroyed but it is
    pending!" and warn of a coroutine never awaited; the test harness keeps those, and with
    them the loops: tests/test_gc.py checks tasks, one loop at a time, on both.)"""
    loop_factory = import_rose().new_event_loop

    def run(n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            for _ in range(n):
                lp = loop_factory()
                lp.call_later(3600, lp.stop)
                lp.call_soon(lp.stop)
                lp.create_future().add_done_callback(lambda f, lp=lp: lp.stop())
                a, b = socket.socketpair()
                lp.add_reader(a, lp.stop)
                a.close()
                b.close()
                del lp
            gc.collect()

    assert_flat(run, cycles(200, 5000), 20)
