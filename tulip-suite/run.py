#!/usr/bin/env python3
"""tulip-suite: run CPython's test_asyncio against rose (or another loop).

    python tulip-suite/run.py [--loop rose|asyncio|uvloop] [--module test_events ...]
                              [--jobs 2] [--timeout 30] [-k PATTERN] [--strict]

Each test module runs in its own worker subprocess (worker.py) with a
per-test timeout; a test that hangs or crashes the worker is recorded as
failed and the module resumes after it.  Only *generic* tests -- those that
built a loop through the harness while they ran -- make the headline; the
closing line is ``N passed, N failed, N skipped`` for them, where "failed" counts the
unexpected failures only (listed ones are reported on the line before, like pytest's xfailed).

Exit status: 0 when every failing test is listed in expected-failures.txt,
1 on any unexpected failure (or, with --strict, on a listed test that now
passes), 2 when the harness cannot run at all.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import expected
import harness
import report

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.py"
# One folder per interpreter version: each has its own test_asyncio. Results are build
# output (git ignores them); the README quotes the counts.
RESULTS = HERE / "results" / f"{sys.version_info.major}.{sys.version_info.minor}"
DEFAULT_EXPECTED = {"rose": HERE / "expected-failures.txt"}

# Slowest first, so two workers finish at about the same time.
HEAVY_MODULES = (
    "test_tasks",
    "test_events",
    "test_subprocess",
    "test_sslproto",
    "test_ssl",
    "test_streams",
    "test_base_events",
    "test_sendfile",
    "test_unix_events",
    "test_locks",
    "test_sock_lowlevel",
    "test_futures",
    "test_selector_events",
)


# ---------------------------------------------------------------- helpers
def test_package_dir(parser) -> Path:
    """The directory of test.test_asyncio, or a clear way out if missing."""
    try:
        spec = importlib.util.find_spec("test.test_asyncio")
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        ver = f"{sys.version_info.major}.{sys.version_info.minor}"
        parser.exit(
            2,
            (
                f"error: {sys.executable} (Python {platform.python_version()}) has no "
                "test.test_asyncio package.\n"
                "tulip-suite runs CPython's own asyncio tests, which this interpreter "
                "does not ship. Get them with one of:\n"
                f"  - Debian/Ubuntu: apt-get install libpython{ver}-testsuite\n"
                f"  - Fedora/RHEL:   dnf install python{ver}-test  (python3-test for the "
                "system Python)\n"
                "  - an interpreter built from the CPython sources or installed with "
                "pyenv / python.org, which ship the test package\n"
                "then rerun this command with that interpreter.\n"
            ),
        )
    return Path(next(iter(spec.submodule_search_locations)))


def describe_loop(parser, loop: str) -> str:
    """Load the loop in a throw-away worker: this process never imports it."""
    proc = subprocess.run(
        [sys.executable, str(WORKER), "--loop", loop, "--describe"],
        capture_output=True,
        check=False,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    if proc.returncode != 0:
        hint = ""
        if loop == "rose":
            hint = (
                "\n(is rose built? The harness imports it from the work tree when "
                "rose/_rose*.so is there, else from the installed packages.)"
            )
        why = (proc.stderr.strip().splitlines() or [describe_exit(proc.returncode)])[-1]
        parser.exit(2, f"error: cannot load the {loop} loop: {why}{hint}\n")
    return proc.stdout.strip()


def discover_modules(package_dir: Path) -> list[str]:
    names = sorted(p.stem for p in package_dir.glob("test_*.py"))
    heavy = [m for m in HEAVY_MODULES if m in names]
    return heavy + [m for m in names if m not in heavy]


def describe_exit(rc) -> str:
    if rc is None:
        return "was killed at the module timeout"
    if rc < 0:
        try:
            return f"died of {signal.Signals(-rc).name}"
        except ValueError:
            return f"died of signal {-rc}"
    return f"exited with status {rc}"


def log_tail(path: Path, lines=40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------- module worker
@dataclass
class ModuleRun:
    name: str
    tests: dict = field(default_factory=dict)  # id -> record
    fixtures: list = field(default_factory=list)
    skipped_reason: str | None = None
    error: str | None = None  # why the module did not (fully) run
    error_detail: str = ""
    attempts: int = 0
    duration: float = 0.0


class Orchestrator:
    """Runs modules in workers.  Everything a run writes while it goes lives in
    its private *scratch* directory, so runs started at the same time (by two
    people, or CI and a person) do not disturb each other; *logs_dir* is where
    the logs are published when the run ends, and what messages point to."""

    def __init__(self, opts, scratch: Path, logs_dir: Path):
        self.opts = opts
        self.scratch = scratch
        self.logs_dir = logs_dir
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.stopping = False

    def kill_all(self):
        self.stopping = True
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            _kill_group(proc)

    def _spawn(self, cmd, log_path, cwd):
        with open(log_path, "a", encoding="utf-8") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,  # the tests' scratch files (os_helper.TESTFN) land there
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: we kill stragglers
            )
        with self._lock:
            self._procs.add(proc)
        return proc

    def _reap(self, proc):
        _kill_group(proc)  # subprocesses the tests left behind
        with self._lock:
            self._procs.discard(proc)

    def run_module(self, name: str) -> ModuleRun:
        opts = self.opts
        run = ModuleRun(name)
        log_path = self.scratch / f"{name}.log"
        events_path = self.scratch / f"{name}.events.jsonl"
        skip_path = self.scratch / f"{name}.skip"
        cwd = self.scratch / name
        cwd.mkdir()
        started = time.monotonic()
        deadline = started + opts.module_timeout
        plan: dict[str, bool] = {}  # id -> hooked
        uses_loop: set[str] = set()
        reason_unrun = "the worker stopped before running it"

        while not self.stopping:
            run.attempts += 1
            skip_path.write_text("".join(f"{t}\n" for t in run.tests), encoding="utf-8")
            cmd = [
                sys.executable,
                str(WORKER),
                "--loop",
                opts.loop,
                "--module",
                name,
                "--events",
                str(events_path),
                "--timeout",
                str(opts.timeout),
                "--hard-timeout",
                str(opts.timeout + opts.grace),
                "--skip-file",
                str(skip_path),
            ]
            for pattern in opts.patterns:
                cmd += ["-k", pattern]
            offset = events_path.stat().st_size if events_path.exists() else 0
            proc = self._spawn(cmd, log_path, cwd)
            try:
                rc = proc.wait(timeout=max(deadline - time.monotonic(), 1))
                module_timeout = False
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait()
                rc, module_timeout = None, True
            finally:
                self._reap(proc)

            current, finished = None, False
            for ev in _read_events(events_path, offset):
                kind = ev["event"]
                if kind == "plan":
                    for t in ev["tests"]:
                        plan.setdefault(t["id"], t["hooked"])
                elif kind == "start":
                    current = ev
                elif kind == "uses_loop":
                    uses_loop.add(ev["id"])
                elif kind == "stop":
                    run.tests[ev["id"]] = _record(name, ev)
                    current = None
                elif kind == "fixture":
                    run.fixtures.append(ev)
                elif kind == "module_skipped":
                    run.skipped_reason = ev["reason"]
                elif kind == "error":
                    run.error = ev["detail"].strip().splitlines()[-1]
                    run.error_detail = ev["detail"]
                elif kind == "done":
                    finished = True
            if finished or run.error:
                break
            if current is None:
                run.error = f"the worker {describe_exit(rc)} outside any test"
                run.error_detail = log_tail(log_path)
                break
            # The worker died inside a test: blame that test, resume after it.
            test_id = current["id"]
            elapsed = time.time() - current["t"]
            hung = module_timeout or elapsed >= opts.timeout
            message = (
                f"the worker {describe_exit(rc)} after {elapsed:.1f}s in this test"
                f" (log: {_display(self.logs_dir / log_path.name)})"
            )
            run.tests[test_id] = {
                "id": test_id,
                "module": name,
                "outcome": "failed",
                "kind": "timeout" if hung else "crash",
                "loops": None,
                "generic": test_id in uses_loop or plan.get(test_id, False),
                "duration": round(elapsed, 3),
                "message": message,
                "detail": message + "\n" + log_tail(log_path),
            }
            if module_timeout:
                reason_unrun = f"the module hit its {opts.module_timeout}s timeout"
                break

        for test_id in plan:
            if test_id not in run.tests:
                # Never ran: count it against the loop, as the stock loop runs all.
                run.tests[test_id] = {
                    "id": test_id,
                    "module": name,
                    "outcome": "failed",
                    "kind": "not-run",
                    "loops": None,
                    "generic": True,
                    "duration": 0.0,
                    "message": f"not run: {reason_unrun}",
                    "detail": "",
                }
        run.duration = time.monotonic() - started
        return run


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_events(path: Path, offset: int):
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        f.seek(offset)
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                pass  # a line cut short by a crash


def _record(module, ev):
    return {
        "id": ev["id"],
        "module": module,
        "outcome": ev["outcome"],
        "kind": ev["kind"],
        "loops": ev["loops"],
        "generic": ev["loops"] > 0 or ev["hooked"],
        "duration": ev["duration"],
        "message": ev["message"],
        "detail": ev["detail"],
    }


# --------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="tulip-suite/run.py",
        description="Run CPython's test_asyncio against an event loop.",
    )
    parser.add_argument(
        "--loop", default="rose", choices=harness.LOOPS, help="loop under test (default: rose)"
    )
    parser.add_argument(
        "--module",
        nargs="+",
        action="extend",
        default=[],
        metavar="MODULE",
        help="only these test modules (e.g. test_events)",
    )
    parser.add_argument(
        "-k",
        dest="patterns",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only test ids matching this substring or fnmatch pattern",
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="module subprocesses at once (default: 2)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds per test before it counts as hung (default: 30)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="extra seconds before a hung worker is killed (default: 5)",
    )
    parser.add_argument(
        "--module-timeout",
        type=float,
        default=600.0,
        help="seconds for a whole module, restarts included (default: 600)",
    )
    parser.add_argument(
        "--expected-failures",
        type=Path,
        metavar="FILE",
        help="expected-failure file (default: expected-failures.txt "
        "for rose, none for the other loops)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="also exit non-zero when a listed test passes"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS,
        help="where <loop>.json and <loop>.md go (default: tulip-suite/results/<X.Y>)",
    )
    parser.add_argument(
        "--draft-expected",
        type=Path,
        metavar="FILE",
        help="write a draft expected-failure line for each unexpected failure to FILE "
        "(categories guessed from the traceback; check them and add the issue)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print the traceback of each unexpected failure",
    )
    return parser, parser.parse_args(argv)


def main(argv=None):
    parser, opts = parse_args(argv)
    package_dir = test_package_dir(parser)
    # Like the workers, we may have been started with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    available = discover_modules(package_dir)
    unknown = [m for m in opts.module if m not in available]
    if unknown:
        parser.error(f"no such test module: {', '.join(unknown)}")
    modules = [m for m in available if m in opts.module] if opts.module else available

    loop_description = describe_loop(parser, opts.loop)

    xfail_path = opts.expected_failures or DEFAULT_EXPECTED.get(opts.loop)
    try:
        listed = expected.load(xfail_path) if xfail_path else {}
    except (OSError, expected.ExpectedFailuresError) as exc:
        parser.exit(2, f"error: {exc}\n")

    partial = bool(opts.module or opts.patterns)
    stem = f"{opts.loop}-partial" if partial else opts.loop
    logs_dir = opts.results_dir / "logs" / stem
    scratch = Path(tempfile.mkdtemp(prefix=f"tulip-suite-{opts.loop}-"))
    try:
        return _run(
            opts, modules, loop_description, listed, xfail_path, partial, stem, scratch, logs_dir
        )
    finally:
        _publish_logs(scratch, logs_dir)
        shutil.rmtree(scratch, ignore_errors=True)


def _publish_logs(scratch: Path, logs_dir: Path):
    """Replace logs_dir's logs with this run's (worker output and event streams)."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    for old in logs_dir.glob("*"):
        if old.is_file():
            old.unlink()
    for new in scratch.glob("*.log"):
        shutil.copy2(new, logs_dir / new.name)
    for new in scratch.glob("*.events.jsonl"):
        shutil.copy2(new, logs_dir / new.name)


