"""call_soon, call_later, call_at, call_soon_threadsafe and their handles."""

import asyncio
import contextvars
import os
import sys
import threading
import time

import pytest
from conftest import STDLIB

SCHEDULERS = ["call_soon", "call_later", "call_at", "call_soon_threadsafe"]


def schedule(loop, method, callback, *args, **kwargs):
    """Schedule ``callback`` to run as soon as possible through ``method``."""
    if method == "call_later":
        return loop.call_later(0, callback, *args, **kwargs)
    if method == "call_at":
        return loop.call_at(loop.time(), callback, *args, **kwargs)
    return getattr(loop, method)(callback, *args, **kwargs)


def handle_context(impl, handle):
    """``handle.get_context()``; stdlib grew that method only in 3.12."""
    if impl == "asyncio" and sys.version_info < (3, 12):
        return handle._context
    return handle.get_context()


def run_briefly(loop, delay=0.02):
    loop.call_later(delay, loop.stop)
    loop.run_forever()


# -- scheduling and arguments ------------------------------------------------


@pytest.mark.parametrize("method", SCHEDULERS)
def test_callback_gets_positional_args(loop, method):
    got = []
    handle = schedule(loop, method, lambda *a: got.append(a), 1, "two", None)
    assert not handle.cancelled()
    run_briefly(loop)
    assert got == [(1, "two", None)]


@pytest.mark.parametrize("method", SCHEDULERS)
def test_keyword_arguments_are_rejected(loop, method):
    with pytest.raises(TypeError):
        schedule(loop, method, print, sep="-")


def test_call_later_does_not_fire_early(loop):
    fired = []
    t0 = loop.time()
    m0 = time.monotonic()
    loop.call_later(0.05, lambda: (fired.append((loop.time(), time.monotonic())), loop.stop()))
    loop.run_forever()
    loop_t, mono_t = fired[0]
    assert loop_t - t0 >= 0.05
    assert mono_t - m0 >= 0.05
    assert loop_t - t0 < 0.5


def test_call_at_does_not_fire_early(loop):
    fired = []
    when = loop.time() + 0.03
    loop.call_at(when, lambda: (fired.append(loop.time()), loop.stop()))
    loop.run_forever()
    assert when <= fired[0] < when + 0.5


def test_call_at_in_the_past_runs(loop):
    rec = []
    loop.call_at(loop.time() - 10, rec.append, "past")
    loop.call_at(loop.time() - 5, loop.stop)
    loop.run_forever()
    assert rec == ["past"]


def test_call_later_negative_delay_runs(loop):
    rec = []
    loop.call_later(-1, rec.append, "neg")
    run_briefly(loop)
    assert rec == ["neg"]


@pytest.mark.parametrize(
    "delay", [float("-inf"), -9.3e9, -1e300, -1.0, 0.0], ids=["-inf", "-9.3e9", "-1e300", "-1", "0"]
)
def test_timer_far_in_the_past_wakes_an_idle_loop(loop, delay):
    # An idle loop (nothing ready) must still wake for a timer that is long overdue: such
    # deadlines once saturated to the reactor's "not armed" value and the loop slept forever.
    loop.call_later(delay, loop.stop)
    guard = threading.Timer(5, os._exit, (3,))  # a hang would otherwise stop the whole run
    guard.start()
    try:
        loop.run_forever()
    finally:
        guard.cancel()


def test_call_later_none_delay(loop):
    with pytest.raises(TypeError):
        loop.call_later(None, print)


def test_call_at_none_when(loop):
    with pytest.raises(TypeError, match="when cannot be None"):
        loop.call_at(None, print)


def test_call_later_non_number_delay(loop):
    with pytest.raises(TypeError):
        loop.call_later("1", print)


# -- handles -------------------------------------------------------------------


def named_soon_callback(*args):
    pass


def named_timer_callback(*args):
    pass


@pytest.fixture(params=[False, True], ids=["normal", "debug"])
def oracle_loop(request):
    """A stdlib loop in the mode of the test, for asyncio's own handle reprs."""
    lp = asyncio.new_event_loop()
    lp.set_debug(request.param)
    yield lp
    lp.close()


