"""Calls from another thread while the loop sleeps.

asyncio documents the loop as not thread-safe, but `add_reader`, `remove_reader`,
`transport.write()` and `transport.close()` from another thread work on the stdlib loop
(and uvloop) while it waits in its selector, and programs rely on it. rose makes them safe too:
they must not raise, and they must not corrupt anything (a half-closed transport, a stream
cut short).
"""

import asyncio
import socket
import threading
import time

from conftest import import_rose

TIMEOUT = 5
THREAD_CHECK = "Non-thread-safe operation invoked on an event loop other than the current one"


def in_thread(func, *args):
    """Run func in another thread once the loop is asleep; return a future of its result."""
    outcome = {}

    def target():
        time.sleep(0.1)  # the loop is parked by now
        try:
            outcome["result"] = func(*args)
        except BaseException as exc:  # noqa: BLE001 -- reported by the test
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def test_add_and_remove_reader_from_another_thread(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    got = []

    def on_readable():
        got.append(a.recv(100))
        removed.append(loop.remove_reader(a))
        loop.stop()

    removed = []

    def foreign():
        loop.add_reader(a, on_readable)
        b.send(b"hello")

    thread, outcome = in_thread(foreign)
    guard = loop.call_later(TIMEOUT, loop.stop)
    loop.run_forever()
    guard.cancel()
    thread.join()
    a.close()
    b.close()
    assert outcome == {"result": None}
    assert got == [b"hello"] and removed == [True]


def test_add_writer_then_remove_it_from_another_thread(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    calls = []

    def writable():
        calls.append(True)
        loop.remove_writer(a)
        loop.call_soon(loop.stop)

    thread, outcome = in_thread(loop.add_writer, a, writable)
    guard = loop.call_later(TIMEOUT, loop.stop)
    loop.run_forever()
    guard.cancel()
    thread.join()
    # And a remove from outside while the loop sleeps on a fd that never becomes ready.
    r, w = socket.socketpair()
    loop.add_reader(r, calls.append, "never")
    thread, outcome2 = in_thread(loop.remove_reader, r)
    loop.run_until_complete(asyncio.sleep(0.3))
    thread.join()
    for s in (a, b, r, w):
        s.close()
    assert outcome == {"result": None} and outcome2 == {"result": True}
    assert calls == [True]


class Sink(asyncio.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        self.data += data

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_write_and_close_from_another_thread(loop):
    write_and_close_from_another_thread(loop, 100)


def test_buffered_write_and_close_from_another_thread():
    """rose only: asyncio races here (its write() lets the GIL go in send(), and the loop
    thread may flush the buffer and finish the transport while the other thread is still
    inside close(): AttributeError on its cleared `_loop`). rose's write() and close() each
    run whole, without letting the GIL go."""
    loop = import_rose().new_event_loop()
    try:
        write_and_close_from_another_thread(loop, 8 << 20)
    finally:
        loop.close()


def write_and_close_from_another_thread(loop, size):
    # Outside debug mode, which refuses these calls (the tests below).
    loop.set_debug(False)
    payload = bytes(range(256)) * (size // 256)

    async def setup():
        sinks = []
        server = await loop.create_server(lambda: sinks.append(Sink()) or sinks[-1], "127.0.0.1", 0)
        transport, client = await loop.create_connection(Sink, *server.sockets[0].getsockname())
        while not sinks:
            await asyncio.sleep(0.01)
        return server, transport, client, sinks[0]

    server, transport, client, sink = loop.run_until_complete(setup())

    def foreign():
        transport.write(payload)
        transport.close()

    thread, outcome = in_thread(foreign)

    async def ticker():
        while True:
            await asyncio.sleep(0.05)

    async def finish():
        # A ticking timer keeps the stdlib loop from sleeping through a close from another
        # thread (asyncio's call_soon does not wake it); rose wakes itself.
        tick = asyncio.ensure_future(ticker())
        try:
            await asyncio.wait_for(client.lost, TIMEOUT)
            await asyncio.wait_for(sink.lost, TIMEOUT)
        finally:
            tick.cancel()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(finish())
    thread.join()
    assert outcome == {"result": None}
    assert sink.data == payload  # every byte, in order: nothing dropped
    assert transport.is_closing() and client.lost.result() is None


def test_close_refused_by_debug_mode_changes_nothing(loop):
    """rose only: in debug mode asyncio refuses the callback that close() from another thread
    schedules, after the transport has begun to close (it stays half-closed: no
    connection_lost); rose refuses the call before anything changes."""
    lp = import_rose().new_event_loop()
    lp.set_debug(True)

    async def setup():
        server = await lp.create_server(asyncio.Protocol, "127.0.0.1", 0)
        transport, client = await lp.create_connection(Sink, *server.sockets[0].getsockname())
        return server, transport, client

    server, transport, client = lp.run_until_complete(setup())
    thread, outcome = in_thread(transport.close)
    lp.run_until_complete(asyncio.sleep(0.3))
    thread.join()
    try:
        assert str(outcome["error"]) == THREAD_CHECK
        assert not transport.is_closing()
        transport.write(b"still usable")
        transport.close()
        lp.run_until_complete(asyncio.wait_for(client.lost, TIMEOUT))
    finally:
        server.close()
        lp.run_until_complete(server.wait_closed())
        lp.close()


def test_call_soon_from_another_thread_runs_once(loop):
    loop.set_debug(False)  # (debug mode refuses it: below)
    ran = []
    thread, outcome = in_thread(loop.call_soon, ran.append, "from outside")

    async def main():
        # asyncio's call_soon from another thread is only seen when the loop next wakes:
        # the test wakes it every 50 ms (rose wakes at once).
        for _ in range(int(TIMEOUT / 0.05)):
            if ran:
                break
            await asyncio.sleep(0.05)

    loop.run_until_complete(main())
    thread.join()
    assert ran == ["from outside"]
    handle = outcome["result"]
    assert handle.cancelled() is False and callable(handle.cancel)


def test_debug_mode_refuses_call_soon_from_another_thread(loop):
    loop.set_debug(True)
    thread, outcome = in_thread(loop.call_soon, print)
    loop.run_until_complete(asyncio.sleep(0.3))
    thread.join()
    error = outcome["error"]
    assert type(error) is RuntimeError and str(error) == THREAD_CHECK
