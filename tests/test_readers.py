"""add_reader, remove_reader, add_writer, remove_writer."""

import os

import pytest
from conftest import capture_exception_contexts


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


class FileLike:
    """Not a socket: only has fileno()."""

    def __init__(self, fd):
        self._fd = fd

    def fileno(self):
        return self._fd


def run_until_stopped(loop, guard=2):
    """``run_forever()``; a timer stops the loop after ``guard`` s if nothing else does."""
    timer = loop.call_later(guard, loop.stop)
    loop.run_forever()
    timer.cancel()


def run_briefly(loop, delay=0.05):
    run_until_stopped(loop, delay)


def test_add_reader_reads_data(loop, sockpair):
    rsock, wsock = sockpair
    got = []

    def on_readable(tag):
        data = rsock.recv(100)
        got.append((tag, data))
        if b"".join(d for _, d in got) == b"hello":
            loop.stop()

    assert loop.add_reader(rsock.fileno(), on_readable, "tag") is None
    loop.call_later(0.01, wsock.send, b"hello")
    run_until_stopped(loop)
    assert loop.remove_reader(rsock.fileno()) is True
    assert b"".join(d for _, d in got) == b"hello"
    assert all(tag == "tag" for tag, _ in got)


def test_reader_is_level_triggered(loop, sockpair):
    rsock, wsock = sockpair
    wsock.send(b"x")
    calls = []

    def on_readable():
        calls.append(1)
        if len(calls) == 5:
            loop.stop()

    loop.add_reader(rsock, on_readable)
    run_until_stopped(loop)
    loop.remove_reader(rsock)
    assert len(calls) == 5
    # Nobody read the byte: it is still there.
    assert rsock.recv(10) == b"x"


@pytest.mark.parametrize("blocking", [True, False])
def test_add_reader_keeps_blocking_mode(loop, sockpair, blocking):
    rsock, wsock = sockpair
    rsock.setblocking(blocking)
    wsock.setblocking(blocking)
    fds = (rsock.fileno(), wsock.fileno())
    before = [os.get_blocking(fd) for fd in fds]
    loop.add_reader(fds[0], lambda: None)
    loop.add_writer(fds[1], lambda: None)
    run_briefly(loop, 0.01)
    during = [os.get_blocking(fd) for fd in fds]
    loop.remove_reader(fds[0])
    loop.remove_writer(fds[1])
    after = [os.get_blocking(fd) for fd in fds]
    assert before == [blocking, blocking]
    assert during == before
    assert after == before


def test_add_reader_keeps_pipe_blocking_mode(loop, pipe):
    r, _ = pipe
    assert os.get_blocking(r)
    loop.add_reader(r, lambda: None)
    run_briefly(loop, 0.01)
    assert os.get_blocking(r)
    loop.remove_reader(r)
    assert os.get_blocking(r)


def test_add_reader_pipe(loop, pipe):
    r, w = pipe
    got = []

    def on_readable():
        got.append(os.read(r, 100))
        loop.stop()

    loop.add_reader(r, on_readable)
    loop.call_later(0.01, os.write, w, b"pipe-data")
    run_until_stopped(loop)
    assert loop.remove_reader(r) is True
    assert got == [b"pipe-data"]


def test_add_reader_file_like_object(loop, sockpair):
    rsock, wsock = sockpair
    obj = FileLike(rsock.fileno())
    got = []

    def on_readable():
        got.append(rsock.recv(100))
        loop.stop()

    assert loop.add_reader(obj, on_readable) is None
    wsock.send(b"via fileno()")
    run_until_stopped(loop)
    assert got == [b"via fileno()"]
    assert loop.remove_reader(obj) is True
    assert loop.remove_reader(obj) is False


