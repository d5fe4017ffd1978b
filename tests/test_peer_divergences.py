"""What peers' own test suites (aiohttp's, uvloop's) caught rose doing differently from
asyncio: the attributes they read, the exception handler's context, a patched clock, and the
warnings an unclosed transport gives when it is collected."""

from __future__ import annotations

import ast
import asyncio
import gc
import logging
import socket
import warnings
from unittest import mock

import pytest
from conftest import capture_exception_contexts, run_child

TIMEOUT = 2.0


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


# -- the flags behind pause_reading() and is_closing() ------------------------------------


async def _stream_pair(loop):
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    transport, _ = await loop.create_connection(asyncio.Protocol, *server.sockets[0].getsockname())
    return server, transport


def test_stream_transport_paused_and_closing_flags(loop):
    async def main():
        server, transport = await _stream_pair(loop)
        states = [(transport._paused, transport._closing)]
        transport.pause_reading()
        states.append((transport._paused, transport._closing))
        transport.resume_reading()
        states.append((transport._paused, transport._closing))
        transport.close()
        states.append((transport._closing, transport.is_closing()))
        server.close()
        await server.wait_closed()
        return states

    assert run(loop, main()) == [(False, False), (True, False), (False, False), (True, True)]


def test_stream_transport_closing_after_abort(loop):
    async def main():
        server, transport = await _stream_pair(loop)
        transport.abort()
        closing = transport._closing
        server.close()
        await server.wait_closed()
        return closing

    assert run(loop, main()) is True


def test_datagram_transport_paused_and_closing_flags(loop):
    async def main():
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        states = [(transport._paused, transport._closing)]
        transport.pause_reading()
        states.append((transport._paused, transport._closing))
        transport.resume_reading()
        transport.close()
        states.append((transport._paused, transport._closing))
        return states

    assert run(loop, main()) == [(False, False), (True, False), (False, True)]


# -- the exception handler's context --------------------------------------------------------


def failing_callback(arg):
    raise ZeroDivisionError(arg)


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_soon_threadsafe"])
def test_handler_context_handle_has_its_callback(loop, method):
    """The handle a handler gets still has its callback while the handler runs, so its repr
    and ``_callback`` name what failed (asyncio's are never cleared)."""
    seen = []

    def handler(lp, context):
        handle = context["handle"]
        seen.append((handle._callback, handle._args, repr(handle)))

    loop.set_exception_handler(handler)
    if method == "call_later":
        loop.call_later(0, failing_callback, "x")
    else:
        getattr(loop, method)(failing_callback, "x")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    [(callback, args, text)] = seen
    assert callback is failing_callback
    assert args == ("x",)
    assert "failing_callback" in text


def test_default_handler_prints_the_callback_and_a_traceback(loop, caplog):
    """A C-level callable that raises (``Future.set_result`` of a done future): the default
    handler's log names the callback and carries a traceback, as on asyncio."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    fut = loop.create_future()
    fut.set_result(1)
    loop.call_soon(fut.set_result, 2)
    loop.call_soon(loop.stop)
    loop.run_forever()
    [record] = [r for r in caplog.records if r.name == "asyncio"]
    assert record.getMessage().startswith("Exception in callback ")
    assert "set_result" in record.getMessage()
    assert "handle: <Handle " in record.getMessage()
    assert "set_result" in record.getMessage().split("handle: ", 1)[1]
    exc_type, exc, tb = record.exc_info
    assert exc_type is asyncio.InvalidStateError
    assert tb is not None
    formatted = logging.Formatter().formatException(record.exc_info)
    assert formatted.startswith("Traceback (most recent call last):")
    assert formatted.rstrip().endswith("asyncio.exceptions.InvalidStateError: invalid state")


def test_handle_kept_by_a_handler_still_names_the_callback(loop):
    contexts = capture_exception_contexts(loop)
    loop.call_soon(failing_callback, "y")
    loop.call_soon(loop.stop)
    loop.run_forever()
    [context] = contexts
    assert isinstance(context["exception"], ZeroDivisionError)
    assert context["message"].startswith("Exception in callback failing_callback(")


# -- a replaced or overridden time() ---------------------------------------------------------


def test_patched_time_decides_which_timers_are_due(loop):
    """aiohttp's test_keepalive_expires_on_time: with ``loop.time`` patched, a timer is due
    when the patched clock says so, as in asyncio's run step."""

    async def main():
        fired = []
        now = loop.time()
        with mock.patch.object(loop, "time") as fake:
            fake.return_value = now
            loop.call_at(now + 30, fired.append, "at")
            loop.call_later(30, fired.append, "later")  # call_later reads the patched clock
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            before = list(fired)
            fake.return_value = now + 30
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        return before, fired

    # Not under wait_for: its deadline (3.12+: asyncio.timeout) would read the patched clock.
    before, after = loop.run_until_complete(main())
    assert before == []
    assert after == ["at", "later"]


