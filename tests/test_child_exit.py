"""Child processes are reaped without taking SIGCHLD away from the user.

rose watches a child's exit with a pidfd on its reactor; stdlib 3.11 (ThreadedChildWatcher)
with a waiting thread. Either way a user's own SIGCHLD handler keeps working.
"""

from __future__ import annotations

import asyncio
import signal
import sys


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
