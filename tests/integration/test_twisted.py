"""Twisted via `asyncioreactor.install(eventloop=<a rose loop>)`: the reactor is installed
once per process, so each run is a child (tests/integration/apps/twisted_app.py)."""

from __future__ import annotations

import json
import subprocess

from frameworks import APPS, LOOP_NAMES, child_env, python


def test_echo_timer_and_thread(impl):
    # the child reports its reactor's loop: rose's Loop or stdlib's, and the one it was given
    proc = subprocess.run(
        python("twisted_app.py", impl),
        cwd=APPS,
        env=child_env(paths=[APPS]),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[-1] == "reactor stopped", proc.stdout
    assert json.loads(lines[0]) == {
        "loop": LOOP_NAMES[impl],
        "reactor_loop_is_ours": True,
        "echo_ok": True,
        "timer_delay_ok": True,
        "timer_order": ["first", "second"],
        "thread_ok": True,
        "thread_value": 4950,
        "from_future": "from asyncio",
    }
