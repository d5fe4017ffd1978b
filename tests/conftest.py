"""Shared fixtures: every test runs once on stdlib asyncio and once on rose.

The stdlib run proves the test itself is right; the rose run checks rose
against it. If ``rose`` cannot be imported, the rose params fail (they are
never skipped), so a broken build cannot pass silently.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import importlib.util
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings

import pytest

IMPLS = ["asyncio", "rose"]


def _load_stdlib_contract():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rose", "_compat.py")
    spec = importlib.util.spec_from_file_location("_rose_stdlib_contract", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What the running interpreter's asyncio does where versions differ: rose/_compat.py, loaded
# on its own (it needs only asyncio, not the compiled core). Tests take version-dependent
# expectations from it; the stdlib run of every such test checks them against the real thing.
STDLIB = _load_stdlib_contract()

# A shell's background job or a service manager may start the tests with SIGINT ignored; then
# Python installs no KeyboardInterrupt handler, and neither do the children the tests start
# (an ignored signal stays ignored across exec). The tests that send SIGINT assume the default,
# as a user's terminal gives it: install it here, which also gives every child the default
# disposition (a handled signal is reset to SIG_DFL by exec).
signal.signal(signal.SIGINT, signal.default_int_handler)


def import_rose():
    """Import rose or fail the current test (never skip it)."""
    try:
        import rose
    except ImportError as exc:  # pragma: no cover - only while rose is missing
        pytest.fail(f"rose cannot be imported: {exc!r}", pytrace=False)
    missing = [
        name
        for name in ("new_event_loop", "Loop", "_EventLoopPolicy", "install", "run")
        if not hasattr(rose, name)
    ]
    if missing:
        pytest.fail(f"rose is importable but lacks {missing}", pytrace=False)
    return rose


@pytest.fixture(params=IMPLS)
def impl(request):
    """The implementation under test: ``"asyncio"`` or ``"rose"``."""
    if request.param == "rose":
        import_rose()
    return request.param


@pytest.fixture
def loop_factory(impl):
    """``asyncio.new_event_loop`` or ``rose.new_event_loop``."""
    if impl == "rose":
        return import_rose().new_event_loop
    return asyncio.new_event_loop


def is_impl_loop(impl, loop):
    """True if ``loop`` is a loop of implementation ``impl``."""
    if impl == "rose":
        return isinstance(loop, import_rose().Loop)
    return isinstance(loop, asyncio.BaseEventLoop)


@pytest.fixture
def new_loop(loop_factory):
    """Factory for fresh loops; every loop it made is closed at teardown."""
    made = []

    def make():
        lp = loop_factory()
        made.append(lp)
        return lp

    yield make
    for lp in made:
        # A loop still running here belongs to a thread the test lost control
        # of (a failure was already reported); closing it would only raise.
        if not lp.is_running():
            lp.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def loop(new_loop):
    """A fresh loop of the implementation under test."""
    return new_loop()


def capture_exception_contexts(loop):
    """Install an exception handler on ``loop``; returns the list it appends contexts to."""
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    return contexts


def pattern(n):
    """n bytes of consecutive 32-bit counters: a lost or reordered byte shows."""
    return array.array("I", range((n + 3) // 4)).tobytes()[:n]


@contextlib.asynccontextmanager
async def closing_transport(connect, *, wait_lost=True):
    """``(transport, protocol)`` of the awaited ``connect``, closed on exit.

    With ``wait_lost``, exit also waits for the protocol's ``lost`` future
    (set by its connection_lost).
    """
    tr, proto = await connect
    try:
        yield tr, proto
    finally:
        tr.close()
        if wait_lost:
            await proto.lost


@contextlib.contextmanager
def temporary_file(data):
    """An unnamed temporary file holding ``data``, positioned at its start."""
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        yield f


@pytest.fixture
def short_tmp():
    """A short directory (AF_UNIX paths are limited to ~107 bytes)."""
    d = tempfile.mkdtemp(prefix="rose-")
    yield d
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


@pytest.fixture
def sockpair():
    """A connected ``socket.socketpair()``, closed at teardown."""
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@contextlib.contextmanager
def policy_api():
    """Around a use of asyncio's (or rose's) event-loop policy API: where the running asyncio
    deprecates it (3.14+) a DeprecationWarning must come, elsewhere none may."""
    if STDLIB.POLICY_DEPRECATED:
        with pytest.warns(DeprecationWarning, match="is deprecated"):
            yield
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield


@pytest.fixture(autouse=True)
def _restore_policy():
    """Tests that install a policy must not leak it into later tests."""
    yield
    STDLIB.set_policy(None)  # without 3.14's deprecation warning


# --------------------------------------------------------------------------
# Subprocess helpers
# --------------------------------------------------------------------------


def _rose_search_path():
    """The sys.path entry this process imports rose from, if any."""
    try:
        import rose
    except ImportError:
        return None
    locations = list(getattr(rose, "__path__", []))
    if not locations:
        return None
    return os.path.dirname(os.path.abspath(locations[0]))


def child_env(extra=None, drop=(), paths=()):
    """Environment for a child python that finds rose as this process does.

    ``extra`` is merged into the environment, ``drop`` names variables to
    remove, ``paths`` are prepended to PYTHONPATH.
    """
    env = dict(os.environ)
    for key in drop:
        env.pop(key, None)
    paths = [str(p) for p in paths]
    rose_path = _rose_search_path()
    if rose_path:
        paths.append(rose_path)
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


PRELUDE = """\
import asyncio, os, sys
IMPL = {impl!r}
if IMPL == "rose":
    import rose
    new_event_loop, run = rose.new_event_loop, rose.run
else:
    new_event_loop, run = asyncio.new_event_loop, asyncio.run
"""


def child_code(impl, body):
    """Python source for a child; ``new_event_loop`` and ``run`` are the impl's."""
    return PRELUDE.format(impl=impl) + textwrap.dedent(body)


def run_python(args, *, env=None, cwd=None, timeout=20, input=None):
    """Run ``sys.executable *args`` to completion and return the result."""
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        env=child_env() if env is None else env,
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_child(impl, body, **kwargs):
    """Run ``body`` (with the impl prelude) in a child python."""
    return run_python(["-c", child_code(impl, body)], **kwargs)


class Child:
    """A child python we talk to line by line (for signal tests)."""

    def __init__(self, impl, body, env=None):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", child_code(impl, body)],
            env=child_env() if env is None else env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._buf = b""

    def readline(self, timeout):
        """The next stdout line (str, without newline) or None on timeout/EOF."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def wait(self, timeout):
        """Wait for exit; returns (returncode or None if still running, rest of stdout, stderr)."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, None, None
        return self.proc.returncode, (self._buf + out).decode(), err.decode()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def spawn():
    """Start ``Child`` processes; any still alive at teardown are killed."""
    children = []

    def start(impl, body, env=None):
        child = Child(impl, body, env)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
