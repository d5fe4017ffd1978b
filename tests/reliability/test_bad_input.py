"""The bad-input sweep: rose answers every case of badinput_cases.py as the running asyncio does.

Each implementation runs all the cases in a child process (badinput_child.py), one JSON line
per case. A child that dies or hangs inside a case loses only that case (recorded as `crash`
or `hang`: a failure) and a new child goes on after it. Then each case's outcome on rose must
equal stdlib's: the exception's type and message, or what it returned.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

import pytest
from conftest import child_env

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "badinput_child.py")
CASE_TIMEOUT = 10  # seconds a case may take (coroutine cases time out after 1 s themselves)

# Cases where rose keeps a documented difference (README, "Differences from asyncio"):
# name prefix -> why.
KNOWN = {
    "call_at-when[": "asyncio schedules a timer whose deadline is not a number and its run step "
    "fails on it later (a TypeError out of run_forever); rose rejects it at once with the "
    "TypeError of float(when)",
}


def run_all(impl):
    """{case name: outcome} for one implementation."""
    results = {}
    first = 0
    while True:
        proc = subprocess.Popen(
            [sys.executable, CHILD, impl, str(first)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            start_new_session=True,
        )
        current, buf, done = None, b"", False
        deadline = time.monotonic() + CASE_TIMEOUT
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                ready, _, _ = select.select([proc.stdout], [], [], left)
                if not ready:
                    break
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    event = json.loads(line)
                    if event.get("done"):
                        done = True
                    elif event.get("start"):
                        current = event
                        deadline = time.monotonic() + CASE_TIMEOUT
                    else:
                        results[event["name"]] = event["outcome"]
                        current = None
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        if done:
            return results
        if current is None:
            raise AssertionError(f"the {impl} child stopped outside any case (rc {proc.returncode})")
        hung = proc.returncode == -9 and time.monotonic() >= deadline
        results[current["name"]] = ["hang" if hung else "crash", proc.returncode]
        first = current["index"] + 1


@pytest.fixture(scope="module")
def outcomes():
    return {impl: run_all(impl) for impl in ("asyncio", "rose")}


def test_every_case_ran_on_both(outcomes):
    assert len(outcomes["rose"]) == len(outcomes["asyncio"]) > 400
    assert set(outcomes["rose"]) == set(outcomes["asyncio"])


def test_nothing_crashes_or_hangs(outcomes):
    for impl, results in outcomes.items():
        bad = {name: out for name, out in results.items() if out[0] in ("crash", "hang")}
        assert bad == {}, f"{impl}: {bad}"


def test_rose_answers_as_asyncio(outcomes):
    differ = {}
    for name, expected in outcomes["asyncio"].items():
        got = outcomes["rose"].get(name)
        if got != expected and not any(name.startswith(p) for p in KNOWN):
            differ[name] = {"asyncio": expected, "rose": got}
    assert differ == {}, json.dumps(differ, indent=1)
