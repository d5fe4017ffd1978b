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
