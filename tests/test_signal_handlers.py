"""loop.add_signal_handler / loop.remove_signal_handler, with real signals.

Signals are sent to this very process: with ``signal.raise_signal`` from a loop callback
(delivered synchronously to the main thread) or with ``os.kill(os.getpid(), ...)`` from a
helper thread while the loop sleeps. The loop never gets a timer from these tests: a
watchdog *thread* stops it with ``call_soon_threadsafe`` if a handler never comes, so a
missing wake-up fails the test instead of hanging it.

Every signal disposition and the interpreter's wake-up fd are restored after each test.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import capture_exception_contexts

SIGUSR1 = signal.SIGUSR1
SIGUSR2 = signal.SIGUSR2

# Every signal whose disposition a test here may change.
TOUCHED = (
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGINT,
    signal.SIGCHLD,
    signal.SIGALRM,
    signal.SIGHUP,
)

WATCHDOG = 1.5  # seconds: a test that needs it has already failed


def _get_wakeup_fd():
    """The interpreter's current wake-up fd (-1 if none), left unchanged."""
    fd = signal.set_wakeup_fd(-1)
    if fd != -1:
        signal.set_wakeup_fd(fd)
    return fd


@pytest.fixture(autouse=True)
def restore_signals():
    """Put back every disposition and the wake-up fd, whatever the test did.

    Autouse, so it is set up before the ``loop`` fixture and torn down after the loop
    was closed.
    """
    assert threading.current_thread() is threading.main_thread()
    saved = {sig: signal.getsignal(sig) for sig in TOUCHED}
    old_fd = _get_wakeup_fd()
    yield
    for sig, handler in saved.items():
        if handler is not None:
            signal.signal(sig, handler)
    try:
        signal.set_wakeup_fd(old_fd)
    except (ValueError, OSError):
        signal.set_wakeup_fd(-1)


def run_with_watchdog(loop, timeout=WATCHDOG):
    """``loop.run_forever()``; a thread stops it after ``timeout`` s.

    Returns True if the watchdog had to stop the loop. No loop timer is involved.
    """
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def fire():
        with lock:
            if state["done"]:
                return
            state["fired"] = True
            loop.call_soon_threadsafe(loop.stop)

    timer = threading.Timer(timeout, fire)
    timer.daemon = True
    timer.start()
    try:
        loop.run_forever()
    finally:
        with lock:
            state["done"] = True
        timer.cancel()
        timer.join()
    return state["fired"]


def kill_later(sig, delay, sent_at):
    """A started thread that sends ``sig`` to this process after ``delay`` s.

    Only sends if a Python-level handler is installed (never kill the test run);
    appends ``time.monotonic()`` of the send to ``sent_at``.
    """

    def body():
        time.sleep(delay)
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            return
        sent_at.append(time.monotonic())
        os.kill(os.getpid(), sig)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def stopping_handler(loop, calls):
    """A signal handler that appends its args (a tuple) to ``calls`` and stops ``loop``."""

    def handler(*args):
        calls.append(args)
        loop.stop()

    return handler


def raise_and_run(loop, sig):
    """Raise ``sig`` from a loop callback and run the loop; True if the watchdog fired."""
    loop.call_soon(signal.raise_signal, sig)
    return run_with_watchdog(loop)


def assert_installed(sig):
    handler = signal.getsignal(sig)
    assert callable(handler), handler
    assert handler not in (signal.SIG_DFL, signal.SIG_IGN, signal.default_int_handler)


