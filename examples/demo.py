"""A small asyncio program that knows nothing about rose.

Run it on stdlib asyncio with `python examples/demo.py`, on rose with
`python -m rose examples/demo.py`. It exercises tasks, timers, futures, a thread waking the
loop, an executor and add_reader, and prints timings.
"""

import asyncio
import socket
import threading
import time


async def ticker(name, period, count, out):
    for i in range(count):
        await asyncio.sleep(period)
        out.append((name, i))


async def main():
    loop = asyncio.get_running_loop()
    print(f"loop: {type(loop).__module__}.{type(loop).__qualname__}")

    # Tasks and timers.
    out = []
    t0 = time.perf_counter()
    await asyncio.gather(ticker("a", 0.01, 5, out), ticker("b", 0.015, 3, out))
    print(f"timers: {len(out)} ticks in {1e3 * (time.perf_counter() - t0):.1f} ms")

    # Many small tasks.
    t0 = time.perf_counter()
    n = 20_000

    async def nothing(i):
        return i

    total = sum(await asyncio.gather(*(nothing(i) for i in range(n))))
    dt = time.perf_counter() - t0
    print(f"gather: {n} tasks (sum {total}) in {1e3 * dt:.1f} ms, {1e9 * dt / n:.0f} ns/task")

    # Another thread wakes the sleeping loop.
    fut = loop.create_future()
    t0 = time.perf_counter()
    threading.Timer(0.02, loop.call_soon_threadsafe, (fut.set_result, "woken")).start()
    print(f"threadsafe: {await fut} after {1e3 * (time.perf_counter() - t0):.1f} ms")

    # The default executor.
    print(f"executor: {await loop.run_in_executor(None, sum, range(1000))}")

    # add_reader on a socket pair.
    a, b = socket.socketpair()
    got = loop.create_future()
    loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(100)))
    b.send(b"hello through add_reader")
    print(f"add_reader: {(await got).decode()}")
    loop.remove_reader(a)
    a.close()
    b.close()


if __name__ == "__main__":
    asyncio.run(main())
