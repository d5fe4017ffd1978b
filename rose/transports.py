"""rose's transports: `asyncio.Transport` and `asyncio.DatagramTransport` classes whose I/O
runs in Rust.

`_SelectorSocketTransport` (TCP and Unix streams) and `_SelectorDatagramTransport` carry
asyncio's names, so reprs and logs read the same, and keep asyncio's semantics. Each owns a
Rust core (`rose._rose._SelectorSocketTransport`, `rose._rose._SelectorDatagramTransport`) that does
the hot work — reading into `bytes` or into a `BufferedProtocol`'s buffer, `write()`/`sendto()`
with an immediate send and a buffer flushed later, flow control, the close state machine. The
instance hands the core's `write`/`sendto` out directly (a slot holding the bound method), so
the call is one call into Rust. What stays here is rare and is where asyncio's own logging and
formatting are: fatal errors, EOF, `connection_lost`, the repr.
"""

from __future__ import annotations

import socket
import types
import warnings
from asyncio import base_events, constants, exceptions, futures, protocols, transports, trsock
from asyncio.log import logger

from . import _compat, _rose

__all__ = ("_SelectorDatagramTransport", "_SelectorSocketTransport")


_NOT_YET = object()
_UNMADE = object()  # `_sockobj` of an accepted connection whose socket object is not made yet
_AcceptedSocket = _rose.AcceptedSocket
_NO_EXTRA = types.MappingProxyType({})  # `.get` of an unhashable name raises, as dict's does


# How a transport tells its server about itself: 3.13+ servers keep the transports (for
# close_clients() and wait_closed()), older ones count them.
if _compat.SERVER_TRACKS_TRANSPORTS:

    def _server_attach(server, transport):
        server._attach(transport)

    def _server_detach(server, transport):
        server._detach(transport)

else:

    def _server_attach(server, transport):
        server._attach()

    def _server_detach(server, transport):
        server._detach()