# --------------------------------------------------------------------------
# The handler runs as a loop callback
# --------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["before-run", "while-running"])
def test_handler_runs_promptly_while_loop_is_idle(loop, when):
    """A signal sent by another thread while run_forever sleeps (no timers, nothing
    ready) wakes the loop, and the handler runs on the loop's thread with its args."""
    calls = []
    sent_at = []
    threads = []

    def handler(*args):
        calls.append(
            (
                args,
                time.monotonic(),
                threading.current_thread() is threading.main_thread(),
                asyncio.get_running_loop() is loop,
            )
        )
        loop.stop()

    def start():
        if when == "while-running":
            loop.add_signal_handler(SIGUSR1, handler, "a", 42)
        threads.append(kill_later(SIGUSR1, 0.1, sent_at))

    if when == "before-run":
        loop.add_signal_handler(SIGUSR1, handler, "a", 42)
    loop.call_soon(start)
    t0 = time.monotonic()
    stopped_by_watchdog = run_with_watchdog(loop)
    threads[0].join()

    assert sent_at, "the signal was never sent"
    assert not stopped_by_watchdog, f"handler did not run within {WATCHDOG:.1f} s"
    assert len(calls) == 1
    args, handled_at, in_main_thread, running_loop_ok = calls[0]
    assert args == ("a", 42)
    assert in_main_thread
    assert running_loop_ok
    assert 0 <= handled_at - sent_at[0] < 1.0
    assert time.monotonic() - t0 < 1.5
    assert loop.remove_signal_handler(SIGUSR1) is True


def test_handler_is_a_loop_callback_not_a_signal_handler(loop):
    """The handler is queued on the loop: it does not run inside the code that raised the
    signal (as a signal.signal handler would) but after the current callback returns,
    and gets only its own args (no signum/frame)."""
    order = []

    def handler(*args):
        order.append(("handler", args))
        loop.stop()

    def trigger():
        order.append("raising")
        signal.raise_signal(SIGUSR1)
        # A signal.signal handler would have run by now (right after the C call).
        order.append("callback done")

    loop.add_signal_handler(SIGUSR1, handler, "x")
    loop.call_soon(trigger)
    assert not run_with_watchdog(loop)
    assert order == ["raising", "callback done", ("handler", ("x",))]


def test_handler_without_args(loop):
    calls = []
    loop.add_signal_handler(SIGUSR2, stopping_handler(loop, calls))
    assert not raise_and_run(loop, SIGUSR2)
    assert calls == [()]


def test_each_delivery_runs_the_handler(loop):
    """Two deliveries before the loop gets to them run the handler twice; a third one
    later runs it again: the handler stays installed."""
    calls = []

    def handler(tag):
        calls.append(tag)
        if len(calls) == 2:
            loop.call_soon(signal.raise_signal, SIGUSR1)
        elif len(calls) == 3:
            loop.stop()

    def trigger():
        signal.raise_signal(SIGUSR1)
        signal.raise_signal(SIGUSR1)

    loop.add_signal_handler(SIGUSR1, handler, "t")
    loop.call_soon(trigger)
    assert not run_with_watchdog(loop)
    assert calls == ["t", "t", "t"]


def test_signal_between_runs_is_handled_at_next_run(loop):
    """A signal that arrives while the loop is not running is handled once it runs."""
    calls = []

    def handler():
        calls.append(loop.is_running())
        loop.stop()

    loop.add_signal_handler(SIGUSR1, handler)
    # Run once so the loop has been through a run_forever before the signal.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == []

    signal.raise_signal(SIGUSR1)
    assert calls == []  # nothing runs while the loop does not
    assert not run_with_watchdog(loop)
    assert calls == [True]


def test_pending_signal_of_removed_handler_is_dropped(loop):
    """A signal received while the loop was stopped, whose handler is then removed, does
    not run the removed handler at the next run."""
    calls = []

    def handler(tag):
        calls.append(tag)
        if tag == "usr2":
            loop.stop()

    loop.add_signal_handler(SIGUSR1, handler, "usr1")
    loop.add_signal_handler(SIGUSR2, handler, "usr2")
    signal.raise_signal(SIGUSR1)
    signal.raise_signal(SIGUSR2)
    assert loop.remove_signal_handler(SIGUSR1) is True
    assert not run_with_watchdog(loop)
    assert calls == ["usr2"]


# --------------------------------------------------------------------------
# Context
# --------------------------------------------------------------------------


