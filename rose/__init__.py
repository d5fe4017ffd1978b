"""rose: an asyncio event loop with a Rust core on a tokio reactor.

    import rose
    rose.run(main())                                   # like asyncio.run
    asyncio.Runner(loop_factory=rose.new_event_loop)   # explicit loop factory
    rose.install()                                     # make rose the default policy
    python -m rose app.py                              # run an unchanged asyncio program
"""

from __future__ import annotations

import asyncio
import os
from asyncio import events

from . import _rose
from .loop import Loop

__all__ = ("Loop", "EventLoopPolicy", "new_event_loop", "install", "run")
__version__ = "0.1.0"

os.register_at_fork(after_in_child=_rose._after_fork_child)


def new_event_loop() -> Loop:
    """A new rose event loop."""
    return Loop()


class EventLoopPolicy(events.BaseDefaultEventLoopPolicy):
    """An event-loop policy whose loops are rose loops."""

    def _loop_factory(self) -> Loop:
        return Loop()

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__}>"


def install() -> None:
    """Make rose the event loop of every later `asyncio.new_event_loop()`/`asyncio.run()`."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None):
    """Run a coroutine on a new rose loop and return its result, like `asyncio.run`."""
    if events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
