"""run_forever, run_until_complete, stop, close, is_running, is_closed, time."""

import asyncio
import time

import pytest


class Awaitable:
    """Not a coroutine nor a future: only has ``__await__``."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        yield from asyncio.sleep(0).__await__()
        return self.value


# -- run_until_complete ------------------------------------------------------


def test_run_until_complete_coroutine(loop):
    async def main():
        await asyncio.sleep(0)
        return "done"

    assert loop.run_until_complete(main()) == "done"


def test_run_until_complete_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, 7)
    assert loop.run_until_complete(fut) == 7
    assert fut.done()


def test_run_until_complete_task(loop):
    async def main():
        return 3

    task = loop.create_task(main())
    assert loop.run_until_complete(task) == 3
    assert task.done()


def test_run_until_complete_awaitable_object(loop):
    assert loop.run_until_complete(Awaitable("awaited")) == "awaited"


def test_run_until_complete_raises_coroutine_exception(loop):
    async def main():
        await asyncio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop.run_until_complete(main())
    assert not loop.is_running()


def test_run_until_complete_cancelled_task(loop):
    async def main():
        await asyncio.sleep(10)

    task = loop.create_task(main())
    loop.call_soon(task.cancel)
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert task.cancelled()


@pytest.mark.parametrize("bad", [42, "text", None, print, object()], ids=repr)
def test_run_until_complete_not_awaitable(loop, bad):
    with pytest.raises(
        TypeError, match="An asyncio.Future, a coroutine or an awaitable is required"
    ):
        loop.run_until_complete(bad)
    assert not loop.is_running()


def test_run_until_complete_future_of_other_loop(loop, new_loop):
    other = new_loop()
    fut = other.create_future()
    with pytest.raises(ValueError, match="different loop"):
        loop.run_until_complete(fut)


def test_stop_before_run_until_complete(loop):
    fut = loop.create_future()
    loop.stop()
    with pytest.raises(RuntimeError, match=r"Event loop stopped before Future completed\."):
        loop.run_until_complete(fut)
    assert not fut.done()
    # The stop request was consumed: the loop can run again.
    loop.call_soon(fut.set_result, "later")
    assert loop.run_until_complete(fut) == "later"


def test_stop_from_coroutine_before_completion(loop):
    never = loop.create_future()

    async def main():
        loop.stop()
        await never

    with pytest.raises(RuntimeError, match=r"Event loop stopped before Future completed\."):
        loop.run_until_complete(main())
    never.cancel()
    loop.run_until_complete(asyncio.sleep(0))


def test_run_until_complete_twice(loop):
    async def one(x):
        await asyncio.sleep(0)
        return x

    assert loop.run_until_complete(one(1)) == 1
    assert loop.run_until_complete(one(2)) == 2


def test_running_loop_visible_inside(loop):
    seen = {}

    def cb():
        seen["callback"] = asyncio.get_running_loop()

    async def main():
        loop.call_soon(cb)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen["coroutine"] = asyncio.get_running_loop()
        seen["event_loop"] = asyncio.get_event_loop()

    loop.run_until_complete(main())
    assert seen == {"callback": loop, "coroutine": loop, "event_loop": loop}
    with pytest.raises(RuntimeError, match="no running event loop"):
        asyncio.get_running_loop()


# -- run_forever / stop ------------------------------------------------------


def test_run_forever_stop_runs_already_scheduled(loop):
    calls = []
    loop.call_soon(calls.append, "a")
    loop.call_soon(loop.stop)
    loop.call_soon(lambda: (calls.append("b"), loop.call_soon(calls.append, "c")))
    loop.run_forever()
    # Everything queued before the stop ran; what b scheduled waits for the next run.
    assert calls == ["a", "b"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["a", "b", "c"]


def test_stop_before_run_forever_runs_one_iteration(loop):
    calls = []
    loop.call_soon(calls.append, 1)
    loop.call_soon(calls.append, 2)
    loop.stop()
    loop.run_forever()
    assert calls == [1, 2]
    assert not loop.is_running()


def test_stop_from_timer(loop):
    t0 = time.monotonic()
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    elapsed = time.monotonic() - t0
    assert 0.045 <= elapsed < 1.0


def test_run_forever_while_running(loop):
    errors = []

    def cb():
        for method in (loop.run_forever, lambda: loop.run_until_complete(loop.create_future())):
            try:
                method()
            except RuntimeError as exc:
                errors.append(str(exc))
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert errors == ["This event loop is already running"] * 2


def test_run_while_other_loop_running(loop, new_loop):
    other = new_loop()
    errors = []

    def cb():
        try:
            other.run_until_complete(other.create_future())
        except RuntimeError as exc:
            errors.append(str(exc))
        try:
            other.run_forever()
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert errors == ["Cannot run the event loop while another loop is running"] * 2
    assert not other.is_running()


def test_is_running(loop):
    states = []

    async def main():
        states.append(loop.is_running())

    assert not loop.is_running()
    loop.call_soon(lambda: states.append(loop.is_running()))
    loop.run_until_complete(main())
    assert states == [True, True]
    assert not loop.is_running()


def test_is_running_false_after_exception(loop):
    async def main():
        raise KeyError("x")

    with pytest.raises(KeyError):
        loop.run_until_complete(main())
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0, result=5)) == 5


# -- close -------------------------------------------------------------------


def test_close(loop):
    assert not loop.is_closed()
    loop.close()
    assert loop.is_closed()
    loop.close()  # idempotent
    assert loop.is_closed()


def _closed_ops(loop):
    fut = loop.create_future()
    return {
        "call_soon": lambda: loop.call_soon(print),
        "call_later": lambda: loop.call_later(1, print),
        "call_at": lambda: loop.call_at(loop.time() + 1, print),
        "call_soon_threadsafe": lambda: loop.call_soon_threadsafe(print),
        "run_forever": loop.run_forever,
        "run_until_complete": lambda: loop.run_until_complete(fut),
        "run_in_executor": lambda: loop.run_in_executor(None, print),
    }


@pytest.mark.parametrize(
    "op",
    [
        "call_soon",
        "call_later",
        "call_at",
        "call_soon_threadsafe",
        "run_forever",
        "run_until_complete",
        "run_in_executor",
    ],
)
def test_closed_loop_rejects(loop, op):
    ops = _closed_ops(loop)
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        ops[op]()


def test_closed_loop_rejects_create_task(loop):
    async def main():
        pass

    loop.close()
    coro = main()
    try:
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            loop.create_task(coro)
    finally:
        coro.close()


def test_close_running_loop(loop):
    errors = []

    def cb():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert errors == ["Cannot close a running event loop"]
    assert not loop.is_closed()


# -- time --------------------------------------------------------------------


def test_time_is_monotonic_clock(loop):
    for _ in range(20):
        before = time.monotonic()
        now = loop.time()
        after = time.monotonic()
        assert before - 1e-3 <= now <= after + 1e-3


def test_time_advances_within_callback(loop):
    deltas = []

    def cb():
        t0 = loop.time()
        time.sleep(0.02)
        deltas.append(loop.time() - t0)
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert deltas[0] >= 0.02


def test_time_full_resolution(loop):
    samples = [loop.time() for _ in range(200)]
    assert samples == sorted(samples)
    assert len(set(samples)) > 1
    # Values are not rounded to milliseconds (or coarser).
    assert any(abs(s * 1000 - round(s * 1000)) > 1e-4 for s in samples)
    assert all(isinstance(s, float) for s in samples)