def test_add_writer(loop, sockpair):
    rsock, wsock = sockpair
    calls = []

    def on_writable(arg):
        calls.append(arg)
        wsock.send(b"w")
        loop.stop()

    assert loop.add_writer(wsock.fileno(), on_writable, "arg") is None
    run_until_stopped(loop)
    assert calls == ["arg"]
    assert loop.remove_writer(wsock.fileno()) is True
    assert rsock.recv(10) == b"w"


def test_writer_is_level_triggered(loop, sockpair):
    _, wsock = sockpair
    calls = []

    def on_writable():
        calls.append(1)
        if len(calls) == 3:
            loop.stop()

    loop.add_writer(wsock, on_writable)
    run_until_stopped(loop)
    assert loop.remove_writer(wsock) is True
    assert len(calls) == 3


def test_remove_return_values(loop, sockpair):
    rsock, _ = sockpair
    fd = rsock.fileno()
    assert loop.remove_reader(fd) is False
    assert loop.remove_writer(fd) is False
    loop.add_reader(fd, lambda: None)
    assert loop.remove_writer(fd) is False
    assert loop.remove_reader(fd) is True
    assert loop.remove_reader(fd) is False
    loop.add_writer(fd, lambda: None)
    assert loop.remove_reader(fd) is False
    assert loop.remove_writer(fd) is True
    assert loop.remove_writer(fd) is False


def test_add_reader_replaces_callback(loop, sockpair):
    rsock, wsock = sockpair
    calls = []

    def first():
        calls.append("first")

    def second():
        calls.append("second")
        rsock.recv(10)
        loop.stop()

    loop.add_reader(rsock.fileno(), first)
    loop.add_reader(rsock.fileno(), second)
    wsock.send(b"x")
    run_until_stopped(loop)
    assert calls == ["second"]
    assert loop.remove_reader(rsock.fileno()) is True


def test_reader_and_writer_on_same_fd(loop, sockpair):
    sock, peer = sockpair
    events = []

    def on_readable():
        events.append("r")
        sock.recv(10)

    def on_writable():
        events.append("w")
        loop.remove_writer(sock.fileno())
        peer.send(b"ping")

    loop.add_reader(sock.fileno(), on_readable)
    loop.add_writer(sock.fileno(), on_writable)
    run_briefly(loop)
    assert events == ["w", "r"]
    # The reader survived the writer's removal.
    assert loop.remove_reader(sock.fileno()) is True


def test_remove_reader_stops_callbacks(loop, sockpair):
    rsock, wsock = sockpair
    calls = []
    wsock.send(b"x")

    def on_readable():
        calls.append(1)
        loop.remove_reader(rsock.fileno())

    loop.add_reader(rsock.fileno(), on_readable)
    run_briefly(loop)
    assert calls == [1]


def test_reader_exception_goes_to_handler(loop, sockpair):
    rsock, wsock = sockpair
    contexts = capture_exception_contexts(loop)

    def on_readable():
        loop.remove_reader(rsock.fileno())
        raise ValueError("reader failed")

    loop.add_reader(rsock.fileno(), on_readable)
    wsock.send(b"x")
    run_briefly(loop)
    assert len(contexts) == 1
    assert contexts[0]["message"].startswith("Exception in callback")
    assert isinstance(contexts[0]["exception"], ValueError)


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
@pytest.mark.parametrize("bad", [-1, object(), "text"], ids=["minus-one", "object", "str"])
def test_add_invalid_fd(loop, method, bad):
    with pytest.raises(ValueError):
        getattr(loop, method)(bad, lambda: None)


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
@pytest.mark.parametrize("bad", [-1, object()], ids=["minus-one", "object"])
def test_remove_invalid_fd(loop, method, bad):
    with pytest.raises(ValueError):
        getattr(loop, method)(bad)


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_add_on_closed_loop(loop, sockpair, method):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        getattr(loop, method)(sockpair[0].fileno(), lambda: None)


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
def test_remove_on_closed_loop(loop, sockpair, method):
    loop.close()
    assert getattr(loop, method)(sockpair[0].fileno()) is False