def test_handler_runs_in_context_copied_at_add_time(loop):
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    def handler():
        seen.append(var.get())
        var.set("set-by-handler")
        if len(seen) == 1:
            loop.call_soon(signal.raise_signal, SIGUSR1)
        else:
            loop.stop()

    var.set("at-add")
    loop.add_signal_handler(SIGUSR1, handler)
    var.set("after-add")
    assert not raise_and_run(loop, SIGUSR1)
    # First run: the value when add_signal_handler was called, not the later one.
    # Second run: the context was copied once, so the handler's own change persists
    # (the same Handle, hence the same Context, is reused for every delivery).
    assert seen == ["at-add", "set-by-handler"]
    # The handler's changes never leak into the caller's context.
    assert var.get() == "after-add"


def test_context_of_add_from_a_task(loop):
    """Added from inside a task: the handler sees the task's context at add time."""
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    async def main():
        var.set("task-value")
        done = asyncio.Event()

        def handler():
            seen.append(var.get())
            done.set()

        loop.add_signal_handler(SIGUSR2, handler)
        var.set("changed-later")
        signal.raise_signal(SIGUSR2)
        await done.wait()

    loop.run_until_complete(main())
    assert seen == ["task-value"]
    assert var.get() == "unset"


# --------------------------------------------------------------------------
# Several signals, several handlers, replacing
# --------------------------------------------------------------------------


def test_several_signals_with_their_own_handlers(loop):
    calls = []

    def make(name):
        def handler(*args):
            calls.append((name, args))
            if len(calls) == 3:
                loop.stop()

        return handler

    loop.add_signal_handler(SIGUSR1, make("h1"), 1)
    loop.add_signal_handler(SIGUSR2, make("h2"), 2, "two")
    loop.add_signal_handler(signal.SIGALRM, make("h3"))
    for sig in (SIGUSR1, SIGUSR2, signal.SIGALRM):
        assert_installed(sig)

    def trigger():
        # Handlers run in delivery order.
        signal.raise_signal(SIGUSR2)
        signal.raise_signal(signal.SIGALRM)
        signal.raise_signal(SIGUSR1)

    loop.call_soon(trigger)
    assert not run_with_watchdog(loop)
    assert calls == [("h2", (2, "two")), ("h3", ()), ("h1", (1,))]
    for sig in (SIGUSR1, SIGUSR2, signal.SIGALRM):
        assert loop.remove_signal_handler(sig) is True
        assert signal.getsignal(sig) is signal.SIG_DFL


def test_same_handler_for_several_signals(loop):
    got = []

    def handler(sig):
        got.append(sig)
        if len(got) == 2:
            loop.stop()

    loop.add_signal_handler(SIGUSR1, handler, SIGUSR1)
    loop.add_signal_handler(SIGUSR2, handler, SIGUSR2)
    loop.call_soon(signal.raise_signal, SIGUSR1)
    loop.call_soon(signal.raise_signal, SIGUSR2)
    assert not run_with_watchdog(loop)
    assert got == [SIGUSR1, SIGUSR2]


def test_replacing_the_handler_of_a_signal(loop):
    calls = []

    def old(*args):
        calls.append(("old", args))

    def new(*args):
        calls.append(("new", args))
        loop.stop()

    loop.add_signal_handler(SIGUSR1, old, "o")
    loop.add_signal_handler(SIGUSR1, new, "n")
    assert_installed(SIGUSR1)
    assert not raise_and_run(loop, SIGUSR1)
    assert calls == [("new", ("n",))]
    # One entry per signal: removed once.
    assert loop.remove_signal_handler(SIGUSR1) is True
    assert loop.remove_signal_handler(SIGUSR1) is False
    assert signal.getsignal(SIGUSR1) is signal.SIG_DFL


def test_replacing_while_a_signal_is_pending(loop):
    """The handler in place when the loop processes the signal is the one that runs."""
    calls = []

    def old():
        calls.append("old")

    def new():
        calls.append("new")
        loop.stop()

    loop.add_signal_handler(SIGUSR1, old)
    signal.raise_signal(SIGUSR1)
    loop.add_signal_handler(SIGUSR1, new)
    assert not run_with_watchdog(loop)
    assert calls == ["new"]


