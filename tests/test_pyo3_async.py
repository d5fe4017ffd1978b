"""pyo3-async-runtimes on rose and on stdlib asyncio.

Two Rust sides are tested:

- ``rose_pyo3_async_test`` (tests/pyo3_async_ext, built by ``make pyo3-async-ext``): a small
  extension written the ordinary way against pyo3-async-runtimes' *tokio* runtime
  (``future_into_py``, ``into_future``, ``get_current_loop``). It works on any asyncio loop,
  so these tests run on both implementations like every other test.
- ``RoseRuntime`` (src/async_runtime.rs), rose's own API: pyo3-async-runtimes' generic
  functions on the running rose loop's runtime, reached through the rose-only test hooks
  ``loop._pyo3_async_*``. Where stdlib has a counterpart scenario, the same test runs there on
  the extension (the same generic code of pyo3-async-runtimes on its tokio runtime), which
  proves the expectations; what only rose can do (no thread involved, errors without a rose
  loop) is tested on rose alone, in the section marked so below.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
import threading
import time

import pytest

from conftest import import_rose

EXT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyo3_async_ext", "build")


def _import_ext():
    """The test extension, or fail (never skip): ``make pyo3-async-ext`` builds it."""
    if EXT_DIR not in sys.path:
        sys.path.insert(0, EXT_DIR)
    try:
        import rose_pyo3_async_test
    except ImportError as exc:  # pragma: no cover - only while the extension is missing
        pytest.fail(f"the test extension is missing (make pyo3-async-ext): {exc!r}", pytrace=False)
    return rose_pyo3_async_test


ext = _import_ext()


def _run(loop_factory, coro):
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro)


async def _until(predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


# -- the extension on pyo3-async-runtimes' tokio runtime, on both loops -----------------------


def test_ready_returns_the_object(impl, loop_factory):
    value = object()

    async def main():
        return await ext.ready(value)

    assert _run(loop_factory, main()) is value


def test_debug_mode_call_from_a_native_thread(impl, loop_factory):
    # The result comes through call_soon_threadsafe from a tokio blocking-pool thread, which has
    # no Python frame: debug mode's source traceback of the handle must cope with that.
    async def main():
        asyncio.get_running_loop().set_debug(True)
        return await asyncio.wait_for(ext.sleep(0.001, "debug"), 5)

    assert _run(loop_factory, main()) == "debug"


def test_sleep_result_and_time(impl, loop_factory):
    async def main():
        t0 = time.monotonic()
        result = await ext.sleep(0.02, "slept")
        return result, time.monotonic() - t0

    result, elapsed = _run(loop_factory, main())
    assert result == "slept"
    assert 0.015 <= elapsed < 1.0


def test_rust_error_becomes_the_exception(impl, loop_factory):
    async def main():
        with pytest.raises(ValueError) as info:
            await ext.raise_after(0.001)
        return info.value

    exc = _run(loop_factory, main())
    assert type(exc) is ValueError
    assert str(exc) == "raised after 0.001"


def test_bad_seconds(impl, loop_factory):
    async def main():
        with pytest.raises(ValueError, match="non-negative finite"):
            ext.sleep(-1.0, None)

    _run(loop_factory, main())


def test_no_running_loop():
    with pytest.raises(RuntimeError, match="no running event loop"):
        ext.ready(1)


def test_current_loop_is_the_running_loop(impl, loop_factory):
    async def main():
        return await ext.current_loop(), asyncio.get_running_loop()

    seen, running = _run(loop_factory, main())
    assert seen is running


def test_rust_awaits_a_coroutine(impl, loop_factory):
    async def coro():
        await asyncio.sleep(0.01)
        return "from python"

    async def main():
        return await ext.await_coro(coro())

    assert _run(loop_factory, main()) == "from python"


def test_rust_awaits_a_rust_future(impl, loop_factory):
    async def main():
        return await ext.await_coro(ext.sleep(0.005, 5))

    assert _run(loop_factory, main()) == 5


def test_coroutine_exception_reaches_python_through_rust(impl, loop_factory):
    error = KeyError("missing")

    async def coro():
        await asyncio.sleep(0)
        raise error

    async def main():
        with pytest.raises(KeyError) as info:
            await ext.await_coro(coro())
        return info.value

    assert _run(loop_factory, main()) is error


def test_coroutine_sees_the_callers_context(impl, loop_factory):
    var = contextvars.ContextVar("var")

    async def coro():
        return var.get()

    async def main():
        var.set("caller's")
        return await ext.await_coro(coro())

    assert _run(loop_factory, main()) == "caller's"


def test_cancel_drops_the_rust_future(impl, loop_factory):
    async def main():
        before = ext.live()
        fut = ext.sleep(30, "never")
        assert ext.live() == before + 1
        await asyncio.sleep(0.01)
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        await _until(lambda: ext.live() == before)
        return fut.cancelled()

    assert _run(loop_factory, main())


def test_cancelled_coroutine_cancels_the_rust_await(impl, loop_factory):
    started = []
    events = []

    async def coro():
        started.append(asyncio.current_task())
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("coroutine cancelled")
            raise

    async def main():
        fut = ext.await_coro(coro())
        await _until(lambda: started)
        started[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut

    _run(loop_factory, main())
    assert events == ["coroutine cancelled"]


def test_cancelling_the_rust_await_leaves_the_coroutine_running(impl, loop_factory):
    # pyo3-async-runtimes' behaviour: cancelling the future of `future_into_py` drops the Rust
    # future, which awaited the coroutine's task through a channel; the task itself runs on.
    events = []

    async def coro():
        await asyncio.sleep(0.02)
        events.append("coroutine done")

    async def main():
        fut = ext.await_coro(coro())
        await asyncio.sleep(0.005)
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        await _until(lambda: events)

    _run(loop_factory, main())
    assert events == ["coroutine done"]


def test_many_concurrent(impl, loop_factory):
    async def main():
        return await asyncio.gather(*(ext.sleep(0.001 * (i % 7), i) for i in range(200)))

    assert _run(loop_factory, main()) == list(range(200))


def test_loop_runs_while_rust_sleeps(impl, loop_factory):
    async def main():
        loop = asyncio.get_running_loop()
        ticks = []

        def tick():
            ticks.append(None)
            if len(ticks) < 5:
                loop.call_later(0.005, tick)

        loop.call_soon(tick)
        await ext.sleep(0.1, None)
        return len(ticks)

    assert _run(loop_factory, main()) == 5


def test_done_callbacks_run_on_the_loop_thread(impl, loop_factory):
    async def main():
        fut = ext.sleep(0.005, None)
        seen = []
        fut.add_done_callback(lambda f: seen.append(threading.get_ident()))
        await fut
        return seen

    assert _run(loop_factory, main()) == [threading.get_ident()]


# -- RoseRuntime (rose's own API), with the extension as stdlib's counterpart ------------------


class _Side:
    """The Rust side of a scenario: RoseRuntime's hooks on rose, the extension on stdlib."""

    def __init__(self, impl, loop):
        self.rose = impl == "rose"
        self.loop = loop

    def sleep(self, seconds):
        return self.loop._pyo3_async_sleep(seconds) if self.rose else ext.sleep(seconds, seconds)

    def ready(self, value):
        return self.loop._pyo3_async_ready(value) if self.rose else ext.ready(value)

    def await_(self, awaitable):
        return self.loop._pyo3_async_await(awaitable) if self.rose else ext.await_coro(awaitable)

    def current_loop(self):
        return self.loop._pyo3_async_current_loop() if self.rose else ext.current_loop()

    def live(self):
        return self.loop._pyo3_async_live() if self.rose else ext.live()