def test_handle_repr(loop, oracle_loop):
    # The repr of asyncio's own Handle for the same callback, made on the same line (debug
    # reprs say where), is the oracle: its form changed in 3.13 (arguments only in debug).
    loop.set_debug(oracle_loop.get_debug())
    cb = named_soon_callback
    handle, oracle = loop.call_soon(cb, 1, "x"), asyncio.Handle(cb, (1, "x"), oracle_loop)
    assert repr(handle) == repr(oracle)
    assert "named_soon_callback(" in repr(handle) and "cancelled" not in repr(handle)
    handle.cancel()
    oracle.cancel()
    assert repr(handle) == repr(oracle)
    assert "cancelled" in repr(handle)


def test_timer_handle_repr(loop, oracle_loop):
    loop.set_debug(oracle_loop.get_debug())
    cb = named_timer_callback
    handle = loop.call_later(10, cb, 2)
    when = handle.when()
    handle, oracle = loop.call_at(when, cb, 2), asyncio.TimerHandle(when, cb, (2,), oracle_loop)
    assert repr(handle) == repr(oracle)
    assert f"when={when}" in repr(handle) and "cancelled" not in repr(handle)
    handle.cancel()
    oracle.cancel()
    assert repr(handle) == repr(oracle)
    assert "cancelled" in repr(handle)


def test_source_traceback_replaced_while_its_old_value_reads_the_handle(loop):
    # The old value's __del__ runs as it is replaced, and may use the handle.
    handle = loop.call_soon(print)
    seen = []

    class Old:
        def __del__(self):
            seen.append(handle._source_traceback)

    handle._source_traceback = Old()
    handle._source_traceback = ["new"]
    assert seen == [["new"]]
    handle.cancel()


def test_timer_handle_when_call_at(loop):
    when = loop.time() + 12.345678
    handle = loop.call_at(when, print)
    assert handle.when() == when
    handle.cancel()
    assert handle.when() == when


def test_timer_handle_when_call_later(loop):
    before = loop.time()
    handle = loop.call_later(3.5, print)
    after = loop.time()
    assert before + 3.5 <= handle.when() <= after + 3.5
    assert isinstance(handle.when(), float)


@pytest.mark.parametrize("method", SCHEDULERS)
def test_handle_get_context_explicit(impl, loop, method):
    ctx = contextvars.copy_context()
    handle = schedule(loop, method, print, context=ctx)
    assert handle_context(impl, handle) is ctx
    handle.cancel()


@pytest.mark.parametrize("method", SCHEDULERS)
def test_handle_get_context_default_is_copy_of_current(impl, loop, method):
    var = contextvars.ContextVar("var", default="unset")

    def make():
        var.set("at-schedule")
        return schedule(loop, method, print)

    handle = contextvars.copy_context().run(make)
    ctx = handle_context(impl, handle)
    assert isinstance(ctx, contextvars.Context)
    assert ctx[var] == "at-schedule"
    assert var.get() == "unset"
    handle.cancel()


@pytest.mark.parametrize("method", SCHEDULERS)
def test_callback_runs_in_given_context(loop, method):
    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in-ctx")
    seen = []

    def cb():
        seen.append(var.get())
        var.set("changed-by-callback")

    schedule(loop, method, cb, context=ctx)
    run_briefly(loop)
    assert seen == ["in-ctx"]
    assert ctx[var] == "changed-by-callback"
    assert var.get() == "default"


@pytest.mark.parametrize("method", SCHEDULERS)
def test_callback_runs_in_copy_of_scheduling_context(loop, method):
    var = contextvars.ContextVar("var", default="default")
    seen = []

    def cb():
        seen.append(var.get())
        var.set("changed")

    def make():
        var.set("scheduled")
        schedule(loop, method, cb)
        schedule(loop, method, cb)

    contextvars.copy_context().run(make)
    run_briefly(loop)
    # Each callback got its own copy: the first one's change is not seen by the second.
    assert seen == ["scheduled", "scheduled"]


# -- cancellation ----------------------------------------------------------------


def test_cancelled_call_soon_does_not_run(loop):
    rec = []
    loop.call_soon(rec.append, "a")
    handle = loop.call_soon(rec.append, "b")
    loop.call_soon(rec.append, "c")
    handle.cancel()
    handle.cancel()  # idempotent
    assert handle.cancelled()
    run_briefly(loop)
    assert rec == ["a", "c"]