class _RoseTransport(transports._FlowControlMixin):
    """What rose's stream and datagram transports share: the Rust core in `_core`, the
    socket, and the rare paths (errors, `connection_lost`, the repr)."""

    # _FlowControlMixin as a base because asyncio's sendfile fallback insists on it; its state
    # (`_protocol_paused`, the watermarks) lives in the core. Few slots: an idle connection
    # costs memory per slot. `__dict__` as asyncio's transports have one: code may set its own
    # attributes, or patch a method on one transport (`mock.patch.object(transport, "write")`,
    # as CPython's test_ssl does); the dict is made only then, and an instance attribute of
    # that name wins over the class's method, as it would on asyncio's.
    __slots__ = ("_core", "_sockobj", "_server", "_sockname", "__weakref__", "__dict__")

    def _setup(self, loop, sock, extra, server):
        # asyncio fills `_extra` at once with a TransportSocket, sockname and peername. rose
        # keeps in `_extra` only what the caller gave (asyncio's own "socket" and "sockname"
        # replace the caller's), asks the socket for its name when first asked (or at close),
        # converts the peer's address, which the core took as the connection began, when first
        # asked, and wraps the socket when first asked: less memory per idle connection, the
        # same answers. A connection rose accepted (`_rose.AcceptedSocket`) has no socket
        # object until one is asked for (`_sock`): the core takes its fd and peer over.
        if extra:
            extra = {k: v for k, v in extra.items() if k != "socket" and k != "sockname"}
        self._extra = extra or None
        self._sockname = _NOT_YET  # asked of the socket when first wanted, or at close
        self._loop = loop
        self._sockobj = _UNMADE if type(sock) is _AcceptedSocket else sock
        self._server = server
        if server is not None:
            _server_attach(server, self)
        # The core enters the transport in loop._transports when it gets it (_set_transport).

    @property
    def _sock_fd(self):
        # asyncio's attribute: the fd the transport was made with
        return self._core._fd

    def _cache_extra(self, name, value):
        extra = self._extra
        if extra is None:
            extra = self._extra = {}
        extra[name] = value
        return value

    def get_extra_info(self, name, default=None):
        extra = _NO_EXTRA if self._extra is None else self._extra
        if name in extra:
            return extra[name]
        if name == "socket":
            sock = self._sockobj
            if sock is _UNMADE:  # an open connection rose accepted: its socket, made now
                sock = self._sock
            elif sock is None:  # closed: the socket it had (closed), as asyncio keeps it
                sock = self._closed_socket()
            return self._cache_extra("socket", trsock.TransportSocket(sock))
        if name == "sockname":
            return self._get_sockname()
        if name == "peername":
            return self._cache_extra("peername", self._core._peername())
        return default

    def _closed_socket(self):
        sock = self._core._socket()
        if sock is None:
            # closed before its socket was made: a closed socket of its kind, as asyncio's
            # extra "socket" is after close
            sock = socket.socket(*self._core._socket_kind())
            sock.close()
        return sock

    @property
    def _sock(self):
        # The transport's socket (None once closed), as asyncio's `_sock`. For a connection
        # rose accepted, the socket object is made on first use and owns the fd from then on.
        sock = self._sockobj
        if sock is _UNMADE:
            sock = self._sockobj = self._core._make_socket()
        return sock

    @_sock.setter
    def _sock(self, sock):
        # Code that wraps a transport's socket (CPython's tests do) may replace it; the core
        # goes on with the fd it has.
        self._sockobj = sock

    def _close_sock(self):
        sock = self._sockobj
        self._sockobj = None
        if sock is _UNMADE:
            core = getattr(self, "_core", None)
            if core is not None:
                core._close_fd()
        elif sock is not None:
            sock.close()

    def _get_sockname(self):
        sockname = self._sockname
        if sockname is _NOT_YET:
            try:
                if self._sockobj is _UNMADE:
                    sockname = self._core._sockname()
                else:
                    sockname = self._sockobj.getsockname()
            except (OSError, AttributeError):
                sockname = None
            self._sockname = sockname
        return sockname

    def _start(self, protocol, waiter, context=None):
        loop = self._loop
        loop.call_soon(protocol.connection_made, self, context=context)
        # only start reading once connection_made() has run
        loop.call_soon(self._core._start_reading, context=context)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None, context=context)

    def __repr__(self):
        info = [self.__class__.__name__]
        if self._sockobj is None:
            info.append("closed")
        elif self._core.is_closing():
            info.append("closing")
        core = getattr(self, "_core", None)
        info.append(f"fd={-1 if core is None else core._fd}")
        if self._loop is not None and not self._loop.is_closed():
            reading, writing = self._core._polling()
            info.append("read=polling" if reading else "read=idle")
            bufsize = self._core.get_write_buffer_size()
            info.append(f"write=<{'polling' if writing else 'idle'}, bufsize={bufsize}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn=warnings.warn):
        if getattr(self, "_sockobj", None) is None:
            return
        if getattr(self, "_core", None) is None:
            # __init__ failed before the core existed: nothing to warn about but the socket.
            self._close_sock()
            return
        _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
        self._close_sock()
        server = getattr(self, "_server", None)
        if server is not None and _compat.SERVER_TRACKS_TRANSPORTS:
            server._detach(self)  # as asyncio 3.13+: wait_closed() must not wait for it

    @property
    def _protocol_paused(self):
        # read by asyncio's sendfile fallback
        return self._core._protocol_paused

    @property
    def _paused(self):
        # asyncio's flag for pause_reading(), which some code (CPython's tests too) reads
        return self._core._paused

    @property
    def _closing(self):
        # asyncio's flag behind is_closing() (close(), abort() or a fatal error), which tests
        # and libraries read
        return self._core.is_closing()

    def get_protocol(self):
        return self._core.get_protocol()

    def is_closing(self):
        return self._core.is_closing()

    def _check_thread(self):
        # asyncio's debug mode refuses, from another thread, the callback that close() (with
        # nothing buffered) and abort() schedule; rose refuses the call itself, before the
        # transport changes (asyncio's is left half-closed for good).
        loop = self._loop
        if loop is not None and loop._debug:
            loop._check_thread()

    def close(self):
        if not self._core.get_write_buffer_size():
            self._check_thread()
        self._core.close()

    def is_reading(self):
        return self._core.is_reading()

    def pause_reading(self):
        if self._core._pause_reading() and self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self):
        if self._core._resume_reading() and self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def abort(self):
        self._check_thread()
        self._core._force_close(None)

    def get_write_buffer_size(self):
        return self._core.get_write_buffer_size()

    def get_write_buffer_limits(self):
        return self._core.get_write_buffer_limits()

    def set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._core._set_write_buffer_limits(high, low)

    # -- called by the core on rare paths ------------------------------------------------------

    def _fatal_error(self, exc, message="Fatal error on transport"):
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._core.get_protocol(),
                }
            )
        self._force_close(exc)

    def _force_close(self, exc):
        self._core._force_close(exc)

    def _flow_control_failed(self, message, exc):
        self._loop.call_exception_handler(
            {
                "message": message,
                "exception": exc,
                "transport": self,
                "protocol": self._core.get_protocol(),
            }
        )

    def _call_connection_lost(self, exc):
        core = self._core
        try:
            protocol = core.get_protocol()
            if protocol is not None:
                protocol.connection_lost(exc)
        finally:
            self._get_sockname()  # what the closed socket can no longer tell
            self._close_sock()
            self._loop = None
            core._detach()
            server = self._server
            if server is not None:
                _server_detach(server, self)
                self._server = None


class _SelectorDatagramTransport(_RoseTransport, transports.DatagramTransport):
    """rose's datagram transport (asyncio's name, so reprs and logs read the same); its I/O
    core is `rose._rose._SelectorDatagramTransport` (src/udp.rs). `sendto` is the core's."""

    __slots__ = ("sendto", "_address")

    max_size = 256 * 1024

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        self._setup(loop, sock, extra, None)
        self._address = address
        if self._extra is None or "peername" not in self._extra:
            try:
                peername = sock.getpeername()
            except OSError:
                peername = None
            self._cache_extra("peername", peername)
        core = _rose._SelectorDatagramTransport(
            loop,
            sock,
            protocol,
            address,
            bool(self._extra["peername"]),
            _compat.DATAGRAM_HEADER_SIZE,
            _compat.DATAGRAM_SENDS_EMPTY,
        )
        core._set_transport(self)
        self._core = core
        self.sendto = core.sendto
        self._start(protocol, waiter)

    def set_protocol(self, protocol):
        self._core.set_protocol(protocol)