def _side(impl):
    return _Side(impl, asyncio.get_running_loop())


def test_runtime_ready_and_sleep(impl, loop_factory):
    value = object()

    async def main():
        side = _side(impl)
        t0 = time.monotonic()
        slept = await side.sleep(0.02)
        return await side.ready(value), slept, time.monotonic() - t0

    got, slept, elapsed = _run(loop_factory, main())
    assert got is value
    assert slept == 0.02
    assert 0.015 <= elapsed < 1.0


def test_runtime_current_loop(impl, loop_factory):
    async def main():
        return await _side(impl).current_loop(), asyncio.get_running_loop()

    seen, running = _run(loop_factory, main())
    assert seen is running


def test_runtime_awaits_coroutines(impl, loop_factory):
    var = contextvars.ContextVar("var")

    async def ok():
        await asyncio.sleep(0.005)
        return var.get()

    async def fails():
        await asyncio.sleep(0)
        raise LookupError("nope")

    async def main():
        side = _side(impl)
        var.set("ctx")
        got = await side.await_(ok())
        with pytest.raises(LookupError, match="^nope$"):
            await side.await_(fails())
        return got

    assert _run(loop_factory, main()) == "ctx"


def test_runtime_cancel_drops_the_rust_future(impl, loop_factory):
    async def main():
        side = _side(impl)
        before = side.live()
        fut = side.sleep(30)
        await asyncio.sleep(0.01)
        assert side.live() == before + 1
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        await _until(lambda: side.live() == before)

    _run(loop_factory, main())