def _run(
    opts, modules, loop_description, listed, xfail_path, partial, stem, scratch, logs_dir
) -> int:

    print(
        f"tulip-suite: {loop_description} on Python {platform.python_version()}; "
        f"{len(modules)} modules, {opts.jobs} jobs, {opts.timeout:g}s per test",
        flush=True,
    )
    orchestrator = Orchestrator(opts, scratch, logs_dir)
    started = time.monotonic()
    runs: list[ModuleRun] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(opts.jobs, 1))
    try:
        futures = [pool.submit(orchestrator.run_module, m) for m in modules]
        for future in concurrent.futures.as_completed(futures):
            run = future.result()
            runs.append(run)
            print(report.progress_line(run, len(runs), len(modules)), flush=True)
    except KeyboardInterrupt:
        orchestrator.kill_all()
        pool.shutdown(wait=True, cancel_futures=True)
        print("\ninterrupted", file=sys.stderr)
        return 130
    pool.shutdown()

    summary = report.Summary.build(
        loop=opts.loop,
        description=loop_description,
        runs=runs,
        listed=listed,
        xfail_path=_display(xfail_path) if xfail_path else None,
        partial=partial,
        duration=time.monotonic() - started,
        options={
            "timeout": opts.timeout,
            "jobs": opts.jobs,
            "modules": modules,
            "patterns": opts.patterns,
        },
    )
    json_path, md_path = report.write_results(summary, opts.results_dir, stem)
    print()
    print(report.console_report(summary, verbose=opts.verbose))
    print(f"results: {_display(json_path)}, {_display(md_path)}")
    if opts.draft_expected:
        report.write_draft(summary, opts.draft_expected)
        print(f"draft expected-failure lines: {_display(opts.draft_expected)}")
    if summary.generic.xfail_note():
        print(summary.generic.xfail_note())
    print(summary.generic.line())

    if summary.unexpected_failures or summary.broken_modules:
        return 1
    if opts.strict and summary.unexpected_passes:
        return 1
    return 0


def _display(path: Path) -> str:
    """A path as shown and stored: relative to the project root when inside it."""
    try:
        return str(path.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
