"""The contract of the running interpreter's asyncio, probed once at import.

rose runs on CPython 3.11, 3.13, 3.14 and 3.15 from one source tree, and it uses some of
asyncio's own code (see rose/loop.py), whose private functions and attributes change between
versions. Every difference rose acts on is decided here, in one place, by looking at what the
running asyncio *has* or *does*: a class attribute, a function's signature, and, where nothing
else tells, how one of asyncio's methods behaves on a stand-in object. Never by comparing
version numbers: a bugfix release that backports a change, or a version nobody has seen yet,
then gets the behaviour of its own asyncio.

What each name means is the behaviour of the stdlib that has it; rose/loop.py and
rose/transports.py follow it.
"""

from __future__ import annotations

import collections
import errno
import inspect
import warnings
from asyncio import base_events, coroutines, events, format_helpers, selector_events, unix_events

__all__ = (
    "CALLBACK_SOURCE_TAKES_DEBUG",
    "DATAGRAM_HEADER_SIZE",
    "DATAGRAM_SENDS_EMPTY",
    "MAKE_TRANSPORT_CHECKS_FD",
    "POLICY_BASE",
    "POLICY_DEPRECATED",
    "SERVER_HAS_CLOSE_CLIENTS",
    "SERVER_TRACKS_TRANSPORTS",
    "SERVER_WAIT_CLOSED_WAITS_FOR_CLIENTS",
    "THREADSAFE_HANDLES",
    "TRANSPORT_CONTEXT",
    "UNIX_SERVER_CLEANUP",
    "WRITELINES_OWN",
    "WRITELINES_SKIPS_EMPTY",
    "iscoroutinefunction",
    "policy_deprecation_message",
    "set_policy",
    "type_error_prefix",
)

_Server = base_events.Server
_SocketTransport = selector_events._SelectorSocketTransport
_DatagramTransport = selector_events._SelectorDatagramTransport


def _params(func):
    try:
        return inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}


class _StandIn:
    """A bare `self` for calling one of asyncio's methods to see what it does first. It has
    only the attributes a probe gives it, so the method stops (with AttributeError) at the
    first thing it would touch."""

    def __init__(self, **attrs):
        self.__dict__.update(attrs)


class _Reached(Exception):
    """Raised by a stand-in's method: the probed code got that far."""


def _reached(*args, **kwargs):
    raise _Reached


def _outcome(func, *args):
    """What calling `func(*args)` raised, or None."""
    try:
        func(*args)
    except Exception as exc:  # noqa: BLE001 -- the probe looks at any outcome
        return exc
    return None


# -- event-loop policies ---------------------------------------------------------------------
# 3.14 renamed BaseDefaultEventLoopPolicy and AbstractEventLoopPolicy with a leading
# underscore, removed the child watchers and deprecated the policy functions. The Unix default
# policy (with the child watcher methods where asyncio still has them) is rose's base.
POLICY_BASE = (
    getattr(unix_events, "_UnixDefaultEventLoopPolicy", None)
    or getattr(events, "BaseDefaultEventLoopPolicy", None)
    or getattr(events, "_BaseDefaultEventLoopPolicy", None)
)

# The undeprecated twin asyncio keeps for its own use where the public function warns.
_set_policy = getattr(events, "_set_event_loop_policy", None) or getattr(
    events, "set_event_loop_policy", None
)


_PROBED_NAME = "'asyncio.get_event_loop_policy'"
_DEPRECATED_FALLBACK = f"{_PROBED_NAME} is deprecated"


def _policy_deprecation():
    """The warning text of `asyncio.get_event_loop_policy()` where it is deprecated, else None."""
    public = getattr(events, "get_event_loop_policy", None)
    if public is None:
        return _DEPRECATED_FALLBACK
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            public()
        except RuntimeError:  # past its removal version: warnings._deprecated raises
            return _DEPRECATED_FALLBACK
    for w in caught:
        if issubclass(w.category, DeprecationWarning):
            return str(w.message)
    return None


_POLICY_DEPRECATION = _policy_deprecation()

# True where `asyncio.set_event_loop_policy()` and friends issue a DeprecationWarning (3.14+).
POLICY_DEPRECATED = _POLICY_DEPRECATION is not None


def policy_deprecation_message(name):
    """The running asyncio's deprecation text for its policy API, naming `name` instead
    (e.g. "'rose.install' is deprecated and slated for removal in Python 3.16")."""
    return (_POLICY_DEPRECATION or _DEPRECATED_FALLBACK).replace(_PROBED_NAME, repr(name), 1)


def set_policy(policy):
    """Set the event-loop policy without the deprecation warning of 3.14+ (rose's own
    plumbing: `python -m rose`, the test fixtures)."""
    _set_policy(policy)


# -- coroutines -----------------------------------------------------------------------------
# 3.14 deprecated asyncio.iscoroutinefunction(); asyncio itself calls its silent twin.
iscoroutinefunction = getattr(coroutines, "_iscoroutinefunction", None) or coroutines.iscoroutinefunction

# -- servers -------------------------------------------------------------------------------
# 3.13: a server knows its transports (`_attach(transport)`, `_detach(transport)`, a WeakSet
# `_clients`) and has close_clients()/abort_clients(); wait_closed() waits for them (3.12.1).
# Before, `_attach()`/`_detach()` only counted.
SERVER_TRACKS_TRANSPORTS = len(_params(_Server._attach)) > 1
SERVER_HAS_CLOSE_CLIENTS = hasattr(_Server, "close_clients")
# (The two below are asyncio's Server and unix loop behaviour that rose gets by using their
# code; the tests take their expectations from them.)

