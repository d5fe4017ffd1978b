"""Tornado 6: its IOLoop on the running asyncio loop (rose's or stdlib's)."""

from __future__ import annotations

import asyncio
import threading

from frameworks import assert_impl_loop, run
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.netutil import bind_sockets
from tornado.tcpclient import TCPClient
from tornado.tcpserver import TCPServer


class EchoServer(TCPServer):
    async def handle_stream(self, stream, address):
        try:
            while True:
                line = await stream.read_until(b"\n")
                await stream.write(line[::-1][1:] + b"\n")
        except StreamClosedError:
            pass


def test_ioloop_wraps_the_impls_loop(impl, loop_factory):
    async def main():
        loop = asyncio.get_running_loop()
        assert_impl_loop(impl, loop)
        ioloop = IOLoop.current()
        return ioloop.asyncio_loop is loop

    assert run(loop_factory, main())


def test_tcp_echo(impl, loop_factory):
    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        server = EchoServer()
        sockets = bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        server.add_sockets(sockets)
        try:
            replies = []
            for size in (1, 1000, 1_000_000):
                stream = await TCPClient().connect("127.0.0.1", port)
                payload = bytes(i % 200 + 33 for i in range(size)) + b"\n"
                await stream.write(payload)
                reply = await stream.read_until(b"\n", max_bytes=2_000_000)
                replies.append(reply == payload[::-1][1:] + b"\n")
                stream.close()
            return replies
        finally:
            server.stop()

    assert run(loop_factory, main()) == [True, True, True]


def test_call_later_and_run_in_executor(impl, loop_factory):
    async def main():
        loop = asyncio.get_running_loop()
        assert_impl_loop(impl, loop)
        ioloop = IOLoop.current()
        fired = loop.create_future()
        start = ioloop.time()
        ioloop.call_later(0.05, lambda: fired.set_result(ioloop.time() - start))
        handle = ioloop.call_later(0.01, lambda: fired.set_result("cancelled timer ran"))
        ioloop.remove_timeout(handle)
        delay = await fired
        ident = await ioloop.run_in_executor(None, threading.get_ident)
        square = await ioloop.run_in_executor(None, pow, 12, 2)
        return delay, ident != threading.get_ident(), square

    delay, other_thread, square = run(loop_factory, main())
    assert 0.05 <= delay < 2
    assert (other_thread, square) == (True, 144)
