"""The compiled core of rose (`rose._rose`). Use `rose.Loop`, not these classes directly."""

import asyncio
import contextvars
import socket
from collections.abc import Callable
from typing import Any, final

from typing_extensions import disjoint_base

__all__ = [
    "AcceptedSocket",
    "EventLoop",
    "Handle",
    "SockOp",
    "TimerHandle",
    "_SelectorDatagramTransport",
    "_SelectorSocketTransport",
    "_HISTOGRAM_BOUNDS_NS",
    "_accept",
    "_after_fork_child",
    "_interface_addresses",
    "_dns_generation",
    "_get_slow_callback_threshold",
    "_install_fast_methods",
    "_install_transport_methods",
    "_set_callback_timing",
    "_set_slow_callback_threshold",
    "_set_threadsafe_handles",
    "_sock_try_recv",
    "_sock_try_recv_into",
    "_sock_try_send",
    "_sock_wait",
]

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

    _debug: Any
    _user_clock: bool
    _stopping: bool
    _thread_id: int | None
    @property
    def _closed(self) -> bool: ...
    def __new__(cls, *args: Any, **kwargs: Any) -> EventLoop: ...
    def _check_closed(self) -> None: ...
    def create_future(self) -> asyncio.Future[Any]:
        """`asyncio.futures.Future(loop=self)`, as asyncio's."""
    def create_task(self, coro: Any, *args: Any, **kwargs: Any) -> Any:
        """asyncio's `create_task()` (its common case in the core)."""
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
    def get_debug(self) -> Any: ...
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
    def _transport(self, fd: Any) -> Any:
        """The rose transport using `fd` (`loop._transports[fd]`), or None."""
    def _transport_items(self) -> list[tuple[int, Any]]: ...
    def _dns_lookup(self, name: str, v6: bool, resolv_conf: str) -> Any:
        """A future of `(status, canonical name or None, [address], ttl)`: one A (or AAAA)
        lookup of the absolute `name` with hickory on the loop's runtime (src/dns.rs); `ttl`
        is how many seconds the answer stays valid."""
    def _dns_reverse(self, addr: str, resolv_conf: str) -> Any:
        """A future of `(status, None, [name], ttl)`: the PTR names of the address `addr` with
        hickory on the loop's runtime (src/dns.rs)."""
    def _rust_sleep(self, seconds: float) -> Any:
        """Test hook: a future a tokio sleep on the loop's runtime completes with `seconds`."""
    def _rust_fail(self, seconds: float, errno: int) -> Any:
        """Test hook: a future failed with `OSError(errno)` after a tokio sleep of `seconds`."""
    def _rust_ready(self, value: Any) -> Any:
        """Test hook: an already-complete Rust future through rose's own bridge, resolving to
        `value` (benchmarks/bridge.py)."""
    # Test hooks of pyo3-async-runtimes on rose (src/async_runtime.rs): each returns the future
    # of `generic::future_into_py::<RoseRuntime, _, _>`, spawned on the *running* rose loop
    # (whichever loop the method is called on); RuntimeError("no running rose event loop")
    # where none runs on this thread.
    def _pyo3_async_sleep(self, seconds: float) -> Any:
        """Test hook: a tokio sleep of `seconds` on the loop's runtime, resolving to `seconds`."""
    def _pyo3_async_ready(self, value: Any) -> Any:
        """Test hook: an already-complete Rust future resolving to `value`."""
    def _pyo3_async_await(self, awaitable: Any) -> Any:
        """Test hook: Rust awaits `awaitable` (through `into_future`) and resolves to its result."""
    def _pyo3_async_current_loop(self) -> Any:
        """Test hook: resolves to the loop `get_current_loop` gives inside the Rust future."""
    def _pyo3_async_thread_ident(self) -> Any:
        """Test hook: resolves to `threading.get_ident()` of the thread that polled the Rust
        future."""
    @staticmethod
    def _pyo3_async_live() -> int:
        """Test hook: how many `_pyo3_async_sleep` Rust futures are alive (process-wide)."""
    def _close(self) -> None: ...
    def _metrics(self) -> dict[str, Any]:
        """The counters of `loop.metrics()` (rose/loop.py makes them a `LoopMetrics`)."""
    def _set_slow_callback_threshold(self, seconds: float | None) -> None: ...
    def _get_slow_callback_threshold(self) -> float | None: ...

