"""Reference cycles through handles are reclaimed, as with stdlib asyncio.

rose keeps its handles out of the cyclic GC (see src/handles.rs) and breaks cycles instead: a
one-shot handle gives up its callback once it ran, `cancel()` drops it, and `close()` releases
every pending handle. These tests build the classic cycle ``obj.handle = loop.call_xxx(obj.method)``
and check the object is freed in each case.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import warnings
import weakref

import pytest

from conftest import run_child


class Owner:
    """Holds the handle of a callback bound to itself: obj -> handle -> bound method -> obj."""

    def __init__(self, loop, schedule):
        self.ran = False
        self.handle = schedule(loop, self.method)

    def method(self):
        self.ran = True


def _freed(ref):
    gc.collect()
    return ref() is None


def _run_once(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


@pytest.mark.parametrize(
    "schedule, drive",
    [
        (lambda lp, cb: lp.call_soon(cb), _run_once),
        (
            lambda lp, cb: lp.call_later(0, cb),
            lambda lp: lp.run_until_complete(asyncio.sleep(0.01)),
        ),
    ],
    ids=["handle", "timer"],
)
def test_cycle_through_handle_that_ran_is_collected(loop, schedule, drive):
    owner = Owner(loop, schedule)
    ref = weakref.ref(owner)
    drive(loop)
    assert owner.ran
    del owner
    assert _freed(ref)


def test_cycle_through_cancelled_timer_is_collected(loop):
    owner = Owner(loop, lambda lp, cb: lp.call_later(3600, cb))
    ref = weakref.ref(owner)
    owner.handle.cancel()
    _run_once(loop)
    del owner
    assert _freed(ref)


@pytest.mark.parametrize(
    "schedule",
    [lambda lp, cb: lp.call_later(3600, cb), lambda lp, cb: lp.call_soon(cb)],
    ids=["timer", "callback"],
)
def test_cycle_through_pending_handle_is_collected_after_close(loop, schedule):
    owner = Owner(loop, schedule)
    ref = weakref.ref(owner)
    loop.close()
    del owner
    assert _freed(ref)


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


async def _forever():
    await asyncio.sleep(3600)


PENDING = {
    "call_soon": lambda lp: lp.call_soon(lp.stop),
    "call_later": lambda lp: lp.call_later(3600, lp.stop),
    "task": lambda lp: lp.create_task(_forever()),
    "future-callback": lambda lp: lp.create_future().add_done_callback(lambda f: lp.stop()),
}


@contextlib.contextmanager
def warning_texts():
    """The (category, text) of every warning issued inside, without keeping their `source`
    objects alive (catch_warnings(record=True) would, and so keep a collected loop alive)."""
    texts = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, *args, **kwargs: texts.append(
            (category, str(message))
        )
        yield texts


@pytest.mark.parametrize("pending", list(PENDING))
def test_unclosed_loop_with_work_pending_is_collected(loop_factory, pending):
    # A loop dropped without close() while something is pending (which refers back to the
    # loop) is garbage: the collector finds it, `__del__` warns and closes it, and its fds are
    # released, as asyncio's loop does.
    before = _open_fds()
    with warning_texts() as texts:
        for _ in range(20):
            lp = loop_factory()
            ref = weakref.ref(lp)
            PENDING[pending](lp)
            del lp
            assert _freed(ref)
    unclosed = [(c, t) for c, t in texts if t.startswith("unclosed event loop")]
    assert len(unclosed) == 20
    assert all(c is ResourceWarning for c, _ in unclosed)
    assert _open_fds() <= before


def test_unclosed_loop_watching_an_fd_is_collected(loop_factory):
    a, b = socket.socketpair()
    try:
        with warning_texts() as texts:
            lp = loop_factory()
            ref = weakref.ref(lp)
            lp.add_reader(a, lp.stop)
            del lp
            assert _freed(ref)
        assert any(t.startswith("unclosed event loop") for _, t in texts)
    finally:
        a.close()
        b.close()


def test_unclosed_loop_in_a_global_at_interpreter_exit_is_quiet(impl):
    # The loop lives in a module global until interpreter exit, so `__del__` closes it while
    # module teardown sets globals to None: asyncio's close copes, and prints nothing.
    body = """
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(asyncio.sleep(0))
        print("ran")
    """
    result = run_child(impl, body)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ran\n", "")


# -- the contexts handles copy --------------------------------------------------------------
# rose hides a handle's own copy of the context from the GC while the handle holds it, and
# tracks it again as the handle lets it go (src/handles.rs, `HandleContext`).

_VAR = __import__("contextvars").ContextVar("rose_test_gc_var")


class _Node:
    pass


@pytest.mark.parametrize("how", ["ran", "cancelled"])
def test_context_of_a_finished_handle_is_an_ordinary_one(loop, how):
    """Once the handle is gone, the context it copied is tracked by the GC again, and a cycle
    through it (a context variable's value that refers to the context) is reclaimed."""
    handle = loop.call_soon(lambda: None)
    ctx = handle._context  # (get_context() is 3.12+)
    node = _Node()
    node.ctx = ctx
    ctx.run(_VAR.set, node)  # ctx -> node -> ctx
    ref = weakref.ref(node)
    if how == "cancelled":
        handle.cancel()
    _run_once(loop)
    del handle
    assert gc.is_tracked(ctx)
    del ctx, node
    assert _freed(ref)


def test_collections_while_handles_hold_their_contexts(loop):
    """Collections while thousands of handles wait keep every context intact: each callback
    sees the value its context was copied with."""
    seen = []

    def record(expected):
        seen.append(_VAR.get() == expected)

    for i in range(3000):
        _VAR.set(i)
        loop.call_soon(record, i)
        if i % 500 == 0:
            gc.collect()
    timers = [loop.call_later(3600, record, -1) for _ in range(2000)]
    gc.collect()
    for t in timers[::2]:
        t.cancel()
    gc.collect()
    _run_once(loop)
    for t in timers:
        t.cancel()
    gc.collect()
    assert len(seen) == 3000 and all(seen)
