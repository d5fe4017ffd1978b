"""Slow paths of the compiled core, kept in Python so their text matches asyncio's exactly.

The core calls these only on errors, in debug mode and for reprs; they use asyncio's own
formatting helpers.
"""

from __future__ import annotations

import logging
import sys
import threading
from asyncio import base_events, coroutines, format_helpers

logger = logging.getLogger("asyncio")


def _callback_error(loop, handle, exc, callback, args):
    """A callback raised: report it as asyncio's ``Handle._run`` does."""
    cb = format_helpers._format_callback_source(callback, args)
    context = {
        "message": f"Exception in callback {cb}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    loop.call_exception_handler(context)


def _handle_repr(handle):
    info = [type(handle).__name__]
    if handle._cancelled:
        info.append("cancelled")
    if hasattr(handle, "_when"):
        info.append(f"when={handle._when}")
    callback = handle._callback
    if callback is not None:
        info.append(format_helpers._format_callback_source(callback, handle._args))
    tb = handle._source_traceback
    if tb:
        frame = tb[-1]
        info.append(f"created at {frame[0]}:{frame[1]}")
    return "<{}>".format(" ".join(info))


def _debug_check(loop, method, callback, check_thread):
    """asyncio's debug-mode checks of ``call_soon``/``call_at``/``call_soon_threadsafe``."""
    if check_thread:
        thread_id = loop._thread_id
        if thread_id is not None and threading.get_ident() != thread_id:
            raise RuntimeError(
                "Non-thread-safe operation invoked on an event loop other "
                "than the current one"
            )
    if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
        raise TypeError(f"coroutines cannot be used with {method}()")
    if not callable(callback):
        raise TypeError(
            f"a callable object was expected by {method}(), got {callback!r}"
        )


def _extract_stack():
    """The stack of whoever called the loop method (the compiled method has no frame)."""
    return format_helpers.extract_stack(sys._getframe(1))


def _check_slow_callback(loop, handle, dt):
    if dt >= loop.slow_callback_duration:
        logger.warning(
            "Executing %s took %.3f seconds", base_events._format_handle(handle), dt
        )
