"""Run one test_asyncio module against one loop; started by run.py.

Writes one JSON object per line to ``--events``:

    {"event": "plan", "tests": [{"id": ..., "hooked": bool}, ...]}
    {"event": "start", "id": ..., "t": <unix time>}
    {"event": "uses_loop", "id": ...}      # first loop built during the test
    {"event": "stop", "id": ..., "outcome": "passed"|"failed"|"skipped",
     "kind": ..., "loops": <loops built through the harness>, "hooked": bool,
     "duration": ..., "message": <its exception line>, "detail": <traceback>}
    {"event": "fixture", "id": "setUpClass (...)", "outcome": ..., "detail": ...}
    {"event": "module_skipped", "reason": ...}
    {"event": "error", "detail": ...}      # could not load the loop/module
    {"event": "done"}

Every test gets a soft timeout (SIGALRM raises ``TestTimeout`` in the main
thread) and a hard one (faulthandler dumps the stacks and exits), so a hang
costs one test: run.py restarts the module after the hung test.
"""

from __future__ import annotations

import argparse
import faulthandler
import fnmatch
import importlib
import json
import signal
import sys
import time
import traceback
import unittest

import harness

DETAIL_LIMIT = 6000
_RANK = {"passed": 0, "skipped": 1, "failed": 2}


class TestTimeout(SystemExit):
    """Raised by SIGALRM when a test overruns.

    A SystemExit subclass: asyncio's Handle and Task re-raise it (they would
    swallow an ordinary exception raised inside a callback) while unittest
    still records it as an error of the running test.
    """


class EventWriter:
    def __init__(self, path):
        self.path = path

    def write(self, **event):
        # Appended and closed at once: the worker may die at any moment.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")


