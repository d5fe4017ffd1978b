"""The compiled core of rose (`rose._rose`). Use `rose.Loop`, not these classes directly."""

import contextvars
from collections.abc import Callable
from typing import Any, final

from typing_extensions import disjoint_base

__all__ = ["EventLoop", "Handle", "TimerHandle", "_after_fork_child", "_install_fast_methods"]

@disjoint_base
class Handle:
    """A callback scheduled with `call_soon`/`call_soon_threadsafe` (or an fd watcher)."""

    def cancel(self) -> None:
        """Cancel the callback; it will not run. Drops the callback and its arguments."""
    def cancelled(self) -> bool: ...
    def get_context(self) -> contextvars.Context:
        """The context the callback runs in."""
    @property
    def _callback(self) -> Callable[..., object] | None: ...
    @property
    def _args(self) -> tuple[Any, ...] | None: ...
    @property
    def _cancelled(self) -> bool: ...
    @property
    def _context(self) -> contextvars.Context: ...
    _source_traceback: Any

@final
class TimerHandle(Handle):
    """A callback scheduled with `call_later`/`call_at`."""

    def when(self) -> float:
        """The absolute time (`loop.time()` clock) the callback is due."""
    @property
    def _when(self) -> float: ...
    @property
    def _scheduled(self) -> bool: ...

@disjoint_base
class EventLoop:
    """The compiled base of `rose.Loop`: ready queue, timer heap, reactor and run step."""

    _debug: bool
    _stopping: bool
    _thread_id: int | None
    @property
    def _closed(self) -> bool: ...
    def __new__(cls, *args: Any, **kwargs: Any) -> EventLoop: ...
    def time(self) -> float:
        """`time.monotonic()`'s clock, at full resolution."""
    def call_soon(
        self, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> Handle: ...
    def call_soon_threadsafe(
        self, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> Handle:
        """Like `call_soon`, from any thread; wakes the loop if it is sleeping."""
    def call_later(
        self, delay: float, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> TimerHandle: ...
    def call_at(
        self, when: float, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> TimerHandle: ...
    def stop(self) -> None: ...
    def is_running(self) -> bool: ...
    def is_closed(self) -> bool: ...
    def get_debug(self) -> bool: ...
    def _run_forever_inner(self) -> None: ...
    def _run_once(self) -> None: ...
    def _write_to_self(self) -> None: ...
    def _signal_wakeup_fd(self) -> int: ...
    def _make_handle(
        self, callback: Callable[..., object], args: tuple[Any, ...], context: contextvars.Context | None = None
    ) -> Handle: ...
    def _watch(self, fd: int, handle: Handle, write: bool) -> None:
        """Watch `fd` for reading or writing (level-triggered); replaces the previous handle."""
    def _unwatch(self, fd: int, write: bool) -> bool: ...
    def _add_callback(self, handle: Handle) -> None: ...
    def _watched(self, fd: int) -> tuple[Handle | None, Handle | None] | None: ...
    def _watched_fds(self) -> list[int]: ...
    def _close(self) -> None: ...

def _after_fork_child() -> None:
    """Mark every loop's reactor stale in a forked child (rebuilt on next use)."""

def _install_fast_methods(cls: type[EventLoop]) -> None:
    """Put the raw vectorcall versions of call_soon/call_soon_threadsafe/call_later/call_at
    on `cls` (a subclass of `EventLoop`)."""