def test_patched_time_sets_how_long_the_loop_waits(loop):
    """The wait for the next timer is measured on the patched clock: a timer 0.05 s ahead of
    a clock that is one hour behind fires after 0.05 s, not after an hour."""

    async def main():
        real = loop.time
        with mock.patch.object(loop, "time", side_effect=lambda: real() - 3600):
            done = loop.create_future()
            start = real()
            loop.call_at(loop.time() + 0.05, done.set_result, None)
            await done
            return real() - start

    assert 0.04 <= run(loop, main()) < 1.0


def test_time_is_asked_again_after_the_patch_is_undone(loop):
    async def main():
        with mock.patch.object(loop, "time", return_value=0.0):
            pass
        assert "time" not in vars(loop)
        start = loop.time()
        await asyncio.sleep(0.02)
        return loop.time() - start

    assert 0.015 <= run(loop, main()) < 1.0


def test_subclass_time_is_honoured(loop_factory):
    base_loop = loop_factory()
    base = type(base_loop)
    base_loop.close()

    class Shifted(base):
        def time(self):
            return super().time() + 1000.0

    loop = Shifted()
    try:

        async def main():
            fired = loop.create_future()
            when = loop.time() + 0.02
            loop.call_at(when, fired.set_result, None)
            await fired
            return loop.time() >= when

        assert loop.run_until_complete(asyncio.wait_for(main(), TIMEOUT)) is True
    finally:
        loop.close()


# -- the warnings of an unclosed transport that is collected --------------------------------

GC_WARNINGS = """
import gc, warnings
warnings.simplefilter("always")
caught = []
warnings.showwarning = lambda message, category, *a, **k: caught.append(
    (category.__name__, str(message).split(" ", 2)[1]))
loop = new_event_loop()
async def main():
    if KIND == "udp":
        await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    else:
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        await loop.create_connection(asyncio.Protocol, *server.sockets[0].getsockname())
        server.close()
loop.run_until_complete(main())
loop.close()
gc.collect()
print(sorted(caught))
"""


def test_unclosed_datagram_transport_warns_once(impl):
    """asyncio's datagram transport is freed when the closed loop lets it go: it warns
    "unclosed transport" and closes its socket, so the socket itself does not warn too."""
    result = run_child(impl, "KIND = 'udp'\n" + GC_WARNINGS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str([("ResourceWarning", "transport")])


def test_unclosed_stream_transports_warn_once_each(impl):
    """Stream transports sit in reference cycles on asyncio too, and the collector finalizes
    a cycle's objects in no set order: whether a socket goes first and warns for itself
    depends on it (asyncio 3.11 warns for both sockets here). Each transport warns once."""
    result = run_child(impl, "KIND = 'tcp'\n" + GC_WARNINGS)
    assert result.returncode == 0, result.stderr
    caught = ast.literal_eval(result.stdout)
    assert caught.count(("ResourceWarning", "transport")) == 2
    assert set(caught) <= {("ResourceWarning", "transport"), ("ResourceWarning", "<socket.socket")}


def test_socket_of_unclosed_transport_is_closed_when_collected(loop):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    async def main():
        await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)

    run(loop, main())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop.close()
        gc.collect()
    assert sock.fileno() == -1
    assert [str(w.message).split(" ", 2)[:2] for w in caught] == [["unclosed", "transport"]]


def test_set_debug_takes_any_value(loop):
    loop.set_debug(1)
    assert loop.get_debug() == 1
    loop.set_debug(0)
    assert not loop.get_debug()
