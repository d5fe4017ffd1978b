"""Reference cycles through handles are reclaimed, as with stdlib asyncio.

rose keeps its handles out of the cyclic GC (see src/handles.rs) and breaks cycles instead: a
one-shot handle gives up its callback once it ran, `cancel()` drops it, and `close()` releases
every pending handle. These tests build the classic cycle ``obj.handle = loop.call_xxx(obj.method)``
and check the object is freed in each case.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest


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
