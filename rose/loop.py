"""rose's event loop: the compiled core (`rose._rose.EventLoop`) plus the parts of the
`asyncio.AbstractEventLoop` API that are not on a hot path.

Methods whose behaviour is pure bookkeeping over public loop primitives (running a future to
completion, task factories, async-generator shutdown, executors, exception handlers) are
asyncio's own `BaseEventLoop` functions, used as a library: their messages and semantics are
then stdlib's by construction. They only touch the attributes set in `Loop.__init__` and the
primitives the core provides (`call_soon`, `call_soon_threadsafe`, `stop`, `is_running`, ...).
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import errno
import functools
import logging
import os
import select
import selectors
import signal
import socket
import sys
import threading
import time
import warnings
import weakref
from asyncio import (
    base_events,
    constants,
    coroutines,
    events,
    selector_events,
    sslproto,
    trsock,
    unix_events,
)

from . import _compat, _resolver, _rose
from . import transports as _transports
from . import metrics as _metrics

__all__ = ("Loop",)

logger = logging.getLogger("asyncio")
_Base = base_events.BaseEventLoop
_Selector = selector_events.BaseSelectorEventLoop
_Unix = unix_events._UnixSelectorEventLoop


# The listeners whose connections rose accepts itself (their addresses it can convert).
_ACCEPT_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6, socket.AF_UNIX})
_ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _sighandler_noop(signum, frame):
    """Python-level handler of a signal watched by `add_signal_handler`: the C-level handler
    already wrote the signal number to the loop's wake-up socket, which is all we need."""


class Server(base_events.Server):
    """asyncio's `Server`, plus `close_clients()` and `abort_clients()` (the API Python 3.13
    added) on the Pythons whose `Server` lacks them, over the transports in the loop's
    `_transports` that name this server."""

    def _rose_clients(self):
        # The connections this server accepted and that are still open: every rose transport
        # knows its server until connection_lost (no per-connection bookkeeping here).
        return _server_transports(self._loop, self)

    def close_clients(self):
        """Close every connection accepted by this server (`transport.close()`)."""
        for transport in self._rose_clients():
            transport.close()

    def abort_clients(self):
        """Abort every connection accepted by this server (`transport.abort()`)."""
        for transport in self._rose_clients():
            transport.abort()


def _server_transports(loop, server):
    """The open rose transports of `server` (every rose transport is in `loop._transports`
    from its making until connection_lost, and names its server until then)."""
    return [t for t in loop._transports.values() if getattr(t, "_server", None) is server]


class _ServerClients:
    """`Server._clients` of asyncio 3.13+ (a WeakSet of the server's transports, which
    `_attach`/`_detach`, `close_clients()`, `abort_clients()` and `wait_closed()` use), for a
    rose server: a count, with the transports themselves read from the loop's transport table
    when asked for. asyncio's WeakSet costs a weak reference and a set entry per connection
    (about 100 bytes); this costs nothing per connection. A transport leaves at
    connection_lost, or when it is collected unclosed (its `__del__` detaches it)."""

    __slots__ = ("_loop", "_server", "_count", "_others")

    def __init__(self, loop, server, current):
        self._loop = loop
        self._server = weakref.ref(server)
        self._count = 0
        self._others = None  # transports that are not rose's (none attach today)
        for transport in current:
            self.add(transport)

    def add(self, transport):
        if isinstance(transport, _transports._RoseTransport):
            self._count += 1
        else:
            if self._others is None:
                self._others = weakref.WeakSet()
            self._others.add(transport)

    def discard(self, transport):
        if isinstance(transport, _transports._RoseTransport):
            self._count = max(self._count - 1, 0)
        elif self._others is not None:
            self._others.discard(transport)

    def __len__(self):
        return self._count + (len(self._others) if self._others is not None else 0)

    def copy(self):
        server = self._server()
        found = _server_transports(self._loop, server) if server is not None else []
        return found + (list(self._others) if self._others is not None else [])

    def __iter__(self):
        return iter(self.copy())


