#!/usr/bin/env python3
"""Await of an already-completed Rust future: what getting a Rust result into Python costs.

Three paths (benchmarks/README.md, "bridge"):

- ``rose-bridge``: rose's own completion bridge (src/bridge.rs), ``loop._rust_ready(v)``: the
  task runs on the loop's runtime and its output is delivered inline on the loop thread;
- ``rose-runtime``: pyo3-async-runtimes' ``generic::future_into_py`` on ``RoseRuntime``
  (src/async_runtime.rs), ``loop._pyo3_async_ready(v)``: the loop's runtime, delivery through
  ``call_soon_threadsafe`` from the loop thread;
- ``tokio``: pyo3-async-runtimes' default tokio runtime, the test extension's ``ready(v)``
  (tests/pyo3_async_ext): its own worker threads, delivery from a blocking-pool thread through
  ``call_soon_threadsafe``; on asyncio, uvloop and rose.

Each sample is a fresh child (``bridge.py --child LOOP PATH N``) that awaits N such futures in
one coroutine and reports ns per await; N is calibrated per case so a run lasts >= 0.2 s, and
the cases run interleaved in rounds. Build first: ``make release pyo3-async-ext``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import faulthandler
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "tests" / "pyo3_async_ext" / "build"))
from micro import (  # noqa: E402
    CALIBRATION_MARGIN,
    MAX_CALIBRATION_STEPS,
    STDERR_KEPT,
    TARGET_S,
    log,
    loop_version,
    machine_info,
    machine_summary,
    new_loop,
    round_n,
    save_results,
)

CHILD_TIMEOUT_S = 120
# (loop, path) in the order of the table.
CASES = [
    ("rose", "rose-bridge"),
    ("rose", "rose-runtime"),
    ("rose", "tokio"),
    ("uvloop", "tokio"),
    ("asyncio", "tokio"),
]
PATHS = {
    "rose-bridge": "rose's own bridge, `loop._rust_ready(v)`",
    "rose-runtime": "pyo3-async-runtimes `generic::future_into_py::<RoseRuntime>`, `loop._pyo3_async_ready(v)`",
    "tokio": "pyo3-async-runtimes' tokio runtime (`pyo3_async_runtimes::tokio::future_into_py`), the test extension's `ready(v)`",
}
QUICK_N = 2000


def make_ready(loop, path):
    if path == "rose-bridge":
        return loop._rust_ready
    if path == "rose-runtime":
        return loop._pyo3_async_ready
    import rose_pyo3_async_test

    return rose_pyo3_async_test.ready


def child(loop_name: str, path: str, n: int) -> dict:
    loop = new_loop(loop_name)
    ready = make_ready(loop, path)

    async def main(k):
        done = 0
        for i in range(k):
            if await ready(i) == i:
                done += 1
        return done

    try:
        warm = max(100, n // 10)
        assert loop.run_until_complete(main(warm)) == warm
        gc.collect()
        cpu0, t0 = time.process_time_ns(), time.perf_counter_ns()
        done = loop.run_until_complete(main(n))
        t1, cpu1 = time.perf_counter_ns(), time.process_time_ns()
    finally:
        loop.close()
    if done != n:
        raise RuntimeError(f"{done} of {n} awaits gave their value")
    return {
        "loop": loop_name,
        "version": loop_version(loop_name),
        "path": path,
        "n": n,
        "wall_ns": t1 - t0,
        "ns_per_await": (t1 - t0) / n,
        "cpu_ns_per_await": (cpu1 - cpu0) / n,
    }


def run_child(loop: str, path: str, n: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", loop, path, str(n)]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {CHILD_TIMEOUT_S} s"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output on stderr"])[-1]
        return {"error": f"exit status {proc.returncode}: {last}", "stderr": proc.stderr[-STDERR_KEPT:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def calibrate(loop: str, path: str) -> int:
    goal_s = TARGET_S * CALIBRATION_MARGIN
    n = QUICK_N
    for _ in range(MAX_CALIBRATION_STEPS):
        wall = run_child(loop, path, n).get("wall_ns")
        if wall is None:
            break
        log(f"  calibrate {loop:<8} {path:<13} N={n:<9} {wall / 1e9:.3f} s")
        if wall / 1e9 >= goal_s:
            break
        n = round_n(n * min(10.0, 1.1 * goal_s * 1e9 / wall), 100)
    return n


def fmt(v):
    return "n/a" if v is None else f"{v:,.0f}"


def report(result: dict) -> str:
    s = result["summary"]
    lines = [
        "# Await of an already-completed Rust future: latest run",
        "",
        f"{result['date']}: {machine_summary(result['machine'])}; {result['rounds']} rounds, "
        f"fresh process per sample, medians. Script: `benchmarks/bridge.py`.",
        "",
        "| loop | path | N | ns per await (wall) | ns per await (CPU, all threads) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for key, row in s.items():
        loop, path = key.split("/")
        lines.append(
            f"| {loop} | {path} | {row['n']:,} | {fmt(row['ns_per_await'])} | {fmt(row['cpu_ns_per_await'])} |"
        )
    lines += ["", "Paths:", ""]
    lines += [f"- `{name}`: {doc}" for name, doc in PATHS.items()]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items())]
    errors = [x for x in result["samples"] if "error" in x]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {x['loop']}/{x['path']}: {x['error']}" for x in errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", nargs=3, metavar=("LOOP", "PATH", "N"))
    args = p.parse_args(argv)
    if args.child:
        faulthandler.enable()
        faulthandler.dump_traceback_later(CHILD_TIMEOUT_S - 5)
        loop, path, n = args.child
        print(json.dumps(child(loop, path, int(n))), flush=True)
        return 0

    started = dt.datetime.now(dt.UTC)
    log(f"calibrating N so that every run lasts >= {TARGET_S * CALIBRATION_MARGIN:.2f} s")
    ns = {(loop, path): calibrate(loop, path) for loop, path in CASES}
    samples = []
    for r in range(1, args.rounds + 1):
        for loop, path in CASES:
            sample = {"round": r, "loop": loop, "path": path, **run_child(loop, path, ns[loop, path])}
            samples.append(sample)
            shown = sample.get("error") or f"{sample['ns_per_await']:10.1f} ns/await"
            log(f"[round {r}/{args.rounds}] {loop:<8} {path:<13} {shown}")
    summary = {}
    versions = {}
    for loop, path in CASES:
        ok = [x for x in samples if x["loop"] == loop and x["path"] == path and "error" not in x]
        for x in ok:
            versions[loop] = x["version"]
        summary[f"{loop}/{path}"] = {
            "n": ns[loop, path],
            "ns_per_await": statistics.median(x["ns_per_await"] for x in ok) if ok else None,
            "cpu_ns_per_await": statistics.median(x["cpu_ns_per_await"] for x in ok) if ok else None,
        }
    result = {
        "benchmark": "bridge",
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions,
        "rounds": args.rounds,
        "target_s": TARGET_S,
        "paths": PATHS,
        "samples": samples,
        "summary": summary,
        "duration_s": (dt.datetime.now(dt.UTC) - started).total_seconds(),
    }
    return save_results("bridge", started, result, report(result), samples)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