def test_runtime_cancelled_coroutine(impl, loop_factory):
    started = []

    async def coro():
        started.append(asyncio.current_task())
        await asyncio.sleep(30)

    async def main():
        fut = _side(impl).await_(coro())
        await _until(lambda: started)
        started[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut

    _run(loop_factory, main())


def test_runtime_many_concurrent(impl, loop_factory):
    async def main():
        side = _side(impl)
        return await asyncio.gather(*(side.sleep(0.001 * (i % 5)) for i in range(100)))

    assert _run(loop_factory, main()) == [0.001 * (i % 5) for i in range(100)]


# -- rose only: what RoseRuntime promises beyond pyo3-async-runtimes' tokio runtime -------------


def _os_threads():
    return len(os.listdir("/proc/self/task"))


def test_rose_runtime_polls_and_delivers_on_the_loop_thread():
    rose = import_rose()

    async def main():
        loop = asyncio.get_running_loop()
        fut = loop._pyo3_async_sleep(0.005)
        seen = []
        fut.add_done_callback(lambda f: seen.append(threading.get_ident()))
        await fut
        return await loop._pyo3_async_thread_ident(), seen

    polled_on, delivered_on = _run(rose.new_event_loop, main())
    assert polled_on == threading.get_ident()
    assert delivered_on == [threading.get_ident()]


def test_rose_runtime_starts_no_thread():
    rose = import_rose()

    async def main():
        loop = asyncio.get_running_loop()
        before = _os_threads()
        for _ in range(50):
            await loop._pyo3_async_ready(None)
            await loop._pyo3_async_sleep(0)

        async def coro():
            return 1

        await loop._pyo3_async_await(coro())
        return before, _os_threads()

    before, after = _run(rose.new_event_loop, main())
    assert after == before


def test_rose_runtime_without_a_rose_loop():
    rose = import_rose()
    loop = rose.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="^no running rose event loop$"):
            loop._pyo3_async_ready(1)

        async def on_stdlib():
            with pytest.raises(RuntimeError, match="^no running rose event loop$"):
                loop._pyo3_async_sleep(0.01)

        asyncio.run(on_stdlib())
    finally:
        loop.close()


def test_rose_runtime_and_tokio_runtime_interoperate():
    rose = import_rose()

    async def main():
        loop = asyncio.get_running_loop()
        a = await loop._pyo3_async_await(ext.sleep(0.005, "tokio"))
        b = await ext.await_coro(loop._pyo3_async_sleep(0.005))
        return a, b

    assert _run(rose.new_event_loop, main()) == ("tokio", 0.005)


def test_rose_runtime_tasks_end_with_their_loop():
    rose = import_rose()
    before = rose.Loop._pyo3_async_live()

    async def main():
        loop = asyncio.get_running_loop()
        fut = loop._pyo3_async_sleep(30)
        await asyncio.sleep(0.01)
        return fut

    loop = rose.new_event_loop()
    try:
        fut = loop.run_until_complete(main())
        assert rose.Loop._pyo3_async_live() == before + 1
    finally:
        loop.close()
    # The runtime went with the loop, and the task (holding the Rust future) with it.
    assert rose.Loop._pyo3_async_live() == before
    assert not fut.done()
