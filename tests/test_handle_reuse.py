"""rose reuses the objects of handles nobody can see any more (a pool of spare handles);
these tests pin down that nothing observable changes, on rose and on stdlib asyncio."""

from __future__ import annotations

import contextvars
import gc
import weakref


def run_briefly(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


class Payload:
    """A weak-referenceable value."""


def test_handle_kept_by_the_user_keeps_its_identity_and_context(loop):
    var = contextvars.ContextVar("var", default="default")

    def make():
        var.set("first")
        return loop.call_soon(lambda: None)

    held = contextvars.copy_context().run(make)
    ctx = held._context  # get_context() is new in 3.12; rose has both
    run_briefly(loop)
    others = [loop.call_soon(lambda: None) for _ in range(50)]
    run_briefly(loop)
    assert all(h is not held for h in others)
    assert held._context is ctx
    assert ctx[var] == "first"
    assert not held.cancelled()


def test_weakly_referenced_handle_dies_after_it_ran(loop):
    handle = loop.call_soon(lambda: None)
    dead = []
    ref = weakref.ref(handle, lambda r: dead.append(True))
    del handle
    run_briefly(loop)
    gc.collect()
    assert ref() is None
    assert dead == [True]


def test_context_values_are_released_after_the_callback_ran(loop):
    var = contextvars.ContextVar("var")
    payload = Payload()
    ref = weakref.ref(payload)

    def make(value):
        var.set(value)
        loop.call_soon(lambda: None)

    contextvars.copy_context().run(make, payload)
    del payload
    run_briefly(loop)
    run_briefly(loop)
    gc.collect()
    assert ref() is None


def test_callbacks_of_reused_handles_run_with_their_own_args_and_context(loop):
    var = contextvars.ContextVar("var", default="unset")
    seen = []
    for round_ in range(3):
        for i in range(300):  # more than the pool holds
            ctx = contextvars.copy_context()
            ctx.run(var.set, f"{round_}-{i}")
            loop.call_soon(lambda r=round_, i=i: seen.append((r, i, var.get())), context=ctx)
        run_briefly(loop)
    assert seen == [(r, i, f"{r}-{i}") for r in range(3) for i in range(300)]


def test_cancelled_handle_kept_by_the_user_stays_cancelled(loop):
    ran = []
    handle = loop.call_soon(ran.append, 1)
    handle.cancel()
    run_briefly(loop)
    for _ in range(20):
        loop.call_soon(ran.append, 2)
    run_briefly(loop)
    assert handle.cancelled()
    assert ran == [2] * 20


def test_timer_kept_by_the_user_keeps_its_deadline(loop):
    held = loop.call_later(0, lambda: None)
    when = held.when()
    loop.run_until_complete(__import__("asyncio").sleep(0.01))
    later = [loop.call_later(0, lambda: None) for _ in range(50)]
    loop.run_until_complete(__import__("asyncio").sleep(0.01))
    assert all(t is not held for t in later)
    assert held.when() == when
    assert not held.cancelled()


def test_cancelled_timers_reused_fire_at_their_own_deadlines(loop):
    fired = []
    for _ in range(300):  # cancelled, dropped: their objects become spares
        loop.call_later(3600, fired.append, "never").cancel()
    start = loop.time()
    for i in range(5):
        loop.call_later(0.001 * (i + 1), lambda i=i: fired.append((i, loop.time() - start)))
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert [f[0] for f in fired] == [0, 1, 2, 3, 4]
    assert all(dt >= 0.001 * (i + 1) for i, dt in fired)