# 3.13: create_unix_server(cleanup_socket=True) unlinks the socket file it made when the
# server closes (rose's Loop._stop_serving does it for the sockets asyncio's code registers).
UNIX_SERVER_CLEANUP = "cleanup_socket" in _params(unix_events._UnixSelectorEventLoop.create_unix_server)


def _wait_closed_waits_for_clients():
    # 3.12.1: wait_closed() on a closed server returns only once its connections are gone;
    # 3.11 returns at once. A closed stand-in with a client still attached (its waiters not
    # woken) tells which: the coroutine either finishes, or goes on to await a future (the
    # stand-in's is not awaitable: TypeError).
    loop = _StandIn(create_future=_StandIn)
    stand_in = _StandIn(_loop=loop, _sockets=None, _waiters=[], _active_count=1)
    coro = _Server.wait_closed(stand_in)
    try:
        coro.send(None)
    except StopIteration:
        return False
    except TypeError:
        return True
    finally:
        coro.close()
    return True


SERVER_WAIT_CLOSED_WAITS_FOR_CLIENTS = _wait_closed_waits_for_clients()


def _accept_attempts(*failures):
    """How many `accept()` calls asyncio's `_accept_connection` (backlog 1) makes when they
    fail with `failures` in turn (the last one repeating): its own code, on stand-ins."""
    calls = []

    class Listener:
        def accept(self):
            calls.append(None)
            raise failures[min(len(calls), len(failures)) - 1]

        def fileno(self):
            return -1

    loop = _StandIn(
        _debug=False,
        call_exception_handler=lambda context: None,
        _remove_reader=lambda fd: None,
        call_later=lambda *args: None,
        _start_serving=None,
    )
    selector_events.BaseSelectorEventLoop._accept_connection(loop, None, Listener(), backlog=1)
    return len(calls)


# 3.12: rose's own `_accept_connection` (rose/loop.py) follows the running asyncio's on these.
# One readiness event makes backlog + 1 accept() calls (3.11: backlog), and an aborted
# connection (ECONNABORTED) is skipped, not the end of the round (3.11: the end).
ACCEPT_ATTEMPTS_EXTRA = _accept_attempts(OSError(errno.EMFILE, "EMFILE")) - 1
ACCEPT_SKIPS_ABORTED = _accept_attempts(ConnectionAbortedError(), BlockingIOError()) > 1
# 3.15: the accept round copies the server's context per connection (`context=`).
ACCEPT_TAKES_CONTEXT = "context" in _params(selector_events.BaseSelectorEventLoop._accept_connection2)

# -- handles -------------------------------------------------------------------------------
# 3.13: a handle's repr shows the callback's arguments only in debug mode.
CALLBACK_SOURCE_TAKES_DEBUG = "debug" in _params(format_helpers._format_callback_source)

# 3.14: call_soon_threadsafe() returns an `events._ThreadSafeHandle`, whose cancel() and
# cancelled() from another thread wait while its callback runs (a lock around the run); its
# repr names that class.
THREADSAFE_HANDLES = hasattr(events, "_ThreadSafeHandle")

# -- transports ------------------------------------------------------------------------------
# 3.15: a transport runs its protocol's callbacks in a context of its own (the server's,
# copied per connection, or create_connection(context=)).
TRANSPORT_CONTEXT = "context" in _params(selector_events._SelectorTransport.__init__)

# 3.12: the selector loop's _make_*_transport refuse an fd that another transport uses.
MAKE_TRANSPORT_CHECKS_FD = isinstance(
    _outcome(
        selector_events.BaseSelectorEventLoop._make_socket_transport,
        _StandIn(_ensure_fd_no_transport=_reached),
        None,
        None,
    ),
    _Reached,
)

# 3.12: stream transports have a writelines() of their own (no join; refused after
# write_eof() and during sendfile; a lost connection counts one write).
WRITELINES_OWN = "writelines" in vars(_SocketTransport)


def _writelines_skips_empty():
    # 3.14 (gh-155888) drops empty chunks and returns if nothing is left; before, every chunk
    # is buffered and the transport goes on to write.
    stand_in = _StandIn(
        _eof=False, _empty_waiter=None, _conn_lost=0, _buffer=collections.deque(), _buffer_size=0
    )
    return WRITELINES_OWN and _outcome(_SocketTransport.writelines, stand_in, [b""]) is None


WRITELINES_SKIPS_EMPTY = _writelines_skips_empty()


def _type_error_prefix(method):
    # Both methods check the type first: the message is the running asyncio's, up to the name.
    exc = _outcome(method, _StandIn(), 0)
    text = str(exc) if isinstance(exc, TypeError) else ""
    head, sep, _ = text.rpartition(", not ")
    return head if sep else "data argument must be a bytes-like object"


_TYPE_ERROR_PREFIX = {
    "write": _type_error_prefix(_SocketTransport.write),
    "sendto": _type_error_prefix(_DatagramTransport.sendto),
}


def type_error_prefix(method):
    """The start of asyncio's TypeError for non-bytes data given to `write` or `sendto`."""
    return _TYPE_ERROR_PREFIX[method]


# 3.12: an empty datagram is sent (before, sendto(b'') did nothing), and every buffered
# datagram counts 8 bytes more than its data towards the write buffer size.
DATAGRAM_SENDS_EMPTY = isinstance(_outcome(_DatagramTransport.sendto, _StandIn(), b""), AttributeError)
DATAGRAM_HEADER_SIZE = getattr(_DatagramTransport, "_header_size", 0)
