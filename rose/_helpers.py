"""Slow paths of the compiled core, kept in Python so their text matches asyncio's exactly.

The core calls these only on errors, in debug mode and for reprs; they use asyncio's own
formatting helpers.
"""

from __future__ import annotations

import logging
import sys
import traceback
from asyncio import base_events, format_helpers, futures

from . import _compat

logger = logging.getLogger("asyncio")


def _callback_source(callback, args, debug):
    # 3.13+ shows a callback's arguments only in debug mode.
    if _compat.CALLBACK_SOURCE_TAKES_DEBUG:
        return format_helpers._format_callback_source(callback, args, debug=debug)
    return format_helpers._format_callback_source(callback, args)


def _with_frame(exc):
    try:
        raise exc
    except BaseException as raised:
        return raised


def _callback_error(loop, handle, exc, callback, args):
    """A callback raised: report it as asyncio's ``Handle._run`` does."""
    if exc.__traceback__ is None:
        # A C-level callable (`Future.set_result`, ...) raised straight into the core: no
        # Python frame saw it. asyncio's exception passes through `Handle._run`, so the
        # default handler prints a traceback; give this one a frame too.
        exc = _with_frame(exc)
    cb = _callback_source(callback, args, loop.get_debug())
    context = {
        "message": f"Exception in callback {cb}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    loop.call_exception_handler(context)


def _handle_repr(handle, debug, threadsafe):
    """asyncio's Handle/TimerHandle repr (`Handle._repr_info`, with the loop's debug flag of
    when the handle was made; asyncio asks the loop, which rose's handles do not reference).
    A `call_soon_threadsafe` handle is asyncio's `_ThreadSafeHandle` where asyncio has one."""
    name = "_ThreadSafeHandle" if threadsafe and _compat.THREADSAFE_HANDLES else None
    info = [name or type(handle).__name__]
    if handle._cancelled:
        info.append("cancelled")
    if handle._callback is not None:
        info.append(_callback_source(handle._callback, handle._args, debug))
    if handle._source_traceback:
        frame = handle._source_traceback[-1]
        info.append(f"created at {frame[0]}:{frame[1]}")
    if hasattr(handle, "_when"):  # TimerHandle._repr_info
        info.insert(2 if handle._cancelled else 1, f"when={handle._when}")
    return "<{}>".format(" ".join(info))


def _not_bytes_like(data, method):
    """asyncio's TypeError for `transport.write()`/`sendto()` of something not bytes-like."""
    return TypeError(f"{_compat.type_error_prefix(method)}, not {type(data).__name__!r}")


def _debug_check(loop, method, callback, check_thread):
    """asyncio's debug-mode checks of ``call_soon``/``call_at``/``call_soon_threadsafe``
    (the loop has asyncio's own ``_check_thread`` and ``_check_callback``)."""
    if check_thread:
        loop._check_thread()
    loop._check_callback(callback, method)


def _extract_stack():
    """The stack of whoever called the loop method (the compiled method has no frame).

    A native thread calling in has no Python frame at all (pyo3-async-runtimes' tokio runtime
    calls ``call_soon_threadsafe`` from a blocking-pool thread): an empty stack then."""
    caller = sys._getframe(0).f_back
    if caller is None:
        return traceback.StackSummary()
    return format_helpers.extract_stack(caller)


def _notable_callback(loop, handle, ns, slow):
    """A callback took `ns` nanoseconds, long enough for the metrics' longest callbacks or
    over the slow-callback threshold (`slow`). A slow one is logged as asyncio's debug mode
    logs it (asyncio's own formatting of the handle, which costs tens of microseconds); the
    longest ones are named briefly (what ran, without source locations), which the run step
    can afford whenever a callback beats the shortest of them."""
    if slow:
        try:
            what = base_events._format_handle(handle)
        except Exception:  # noqa: BLE001 -- a user's repr failing must not stop the loop
            what = object.__repr__(handle)
        logger.warning("Executing %s took %.3f seconds", what, ns / 1e9)
    return _brief_handle(handle)


def _brief_handle(handle):
    """`<Handle name()>`, or for a task's step `<Task 'Task-1' coro=main()>`: the callback's
    qualified name (or its type's), no arguments, no source location."""
    try:
        callback = handle._callback
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, futures.Future) and hasattr(owner, "get_coro"):
            coro = owner.get_coro()
            name = getattr(coro, "__qualname__", None) or type(coro).__name__
            return f"<Task {owner.get_name()!r} coro={name}()>"
        if callback is None:
            return f"<{type(handle).__name__}>"
        name = getattr(callback, "__qualname__", None) or f"{type(callback).__name__} object"
        return f"<{type(handle).__name__} {name}()>"
    except Exception:  # noqa: BLE001 -- a user's attribute failing must not stop the loop
        return object.__repr__(handle)


def _check_slow_callback(loop, handle, dt):
    if dt >= loop.slow_callback_duration:
        logger.warning(
            "Executing %s took %.3f seconds", base_events._format_handle(handle), dt
        )
