"""The bad-input sweep's cases: every public loop, server, transport and handle method called
with wrong types, None, negative, huge, NaN and closed values.

A case is a name and a function of an `Env` (a fresh loop of the implementation under test and
the objects the call needs); the sweep compares what each case does on rose with what it does
on the running interpreter's asyncio: the exception's type and message, or the kind of result.
This module only builds and runs cases; `test_bad_input.py` compares, `badinput_child.py` runs
them in a child process.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import re
import socket
import sys
import tempfile

TIMEOUT = 1.0  # a coroutine case that takes longer has hung


class Env:
    """A fresh loop and what the cases call methods on; everything is closed by `close()`."""

    def __init__(self, new_event_loop):
        self.loop = new_event_loop()
        self.a, self.b = socket.socketpair()
        self.a.setblocking(False)
        self.closed_sock = socket.socket()
        self.closed_sock.close()
        self.closed_fd = _unused_fd()
        self._made = []

    def run(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))

    def stream(self):
        """A connected stream transport (client side of a socketpair)."""
        c, d = socket.socketpair()
        self._made.append(d)
        tr, _ = self.run(self.loop.create_connection(asyncio.Protocol, sock=c))
        self._made.append(tr)
        return tr

    def datagram(self):
        tr, _ = self.run(
            self.loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        )
        self._made.append(tr)
        return tr

    def server(self):
        srv = self.run(self.loop.create_server(asyncio.Protocol, "127.0.0.1", 0))
        self._made.append(srv)
        return srv

    def close(self):
        """Close everything; a loop that a case left unusable (a timer whose deadline is not a
        number breaks asyncio's run step) is closed all the same."""
        for obj in reversed(self._made):
            obj.close()
        if not self.loop.is_closed():
            try:
                self.loop.run_until_complete(asyncio.sleep(0))
            except Exception:  # noqa: BLE001 -- the case's outcome is already known
                pass
            self.loop.close()
        self.a.close()
        self.b.close()


def _unused_fd():
    """A number above everything a case opens, that no file has."""
    fd = 900
    while True:
        try:
            os.fstat(fd)
        except OSError:
            return fd
        fd += 1


class Odd:
    """An object of no useful type."""

    def __repr__(self):
        return "<Odd>"


def _bad_values(env):
    return {
        "None": None,
        "str": "x",
        "bytes": b"x",
        "-1": -1,
        "2**70": 2**70,
        "-2**70": -(2**70),
        "1.5": 1.5,
        "nan": math.nan,
        "inf": math.inf,
        "-inf": -math.inf,
        "object": Odd(),
        "list": [],
        "closed-socket": env.closed_sock,
        "closed-fd": env.closed_fd,
    }


BAD = [
    "None", "str", "bytes", "-1", "2**70", "-2**70", "1.5", "nan", "inf", "-inf", "object",
    "list", "closed-socket", "closed-fd",
]  # fmt: skip


def _cb(*args):
    pass


async def _coro():
    pass


# (name, number of positional arguments to vary, how to call it with those arguments)
def _loop_methods():
    return [
        ("call_soon", 1, lambda e, x: e.loop.call_soon(x)),
        ("call_soon-arg", 1, lambda e, x: e.loop.call_soon(_cb, x)),
        ("call_soon-context", 1, lambda e, x: e.loop.call_soon(_cb, context=x)),
        ("call_later-delay", 1, lambda e, x: e.loop.call_later(x, _cb)),
        ("call_later-callback", 1, lambda e, x: e.loop.call_later(0, x)),
        ("call_at-when", 1, lambda e, x: e.loop.call_at(x, _cb)),
        ("call_at-callback", 1, lambda e, x: e.loop.call_at(0, x)),
        ("call_soon_threadsafe", 1, lambda e, x: e.loop.call_soon_threadsafe(x)),
        ("add_reader-fd", 1, lambda e, x: e.loop.add_reader(x, _cb)),
        ("add_reader-callback", 1, lambda e, x: e.loop.add_reader(e.a, x)),
        ("add_writer-fd", 1, lambda e, x: e.loop.add_writer(x, _cb)),
        ("remove_reader", 1, lambda e, x: e.loop.remove_reader(x)),
        ("remove_writer", 1, lambda e, x: e.loop.remove_writer(x)),
        ("add_signal_handler-sig", 1, lambda e, x: e.loop.add_signal_handler(x, _cb)),
        ("add_signal_handler-callback", 1, lambda e, x: e.loop.add_signal_handler(10, x)),
        ("remove_signal_handler", 1, lambda e, x: e.loop.remove_signal_handler(x)),
        ("set_debug", 1, lambda e, x: e.loop.set_debug(x)),
        ("set_exception_handler", 1, lambda e, x: e.loop.set_exception_handler(x)),
        ("set_task_factory", 1, lambda e, x: e.loop.set_task_factory(x)),
        ("set_default_executor", 1, lambda e, x: e.loop.set_default_executor(x)),
        ("create_task", 1, lambda e, x: e.loop.create_task(x)),
        ("run_until_complete", 1, lambda e, x: e.loop.run_until_complete(x)),
        ("run_in_executor-executor", 1, lambda e, x: e.run(e.loop.run_in_executor(x, _cb))),
        ("run_in_executor-func", 1, lambda e, x: e.run(e.loop.run_in_executor(None, x))),
        ("sock_recv-sock", 1, lambda e, x: e.run(e.loop.sock_recv(x, 10))),
        ("sock_recv-n", 1, lambda e, x: e.run(e.loop.sock_recv(e.a, x))),
        ("sock_recv_into-buf", 1, lambda e, x: e.run(e.loop.sock_recv_into(e.a, x))),
        ("sock_sendall-data", 1, lambda e, x: e.run(e.loop.sock_sendall(e.a, x))),
        ("sock_sendall-sock", 1, lambda e, x: e.run(e.loop.sock_sendall(x, b"x"))),
        ("sock_recvfrom-n", 1, lambda e, x: e.run(e.loop.sock_recvfrom(e.a, x))),
        ("sock_sendto-addr", 1, lambda e, x: e.run(e.loop.sock_sendto(e.a, b"x", x))),
        ("sock_connect-address", 1, lambda e, x: e.run(e.loop.sock_connect(socket.socket(), x))),
        ("sock_accept", 1, lambda e, x: e.run(e.loop.sock_accept(x))),
        ("sock_sendfile-offset", 1, lambda e, x: e.run(e.loop.sock_sendfile(e.a, io.BytesIO(b"x"), x))),
        ("sock_sendfile-count", 1, lambda e, x: e.run(e.loop.sock_sendfile(e.a, io.BytesIO(b"x"), 0, x))),
        ("getaddrinfo-port", 1, lambda e, x: e.run(e.loop.getaddrinfo("127.0.0.1", x))),
        ("getnameinfo", 1, lambda e, x: e.run(e.loop.getnameinfo(x))),
        ("create_connection-port", 1, lambda e, x: e.run(e.loop.create_connection(asyncio.Protocol, "127.0.0.1", x))),
        ("create_connection-sock", 1, lambda e, x: e.run(e.loop.create_connection(asyncio.Protocol, sock=x))),
        ("create_server-backlog", 1, lambda e, x: e.run(e.loop.create_server(asyncio.Protocol, "127.0.0.1", 0, backlog=x)).close()),
        ("create_unix_connection-path", 1, lambda e, x: e.run(e.loop.create_unix_connection(asyncio.Protocol, x))),
        ("create_datagram_endpoint-local_addr", 1, lambda e, x: e.run(e.loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=x))[0].close()),
        ("connect_read_pipe", 1, lambda e, x: e.run(e.loop.connect_read_pipe(asyncio.Protocol, x))),
        ("shutdown_default_executor", 1, lambda e, x: e.run(e.loop.shutdown_default_executor(x)) if _executor_timeout() else None),
        ("sendfile-transport", 1, lambda e, x: e.run(e.loop.sendfile(x, io.BytesIO(b"x")))),
        ("stream-write", 1, lambda e, x: e.stream().write(x)),
        ("stream-writelines", 1, lambda e, x: e.stream().writelines(x)),
        ("stream-writelines-item", 1, lambda e, x: e.stream().writelines([x])),
        ("stream-set_write_buffer_limits-high", 1, lambda e, x: e.stream().set_write_buffer_limits(high=x)),
        ("stream-set_write_buffer_limits-low", 1, lambda e, x: e.stream().set_write_buffer_limits(low=x)),
        ("stream-get_extra_info", 1, lambda e, x: e.stream().get_extra_info(x)),
        ("stream-set_protocol", 1, lambda e, x: e.stream().set_protocol(x)),
        ("datagram-sendto-data", 1, lambda e, x: e.datagram().sendto(x, ("127.0.0.1", 9))),
        ("datagram-sendto-addr", 1, lambda e, x: e.datagram().sendto(b"x", x)),
        ("datagram-set_write_buffer_limits-high", 1, lambda e, x: e.datagram().set_write_buffer_limits(high=x)),
        ("server-close_clients", 0, lambda e: getattr(e.server(), "close_clients", _cb)()),
        ("handle-lt", 1, lambda e, x: e.loop.call_later(1, _cb) < x),
        ("handle-eq", 1, lambda e, x: e.loop.call_later(1, _cb) == x),
        ("timer-compare", 0, lambda e: _timer_order(e.loop)),
        ("handle-hash", 0, lambda e: _timer_hash(e.loop)),
        ("call_soon-keyword-callback", 0, lambda e: e.loop.call_soon(callback=_cb)),
        ("call_at-keywords", 0, lambda e: e.loop.call_at(when=e.loop.time(), callback=_cb)),
        ("call_later-keywords", 0, lambda e: e.loop.call_later(delay=0, callback=_cb)),
        ("call_soon-no-args", 0, lambda e: e.loop.call_soon()),
        ("remove_reader-never-added", 0, lambda e: e.loop.remove_reader(e.b)),
        ("closed-loop-call_soon", 0, lambda e: (e.loop.close(), e.loop.call_soon(_cb))),
        ("closed-loop-create_task", 0, lambda e: _closed_loop_task(e.loop)),
        ("closed-loop-add_reader", 0, lambda e: (e.loop.close(), e.loop.add_reader(e.a, _cb))),
        ("closed-loop-remove_reader", 0, lambda e: (e.loop.close(), e.loop.remove_reader(e.a))[1]),
        ("closed-loop-run_forever", 0, lambda e: (e.loop.close(), e.loop.run_forever())),
    ]


