"""anyio 4 on its asyncio backend, on rose: `anyio.run(main, backend_options={"loop_factory":
rose.new_event_loop})` (anyio hands the factory to asyncio.Runner)."""

from __future__ import annotations

import asyncio
import threading

import anyio
from frameworks import assert_impl_loop


def anyio_run(loop_factory, func, *args):
    return anyio.run(func, *args, backend="asyncio", backend_options={"loop_factory": loop_factory})


def test_running_loop_is_the_impls(impl, loop_factory):
    async def main():
        loop = asyncio.get_running_loop()
        assert_impl_loop(impl, loop)
        return anyio.get_current_task().name is not None, loop

    named, loop = anyio_run(loop_factory, main)
    assert named
    assert loop.is_closed()  # anyio's runner closed the loop it made


def test_tcp_echo_task_group_and_to_thread(impl, loop_factory):
    async def main():
        assert_impl_loop(impl, asyncio.get_running_loop())
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        served = []

        async def handle(stream):
            async with stream:
                data = b""
                while not data.endswith(b"\n"):
                    data += await stream.receive()
                served.append(data)
                await stream.send(data.upper())

        async def client(i):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(b"message %d " % i + b"x" * 100_000 + b"\n")
                got = b""
                while not got.endswith(b"\n"):
                    got += await stream.receive()
                results[i] = got

        results = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            async with anyio.create_task_group() as clients:
                for i in range(10):
                    clients.start_soon(client, i)
            tg.cancel_scope.cancel()  # stops the listener
        await listener.aclose()

        main_thread = threading.get_ident()
        other = await anyio.to_thread.run_sync(threading.get_ident)
        value = await anyio.to_thread.run_sync(sum, range(1000))
        with anyio.move_on_after(0.05) as scope:
            await anyio.sleep(5)
        return results, len(served), other != main_thread, value, scope.cancelled_caught

    results, served, in_thread, value, timed_out = anyio_run(loop_factory, main)
    assert served == 10
    assert results == {i: (b"message %d " % i + b"x" * 100_000 + b"\n").upper() for i in range(10)}
    assert (in_thread, value, timed_out) == (True, 499500, True)