# --------------------------------------------------------------------------
# remove_signal_handler
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sig,default",
    [
        (SIGUSR1, signal.SIG_DFL),
        (signal.SIGHUP, signal.SIG_DFL),
        (signal.SIGCHLD, signal.SIG_DFL),
        (signal.SIGINT, signal.default_int_handler),
    ],
    ids=["SIGUSR1", "SIGHUP", "SIGCHLD", "SIGINT"],
)
def test_remove_returns_true_then_false_and_restores_default(loop, sig, default):
    assert loop.remove_signal_handler(sig) is False  # nothing installed yet
    loop.add_signal_handler(sig, lambda: None)
    assert_installed(sig)
    assert loop.remove_signal_handler(sig) is True
    assert signal.getsignal(sig) is default
    assert loop.remove_signal_handler(sig) is False
    assert signal.getsignal(sig) is default


def test_sigint_handler_replaces_keyboard_interrupt(loop):
    """With a handler, SIGINT runs it instead of raising KeyboardInterrupt; after
    removal SIGINT raises KeyboardInterrupt again."""
    calls = []
    loop.add_signal_handler(signal.SIGINT, stopping_handler(loop, calls), "sigint")
    assert not raise_and_run(loop, signal.SIGINT)  # no KeyboardInterrupt escaped
    assert calls == [("sigint",)]

    assert loop.remove_signal_handler(signal.SIGINT) is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    assert calls == [("sigint",)]


def test_removed_handler_does_not_run(loop):
    """After removal the loop no longer reacts to the signal (SIGCHLD, default: ignored)."""
    calls = []
    loop.add_signal_handler(signal.SIGCHLD, calls.append, "chld")
    assert loop.remove_signal_handler(signal.SIGCHLD) is True

    def trigger():
        signal.raise_signal(signal.SIGCHLD)
        loop.call_soon(loop.stop)

    loop.call_soon(trigger)
    assert not run_with_watchdog(loop)
    assert calls == []


def test_remove_from_handler_while_running_leaves_no_wakeup_fd(loop):
    """Removing the last handler (here from inside the handler) drops the loop's wake-up
    fd, as stdlib does: it must not be re-installed when run_forever returns, and is
    not left dangling once the loop is closed."""
    assert _get_wakeup_fd() == -1
    calls = []

    def handler():
        calls.append(loop.remove_signal_handler(SIGUSR1))
        loop.stop()

    loop.add_signal_handler(SIGUSR1, handler)
    assert _get_wakeup_fd() != -1
    assert not raise_and_run(loop, SIGUSR1)
    assert calls == [True]
    assert signal.getsignal(SIGUSR1) is signal.SIG_DFL
    assert _get_wakeup_fd() == -1
    loop.close()
    assert _get_wakeup_fd() == -1


def test_remove_all_handlers_clears_wakeup_fd(loop):
    loop.add_signal_handler(SIGUSR1, lambda: None)
    loop.add_signal_handler(SIGUSR2, lambda: None)
    assert _get_wakeup_fd() != -1
    assert loop.remove_signal_handler(SIGUSR1) is True
    assert _get_wakeup_fd() != -1  # SIGUSR2's handler still needs it
    assert loop.remove_signal_handler(SIGUSR2) is True
    assert _get_wakeup_fd() == -1


# --------------------------------------------------------------------------
# Errors (exactly stdlib's)
# --------------------------------------------------------------------------


def assert_add_and_remove_raise(loop, sig, exc_type, message):
    """add_signal_handler and remove_signal_handler both raise exactly ``exc_type(message)``."""
    with pytest.raises(exc_type) as info:
        loop.add_signal_handler(sig, lambda: None)
    assert str(info.value) == message
    with pytest.raises(exc_type) as info:
        loop.remove_signal_handler(sig)
    assert str(info.value) == message


@pytest.mark.parametrize("sig", ["SIGUSR1", 1.0, None, b"\x0a"], ids=["str", "float", "None", "bytes"])
def test_non_int_signal_is_type_error(loop, sig):
    assert_add_and_remove_raise(loop, sig, TypeError, f"sig must be an int, not {sig!r}")