def _executor_timeout():
    import inspect

    return "timeout" in inspect.signature(asyncio.BaseEventLoop.shutdown_default_executor).parameters


def _timer_order(loop):
    handles = [loop.call_at(t, _cb) for t in (3.0, 1.0, 2.0)]
    order = [h.when() for h in sorted(handles)]
    return order, handles[1] < handles[2], handles[0] >= handles[2]


def _timer_hash(loop):
    a, b = loop.call_at(5.0, _cb), loop.call_at(5.0, _cb)
    return hash(a) == hash(b) == hash(5.0), a == b, a != b


def _closed_loop_task(loop):
    loop.close()
    coro = _coro()
    try:
        return loop.create_task(coro)
    finally:
        coro.close()


def cases():
    """Every case: a list of (name, function of an Env)."""
    out = []
    for name, nargs, call in _loop_methods():
        if nargs == 0:
            out.append((name, call))
            continue
        for value in BAD:
            out.append((f"{name}[{value}]", _with_bad(call, value)))
    return out


def _with_bad(call, value):
    def case(env):
        return call(env, _bad_values(env)[value])

    return case


_ADDRESS = re.compile(r"0x[0-9a-f]+")
_FD = re.compile(r"fd=\d+")
_TMP = re.compile(re.escape(tempfile.gettempdir()) + r"/\S+")


