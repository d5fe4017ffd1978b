"""Helpers for the framework tests: server processes, free ports, loop names.

A server child runs in its own session (process group), writes its output to a file (no
pipe can fill up and stall it), and is stopped by pid: by the signal a test sends, else
SIGKILL to its whole group at teardown, so no worker it forked outlives the test.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")  # the apps the server children run (their cwd)
if APPS not in sys.path:
    sys.path.insert(0, APPS)
from appcommon import stream_chunk, stream_digest  # noqa: E402,F401


def _tests_conftest():
    # tests/conftest.py's helpers (child_env, import_rose). Loaded by path under a name of its
    # own: "conftest" in sys.modules is whichever conftest pytest imported last.
    name = "_rose_tests_conftest"
    if name not in sys.modules:
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conftest.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


child_env = _tests_conftest().child_env
import_rose = _tests_conftest().import_rose


# What the app endpoints report for each implementation's loop: the loop class's module and
# name. uvicorn's `--loop asyncio` makes an `asyncio.SelectorEventLoop`, which on Linux is
# `asyncio.unix_events._UnixSelectorEventLoop`, as `asyncio.new_event_loop()` makes.
LOOP_NAMES = {
    "rose": "rose.loop.Loop",
    "asyncio": "asyncio.unix_events._UnixSelectorEventLoop",
}
# What uvicorn's `--loop auto` (its default, and uvicorn-worker's) gives asyncio.Runner: uvloop's
# loop where uvloop is installed (the bench extra installs it), else stdlib's. The servers run
# with this interpreter, so they see the same packages.
UVICORN_AUTO_LOOP = "uvloop.Loop" if importlib.util.find_spec("uvloop") else LOOP_NAMES["asyncio"]


def loop_name(loop):
    cls = type(loop)
    return f"{cls.__module__}.{cls.__qualname__}"


def assert_impl_loop(impl, loop):
    """The running loop is the implementation's own (rose's Loop, or stdlib's)."""
    if impl == "rose":
        assert isinstance(loop, import_rose().Loop), loop
    else:
        assert isinstance(loop, asyncio.BaseEventLoop), loop
        assert loop_name(loop) == LOOP_NAMES["asyncio"], loop


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (for servers that need one given)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server child process; ``out`` is its combined stdout and stderr so far."""

    def __init__(self, args, *, cwd=None, env=None):
        self.args = args
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            args,
            cwd=cwd or APPS,
            env=env or child_env(paths=[APPS]),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self):
        return self.proc.pid

    @property
    def out(self):
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def wait_for(self, text, timeout=20):
        """Wait until ``text`` is in the output; fail (with the output) if the child exits."""
        deadline = time.monotonic() + timeout
        while text not in self.out:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited ({self.proc.returncode}) before {text!r}:\n{self.out}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} from the server in {timeout} s:\n{self.out}")
            time.sleep(0.02)

    def wait_port(self, port, host="127.0.0.1", timeout=20):
        """Wait until the server accepts TCP connections on ``port``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited ({self.proc.returncode}) before listening:\n{self.out}")
            try:
                socket.create_connection((host, port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"server not listening on {port} in {timeout} s:\n{self.out}")
                time.sleep(0.02)

    def stop(self, sig, timeout=15):
        """Send ``sig`` to the server (its pid only) and wait; returns its exit status."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server still running {timeout} s after {sig!r}:\n{self.out}")

    def kill(self):
        """SIGKILL the server's whole process group (its forked workers too)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._log.close()


@pytest.fixture(name="server")
def server_fixture():
    """``server``: start ``Server`` children; every one is killed (with its group) at teardown.
    (A test module imports ``server_fixture`` to have it.)"""
    started = []

    def start(args, **kwargs):
        srv = Server(args, **kwargs)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.kill()


def python(*args):
    return [sys.executable, *args]


def rose_or_plain(impl, *args):
    """``python -m rose ARGS`` on rose, ``python ARGS`` on stdlib."""
    if impl == "rose":
        return python("-m", "rose", *args)
    return python(*args)


def run(impl_factory, coro):
    """Run ``coro`` to completion on a fresh loop from ``impl_factory``."""
    with asyncio.Runner(loop_factory=impl_factory) as runner:
        return runner.run(coro)


# pytest-asyncio (and pytest-aiohttp, built on it) are pytest plugins that load themselves
# into every pytest run of the interpreter they are installed in, and pytest-asyncio 1.x then
# warns at configure time unless `asyncio_default_fixture_loop_scope` is set in the pytest
# configuration: with this project's `filterwarnings = ["error"]` that warning stops every
# pytest run (the whole test suite, not only this tier). So they are not in the `integration`
# extra: the tests install these pinned versions into a folder of their own, which only the
# child pytest they start puts on its path.
PYTEST_PLUGINS = ["pytest-asyncio==1.5.0", "pytest-aiohttp==1.1.1"]
_PLUGIN_DIR = os.path.join(
    os.path.dirname(os.path.dirname(HERE)), ".venv", "pytest-plugins", sys.version.split()[0]
)


def pytest_plugin_dir():
    """A folder holding PYTEST_PLUGINS for this interpreter (installed on first use)."""
    stamp = os.path.join(_PLUGIN_DIR, "installed.txt")
    want = "\n".join(PYTEST_PLUGINS)
    if os.path.exists(stamp):
        with open(stamp) as f:
            if f.read() == want:
                return _PLUGIN_DIR
    tmp = _PLUGIN_DIR + ".tmp"
    subprocess.run(["rm", "-rf", tmp, _PLUGIN_DIR], check=True)
    proc = subprocess.run(
        python("-m", "pip", "install", "-q", "--no-deps", "--target", tmp, *PYTEST_PLUGINS),
        capture_output=True, text=True, timeout=120,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip could not install {PYTEST_PLUGINS}:\n{proc.stdout}{proc.stderr}")
    with open(os.path.join(tmp, "installed.txt"), "w") as f:
        f.write(want)
    os.rename(tmp, _PLUGIN_DIR)
    return _PLUGIN_DIR


CHILD_PYTEST_INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


def run_child_pytest(folder, files, *args):
    """Write ``files`` ({name: source}) into ``folder`` and run pytest on them in a child
    that has the pinned pytest plugins; returns the CompletedProcess."""
    for name, source in {"pytest.ini": CHILD_PYTEST_INI, **files}.items():
        with open(os.path.join(folder, name), "w") as f:
            f.write(source)
    return subprocess.run(
        python("-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(folder),
               "-c", os.path.join(folder, "pytest.ini"), *args, str(folder)),
        cwd=folder,
        env=child_env(paths=[pytest_plugin_dir()], drop=["PYTEST_ADDOPTS"]),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