def test_cancelled_timer_does_not_run(loop):
    rec = []
    handle = loop.call_later(0.01, rec.append, "timer")
    loop.call_later(0.02, rec.append, "other")
    handle.cancel()
    assert handle.cancelled()
    run_briefly(loop, 0.05)
    assert rec == ["other"]


def test_cancel_from_another_callback_same_iteration(loop):
    rec = []
    handles = {}
    loop.call_soon(lambda: handles["b"].cancel())
    handles["b"] = loop.call_soon(rec.append, "b")
    loop.call_soon(rec.append, "c")
    run_briefly(loop)
    assert rec == ["c"]
    assert handles["b"].cancelled()


def test_cancel_due_timer_from_earlier_timer(loop):
    """Both timers are already in the ready queue when the first cancels the second."""
    rec = []
    handles = {}
    past = loop.time() - 1

    def first():
        rec.append("first")
        handles["second"].cancel()

    loop.call_at(past, first)
    handles["second"] = loop.call_at(past + 0.001, rec.append, "second")
    loop.call_at(past + 0.002, rec.append, "third")
    run_briefly(loop)
    assert rec == ["first", "third"]


def test_cancel_timer_after_it_ran_is_harmless(loop):
    rec = []
    handle = loop.call_later(0, rec.append, "ran")
    run_briefly(loop)
    handle.cancel()
    assert rec == ["ran"]
    assert handle.cancelled()


def test_cancel_many_timers_triggers_cleanup(loop):
    rec = []
    base = loop.time() + 0.01
    handles = [loop.call_at(base + i * 0.0001, rec.append, i) for i in range(300)]
    for i, handle in enumerate(handles):
        if i % 3:
            handle.cancel()
    loop.call_at(base + 0.05, loop.stop)
    loop.run_forever()
    assert rec == list(range(0, 300, 3))
    assert all(h.cancelled() == bool(i % 3) for i, h in enumerate(handles))


def test_cancel_many_timers_from_callback(loop):
    rec = []
    # Far enough ahead that none is due before cancel_most runs, even in debug mode.
    base = loop.time() + 0.1
    handles = [loop.call_at(base + i * 0.0001, rec.append, i) for i in range(200)]

    def cancel_most():
        for i, handle in enumerate(handles):
            if i % 4:
                handle.cancel()
        # Timers added after the mass cancel still take part in the order.
        loop.call_at(base + 0.0025, rec.append, "late")

    loop.call_soon(cancel_most)
    loop.call_at(base + 0.05, loop.stop)
    loop.run_forever()
    expected = list(range(0, 200, 4))
    expected.insert(expected.index(28), "late")
    assert rec == expected


def test_cancel_all_timers_loop_still_stops(loop):
    handles = [loop.call_later(0.001 * i, print, i) for i in range(150)]
    for handle in handles:
        handle.cancel()
    t0 = time.monotonic()
    run_briefly(loop, 0.03)
    assert time.monotonic() - t0 < 1.0


# -- call_soon_threadsafe --------------------------------------------------------


def test_call_soon_threadsafe_wakes_idle_loop_in_thread(loop):
    """The loop sleeps with no timers at all; only the thread-safe call can wake it."""
    started = threading.Event()
    loop.call_soon(started.set)
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    assert started.wait(2)
    time.sleep(0.1)
    assert loop.is_running()  # seen from another thread too
    t0 = time.monotonic()
    loop.call_soon_threadsafe(loop.stop)
    runner.join(1.0)
    assert not runner.is_alive(), "loop did not wake up for call_soon_threadsafe"
    assert time.monotonic() - t0 < 1.0
    assert not loop.is_running()


def test_call_soon_threadsafe_wakes_main_thread_loop(loop):
    def poke():
        time.sleep(0.1)
        loop.call_soon_threadsafe(loop.stop)

    # A far timer only bounds a failure; the loop is asleep until the poke.
    guard = loop.call_later(10, loop.stop)
    thread = threading.Thread(target=poke)
    t0 = time.monotonic()
    thread.start()
    loop.run_forever()
    elapsed = time.monotonic() - t0
    thread.join()
    guard.cancel()
    assert 0.09 <= elapsed < 1.0


