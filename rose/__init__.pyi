"""Types of rose's public API (the package itself is untyped Python over a typed core)."""

import asyncio
import concurrent.futures
import socket
import sys
from _typeshed import FileDescriptorLike
from asyncio import AbstractEventLoop as _Abstract
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from typing_extensions import TypeVarTuple, deprecated

from ._rose import EventLoop
from .metrics import (
    HISTOGRAM_BOUNDS as HISTOGRAM_BOUNDS,
    LoopMetrics as LoopMetrics,
    format_stats as format_stats,
    get_slow_callback_threshold as get_slow_callback_threshold,
    metrics_text as metrics_text,
    set_callback_timing as set_callback_timing,
    set_slow_callback_threshold as set_slow_callback_threshold,
)

if sys.version_info >= (3, 14):
    __all__ = ["Loop", "install", "new_event_loop", "run", "LoopMetrics", "HISTOGRAM_BOUNDS", "metrics_text", "format_stats", "set_callback_timing", "set_slow_callback_threshold", "get_slow_callback_threshold"]
else:
    __all__ = ["Loop", "install", "new_event_loop", "run", "LoopMetrics", "HISTOGRAM_BOUNDS", "metrics_text", "format_stats", "set_callback_timing", "set_slow_callback_threshold", "get_slow_callback_threshold", "EventLoopPolicy"]
__version__: str

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")
_P = TypeVar("_P", bound=asyncio.BaseProtocol)

# The class ignores [misc]: call_soon and the other scheduling methods return rose's own
# Handle and TimerHandle, which are not subclasses of asyncio's (README, "Differences from
# asyncio"); they have the same methods.
class Loop(EventLoop, _Abstract):  # type: ignore[misc]
    """An asyncio event loop on a tokio reactor. Create it with `rose.new_event_loop()`."""

    def __init__(self) -> None: ...
    def __del__(self) -> None: ...
    def metrics(self) -> LoopMetrics:
        """A snapshot of this loop's counters (`rose.LoopMetrics`)."""
    def set_slow_callback_threshold(self, seconds: float | None) -> None:
        """Log callbacks that take at least `seconds` (None: off), without debug mode."""
    def get_slow_callback_threshold(self) -> float | None:
        """The slow-callback threshold in force for this loop, in seconds, or None."""
    # Where asyncio's implementation differs from the abstract declaration (parameter names,
    # removed parameters), the implementation's.
    def add_reader(
        self, fd: FileDescriptorLike, callback: Callable[[*_Ts], Any], *args: *_Ts
    ) -> None: ...
    def add_writer(
        self, fd: FileDescriptorLike, callback: Callable[[*_Ts], Any], *args: *_Ts
    ) -> None: ...
    def add_signal_handler(
        self, sig: int, callback: Callable[[*_Ts], object], *args: *_Ts
    ) -> None: ...
    def run_in_executor(
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[[*_Ts], _T],
        *args: *_Ts,
    ) -> asyncio.Future[_T]: ...
    async def sock_recv(self, sock: socket.socket, n: int) -> bytes: ...
    # typeshed's abstract declaration still has reuse_address, which asyncio's has not.
    async def create_datagram_endpoint(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], _P],
        local_addr: tuple[str, int] | str | None = None,
        remote_addr: tuple[str, int] | str | None = None,
        *,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        reuse_port: bool | None = None,
        allow_broadcast: bool | None = None,
        sock: socket.socket | None = None,
    ) -> tuple[asyncio.DatagramTransport, _P]: ...
    # The rest of asyncio's loop API, with the signatures asyncio declares for it (rose runs
    # each version's own code or behaves as it; see the README, "How it is built").
    call_exception_handler = _Abstract.call_exception_handler
    close = _Abstract.close
    connect_accepted_socket = _Abstract.connect_accepted_socket
    connect_read_pipe = _Abstract.connect_read_pipe
    connect_write_pipe = _Abstract.connect_write_pipe
    create_connection = _Abstract.create_connection
    create_future = _Abstract.create_future
    create_server = _Abstract.create_server
    create_task = _Abstract.create_task
    create_unix_connection = _Abstract.create_unix_connection
    create_unix_server = _Abstract.create_unix_server
    default_exception_handler = _Abstract.default_exception_handler
    get_exception_handler = _Abstract.get_exception_handler
    get_task_factory = _Abstract.get_task_factory
    getaddrinfo = _Abstract.getaddrinfo
    getnameinfo = _Abstract.getnameinfo
    remove_reader = _Abstract.remove_reader
    remove_signal_handler = _Abstract.remove_signal_handler
    remove_writer = _Abstract.remove_writer
    run_forever = _Abstract.run_forever
    run_until_complete = _Abstract.run_until_complete
    sendfile = _Abstract.sendfile
    set_debug = _Abstract.set_debug
    set_default_executor = _Abstract.set_default_executor
    set_exception_handler = _Abstract.set_exception_handler
    set_task_factory = _Abstract.set_task_factory
    shutdown_asyncgens = _Abstract.shutdown_asyncgens
    shutdown_default_executor = _Abstract.shutdown_default_executor
    sock_accept = _Abstract.sock_accept
    sock_connect = _Abstract.sock_connect
    sock_recv_into = _Abstract.sock_recv_into
    sock_recvfrom = _Abstract.sock_recvfrom
    sock_recvfrom_into = _Abstract.sock_recvfrom_into
    sock_sendall = _Abstract.sock_sendall
    sock_sendfile = _Abstract.sock_sendfile
    sock_sendto = _Abstract.sock_sendto
    start_tls = _Abstract.start_tls
    subprocess_exec = _Abstract.subprocess_exec
    subprocess_shell = _Abstract.subprocess_shell

def new_event_loop() -> Loop:
    """A new rose event loop."""

if sys.version_info >= (3, 14):
    @deprecated("asyncio's policy system is deprecated: use rose.run() or asyncio.Runner(loop_factory=rose.new_event_loop)")
    def install() -> None:
        """Make rose the event loop of every later `asyncio.new_event_loop()`/`asyncio.run()`."""

else:
    def install() -> None:
        """Make rose the event loop of every later `asyncio.new_event_loop()`/`asyncio.run()`."""

def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """Run a coroutine on a new rose loop and return its result, like `asyncio.run`."""

if sys.version_info >= (3, 14):
    @deprecated("asyncio's policy system is deprecated: use rose.run() or asyncio.Runner(loop_factory=rose.new_event_loop)")
    class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
        """An event-loop policy whose loops are rose loops."""

else:
    class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
        """An event-loop policy whose loops are rose loops."""
