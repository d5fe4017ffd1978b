"""Ctrl-C and signal.signal handlers while the loop sleeps (child processes)."""

import signal
import time

import pytest

IDLE_RUN_FOREVER = """
loop = new_event_loop()
loop.call_soon(lambda: print("ready", flush=True))
loop.run_forever()
print("run_forever returned", flush=True)
"""

IDLE_SLEEPING = """
loop = new_event_loop()
loop.call_soon(lambda: print("ready", flush=True))
loop.run_until_complete(asyncio.sleep(30))
print("sleep finished", flush=True)
"""

BUSY_CALLBACK = """
import time
loop = new_event_loop()

def busy():
    print("ready", flush=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pass

loop.call_soon(busy)
loop.run_forever()
"""


# A signal handler added and removed, or one that could not be added, while the loop runs:
# Ctrl-C must still interrupt it at once afterwards (under run() too).
AFTER_REMOVED_HANDLER = """
import signal
async def main():
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, print)
    loop.remove_signal_handler(signal.SIGUSR1)
    print("ready", flush=True)
    await asyncio.sleep(30)
    print("finished")
run(main())
"""

AFTER_FAILED_ADD = """
import signal
async def main():
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGKILL, print)
    except RuntimeError:
        pass
    print("ready", flush=True)
    await asyncio.sleep(30)
    print("finished")
run(main())
"""


@pytest.mark.parametrize(
    "body",
    [IDLE_RUN_FOREVER, IDLE_SLEEPING, BUSY_CALLBACK, AFTER_REMOVED_HANDLER, AFTER_FAILED_ADD],
    ids=[
        "run_forever-no-timers",
        "run_until_complete-sleeping",
        "busy-callback",
        "after-a-removed-signal-handler",
        "after-a-failed-add_signal_handler",
    ],
)
def test_ctrl_c_raises_keyboard_interrupt(impl, spawn, body):
    child = spawn(impl, body)
    assert child.readline(timeout=15) == "ready"
    time.sleep(0.05)
    t0 = time.monotonic()
    child.proc.send_signal(signal.SIGINT)
    returncode, out, err = child.wait(timeout=2)
    elapsed = time.monotonic() - t0
    assert returncode is not None, "child ignored Ctrl-C for 2 s"
    # An uncaught KeyboardInterrupt makes Python exit "killed by SIGINT".
    assert returncode == -signal.SIGINT, err
    assert "KeyboardInterrupt" in err
    assert "returned" not in out and "finished" not in out
    assert elapsed < 2


SIGNAL_HANDLER_RUN_FOREVER = """
import signal, time
loop = new_event_loop()

def handler(signum, frame):
    print("handled", signum, flush=True)
    loop.call_soon_threadsafe(loop.stop)

signal.signal(signal.SIGUSR1, handler)
loop.call_soon(lambda: print("ready", flush=True))
loop.run_forever()
print("stopped", flush=True)
loop.close()
"""

SIGNAL_HANDLER_SLEEPING = """
import signal, time
loop = new_event_loop()
fut = loop.create_future()

def handler(signum, frame):
    print("handled", signum, flush=True)
    loop.call_soon_threadsafe(fut.set_result, "by-signal")

signal.signal(signal.SIGUSR1, handler)
loop.call_soon(lambda: print("ready", flush=True))
print(loop.run_until_complete(asyncio.wait_for(fut, 30)), flush=True)
print("stopped", flush=True)
loop.close()
"""


@pytest.mark.parametrize(
    "body,result_line",
    [(SIGNAL_HANDLER_RUN_FOREVER, None), (SIGNAL_HANDLER_SLEEPING, "by-signal")],
    ids=["run_forever-no-timers", "run_until_complete-sleeping"],
)
def test_signal_handler_runs_while_loop_sleeps(impl, spawn, body, result_line):
    child = spawn(impl, body)
    assert child.readline(timeout=15) == "ready"
    time.sleep(0.05)
    t0 = time.monotonic()
    child.proc.send_signal(signal.SIGUSR1)
    line = child.readline(timeout=1)
    handled_after = time.monotonic() - t0
    assert line == f"handled {int(signal.SIGUSR1)}"
    assert handled_after < 1
    if result_line is not None:
        assert child.readline(timeout=1) == result_line
    assert child.readline(timeout=1) == "stopped"
    returncode, _, err = child.wait(timeout=2)
    assert returncode == 0, err


SIGNAL_TWICE = """
import signal
loop = new_event_loop()
count = 0

def handler(signum, frame):
    global count
    count += 1
    print("handled", count, flush=True)
    if count == 3:
        loop.call_soon_threadsafe(loop.stop)

signal.signal(signal.SIGUSR2, handler)
loop.call_soon(lambda: print("ready", flush=True))
loop.run_forever()
print("stopped", count, flush=True)
"""


def test_signal_handler_runs_each_time(impl, spawn):
    child = spawn(impl, SIGNAL_TWICE)
    assert child.readline(timeout=15) == "ready"
    for n in (1, 2, 3):
        child.proc.send_signal(signal.SIGUSR2)
        assert child.readline(timeout=1) == f"handled {n}"
    assert child.readline(timeout=1) == "stopped 3"
    returncode, _, err = child.wait(timeout=2)
    assert returncode == 0, err