def normalise(text):
    """Object addresses, fd numbers and temporary paths differ between runs."""
    return _TMP.sub("<tmp>", _FD.sub("fd=?", _ADDRESS.sub("0x?", text)))


def outcome(env, func):
    """What calling func(env) does: ["raised", type, message] or ["returned", type name] (or
    the value itself for plain data)."""
    try:
        result = func(env)
    except BaseException as exc:  # noqa: BLE001 -- every outcome is compared
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return ["raised", type(exc).__name__, normalise(str(exc))]
    if isinstance(result, (bool, int, float, str, type(None), tuple, list)) and not any(
        isinstance(r, (asyncio.Handle, asyncio.Future)) for r in _flat(result)
    ):
        return ["returned", normalise(repr(result))]
    if asyncio.isfuture(result):
        result.cancel()
    return ["returned", _kind(result)]


def _flat(value):
    if isinstance(value, (tuple, list)):
        for v in value:
            yield from _flat(v)
    else:
        yield value


def _kind(obj):
    # rose's handles are its own classes (asyncio.Handle and TimerHandle are not their bases):
    # what a case returns is compared by its kind.
    name = type(obj).__name__
    return {"_ThreadSafeHandle": "Handle"}.get(name, name)


def run_case(new_event_loop, func):
    env = Env(new_event_loop)
    try:
        return outcome(env, func)
    finally:
        env.close()


if __name__ == "__main__":  # a quick look: python badinput_cases.py [rose]
    if len(sys.argv) > 1 and sys.argv[1] == "rose":
        import rose

        factory = rose.new_event_loop
    else:
        factory = asyncio.new_event_loop
    for name, func in cases():
        print(name, run_case(factory, func))
