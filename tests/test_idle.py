"""An idle loop sleeps: no source left "ready" may keep it spinning or starve other sources.

Regression: after the last fd watcher was removed while its fd was still readable, rose's
park kept returning at once (the selector's readiness was never consumed), burning CPU and
never letting the driver see new events — a SIGCHLD arriving then was never dispatched.
"""

from __future__ import annotations

import os
import signal
import threading
import time


def _idle_cpu(loop, seconds):
    """CPU time the process spends while the loop idles for `seconds` with nothing to do."""
    loop.call_later(seconds, loop.stop)
    c0 = time.process_time()
    loop.run_forever()
    return time.process_time() - c0


def test_idle_after_removing_a_ready_reader(loop):
    r, w = os.pipe()
    try:
        os.write(w, b"x")  # stays unread: the fd remains readable

        def on_readable():
            loop.remove_reader(r)

        loop.add_reader(r, on_readable)
        cpu = _idle_cpu(loop, 0.3)
        assert cpu < 0.1, f"loop burned {cpu:.3f}s of CPU while idle"
    finally:
        os.close(r)
        os.close(w)


def test_signal_handler_runs_after_removing_a_ready_reader(loop):
    r, w = os.pipe()
    got = []
    try:
        os.write(w, b"x")
        loop.add_reader(r, lambda: loop.remove_reader(r))
        loop.add_signal_handler(signal.SIGUSR1, lambda: (got.append(True), loop.stop()))
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        loop.call_later(2.0, loop.stop)
        loop.run_forever()
        assert got == [True]
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
        os.close(r)
        os.close(w)


def test_idle_loop_with_only_a_far_timer_does_not_spin(loop):
    loop.call_later(3600, lambda: None)
    cpu = _idle_cpu(loop, 0.3)
    assert cpu < 0.1, f"loop burned {cpu:.3f}s of CPU while idle"