_HISTOGRAM_BOUNDS_NS: list[int]

def _set_slow_callback_threshold(seconds: float | None) -> None:
    """The process-wide slow-callback threshold (seconds; None: off)."""

def _get_slow_callback_threshold() -> float | None: ...
def _set_callback_timing(enabled: bool) -> None: ...

def _interface_addresses() -> list[tuple[int, bytes, int]]:
    """This host's addresses from getifaddrs: `(family, packed address, prefix length)`."""

def _dns_generation() -> int:
    """A number that changes when anything getaddrinfo's answer depends on, DNS aside, may
    have changed: the resolver's files, its environment variables, the host's addresses and
    routes, or the process (fork)."""

def _after_fork_child() -> None:
    """Mark every loop's reactor stale in a forked child (rebuilt on next use)."""

def _set_threadsafe_handles(enabled: bool) -> None:
    """Where asyncio has `_ThreadSafeHandle` (3.14+): cancel()/cancelled() of a
    `call_soon_threadsafe` handle from another thread wait while its callback runs."""

def _install_fast_methods(cls: type[EventLoop], qualnames: tuple[str, str, str, str]) -> None:
    """Put the raw vectorcall versions of call_soon/call_soon_threadsafe/call_later/call_at
    on `cls` (a subclass of `EventLoop`)."""

def _install_transport_methods(cls: type, slot: Any) -> bool:
    """Put `write`, `is_closing`, `is_reading`, `get_write_buffer_size` and `get_protocol` on
    `cls` (rose's stream transport class): method descriptors that call the `_SelectorSocketTransport`
    in the slot `slot` describes (`_RoseTransport.__dict__['_core']`). False, and nothing
    installed, if `slot` is not such a slot."""