class RecordingResult(unittest.TestResult):
    """Streams each test's outcome to the event file as soon as it is known."""

    def __init__(self, events, recorder, hooked, timeout, hard_timeout):
        super().__init__()
        self.events = events
        self.recorder = recorder
        self.hooked = hooked
        self.timeout = timeout
        self.hard_timeout = hard_timeout
        self._current = None
        recorder.listener = self._on_loop_created

    def _on_loop_created(self):
        # Announced at once: if the test then hangs or crashes the worker,
        # run.py still knows it reached the loop under test.
        cur = self._current
        if cur is not None and not cur["announced"]:
            cur["announced"] = True
            self.events.write(event="uses_loop", id=cur["id"])

    # -- timers ---------------------------------------------------------
    def _on_alarm(self, signum, frame):
        raise TestTimeout(f"test exceeded the {self.timeout}s per-test timeout")

    def _arm(self):
        # Reinstalled for every test: a test may have replaced the handler
        # (test_events uses SIGALRM through loop.add_signal_handler).
        signal.signal(signal.SIGALRM, self._on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        faulthandler.dump_traceback_later(self.hard_timeout, exit=True)

    def _disarm(self):
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()

    # -- per-test bookkeeping --------------------------------------------
    def startTest(self, test):
        super().startTest(test)
        self._current = {
            "id": test.id(),
            "outcome": "passed",
            "kind": "ok",
            "message": "",
            "detail": "",
            "hooked": type(test) in self.hooked,
            "loops_before": self.recorder.created,
            "announced": False,
            "started": time.monotonic(),
        }
        self.events.write(event="start", id=test.id(), t=time.time())
        self._arm()

    def stopTest(self, test):
        self._disarm()
        cur = self._current
        self._current = None
        super().stopTest(test)
        if cur is None or cur["id"] != test.id():
            return
        self.events.write(
            event="stop",
            id=cur["id"],
            outcome=cur["outcome"],
            kind=cur["kind"],
            loops=self.recorder.created - cur["loops_before"],
            hooked=cur["hooked"],
            duration=round(time.monotonic() - cur["started"], 3),
            message=cur["message"],
            detail=cur["detail"][-DETAIL_LIMIT:],
        )

    def _mark(self, test, outcome, kind, detail):
        cur = self._current
        if cur is None or cur["id"] != test.id():
            # setUpClass/tearDownModule and friends: not a test of their own.
            self.events.write(
                event="fixture",
                id=test.id(),
                outcome=outcome,
                kind=kind,
                message=_last_line(detail),
                detail=detail[-DETAIL_LIMIT:],
            )
            return
        # A test may report several times (subtests, cleanup errors after a
        # failure or a skip): the worst outcome wins, its first report names it.
        if _RANK[outcome] > _RANK[cur["outcome"]] or cur["kind"] == "ok":
            cur["outcome"], cur["kind"] = outcome, kind
            cur["message"] = _last_line(detail) if outcome == "failed" else ""
        cur["detail"] = (cur["detail"] + "\n" + detail).strip()

    def _format(self, err, test):
        return self._exc_info_to_string(err, test)

    def addError(self, test, err):
        super().addError(test, err)
        kind = "timeout" if issubclass(err[0], TestTimeout) else "error"
        self._mark(test, "failed", kind, self._format(err, test))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._mark(test, "failed", "failure", self._format(err, test))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "failure" if issubclass(err[0], test.failureException) else "error"
            self._mark(test, "failed", kind, f"{subtest.id()}\n{self._format(err, test)}")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._mark(test, "skipped", "skip", reason)

    def addExpectedFailure(self, test, err):
        # unittest's own @expectedFailure: the stock loop fails it too.
        super().addExpectedFailure(test, err)
        self._mark(test, "passed", "expected-failure", "")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._mark(
            test,
            "failed",
            "unexpected-success",
            "passed, but the suite marks it @unittest.expectedFailure",
        )


def _last_line(text):
    """The exception line that ends a traceback."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def iter_tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


def select_tests(module, applied, skip, patterns):
    loaded = unittest.defaultTestLoader.loadTestsFromModule(module)
    selected = []
    for test in iter_tests(loaded):
        if type(test) in applied.dropped or test.id() in skip:
            continue
        if patterns and not any(fnmatch.fnmatchcase(test.id(), p) for p in patterns):
            continue
        selected.append(test)
    return selected


def describe(loop):
    try:
        _, description = harness.load_loop(loop)
    except Exception as exc:  # noqa: BLE001 -- reported by run.py
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    print(description)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", required=True, choices=harness.LOOPS)
    parser.add_argument(
        "--describe",
        action="store_true",
        help="only load the loop and print what it is (run.py's pre-flight check)",
    )
    parser.add_argument("--module")
    parser.add_argument("--events")
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--hard-timeout", type=float)
    parser.add_argument("--skip-file", help="test ids not to run, one a line")
    parser.add_argument(
        "-k",
        dest="patterns",
        action="append",
        default=[],
        help="only run test ids matching this fnmatch pattern",
    )
    args = parser.parse_args(argv)
    if args.describe:
        return describe(args.loop)
    if None in (args.module, args.events, args.timeout, args.hard_timeout):
        parser.error("--module, --events, --timeout and --hard-timeout are required")

    # A background shell may start us with SIGINT ignored, and Python then
    # leaves it ignored; the KeyboardInterrupt tests would hang.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.enable(all_threads=True)

    events = EventWriter(args.events)
    skip = set()
    if args.skip_file:
        with open(args.skip_file, encoding="utf-8") as f:
            skip = {line.strip() for line in f if line.strip()}
    patterns = [p if any(c in p for c in "*?[") else f"*{p}*" for p in args.patterns]

    try:
        factory, _ = harness.load_loop(args.loop)
        recorder = harness.LoopRecorder(factory)
        harness.install_policy(args.loop, recorder)
        harness.patch_suite_utilities()
        harness.prepare_module(args.module, recorder)
        module = importlib.import_module(f"test.test_asyncio.{args.module}")
        applied = harness.apply_hooks(module, recorder)
        tests = select_tests(module, applied, skip, patterns)
    except unittest.SkipTest as exc:
        events.write(event="module_skipped", reason=str(exc))
        events.write(event="done")
        return 0
    except Exception:  # noqa: BLE001 -- reported to run.py, which shows it
        events.write(event="error", detail=traceback.format_exc())
        return 3

    events.write(
        event="plan", tests=[{"id": t.id(), "hooked": type(t) in applied.hooked} for t in tests]
    )
    result = RecordingResult(events, recorder, applied.hooked, args.timeout, args.hard_timeout)
    try:
        unittest.TestSuite(tests).run(result)
    except TestTimeout:
        # Fired outside a test's own try/except (e.g. in a class fixture).
        events.write(event="error", detail=traceback.format_exc())
        return 4
    events.write(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