def _as_rose_server(server):
    # asyncio's create_server builds a base_events.Server; rose's adds methods only, and only
    # where asyncio's own Server does not have them; where asyncio's tracks its connections
    # (3.13+), their set is rose's count (a connection may have come in already).
    if not _compat.SERVER_HAS_CLOSE_CLIENTS:
        server.__class__ = Server
    elif _compat.SERVER_TRACKS_TRANSPORTS:
        server._clients = _ServerClients(server._loop, server, list(server._clients))
    return server


def _reap_child(pid):
    """Collect an exited child's status as an exit code (negative for a signal), like
    asyncio's child watchers; 255 when someone else reaped it already."""
    try:
        _, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        logger.warning("Unknown child process pid %d, will report returncode 255", pid)
        return 255
    return os.waitstatus_to_exitcode(status)


def _fileobj_to_fd(fileobj):
    """An fd from an int or an object with ``fileno()``, with selectors' errors."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


_MAX_FD = 2**31 - 1  # an fd is a C int


def _watchable_fd(fileobj):
    """The fd to watch, with the errors of asyncio's selector: selectors' checks, then epoll's
    own for a number beyond a C int."""
    fd = _fileobj_to_fd(fileobj)
    if fd > _MAX_FD:
        raise OverflowError("Python int too large to convert to C int")
    return fd


class _SelectorView(collections.abc.Mapping):
    """A read-only `selectors` view of the loop's fd watchers: `loop._selector`.

    asyncio's own transports and sock_* helpers (used by rose, see below) look registrations
    up with `loop._selector.get_key(fd)`; this answers from the core's table. It selects
    nothing: the reactor does."""

    def __init__(self, loop):
        self._loop = weakref.ref(loop)

    def get_key(self, fileobj):
        fd = _fileobj_to_fd(fileobj)
        loop = self._loop()
        watched = loop._watched(fd) if loop is not None and not loop.is_closed() else None
        if watched is None:
            raise KeyError(f"{fileobj!r} is not registered")
        reader, writer = watched
        events = (selectors.EVENT_READ if reader is not None else 0) | (
            selectors.EVENT_WRITE if writer is not None else 0
        )
        return selectors.SelectorKey(fileobj, fd, events, (reader, writer))

    def get_map(self):
        return self

    def __getitem__(self, fileobj):
        return self.get_key(fileobj)

    def __iter__(self):
        loop = self._loop()
        return iter(loop._watched_fds() if loop is not None and not loop.is_closed() else ())

    def __len__(self):
        return sum(1 for _ in self)


class _TransportsView(collections.abc.Mapping):
    """`loop._transports`: fd -> transport of rose's stream and datagram transports, as
    asyncio's weak-valued map (`_ensure_fd_no_transport` reads it). The core keeps it (see
    `transports` in src/event_loop.rs): a transport is in it from its making until its
    `connection_lost`, and a transport nobody holds can be collected."""

    __slots__ = ("_loop",)

    def __init__(self, loop):
        self._loop = weakref.ref(loop)

    def __getitem__(self, fd):
        loop = self._loop()
        transport = loop._transport(fd) if loop is not None and type(fd) is int else None
        if transport is None:
            raise KeyError(fd)
        return transport

    def __iter__(self):
        loop = self._loop()
        return iter([fd for fd, _ in loop._transport_items()] if loop is not None else ())

    def __len__(self):
        loop = self._loop()
        return len(loop._transport_items()) if loop is not None else 0

    def values(self):
        loop = self._loop()
        return [t for _, t in loop._transport_items()] if loop is not None else []


class Loop(_rose.EventLoop, asyncio.AbstractEventLoop):
    """An asyncio event loop on a tokio reactor. Create it with `rose.new_event_loop()`."""

    def __init__(self):
        self._exception_handler = None
        self._default_executor = None
        self._executor_shutdown_called = False
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._task_factory = None
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._current_handle = None
        self.slow_callback_duration = 0.1
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        self._signal_handlers = {}
        self._transports = _TransportsView(self)
        # Listening Unix sockets whose file create_unix_server(cleanup_socket=True) made
        # (3.13+): the socket's inode, so _stop_serving unlinks only that file.
        self._unix_server_sockets = {}
        self._child_pidfds = {}  # running children's pidfds, by pid (watched on the reactor)
        self._selector = _SelectorView(self)
        self.set_debug(coroutines._is_debug_mode())
        if type(self).time is not _rose.EventLoop.time:
            self._user_clock = True

    # A loop whose `time()` is replaced (`mock.patch.object(loop, "time")`, as aiohttp's tests
    # do) or overridden is honoured as asyncio's run step honours it: the core asks `time()`
    # only then, so the usual path costs nothing.
    def __setattr__(self, name, value, _set=_rose.EventLoop.__setattr__):
        _set(self, name, value)
        if name == "time":
            self._user_clock = True

    def __delattr__(self, name, _del=_rose.EventLoop.__delattr__):
        _del(self, name)
        if name == "time":
            self._user_clock = type(self).time is not _rose.EventLoop.time

    def __repr__(self):
        return (
            f"<{self.__class__.__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )

    # class attributes outlive module teardown (see close)
    _is_finalizing = staticmethod(sys.is_finalizing)
    _print_stats_on_close = staticmethod(_metrics._print_stats_on_close)

    def __del__(self, _warn=warnings.warn):
        if not self.is_closed():
            # At interpreter exit asyncio's loop, kept alive by its own reference cycles, is
            # not collected in time to warn (and 3.14's warnings then ignore the filters):
            # rose's, freed as module teardown drops it, closes as quietly.
            if not self._is_finalizing():
                _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    # -- running and stopping -------------------------------------------------------------

    # _check_closed() is the core's (a C call: most methods make it).

    _check_running = _Base._check_running
    _check_callback = _Base._check_callback
    _check_thread = _Base._check_thread
    _set_coroutine_origin_tracking = _Base._set_coroutine_origin_tracking
    run_until_complete = _Base.run_until_complete

    def run_forever(self):
        """Run until `stop()` is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        old_wakeup_fd = self._install_signal_wakeup()
        try:
            self._thread_id = threading.get_ident()
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            self._run_forever_inner()
        finally:
            self._stopping = False
            self._thread_id = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)
            self._restore_signal_wakeup(old_wakeup_fd)

    def _install_signal_wakeup(self):
        """While the loop sleeps, a signal must wake it so Python's handlers run at once
        (Ctrl-C, `signal.signal`): point the interpreter's wakeup fd at the reactor."""
        if threading.current_thread() is not threading.main_thread():
            return None
        try:
            return signal.set_wakeup_fd(self._signal_wakeup_fd(), warn_on_full_buffer=False)
        except ValueError:  # not the main interpreter
            return None

    def _restore_signal_wakeup(self, old_fd):
        # With signal handlers installed the wake-up fd stays ours, as on stdlib, so signals
        # that arrive between two runs are handled at the next one.
        if old_fd is None or self._signal_handlers:
            return
        if old_fd == self._signal_wakeup_fd():
            # It was ours because of signal handlers that have been removed since.
            old_fd = -1
        try:
            signal.set_wakeup_fd(old_fd)
        except (ValueError, OSError):
            signal.set_wakeup_fd(-1)

    def close(self):
        """Close the loop: drop pending callbacks, shut the default executor down (without
        waiting). Idempotent; not allowed while running."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self._debug:
            logger.debug("Close %r", self)
        # At interpreter exit an unclosed loop kept in a module global is closed by __del__,
        # perhaps after module teardown has set the globals of this module (and of sys) to
        # None: asyncio's close stays quiet there, and so does this one.
        finalizing = self._is_finalizing()
        self._print_stats_on_close(self)
        if finalizing:
            for sig in list(self._signal_handlers):
                self._signal_handlers.pop(sig).cancel()
        else:
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        self._close()
        self._hand_children_over()
        self._selector = None  # as asyncio's selector loop: transports' reprs test for it
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    # -- metrics (rose's own: see rose/metrics.py) -----------------------------------------

    def metrics(self):
        """A snapshot of this loop's counters (`rose.LoopMetrics`)."""
        return _metrics.snapshot(self)

    def set_slow_callback_threshold(self, seconds):
        """Log callbacks that take at least `seconds` (None: off) as asyncio's debug mode
        does, without debug mode; overrides `rose.set_slow_callback_threshold` for this loop."""
        self._set_slow_callback_threshold(None if seconds is None else _metrics._seconds(seconds))

    def get_slow_callback_threshold(self):
        """The slow-callback threshold in force for this loop, in seconds, or None."""
        return self._get_slow_callback_threshold()

    def set_debug(self, enabled):
        self._debug = enabled
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    # -- futures and tasks ----------------------------------------------------------------

    # create_future() is the core's: futures.Future(loop=self), as asyncio's.

    # create_task() is the core's: asyncio.Task(coro, loop=self, ...) in the common case, the
    # running asyncio's own create_task otherwise (a task factory, debug mode, other keywords).
    set_task_factory = _Base.set_task_factory
    get_task_factory = _Base.get_task_factory

    # -- async generators -----------------------------------------------------------------

    _asyncgen_finalizer_hook = _Base._asyncgen_finalizer_hook
    _asyncgen_firstiter_hook = _Base._asyncgen_firstiter_hook
    shutdown_asyncgens = _Base.shutdown_asyncgens

    # -- executors --------------------------------------------------------------------------

    run_in_executor = _Base.run_in_executor
    set_default_executor = _Base.set_default_executor
    shutdown_default_executor = _Base.shutdown_default_executor
    _do_shutdown = _Base._do_shutdown
    _check_default_executor = _Base._check_default_executor

    # -- name resolution: rose/_resolver.py (hickory on the loop's runtime) or the system ----

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        # Every caller (create_connection, create_server, create_datagram_endpoint,
        # sock_connect, start_server) comes here through asyncio's own code, which calls
        # `self.getaddrinfo` (directly or via `_ensure_resolved`). Debug mode keeps asyncio's
        # path, whose log line reports the call.
        if not self._debug:
            # A name looked up before, while nothing it depends on changed: no await at all.
            hit = _resolver.cached(host, port, family, type, proto, flags)
            if hit is not None:
                return hit
        if not self._debug and _resolver.mode() == "hickory":
            try:
                return await _resolver.getaddrinfo(self, host, port, family, type, proto, flags)
            except _resolver._Fallback:
                pass
        return await _Base.getaddrinfo(self, host, port, family=family, type=type, proto=proto, flags=flags)

    _ensure_resolved = _Base._ensure_resolved

    async def getnameinfo(self, sockaddr, flags=0):
        # A numeric answer needs no lookup: glibc's own, at once, with no thread.
        if _resolver.mode() == "hickory":
            if _resolver.getnameinfo_inline(sockaddr, flags):
                return socket.getnameinfo(sockaddr, flags)
            if not self._debug and not flags & socket.NI_NUMERICHOST:
                try:
                    return await _resolver.getnameinfo(self, sockaddr, flags)
                except _resolver._Fallback:
                    pass
        return await _Base.getnameinfo(self, sockaddr, flags)

    _getaddrinfo_debug = _Base._getaddrinfo_debug

    # -- error handling ---------------------------------------------------------------------

    get_exception_handler = _Base.get_exception_handler
    set_exception_handler = _Base.set_exception_handler
    default_exception_handler = _Base.default_exception_handler
    call_exception_handler = _Base.call_exception_handler

    # -- watching file descriptors ----------------------------------------------------------

    def _add_reader(self, fd, callback, *args, context=None):
        self._check_closed()
        handle = self._make_handle(callback, args, context)
        self._watch(_watchable_fd(fd), handle, False)
        return handle

    def _add_writer(self, fd, callback, *args, context=None):
        self._check_closed()
        handle = self._make_handle(callback, args, context)
        self._watch(_watchable_fd(fd), handle, True)
        return handle

    def _remove_reader(self, fd):
        if self.is_closed():
            return False
        fd = _fileobj_to_fd(fd)
        return fd <= _MAX_FD and self._unwatch(fd, False)  # a bigger one is not watched

    def _remove_writer(self, fd):
        if self.is_closed():
            return False
        fd = _fileobj_to_fd(fd)
        return fd <= _MAX_FD and self._unwatch(fd, True)

    def add_reader(self, fd, callback, *args):
        """Call `callback(*args)` whenever `fd` is readable (level-triggered)."""
        self._ensure_fd_no_transport(fd)
        self._add_reader(fd, callback, *args)

    def add_writer(self, fd, callback, *args):
        """Call `callback(*args)` whenever `fd` is writable (level-triggered)."""
        self._ensure_fd_no_transport(fd)
        self._add_writer(fd, callback, *args)

    def remove_reader(self, fd):
        """Stop watching `fd` for reading; True if a reader was registered."""
        self._ensure_fd_no_transport(fd)
        return self._remove_reader(fd)

    def remove_writer(self, fd):
        """Stop watching `fd` for writing; True if a writer was registered."""
        self._ensure_fd_no_transport(fd)
        return self._remove_writer(fd)

    _ensure_fd_no_transport = _Selector._ensure_fd_no_transport

    # -- low-level socket operations ----------------------------------------------------------
    # sock_recv, sock_recv_into and sock_sendall: asyncio's checks and shape, with the socket
    # calls and the retry callback in Rust (src/sock.rs). The others are asyncio's
    # selector-loop implementations, on rose's fd watchers.

    async def sock_recv(self, sock, n):
        """Receive up to `n` bytes from the non-blocking socket `sock`."""
        if not isinstance(sock, socket.socket):  # asyncio's own code for anything else
            return await _Selector.sock_recv(self, sock, n)
        base_events._check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        fd = sock.fileno()
        data = _rose._sock_try_recv(fd, n)
        if data is not None:
            return data
        fut = self.create_future()
        self._ensure_fd_no_transport(fd)
        _rose._sock_wait(self, fut, sock, 0, n)
        return await fut

    async def sock_recv_into(self, sock, buf):
        """Receive into the writable buffer `buf`; returns the number of bytes received."""
        if not isinstance(sock, socket.socket):
            return await _Selector.sock_recv_into(self, sock, buf)
        base_events._check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        fd = sock.fileno()
        nbytes = _rose._sock_try_recv_into(fd, buf)
        if nbytes is not None:
            return nbytes
        fut = self.create_future()
        self._ensure_fd_no_transport(fd)
        _rose._sock_wait(self, fut, sock, 1, buf)
        return await fut

    async def sock_sendall(self, sock, data):
        """Send all of `data` to the connected socket `sock`."""
        if not isinstance(sock, socket.socket):
            return await _Selector.sock_sendall(self, sock, data)
        base_events._check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        fd = sock.fileno()
        n = _rose._sock_try_send(fd, data)
        if n is None:  # all sent
            return
        fut = self.create_future()
        self._ensure_fd_no_transport(fd)
        # A view for the rest of the call, as asyncio takes one: while it lasts a bytearray
        # cannot be resized under the send (BufferError), so what is sent is what was given.
        _rose._sock_wait(self, fut, sock, 2, memoryview(data), n)
        return await fut

    # asyncio's versions of the three above, for objects that are not sockets (duck-typed
    # ones, whose own recv/send must be called).
    _sock_recv = _Selector._sock_recv
    _sock_recv_into = _Selector._sock_recv_into
    _sock_sendall = _Selector._sock_sendall

    sock_recvfrom = _Selector.sock_recvfrom
    _sock_recvfrom = _Selector._sock_recvfrom
    sock_recvfrom_into = _Selector.sock_recvfrom_into
    _sock_recvfrom_into = _Selector._sock_recvfrom_into
    sock_sendto = _Selector.sock_sendto
    _sock_sendto = _Selector._sock_sendto
    sock_connect = _Selector.sock_connect
    _sock_connect = _Selector._sock_connect
    _sock_write_done = _Selector._sock_write_done
    _sock_read_done = _Selector._sock_read_done
    _sock_connect_cb = _Selector._sock_connect_cb
    sock_accept = _Selector.sock_accept
    _sock_accept = _Selector._sock_accept

    # sock_sendfile: zero-copy os.sendfile, with stdlib's fallback rules.
    sock_sendfile = _Base.sock_sendfile
    _check_sendfile_params = _Base._check_sendfile_params
    _sock_sendfile_fallback = _Base._sock_sendfile_fallback
    _sock_sendfile_native = _Unix._sock_sendfile_native
    _sock_sendfile_native_impl = _Unix._sock_sendfile_native_impl
    _sock_sendfile_update_filepos = _Unix._sock_sendfile_update_filepos
    _sock_add_cancellation_callback = _Unix._sock_add_cancellation_callback

    # -- transports, servers, TLS, datagrams, pipes, subprocesses -------------------------------
    # Stream transports (TCP, Unix) are rose's own, with their I/O in Rust
    # (rose/transports.py, src/stream.rs). Connection and server set-up (address resolution,
    # happy eyeballs, accepting) and TLS (stdlib's SSLProtocol over a rose transport) are
    # asyncio's code. Datagram transports are rose's too (src/udp.rs); pipe transports are
    # still asyncio's.

    def _make_socket_transport(
        self, sock, protocol, waiter=None, *, extra=None, server=None, context=None
    ):
        if _compat.MAKE_TRANSPORT_CHECKS_FD:
            self._ensure_fd_no_transport(sock)
        return _transports._SelectorSocketTransport(
            self, sock, protocol, waiter, extra, server, context
        )

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
        context=None,
    ):
        if _compat.MAKE_TRANSPORT_CHECKS_FD:
            self._ensure_fd_no_transport(rawsock)
        ssl_protocol = sslproto.SSLProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        _transports._SelectorSocketTransport(
            self, rawsock, ssl_protocol, extra=extra, server=server, context=context
        )
        return ssl_protocol._app_transport

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        if _compat.MAKE_TRANSPORT_CHECKS_FD:
            self._ensure_fd_no_transport(sock)
        return _transports._SelectorDatagramTransport(self, sock, protocol, address, waiter, extra)

    def _stop_serving(self, sock):
        """Stop accepting on a listening socket and close it (the selector loop's), and, for
        a Unix socket whose file create_unix_server made (3.13's cleanup_socket), unlink that
        file if it is still the same one."""
        path = sock.getsockname() if sock in self._unix_server_sockets else None
        self._remove_reader(sock.fileno())
        sock.close()
        if path is None:
            return
        inode = self._unix_server_sockets.pop(sock)
        try:
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    _start_serving = _Selector._start_serving
    _accept_connection2 = _Selector._accept_connection2

    def _accept_connection(
        self,
        protocol_factory,
        sock,
        sslcontext=None,
        server=None,
        backlog=100,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
        context=None,
    ):
        """asyncio's accept round for one readiness event of a listening socket, with the
        accepting in Rust: each connection comes as a `rose._rose.AcceptedSocket` (its fd and
        raw peer address, no socket object, no address tuple), which the transport takes
        over (see rose/transports.py). Otherwise the running asyncio's steps: up to backlog
        (+ 1 since 3.12) accepts, aborted connections skipped (3.12+) or ending the round,
        EMFILE and kin reported with the listener paused for ACCEPT_RETRY_DELAY, and
        `_accept_connection2` for each connection: asyncio's own coroutine in a task for TLS,
        rose's `_accept_plain` at once otherwise."""
        family = sock.family
        if family not in _ACCEPT_FAMILIES:
            return _Selector._accept_connection(
                self, protocol_factory, sock, sslcontext, server, backlog,
                ssl_handshake_timeout, ssl_shutdown_timeout,
                *((context,) if _compat.ACCEPT_TAKES_CONTEXT else ()),
            )  # fmt: skip
        kind = sock.type
        proto = sock.proto
        # asyncio's _set_nodelay() on every TCP transport, done at accept
        nodelay = family != socket.AF_UNIX and kind == socket.SOCK_STREAM and proto == socket.IPPROTO_TCP
        accept = _rose._accept
        for _ in range(backlog + _compat.ACCEPT_ATTEMPTS_EXTRA):
            try:
                conn = accept(sock.fileno(), family, kind, proto, nodelay)
                if conn is None:
                    return
                if self._debug:
                    logger.debug("%r got a new connection from %r: %r", server, conn.peername(), conn)
            except ConnectionAbortedError:
                if _compat.ACCEPT_SKIPS_ABORTED:
                    continue
                return
            except OSError as exc:
                if exc.errno not in _ACCEPT_RESOURCE_ERRORS:
                    raise  # the loop's callback error handling reports it
                # Linux keeps reporting the listener ready: pause it, try again later.
                self.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": exc,
                        "socket": trsock.TransportSocket(sock),
                    }
                )
                self._remove_reader(sock.fileno())
                self.call_later(
                    constants.ACCEPT_RETRY_DELAY, self._start_serving, protocol_factory, sock,
                    sslcontext, server, backlog, ssl_handshake_timeout, ssl_shutdown_timeout,
                    *((context,) if _compat.ACCEPT_TAKES_CONTEXT else ()),
                )  # fmt: skip
            else:
                if sslcontext is None:
                    self._accept_plain(protocol_factory, conn, server, context)
                elif _compat.ACCEPT_TAKES_CONTEXT:
                    conn_context = None if context is None else context.copy()
                    coro = self._accept_connection2(
                        protocol_factory, conn, None, sslcontext, server,
                        ssl_handshake_timeout, ssl_shutdown_timeout, context=conn_context,
                    )  # fmt: skip
                    self.create_task(coro, context=conn_context)
                else:
                    self.create_task(
                        self._accept_connection2(
                            protocol_factory, conn, None, sslcontext, server,
                            ssl_handshake_timeout, ssl_shutdown_timeout,
                        )  # fmt: skip
                    )

    def _accept_plain(self, protocol_factory, conn, server, context):
        """asyncio's `_accept_connection2` for a connection without TLS, done at once
        rather than in a task of its own: the protocol, then the transport, in a context of
        the connection's (a copy of the current one, or 3.15's copy of the server's), as the
        task would have run them. asyncio's task then only waits for `connection_made` (no
        error can reach it), so what it costs, a task, a future and two loop iterations per
        connection, buys nothing here. Errors are asyncio's: reported in debug mode only,
        the connection closed."""
        if _compat.ACCEPT_TAKES_CONTEXT and context is not None:
            conn_context = context.copy()
            run = conn_context.run
        else:
            conn_context = None
            run = contextvars.copy_context().run
        run(self._accept_plain_in_context, protocol_factory, conn, server, conn_context)

    def _accept_plain_in_context(self, protocol_factory, conn, server, conn_context):
        protocol = transport = None
        try:
            protocol = protocol_factory()
            transport = self._make_socket_transport(
                conn, protocol, server=server, context=conn_context
            )
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if self._debug:
                context = {
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                }
                if protocol is not None:
                    context["protocol"] = protocol
                if transport is not None:
                    context["transport"] = transport
                self.call_exception_handler(context)

    _sendfile_native = _transports.sendfile_native

    create_connection = _Base.create_connection
    _connect_sock = _Base._connect_sock
    _create_connection_transport = _Base._create_connection_transport
    # asyncio's own, returning rose's Server; the signature and docstring shown (inspect,
    # help()) are those of the running asyncio's.
    @functools.wraps(_Base.create_server, assigned=("__doc__",))
    async def create_server(self, *args, **kwargs):
        return _as_rose_server(await _Base.create_server(self, *args, **kwargs))

    @functools.wraps(_Unix.create_unix_server, assigned=("__doc__",))
    async def create_unix_server(self, *args, **kwargs):
        return _as_rose_server(await _Unix.create_unix_server(self, *args, **kwargs))

    _create_server_getaddrinfo = _Base._create_server_getaddrinfo
    connect_accepted_socket = _Base.connect_accepted_socket
    start_tls = _Base.start_tls
    sendfile = _Base.sendfile
    _sendfile_fallback = _Base._sendfile_fallback
    create_datagram_endpoint = _Base.create_datagram_endpoint
    create_unix_connection = _Unix.create_unix_connection

    connect_read_pipe = _Base.connect_read_pipe
    connect_write_pipe = _Base.connect_write_pipe
    _make_read_pipe_transport = _Unix._make_read_pipe_transport
    _make_write_pipe_transport = _Unix._make_write_pipe_transport

    subprocess_exec = _Base.subprocess_exec
    subprocess_shell = _Base.subprocess_shell
    _log_subprocess = _Base._log_subprocess

    async def _make_subprocess_transport(
        self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
    ):
        """asyncio's subprocess transport, with the child's exit watched by rose itself
        (a pidfd on the reactor; a waiting thread where pidfd_open is missing), so no child
        watcher is needed and SIGCHLD stays the user's."""
        waiter = self.create_future()
        transp = unix_events._UnixSubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize,
            waiter=waiter, extra=extra, **kwargs,
        )
        self._watch_child_exit(transp.get_pid(), transp)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    def _watch_child_exit(self, pid, transp):
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            thread = threading.Thread(
                target=self._wait_child_thread, args=(pid, transp),
                name=f"rose-waitpid-{pid}", daemon=True,
            )
            thread.start()
            return

        def on_exit():
            self._remove_reader(pidfd)
            self._child_pidfds.pop(pid, None)
            os.close(pidfd)
            transp._process_exited(_reap_child(pid))

        self._add_reader(pidfd, on_exit)
        self._child_pidfds[pid] = pidfd

    def _hand_children_over(self):
        """The loop closes while children run: a thread waits for each, reaps it and closes
        its pidfd (no zombie, no fd left), and logs what asyncio's threaded watcher logs."""
        children, self._child_pidfds = self._child_pidfds, {}
        for pid, pidfd in children.items():
            threading.Thread(
                target=self._reap_after_close, args=(pid, pidfd),
                name=f"rose-waitpid-{pid}", daemon=True,
            ).start()

    def _reap_after_close(self, pid, pidfd):
        try:
            select.select([pidfd], [], [])  # readable once the child has exited
            _reap_child(pid)
        finally:
            os.close(pidfd)
        logger.warning("Loop %r that handles pid %r is closed", self, pid)

    def _wait_child_thread(self, pid, transp):
        # Wait for the exit without reaping it (WNOWAIT): the pid stays the child's until the
        # loop thread reaps it and publishes the exit in one callback, so send_signal() never
        # targets a reaped (perhaps reused) pid (CPython gh-127049).
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # reaped by someone else: _reap_child reports 255
        if self.is_closed():
            _reap_child(pid)
            logger.warning("Loop %r that handles pid %r is closed", self, pid)
        else:
            self.call_soon_threadsafe(self._publish_child_exit, pid, transp)

    @staticmethod
    def _publish_child_exit(pid, transp):
        transp._process_exited(_reap_child(pid))

    # -- signals ------------------------------------------------------------------------------

    def add_signal_handler(self, sig, callback, *args):
        """Run `callback(*args)` as a loop callback whenever signal `sig` arrives.

        Main thread of the main interpreter only (RuntimeError otherwise), as on stdlib."""
        if coroutines.iscoroutine(callback) or _compat.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            # Raises ValueError outside the main thread of the main interpreter.
            signal.set_wakeup_fd(self._signal_wakeup_fd(), warn_on_full_buffer=False)
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))  # noqa: B904 (implicit chaining, as stdlib)
        handle = self._make_handle(callback, args)
        self._signal_handlers[sig] = handle
        try:
            signal.signal(sig, _sighandler_noop)
            # SA_RESTART: fewer EINTRs elsewhere in the process.
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                self._clear_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")  # noqa: B904 (as stdlib)
            raise

    def remove_signal_handler(self, sig):
        """Remove the handler of `sig`; True if there was one."""
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")  # noqa: B904 (as stdlib)
            raise
        if not self._signal_handlers:
            self._clear_wakeup_fd()
        return True

    def _clear_wakeup_fd(self):
        # The last signal handler is gone. While the loop runs the wake-up fd stays its own:
        # Ctrl-C and `signal.signal` handlers must still wake it (run_forever restores the
        # previous fd when it returns). Otherwise asyncio's rule: no wake-up fd.
        if self.is_running() and threading.current_thread() is threading.main_thread():
            return
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError) as exc:
            logger.info("set_wakeup_fd(-1) failed: %s", exc)

    @staticmethod
    def _check_signal(sig):
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def _handle_signals(self, signums):
        """Called by the core with the signal numbers read from the wake-up socket."""
        for sig in signums:
            handle = self._signal_handlers.get(sig)
            if handle is None:
                continue
            if handle.cancelled():
                self.remove_signal_handler(sig)
            else:
                self._add_callback(handle)


# call_soon/call_soon_threadsafe/call_later/call_at: raw vectorcall entry points (src/fastcall.rs).
# Their argument errors name asyncio's own methods, as asyncio's messages do.
_rose._install_fast_methods(
    Loop,
    tuple(
        getattr(_Base, name).__qualname__
        for name in ("call_soon", "call_soon_threadsafe", "call_later", "call_at")
    ),
)
_rose._set_threadsafe_handles(_compat.THREADSAFE_HANDLES)