@final
class _SelectorSocketTransport:
    """The I/O core of `rose.transports._SelectorSocketTransport` (TCP and Unix streams)."""

    def __new__(
        cls,
        event_loop: EventLoop,
        sock: socket.socket | AcceptedSocket,
        protocol: Any,
        buffered: bool,
        context: contextvars.Context | None = None,
    ) -> _SelectorSocketTransport:
        """With an `AcceptedSocket`, the core takes its fd and peer address over: no socket
        object until `_make_socket`."""
    def _make_socket(self) -> socket.socket:
        """The connection's socket object, made now if it has none (non-blocking; it owns the
        fd from then on)."""
    def _socket(self) -> socket.socket | None:
        """The socket object, if there is one."""
    def _socket_kind(self) -> tuple[int, int, int]:
        """(family, type, proto) of the socket object `_make_socket` makes."""
    def _close_fd(self) -> bool:
        """Close the fd if the core still owns it (no socket object was made)."""
    def _sockname(self) -> Any:
        """`getsockname()` of the connection, without a socket object."""
    def _peername(self) -> Any:
        """The peer's address, taken as the connection began (None if it had none)."""
    @property
    def _fd(self) -> int:
        """The fd the transport was made with."""
    def _set_transport(self, transport: Any) -> None:
        """The Python transport; it enters `loop._transports`."""
    def _list_transport(self, enter: bool) -> None:
        """Enter the transport in `loop._transports` again, or take it out."""
    def set_protocol(self, protocol: Any, buffered: bool) -> None: ...
    def get_protocol(self) -> Any: ...
    def _read_ready(self) -> None: ...
    def _write_ready(self) -> None: ...
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send at once if nothing is buffered; buffer the rest (`bytes` without a copy)."""
    def write_eof(self) -> None: ...
    def _lost_write(self) -> None:
        """Count (and from the fifth on, log) a write to a lost connection."""
    def close(self) -> None: ...
    def _force_close(self, exc: BaseException | None) -> None: ...
    def is_closing(self) -> bool: ...
    def is_reading(self) -> bool: ...
    def _pause_reading(self) -> bool: ...
    def _resume_reading(self) -> bool: ...
    def _start_reading(self) -> None: ...
    def _stop_reading(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def _set_write_buffer_limits(self, high: Any, low: Any) -> None: ...
    def get_write_buffer_limits(self) -> tuple[Any, Any]: ...
    _empty_waiter: Any
    @property
    def _conn_lost(self) -> int: ...
    @property
    def _eof(self) -> bool: ...
    @property
    def _protocol_paused(self) -> bool: ...
    @property
    def _paused(self) -> bool: ...
    def _polling(self) -> tuple[bool, bool]: ...
    def _detach(self) -> None: ...

@final
class _SelectorDatagramTransport:
    """The I/O core of `rose.transports._SelectorDatagramTransport`."""

    def __new__(
        cls,
        event_loop: EventLoop,
        sock: socket.socket,
        protocol: Any,
        address: Any,
        connected: bool,
        header_size: int = 0,
        sends_empty: bool = False,
    ) -> _SelectorDatagramTransport: ...
    @property
    def _fd(self) -> int:
        """The fd the transport was made with."""
    def _socket(self) -> socket.socket | None: ...
    def _set_transport(self, transport: Any) -> None:
        """The Python transport; it enters `loop._transports`."""
    def _list_transport(self, enter: bool) -> None: ...
    def set_protocol(self, protocol: Any) -> None: ...
    def get_protocol(self) -> Any: ...
    def _read_ready(self) -> None: ...
    def _sendto_ready(self) -> None: ...
    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None: ...
    def close(self) -> None: ...
    def _force_close(self, exc: BaseException | None) -> None: ...
    def is_closing(self) -> bool: ...
    def _start_reading(self) -> None: ...
    def is_reading(self) -> bool: ...
    def _pause_reading(self) -> bool: ...
    def _resume_reading(self) -> bool: ...
    def get_write_buffer_size(self) -> int: ...
    def _set_write_buffer_limits(self, high: Any, low: Any) -> None: ...
    def get_write_buffer_limits(self) -> tuple[Any, Any]: ...
    @property
    def _protocol_paused(self) -> bool: ...
    @property
    def _paused(self) -> bool: ...
    @property
    def _conn_lost(self) -> int: ...
    def _polling(self) -> tuple[bool, bool]: ...
    def _detach(self) -> None: ...

@final
class SockOp:
    """A pending `sock_recv`/`sock_recv_into`/`sock_sendall`: the callback of its fd watch."""

    def __call__(self, *args: Any, **kwargs: Any) -> None: ...
    def _done(self, _future: Any) -> None: ...

@final
class AcceptedSocket:
    """A connection `_accept` took off a listening socket: its fd and the peer's raw address
    (until a transport takes them over; the fd closed if nobody does), and the listener's
    family, type and protocol."""

    @property
    def family(self) -> int: ...
    @property
    def type(self) -> int: ...
    @property
    def proto(self) -> int: ...
    def fileno(self) -> int: ...
    def peername(self) -> Any:
        """The peer's address, as `socket.accept()` gives it."""

def _accept(fd: int, family: int, kind: int, proto: int, nodelay: bool) -> AcceptedSocket | None:
    """One connection off the listening socket `fd` (non-blocking, close-on-exec; TCP_NODELAY
    when `nodelay`), or None when none is waiting; raises what `socket.accept()` raises."""

def _sock_try_recv(fd: int, n: Any) -> bytes | None:
    """`recv(n)` once: the data, or None if it would block."""

def _sock_try_recv_into(fd: int, buf: Any) -> int | None:
    """`recv_into(buf)` once: the byte count, or None if it would block."""

def _sock_try_send(fd: int, data: Any) -> int | None:
    """`send(data)` once: None if all of it went, else the bytes sent (0 if it would block)."""

def _sock_wait(event_loop: EventLoop, future: Any, sock: socket.socket, kind: int, arg: Any, sent: int = 0) -> None:
    """Watch `sock`'s fd until the call (0 recv, 1 recv_into, 2 sendall) completes `future`."""