@pytest.mark.parametrize("sig", [0, -1, signal.NSIG, 1000], ids=["0", "-1", "NSIG", "1000"])
def test_invalid_signal_number_is_value_error(loop, sig):
    assert_add_and_remove_raise(loop, sig, ValueError, f"invalid signal number {sig}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["SIGKILL", "SIGSTOP"])
def test_uncatchable_signal_is_runtime_error(loop, sig):
    assert _get_wakeup_fd() == -1
    with pytest.raises(RuntimeError) as info:
        loop.add_signal_handler(sig, lambda: None)
    assert str(info.value) == f"sig {int(sig)} cannot be caught"
    assert type(info.value) is RuntimeError
    assert signal.getsignal(sig) is signal.SIG_DFL
    # Nothing registered, and the wake-up fd it set up was dropped again.
    assert loop.remove_signal_handler(sig) is False
    assert _get_wakeup_fd() == -1


def test_uncatchable_signal_keeps_other_handlers_working(loop):
    calls = []
    loop.add_signal_handler(SIGUSR1, stopping_handler(loop, calls), "usr1")
    with pytest.raises(RuntimeError, match=f"^sig {int(signal.SIGKILL)} cannot be caught$"):
        loop.add_signal_handler(signal.SIGKILL, lambda: None)
    assert _get_wakeup_fd() != -1
    assert not raise_and_run(loop, SIGUSR1)
    assert calls == [("usr1",)]


async def _coro_func():
    pass


@pytest.mark.parametrize("kind", ["coroutine-function", "coroutine-object", "partial"])
def test_coroutine_callback_is_type_error(loop, kind):
    if kind == "coroutine-function":
        callback = _coro_func
    elif kind == "coroutine-object":
        callback = _coro_func()
    else:
        callback = functools.partial(_coro_func)
    try:
        with pytest.raises(TypeError) as info:
            loop.add_signal_handler(SIGUSR1, callback)
    finally:
        if kind == "coroutine-object":
            callback.close()
    assert str(info.value) == "coroutines cannot be used with add_signal_handler()"
    assert signal.getsignal(SIGUSR1) is signal.SIG_DFL
    assert loop.remove_signal_handler(SIGUSR1) is False


def test_add_from_non_main_thread_is_runtime_error(loop):
    errors = []

    def body():
        try:
            loop.add_signal_handler(SIGUSR1, lambda: None)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(5)
    assert len(errors) == 1
    assert type(errors[0]) is RuntimeError
    assert "main thread" in str(errors[0])
    assert signal.getsignal(SIGUSR1) is signal.SIG_DFL
    assert loop.remove_signal_handler(SIGUSR1) is False


def test_add_from_loop_running_in_non_main_thread_is_runtime_error(new_loop):
    """A loop running in a worker thread cannot take signal handlers."""
    loop = new_loop()
    errors = []

    def callback():
        try:
            loop.add_signal_handler(SIGUSR1, lambda: None)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)
        loop.stop()

    def body():
        loop.call_soon(callback)
        loop.run_forever()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert type(errors[0]) is RuntimeError
    assert signal.getsignal(SIGUSR1) is signal.SIG_DFL


def test_add_after_close_is_runtime_error(loop):
    loop.close()
    with pytest.raises(RuntimeError) as info:
        loop.add_signal_handler(SIGUSR1, lambda: None)
    assert str(info.value) == "Event loop is closed"
    assert signal.getsignal(SIGUSR1) is signal.SIG_DFL
    # stdlib checks the callback and the signal before the loop state.
    with pytest.raises(TypeError, match="^coroutines cannot be used"):
        loop.add_signal_handler(SIGUSR1, _coro_func)
    with pytest.raises(TypeError, match="^sig must be an int"):
        loop.add_signal_handler("SIGUSR1", lambda: None)
    with pytest.raises(ValueError, match="^invalid signal number 0$"):
        loop.add_signal_handler(0, lambda: None)
    # Removing on a closed loop is no error: there is nothing to remove.
    assert loop.remove_signal_handler(SIGUSR1) is False


