"""rose: an asyncio event loop with a Rust core on a tokio reactor.

    import rose
    rose.run(main())                                   # like asyncio.run
    asyncio.Runner(loop_factory=rose.new_event_loop)   # explicit loop factory
    rose.install()                                     # make rose the default policy
    python -m rose app.py                              # run an unchanged asyncio program

On Pythons that deprecate asyncio's policy system (3.14+), `rose.install()` and
`rose.EventLoopPolicy` issue the same DeprecationWarning as asyncio's own policy API;
`rose.run()` and `asyncio.Runner(loop_factory=rose.new_event_loop)` are the warning-free ways.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from asyncio import events
from collections.abc import Coroutine
from typing import Any, TypeVar

from . import _compat, _rose
from .loop import Loop
from .metrics import (
    HISTOGRAM_BOUNDS,
    LoopMetrics,
    format_stats,
    get_slow_callback_threshold,
    metrics_text,
    set_callback_timing,
    set_slow_callback_threshold,
)

__all__ = [
    "Loop",
    "new_event_loop",
    "install",
    "run",
    "LoopMetrics",
    "HISTOGRAM_BOUNDS",
    "metrics_text",
    "format_stats",
    "set_callback_timing",
    "set_slow_callback_threshold",
    "get_slow_callback_threshold",
]
__version__ = "0.1.0"

_T = TypeVar("_T")

os.register_at_fork(after_in_child=_rose._after_fork_child)


def new_event_loop() -> Loop:
    """A new rose event loop."""
    return Loop()


if _compat.POLICY_BASE is not None:

    class _EventLoopPolicy(_compat.POLICY_BASE):
        """An event-loop policy whose loops are rose loops (asyncio's Unix default policy
        otherwise, child-watcher methods included where the running asyncio has them)."""

        def _loop_factory(self) -> Loop:
            return Loop()

        def __repr__(self) -> str:
            return f"<{self.__class__.__name__}>"

    _EventLoopPolicy.__name__ = _EventLoopPolicy.__qualname__ = "EventLoopPolicy"
    if not _compat.POLICY_DEPRECATED:  # as asyncio leaves its policies out of __all__ there
        __all__.append("EventLoopPolicy")


def __getattr__(name: str) -> Any:
    # `rose.EventLoopPolicy` is looked up here so that, where asyncio deprecates its policy
    # classes, rose's warns as `asyncio.DefaultEventLoopPolicy` does.
    if name == "EventLoopPolicy" and _compat.POLICY_BASE is not None:
        if _compat.POLICY_DEPRECATED:
            warnings.warn(
                _compat.policy_deprecation_message("rose.EventLoopPolicy"),
                DeprecationWarning,
                stacklevel=2,
            )
        return _EventLoopPolicy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def install() -> None:
    """Make rose the event loop of every later `asyncio.new_event_loop()`/`asyncio.run()`.

    Where asyncio deprecates `set_event_loop_policy()` (3.14+), so is this: use `rose.run()`
    or `asyncio.Runner(loop_factory=rose.new_event_loop)`."""
    if _compat.POLICY_BASE is None:
        raise RuntimeError(
            "this Python has no event-loop policies: use rose.run() or "
            "asyncio.Runner(loop_factory=rose.new_event_loop)"
        )
    if _compat.POLICY_DEPRECATED:
        warnings.warn(
            _compat.policy_deprecation_message("rose.install"), DeprecationWarning, stacklevel=2
        )
    _compat.set_policy(_EventLoopPolicy())


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """Run a coroutine on a new rose loop and return its result, like `asyncio.run`."""
    if events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
