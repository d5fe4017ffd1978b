"""Slow paths of the compiled core, kept in Python so their text matches asyncio's exactly.

The core calls these only on errors, in debug mode and for reprs; they use asyncio's own
formatting helpers.
"""

from __future__ import annotations

import logging
import sys
from asyncio import base_events, events, format_helpers

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
    """asyncio's Handle/TimerHandle repr, from asyncio's own `_repr_info`."""
    info = events.Handle._repr_info(handle)
    if hasattr(handle, "_when"):  # TimerHandle._repr_info, which needs a real subclass
        info.insert(2 if handle._cancelled else 1, f"when={handle._when}")
    return "<{}>".format(" ".join(info))


def _debug_check(loop, method, callback, check_thread):
    """asyncio's debug-mode checks of ``call_soon``/``call_at``/``call_soon_threadsafe``
    (the loop has asyncio's own ``_check_thread`` and ``_check_callback``)."""
    if check_thread:
        loop._check_thread()
    loop._check_callback(callback, method)


def _extract_stack():
    """The stack of whoever called the loop method (the compiled method has no frame)."""
    return format_helpers.extract_stack(sys._getframe(1))


def _check_slow_callback(loop, handle, dt):
    if dt >= loop.slow_callback_duration:
        logger.warning(
            "Executing %s took %.3f seconds", base_events._format_handle(handle), dt
        )