def test_call_soon_threadsafe_wakeup_not_lost_when_loop_starts_to_sleep(loop):
    """A thread blocked on the GIL gets it exactly when the loop releases it to sleep.

    The helper wakes from time.sleep while the loop busy-waits in Python, so it
    is queued for the GIL and calls call_soon_threadsafe in the instant the loop
    goes to sleep. The wake-up must not be lost in that window.
    """

    async def one_round():
        fut = loop.create_future()

        def helper():
            time.sleep(0.001)
            loop.call_soon_threadsafe(fut.set_result, None)

        thread = threading.Thread(target=helper)
        thread.start()
        end = time.perf_counter() + 0.003
        while time.perf_counter() < end:
            pass
        t0 = time.monotonic()
        try:
            # The timeout only bounds a failure; without it a lost wake-up hangs.
            await asyncio.wait_for(asyncio.shield(fut), 0.5)
        except TimeoutError:
            pass
        thread.join()
        return time.monotonic() - t0

    for i in range(60):
        elapsed = loop.run_until_complete(one_round())
        assert elapsed < 0.25, f"call_soon_threadsafe wake-up lost in round {i}"


def test_call_soon_threadsafe_completes_future(loop):
    fut = loop.create_future()

    def worker():
        time.sleep(0.05)
        loop.call_soon_threadsafe(fut.set_result, threading.get_ident())

    thread = threading.Thread(target=worker)
    thread.start()
    result = loop.run_until_complete(fut)
    thread.join()
    assert result == thread.ident


def test_threadsafe_handle_cancel_from_another_thread_while_it_runs(loop):
    # 3.14+: cancelled() and cancel() of a call_soon_threadsafe handle, called from another
    # thread while its callback runs, wait until the callback has returned (asyncio's
    # _ThreadSafeHandle holds a lock around the run). Before 3.14 they return at once.
    started, finished = threading.Event(), threading.Event()
    seen = {}

    def callback():
        started.set()
        time.sleep(0.3)  # without the GIL: the other thread goes on
        finished.set()

    def other_thread():
        handle = loop.call_soon_threadsafe(callback)
        started.wait(5)
        seen["cancelled"] = handle.cancelled()
        seen["finished when cancelled() returned"] = finished.is_set()
        handle.cancel()
        seen["finished when cancel() returned"] = finished.is_set()
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=other_thread)
    thread.start()
    loop.run_forever()
    thread.join()
    waits = STDLIB.THREADSAFE_HANDLES
    assert seen == {
        "cancelled": False,
        "finished when cancelled() returned": waits,
        "finished when cancel() returned": waits,
    }


def test_threadsafe_handle_cancelled_by_its_own_callback(loop):
    # The thread running the callback may cancel its own handle (asyncio's lock is reentrant).
    holder = []

    def callback():
        holder[0].cancel()
        holder.append(holder[0].cancelled())
        loop.stop()

    holder.append(loop.call_soon_threadsafe(callback))
    loop.run_forever()
    assert holder[1] is True


def test_threadsafe_handle_repr(loop, oracle_loop):
    # 3.14+ makes call_soon_threadsafe's handles a class of their own (named in the repr).
    loop.set_debug(oracle_loop.get_debug())
    cb = named_soon_callback
    handle, oracle = loop.call_soon_threadsafe(cb, 3), oracle_loop.call_soon_threadsafe(cb, 3)
    assert repr(handle) == repr(oracle)


def test_call_soon_threadsafe_from_many_threads(loop):
    got = []
    n_threads, per_thread = 4, 250
    barrier = threading.Barrier(n_threads)

    def worker(tid):
        barrier.wait()
        for i in range(per_thread):
            loop.call_soon_threadsafe(got.append, (tid, i))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()

    def check():
        if len(got) == n_threads * per_thread:
            loop.stop()
        else:
            loop.call_later(0.005, check)

    guard = loop.call_later(5, loop.stop)
    loop.call_soon(check)
    loop.run_forever()
    guard.cancel()
    for thread in threads:
        thread.join()
    assert len(got) == n_threads * per_thread
    for tid in range(n_threads):
        # Each thread's calls run in the order it made them.
        assert [i for t, i in got if t == tid] == list(range(per_thread))
