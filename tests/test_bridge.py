"""The completion bridge (src/bridge.rs): Rust futures spawned on the loop's tokio runtime
resolve asyncio futures on the loop thread.

`loop._rust_sleep` and `loop._rust_fail` are rose-only test hooks; stdlib asyncio has no
counterpart. So each test runs on both implementations as usual, and on stdlib it drives the
same scenario with `asyncio.sleep` and a timer-failed future: that run proves the test's own
expectations (ordering, cancellation, concurrency) are asyncio's.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sys
import threading
import time

import pytest


def _sleep(loop, impl, seconds):
    if impl == "rose":
        return loop._rust_sleep(seconds)
    fut = loop.create_future()
    loop.call_later(seconds, lambda: fut.done() or fut.set_result(seconds))
    return fut


def _fail(loop, impl, seconds, code):
    if impl == "rose":
        return loop._rust_fail(seconds, code)
    fut = loop.create_future()
    loop.call_later(seconds, lambda: fut.done() or fut.set_exception(OSError(code, os.strerror(code))))
    return fut


def test_sleep_completes_on_loop_thread(impl, loop_factory):
    async def main():
        loop = asyncio.get_running_loop()
        fut = _sleep(loop, impl, 0.02)
        seen = []
        fut.add_done_callback(lambda f: seen.append(threading.get_ident()))
        t0 = time.monotonic()
        result = await fut
        return result, time.monotonic() - t0, seen

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result, elapsed, seen = runner.run(main())
    assert result == 0.02
    assert 0.015 <= elapsed < 1.0
    assert seen == [threading.get_ident()]


def test_failure_is_oserror(impl, loop_factory):
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(ConnectionRefusedError) as info:
            await _fail(loop, impl, 0.001, errno.ECONNREFUSED)
        return info.value

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        exc = runner.run(main())
    assert exc.errno == errno.ECONNREFUSED
    assert exc.strerror == os.strerror(errno.ECONNREFUSED)


def test_cancel_aborts(impl, loop_factory):
    async def main():
        loop = asyncio.get_running_loop()
        fut = _sleep(loop, impl, 0.05)
        loop.call_soon(fut.cancel)
        with pytest.raises(asyncio.CancelledError):
            await fut
        # The aborted task must not resolve anything later.
        await asyncio.sleep(0.1)
        return fut.cancelled()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(main())


def test_cancel_after_finish_before_drain(impl, loop_factory):
    """A future cancelled while its finished output waits in the queue stays cancelled."""

    async def main():
        loop = asyncio.get_running_loop()
        fut = _sleep(loop, impl, 0.0)
        time.sleep(0.01)  # the task would be finished by the next poll
        fut.cancel()
        await asyncio.sleep(0.01)
        return fut.cancelled()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(main())


def test_many_concurrent(impl, loop_factory):
    async def main():
        loop = asyncio.get_running_loop()
        futs = [_sleep(loop, impl, (i % 10) / 1000) for i in range(2000)]
        futs += [_fail(loop, impl, 0.005, errno.ETIMEDOUT) for _ in range(100)]
        t0 = time.monotonic()
        results = await asyncio.gather(*futs, return_exceptions=True)
        return results, time.monotonic() - t0

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        results, elapsed = runner.run(main())
    assert results[:2000] == [(i % 10) / 1000 for i in range(2000)]
    assert all(isinstance(r, TimeoutError) for r in results[2000:])
    assert elapsed < 5


def test_loop_not_blocked(impl, loop_factory):
    """Callbacks keep running while a Rust task is pending, and a busy loop still drives the
    task to completion (I/O is polled within the budget)."""

    async def main():
        loop = asyncio.get_running_loop()
        fut = _sleep(loop, impl, 0.05)
        spins = 0
        while not fut.done():
            spins += 1
            await asyncio.sleep(0)
        return spins, fut.result()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        spins, result = runner.run(asyncio.wait_for(main(), 5))
    assert result == 0.05
    assert spins > 10


def test_idle_loop_parks_in_runtime(impl, loop_factory):
    """With only a Rust task pending, the loop parks and the task still finishes on time."""

    async def main():
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        await _sleep(loop, impl, 0.03)
        return time.monotonic() - t0

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        cpu0 = time.process_time()
        elapsed = runner.run(main())
        cpu = time.process_time() - cpu0
    assert 0.025 <= elapsed < 1.0
    assert cpu < 0.02 + elapsed / 2  # parked, not spinning


def test_bad_seconds(impl, loop_factory):
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        loop = runner.get_loop()
        if impl == "rose":
            with pytest.raises(ValueError):
                loop._rust_sleep(-1.0)
        else:
            assert not hasattr(loop, "_rust_sleep")


def test_fork_child_gets_fresh_runtime(impl, loop_factory):
    """A child forked while a Rust task is pending runs new ones on its own runtime; the
    parent's pending task is lost in the child (documented) and completes in the parent."""

    async def parent():
        loop = asyncio.get_running_loop()
        pending = _sleep(loop, impl, 0.2)
        await asyncio.sleep(0)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:

                async def child():
                    loop = asyncio.get_running_loop()
                    return await asyncio.wait_for(_sleep(loop, impl, 0.01), 5)

                # A new thread: the forked thread still has the parent's running loop.
                out = []
                def run_child():
                    try:
                        with asyncio.Runner(loop_factory=loop_factory) as r:
                            out.append(r.run(child()))
                    except BaseException as exc:
                        out.append(repr(exc))

                t = threading.Thread(target=run_child)
                t.start()
                t.join()
                code = 0 if out == [0.01] else 2
                if code:
                    print("child:", out, file=sys.stderr)
            finally:
                os._exit(code)
        result = await pending
        for _ in range(500):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return result, os.waitstatus_to_exitcode(status)
            await asyncio.sleep(0.01)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return result, "timeout"

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            assert runner.run(parent()) == (0.2, 0)


def test_ready_at_once_resolves_before_return(impl, loop_factory):
    """A Rust future that is ready on its first poll resolves its asyncio future before the
    call returns: awaiting it does not yield to the loop. On stdlib the same expectation holds
    for a future whose result is set before it is awaited."""

    async def main():
        loop = asyncio.get_running_loop()
        if impl == "rose":
            fut = loop._rust_ready(0.0)  # an async block that returns at once
        else:
            fut = loop.create_future()
            fut.set_result(0.0)
        ran = []
        loop.call_soon(ran.append, 1)
        done_now = fut.done()
        result = await fut
        return done_now, result, list(ran)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        done_now, result, ran = runner.run(main())
    assert done_now
    assert result == 0.0
    assert ran == []  # the await did not yield

