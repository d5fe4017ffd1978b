"""The suite started with SIGINT ignored (a shell's background job, a service manager) runs as
from a terminal: the tests that send SIGINT get the default handler (see conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import child_env

HERE = os.path.dirname(os.path.abspath(__file__))


def test_sigint_tests_pass_when_started_with_sigint_ignored():
    # The SIGINT tests of the suite, on both loops, in a pytest that starts with SIGINT
    # ignored (and so, without conftest's reset, would get no KeyboardInterrupt).
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            os.path.join(HERE, "test_signals.py"), os.path.join(HERE, "test_runner.py"),
            "-k", "ctrl_c",
        ],
        cwd=os.path.dirname(HERE),
        env=child_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert " passed" in last and "failed" not in last, last
    assert int(last.split(" passed")[0].split()[-1]) >= 14, last


def test_a_child_started_with_sigint_ignored_keeps_it_ignored():
    # What the reset works around: an ignored SIGINT is inherited across exec, and Python
    # then installs no handler.
    result = subprocess.run(
        [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.strip() == "True"
    # ...and a child started by the suite now gets the default handler.
    result = subprocess.run(
        [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.strip() == "True"