class _SelectorSocketTransport(_RoseTransport, transports.Transport):
    """rose's stream transport for TCP and Unix sockets; its I/O core is
    `rose._rose._SelectorSocketTransport` (src/stream.rs). `write` and the other hot methods are the
    core's (installed below)."""

    __slots__ = ()

    # asyncio's markers: `start_tls` and `sendfile` check them.
    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    max_size = 256 * 1024

    def __init__(
        self, loop, sock, protocol, waiter=None, extra=None, server=None, context=None
    ):
        self._setup(loop, sock, extra, server)
        core = _rose._SelectorSocketTransport(
            loop,
            sock,
            protocol,
            isinstance(protocol, protocols.BufferedProtocol),
            context,
        )
        core._set_transport(self)
        self._core = core
        if type(sock) is not _AcceptedSocket:  # (rose's accept set it already)
            base_events._set_nodelay(sock)
        self._start(protocol, waiter, context)

    # -- the public API -----------------------------------------------------------------------

    def set_protocol(self, protocol):
        self._core.set_protocol(protocol, isinstance(protocol, protocols.BufferedProtocol))

    if _compat.WRITELINES_OWN:

        def writelines(self, list_of_data):
            # asyncio 3.12+'s own writelines(): refused after write_eof() and during
            # sendfile, one counted write on a lost connection, each chunk a buffer (3.14+
            # skips empty ones); the chunks then go out as one write.
            core = self._core
            if core._eof:
                raise RuntimeError("Cannot call writelines() after write_eof()")
            if core._empty_waiter is not None:
                raise RuntimeError("unable to writelines; sendfile is in progress")
            if not list_of_data:
                return
            if core._conn_lost:
                core._lost_write()
                return
            if _compat.WRITELINES_SKIPS_EMPTY:
                chunks = [memoryview(data) for data in list_of_data if data]
            else:
                chunks = [memoryview(data) for data in list_of_data]
            data = b"".join(chunks)
            if data:
                self.write(data)

    else:

        def writelines(self, list_of_data):
            # asyncio 3.11's WriteTransport.writelines: one join, one write.
            self.write(b"".join(list_of_data))

    @property
    def _read_ready_cb(self):
        # asyncio's reader callback attribute, which some code (CPython's own tests among it)
        # looks at: the core's reader, or None once the transport is closing (3.13+ clears it
        # in close()).
        core = self._core
        return None if core.is_closing() else core._read_ready

    def write_eof(self):
        self._core.write_eof()

    def can_write_eof(self):
        return True

    # -- called by the core on rare paths ------------------------------------------------------

    def _read_ready__on_eof(self):
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._core.get_protocol().eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open:
            # The protocol may still write, but nothing more can be read.
            self._core._stop_reading()
        else:
            self.close()

    def _call_connection_lost(self, exc):
        try:
            super()._call_connection_lost(exc)
        finally:
            waiter = self._core._empty_waiter
            if waiter is not None:
                waiter.set_exception(ConnectionError("Connection is closed by peer"))

    # -- sendfile support (asyncio's _sendfile_native protocol with the loop) -------------------

    def _make_empty_waiter(self):
        if self._core._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        waiter = self._loop.create_future()
        if not self._core.get_write_buffer_size():
            waiter.set_result(None)
        self._core._empty_waiter = waiter
        return waiter

    def _reset_empty_waiter(self):
        self._core._empty_waiter = None


# The hot methods (`write`, `is_closing`, `is_reading`, `get_write_buffer_size`,
# `get_protocol`) are the core's, called straight from the transport: method descriptors the
# core installs, which read the `_core` slot (no Python frame, no bound method per connection,
# no lookup per call). Should that fail, `write` is defined here and the others are
# _RoseTransport's.
if not _rose._install_transport_methods(_SelectorSocketTransport, _RoseTransport.__dict__["_core"]):

    def _write(self, data):
        self._core.write(data)

    _SelectorSocketTransport.write = _write
    del _write


async def sendfile_native(loop, transp, file, offset, count):
    """`loop._sendfile_native`: zero-copy `os.sendfile` on a rose stream transport's socket,
    with the transport paused and its buffer drained first (asyncio's procedure)."""
    if not isinstance(transp, _SelectorSocketTransport):
        raise exceptions.SendfileNotAvailableError("transport is not supported by sendfile")
    transp._core._list_transport(False)
    resume_reading = transp.is_reading()
    transp.pause_reading()
    await transp._make_empty_waiter()
    try:
        return await loop.sock_sendfile(transp._sock, file, offset, count, fallback=False)
    finally:
        transp._reset_empty_waiter()
        if resume_reading:
            transp.resume_reading()
        transp._core._list_transport(True)
