"""Child processes are reaped without taking SIGCHLD away from the user.

rose watches a child's exit with a pidfd on its reactor; stdlib 3.11 (ThreadedChildWatcher)
with a waiting thread. Either way a user's own SIGCHLD handler keeps working.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest
from conftest import import_rose


def test_user_sigchld_handler_and_subprocess_coexist(loop):
    seen = []
    previous = signal.signal(signal.SIGCHLD, lambda signum, frame: seen.append(signum))
    try:

        async def main():
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "raise SystemExit(7)")
            return await asyncio.wait_for(proc.wait(), 10)

        assert loop.run_until_complete(main()) == 7
        assert signal.getsignal(signal.SIGCHLD) is not signal.SIG_DFL  # still the user's
        assert seen and seen[0] == signal.SIGCHLD
    finally:
        signal.signal(signal.SIGCHLD, previous)


def test_many_children_exit_codes(loop):
    async def main():
        procs = [
            await asyncio.create_subprocess_exec(sys.executable, "-c", f"raise SystemExit({i})")
            for i in range(8)
        ]
        return [await asyncio.wait_for(p.wait(), 10) for p in procs]

    assert loop.run_until_complete(main()) == list(range(8))


def test_killed_child_reports_negative_signal(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(30)")
        proc.kill()
        return await asyncio.wait_for(proc.wait(), 10)

    assert loop.run_until_complete(main()) == -signal.SIGKILL


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "waiting-thread"])
def test_exit_is_reaped_only_when_published(monkeypatch, pidfd):
    """A child's pid stays reserved (an unreaped zombie) until the loop publishes its exit,
    so `send_signal()` can never reach a reaped, perhaps reused, pid (CPython gh-127049).

    rose only: asyncio has this guarantee from 3.14 on, while the default child watcher of
    3.11-3.13 reaps in its own thread first (a stdlib run of this test fails there). rose keeps
    it on every Python, with its pidfd and where pidfd_open is missing (made to fail here: its
    waiting thread then waits with WNOWAIT)."""
    if not pidfd:
        monkeypatch.delattr("os.pidfd_open")
    loop = import_rose().new_event_loop()

    async def main():
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        # Block the loop until the child is surely a zombie: the loop cannot publish yet.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        time.sleep(0.2)  # a waiting thread sees the exit meanwhile
        zombie = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        returncode = await asyncio.wait_for(proc.wait(), 10)
        return zombie, returncode

    try:
        zombie, returncode = loop.run_until_complete(main())
    finally:
        loop.close()
    assert returncode == 0
    assert zombie is not None and zombie.si_pid > 0


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "waiting-thread"])
def test_loop_closed_while_a_child_runs_leaves_no_zombie_and_no_fd(monkeypatch, caplog, pidfd):
    """rose only: asyncio's outcome depends on its child watcher (3.11's threaded watcher
    reaps the child and logs; 3.12+'s pidfd watcher leaves a zombie and its pidfd). rose, on
    every Python: a thread reaps the child once it exits, closes the pidfd, and logs as 3.11's
    watcher does."""
    if not pidfd:
        monkeypatch.delattr("os.pidfd_open")
    loop = import_rose().new_event_loop()
    before = len(os.listdir("/proc/self/fd"))

    async def main():
        return await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(0.3)")

    proc = loop.run_until_complete(main())
    pid = proc.pid
    loop.close()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")  # reaped: not even a zombie
    time.sleep(0.05)  # the reaping thread closes the pidfd right after
    assert len(os.listdir("/proc/self/fd")) <= before
    assert f"that handles pid {pid} is closed" in caplog.text
    # The abandoned process object: its transport never heard of the exit (the loop was
    # closed). Closing it finds the child gone, so nothing is killed and nothing warns.
    proc._transport.close()