# --------------------------------------------------------------------------
# SIGCHLD
# --------------------------------------------------------------------------


def test_sigchld_from_a_real_child(loop):
    calls = []
    procs = []

    def handler(tag):
        calls.append(tag)
        proc = procs[0]
        if proc.poll() is not None:  # a stray SIGCHLD would not stop the loop
            loop.stop()

    def spawn():
        procs.append(subprocess.Popen([sys.executable, "-c", "pass"]))

    loop.add_signal_handler(signal.SIGCHLD, handler, "chld")
    assert_installed(signal.SIGCHLD)
    loop.call_soon(spawn)
    try:
        stopped_by_watchdog = run_with_watchdog(loop)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert not stopped_by_watchdog, f"no SIGCHLD handled within {WATCHDOG:.1f} s"
    assert calls and set(calls) == {"chld"}
    assert procs[0].returncode == 0
    assert loop.remove_signal_handler(signal.SIGCHLD) is True
    assert signal.getsignal(signal.SIGCHLD) is signal.SIG_DFL


# --------------------------------------------------------------------------
# close()
# --------------------------------------------------------------------------


def test_close_removes_handlers(loop):
    calls = []
    loop.add_signal_handler(SIGUSR1, calls.append, 1)
    loop.add_signal_handler(signal.SIGCHLD, calls.append, 2)
    loop.add_signal_handler(signal.SIGINT, calls.append, 3)
    loop.call_soon(loop.stop)
    loop.run_forever()
    for sig in (SIGUSR1, signal.SIGCHLD, signal.SIGINT):
        assert_installed(sig)

    loop.close()
    assert signal.getsignal(SIGUSR1) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGCHLD) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert _get_wakeup_fd() == -1
    for sig in (SIGUSR1, signal.SIGCHLD, signal.SIGINT):
        assert loop.remove_signal_handler(sig) is False
    # The closed loop's handlers are really gone: SIGCHLD is back to "ignore" and
    # SIGINT raises KeyboardInterrupt again.
    signal.raise_signal(signal.SIGCHLD)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    assert calls == []


def test_close_after_signal_received_in_run(loop):
    calls = []
    loop.add_signal_handler(SIGUSR2, stopping_handler(loop, calls), "usr2")
    assert not raise_and_run(loop, SIGUSR2)
    assert calls == [("usr2",)]
    loop.close()
    assert signal.getsignal(SIGUSR2) is signal.SIG_DFL
    assert _get_wakeup_fd() == -1


# --------------------------------------------------------------------------
# Exceptions from handlers
# --------------------------------------------------------------------------


def test_handler_exception_goes_to_exception_handler(loop):
    contexts = []
    calls = []
    boom = ZeroDivisionError("boom")

    def handler(arg):
        calls.append(arg)
        if len(calls) == 1:
            raise boom
        loop.stop()

    def exc_handler(lp, context):
        contexts.append((lp, context))
        # The loop keeps running and the handler stays installed.
        signal.raise_signal(SIGUSR1)

    loop.set_exception_handler(exc_handler)
    loop.add_signal_handler(SIGUSR1, handler, "arg")
    assert not raise_and_run(loop, SIGUSR1)
    assert calls == ["arg", "arg"]
    assert len(contexts) == 1
    lp, context = contexts[0]
    assert lp is loop
    assert context["message"].startswith("Exception in callback")
    assert "handler" in context["message"]
    assert context["exception"] is boom
    assert "handle" in context


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_handler_base_exception_propagates_from_run_forever(loop, exc_type):
    contexts = capture_exception_contexts(loop)

    def handler():
        raise exc_type("out")

    loop.add_signal_handler(SIGUSR1, handler)
    loop.call_soon(signal.raise_signal, SIGUSR1)
    with pytest.raises(exc_type):
        run_with_watchdog(loop)
    assert not loop.is_running()
    assert contexts == []
