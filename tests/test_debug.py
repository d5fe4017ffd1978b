"""Debug mode: get_debug/set_debug, slow callbacks, and debug-only checks."""

import asyncio
import logging
import os
import re
import sys
import threading
import time

import pytest
from conftest import child_code, child_env, run_python


def expected_default_debug():
    # asyncio.coroutines._is_debug_mode()
    return bool(
        sys.flags.dev_mode
        or (not sys.flags.ignore_environment and os.environ.get("PYTHONASYNCIODEBUG"))
    )


def test_default_debug_follows_environment(loop):
    assert loop.get_debug() is expected_default_debug()


def test_set_debug(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_set_debug_while_running(loop):
    seen = []

    async def main():
        loop.set_debug(True)
        seen.append(loop.get_debug())
        await asyncio.sleep(0)
        loop.set_debug(False)
        seen.append(loop.get_debug())

    loop.run_until_complete(main())
    assert seen == [True, False]


def test_slow_callback_duration_default(loop):
    assert loop.slow_callback_duration == pytest.approx(0.1)


def slow_callback():
    time.sleep(0.06)


def run_slow_callback(loop, caplog, *, debug, threshold):
    """Run ``slow_callback`` once with the given debug mode and slow_callback_duration;
    returns the records the asyncio logger emitted."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    loop.set_debug(debug)
    loop.slow_callback_duration = threshold
    loop.call_soon(slow_callback)
    loop.call_soon(loop.stop)
    loop.run_forever()
    return [r for r in caplog.records if r.name == "asyncio"]


def test_slow_callback_warning(loop, caplog):
    records = run_slow_callback(loop, caplog, debug=True, threshold=0.05)
    records = [r for r in records if r.levelno == logging.WARNING]
    assert len(records) == 1
    message = records[0].getMessage()
    assert re.match(r"Executing .*slow_callback.* took \d+\.\d{3} seconds$", message), message


def test_no_slow_callback_warning_without_debug(loop, caplog):
    assert not run_slow_callback(loop, caplog, debug=False, threshold=0.05)


def test_fast_callback_no_warning_in_debug(loop, caplog):
    records = run_slow_callback(loop, caplog, debug=True, threshold=1.0)
    assert not [r for r in records if r.levelno >= logging.WARNING]


DEBUG_CHILD = """
loop = new_event_loop()
print(loop.get_debug())
loop.close()
"""


@pytest.mark.parametrize(
    "mode,args,extra_env,expected",
    [
        ("env", [], {"PYTHONASYNCIODEBUG": "1"}, "True"),
        ("devmode", ["-X", "dev"], {}, "True"),
        ("plain", [], {}, "False"),
    ],
)
def test_debug_from_environment_in_child(impl, mode, args, extra_env, expected):
    env = child_env(extra_env, drop=("PYTHONASYNCIODEBUG", "PYTHONDEVMODE"))
    proc = run_python([*args, "-c", child_code(impl, DEBUG_CHILD)], env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


# -- debug-only checks ----------------------------------------------------------------


@pytest.fixture
def debug_loop(loop):
    loop.set_debug(True)
    return loop


def test_debug_call_soon_from_other_thread(debug_loop):
    loop = debug_loop
    errors = {}
    fut = loop.create_future()

    def worker():
        for name, call in [
            ("call_soon", lambda: loop.call_soon(print)),
            ("call_later", lambda: loop.call_later(1, print)),
            ("call_at", lambda: loop.call_at(loop.time() + 1, print)),
        ]:
            try:
                call()
            except RuntimeError as exc:
                errors[name] = str(exc)
        loop.call_soon_threadsafe(fut.set_result, None)

    thread = threading.Thread(target=worker)
    loop.call_soon(thread.start)
    loop.run_until_complete(fut)
    thread.join()
    message = "Non-thread-safe operation invoked on an event loop other than the current one"
    assert errors == {"call_soon": message, "call_later": message, "call_at": message}


def test_debug_call_soon_threadsafe_from_other_thread_allowed(debug_loop):
    loop = debug_loop
    fut = loop.create_future()
    thread = threading.Thread(target=lambda: loop.call_soon_threadsafe(fut.set_result, "ok"))
    loop.call_soon(thread.start)
    assert loop.run_until_complete(fut) == "ok"
    thread.join()


async def coroutine_function():
    pass


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe"])
def test_debug_rejects_coroutine_function(debug_loop, method):
    with pytest.raises(TypeError, match=rf"^coroutines cannot be used with {method}\(\)$"):
        getattr(debug_loop, method)(coroutine_function)


def test_debug_rejects_coroutine_function_timers(debug_loop):
    with pytest.raises(TypeError, match=r"^coroutines cannot be used with call_at\(\)$"):
        debug_loop.call_at(debug_loop.time() + 1, coroutine_function)
    with pytest.raises(TypeError, match=r"^coroutines cannot be used with call_(at|later)\(\)$"):
        debug_loop.call_later(1, coroutine_function)


def test_debug_rejects_coroutine_object(debug_loop):
    coro = coroutine_function()
    try:
        with pytest.raises(TypeError, match=r"^coroutines cannot be used with call_soon\(\)$"):
            debug_loop.call_soon(coro)
    finally:
        coro.close()


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe"])
@pytest.mark.parametrize("bad", [1, None, "text"], ids=repr)
def test_debug_rejects_non_callable(debug_loop, method, bad):
    expected = f"a callable object was expected by {method}(), got {bad!r}"
    with pytest.raises(TypeError, match=f"^{re.escape(expected)}$"):
        getattr(debug_loop, method)(bad)


def test_debug_run_in_executor_rejects_coroutine_function(debug_loop):
    with pytest.raises(TypeError, match=r"coroutines cannot be used with run_in_executor\(\)"):
        debug_loop.run_in_executor(None, coroutine_function)


def test_debug_handle_repr_keeps_callback_after_cancel(debug_loop):
    def named_debug_callback():
        pass

    handle = debug_loop.call_soon(named_debug_callback)
    handle.cancel()
    text = repr(handle)
    assert "cancelled" in text
    assert "named_debug_callback" in text
