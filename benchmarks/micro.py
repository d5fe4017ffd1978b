#!/usr/bin/env python3
"""Micro-benchmarks of asyncio event loops: stdlib asyncio, uvloop, rloop and rose.

benchmarks/README.md explains what each benchmark measures and how the results are written.

Every sample is one fresh child process (``micro.py --child LOOP BENCH N``) that times N
operations with ``time.perf_counter_ns`` and prints one JSON line. The parent calibrates N per
benchmark, runs the loops interleaved in rounds, and writes JSON, Markdown and PNG results.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import faulthandler
import gc
import importlib
import importlib.metadata
import json
import math
import os
import platform
import random
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The repository's own rose (built in place by `make release`) comes before an installed one.
sys.path.insert(0, str(HERE.parent))
RESULTS_DIR = HERE / "results"

# Every loop is a module exposing new_event_loop(); value = its distribution name on PyPI.
LOOPS = {"asyncio": None, "uvloop": "uvloop", "rloop": "rloop", "rose": "rose-loop"}
SUBJECT = "rose"  # the loop whose ratios are the headline
PEERS = ("uvloop", "rloop")  # "best peer" = the faster of these in the same round

CHILD_TIMEOUT_S = 60
STDERR_KEPT = 4000  # characters of a failed child's stderr kept in the JSON
TARGET_S = 0.2  # every timed run should last at least this long
CALIBRATION_MARGIN = 1.5  # calibrate for TARGET_S * margin: the machine is noisy
MAX_CALIBRATION_STEPS = 6

BATCH = 1000  # call_soon_batch: callbacks per batch
GATHER = 1000  # gather: tasks per gather()
SPREAD_S = 0.1  # call_later_spread: delays are uniform over [0, SPREAD_S)
SEED = 1234


# --------------------------------------------------------------------------------------------
# Benchmarks. Each takes (loop, n), does its untimed setup and returns the timed body: a
# function that runs the n operations on the loop and returns how many completed.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    name: str
    func: Callable[[asyncio.AbstractEventLoop, int], Callable[[], int]]
    quick_n: int  # N for --quick, and the first guess when calibrating
    unit: int  # N is always a multiple of this
    doc: str


BENCHES: dict[str, Bench] = {}


def bench(name: str, *, quick_n: int, unit: int = 1):
    def register(func):
        doc = " ".join((func.__doc__ or "").split())
        BENCHES[name] = Bench(name, func, quick_n, unit, doc)
        return func

    return register


@bench("call_soon_chain", quick_n=20_000)
def call_soon_chain(loop, n):
    """A callback that call_soon's itself N times, then stops the loop."""
    left = n

    def step():
        nonlocal left
        left -= 1
        if left:
            loop.call_soon(step)
        else:
            loop.stop()

    def run():
        loop.call_soon(step)
        loop.run_forever()
        return n - left

    return run


@bench("call_soon_batch", quick_n=20_000, unit=BATCH)
def call_soon_batch(loop, n):
    """N callbacks scheduled in batches of 1000, each batch scheduled from a callback;
    the callbacks count completions and the last one stops the loop."""
    done = 0
    batches_left = n // BATCH

    def tick():
        nonlocal done
        done += 1
        if done == n:
            loop.stop()

    def schedule_batch():
        nonlocal batches_left
        call_soon = loop.call_soon
        for _ in range(BATCH):
            call_soon(tick)
        batches_left -= 1
        if batches_left:
            call_soon(schedule_batch)

    def run():
        loop.call_soon(schedule_batch)
        loop.run_forever()
        return done

    return run


@bench("call_later_spread", quick_n=20_000)
def call_later_spread(loop, n):
    """N call_later timers with delays spread uniformly over 0-100 ms (seeded random),
    scheduled from one callback; runs until all have fired. ns per timer, 100 ms of waiting
    included (the CPU-time table excludes it)."""
    rng = random.Random(SEED)
    delays = [rng.uniform(0.0, SPREAD_S) for _ in range(n)]
    fired = 0

    def fire():
        nonlocal fired
        fired += 1
        if fired == n:
            loop.stop()

    def schedule():
        call_later = loop.call_later
        for delay in delays:
            call_later(delay, fire)

    def run():
        loop.call_soon(schedule)
        loop.run_forever()
        return fired

    return run


@bench("timer_cancel", quick_n=20_000)
def timer_cancel(loop, n):
    """N call_later(10.0) handles, each cancelled right after it is made, then call_soon(stop);
    ns per schedule + cancel, including the loop iteration that cleans the cancelled timers up."""

    def never():
        raise AssertionError("a cancelled timer fired")

    def schedule():
        call_later = loop.call_later
        for _ in range(n):
            call_later(10.0, never).cancel()
        loop.call_soon(loop.stop)

    def run():
        loop.call_soon(schedule)
        loop.run_forever()
        return n

    return run


@bench("sleep0", quick_n=20_000)
def sleep0(loop, n):
    """One coroutine doing `await asyncio.sleep(0)` N times."""

    async def main():
        for _ in range(n):
            await asyncio.sleep(0)
        return n

    return lambda: loop.run_until_complete(main())


@bench("future_roundtrip", quick_n=20_000)
def future_roundtrip(loop, n):
    """N times in one coroutine: loop.create_future(), call_soon(fut.set_result, None),
    await fut."""

    async def main():
        create_future, call_soon = loop.create_future, loop.call_soon
        done = 0
        for _ in range(n):
            fut = create_future()
            call_soon(fut.set_result, None)
            await fut
            done += 1
        return done

    return lambda: loop.run_until_complete(main())


@bench("gather_1000", quick_n=20_000, unit=GATHER)
def gather_1000(loop, n):
    """asyncio.gather of 1000 trivial tasks (`async def f(): pass`), repeated N/1000 times;
    ns per task."""

    async def trivial():
        pass

    async def main():
        done = 0
        for _ in range(n // GATHER):
            done += len(await asyncio.gather(*[trivial() for _ in range(GATHER)]))
        return done

    return lambda: loop.run_until_complete(main())


@bench("call_soon_threadsafe", quick_n=20_000)
def call_soon_threadsafe(loop, n):
    """A producer thread calls loop.call_soon_threadsafe(cb) N times; the loop counts the
    callbacks and stops when all have arrived. ns per call."""
    arrived = 0

    def tick():
        nonlocal arrived
        arrived += 1
        if arrived == n:
            loop.stop()

    def produce():
        call_soon_threadsafe = loop.call_soon_threadsafe
        for _ in range(n):
            call_soon_threadsafe(tick)

    producer = threading.Thread(target=produce, name="producer", daemon=True)

    def run():
        loop.call_soon(producer.start)  # start once the loop is running
        loop.run_forever()
        producer.join()
        return arrived

    return run


# --------------------------------------------------------------------------------------------
# Child process: one loop, one benchmark, one timed run.
# --------------------------------------------------------------------------------------------


def loop_version(name: str) -> str:
    if LOOPS[name] is None:
        return f"stdlib (Python {platform.python_version()})"
    module = importlib.import_module(name)
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(LOOPS[name])
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
    return str(version)


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    loop = importlib.import_module(name).new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


def round_n(n: float, unit: int) -> int:
    """Round n up to two significant digits and to a multiple of unit (a power of ten)."""
    step = max(unit, 10 ** max(0, len(str(int(n))) - 2))
    return max(unit, math.ceil(n / step) * step)


def child_probe(loop_name: str) -> dict:
    """Check that a loop imports and that a loop can be made and closed."""
    loop = new_loop(loop_name)
    cls = f"{type(loop).__module__}.{type(loop).__qualname__}"
    loop.close()
    return {"loop": loop_name, "version": loop_version(loop_name), "class": cls}


def run_checked(run: Callable[[], int], n: int, failures: list[dict]) -> None:
    """Run a benchmark body; fail if a callback raised or fewer than n operations completed."""
    try:
        done = run()
    finally:
        if failures:
            context = failures[0]
            raise RuntimeError(
                f"callback failed: {context.get('exception') or context['message']!r}"
            )
    if done != n:
        raise RuntimeError(f"{done} of {n} operations completed")


def child_bench(loop_name: str, bench_name: str, n: int) -> dict:
    spec = BENCHES[bench_name]
    loop = new_loop(loop_name)
    # A loop logs an exception raised in a callback and carries on, which would leave the
    # benchmark waiting forever: record it and stop the loop instead.
    failures: list[dict] = []

    def on_exception(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        failures.append(context)
        loop.stop()

    loop.set_exception_handler(on_exception)
    try:
        warm_n = round_n(n // 10, spec.unit)
        run_checked(spec.func(loop, warm_n), warm_n, failures)  # warm-up on the same loop
        run = spec.func(loop, n)
        gc.collect()
        ru0, cpu0, t0 = (
            resource.getrusage(resource.RUSAGE_SELF),
            time.process_time_ns(),
            time.perf_counter_ns(),
        )
        run_checked(run, n, failures)
        t1, cpu1, ru1 = (
            time.perf_counter_ns(),
            time.process_time_ns(),
            resource.getrusage(resource.RUSAGE_SELF),
        )
    finally:
        loop.close()
    wall_ns, cpu_ns = t1 - t0, cpu1 - cpu0
    return {
        "loop": loop_name,
        "bench": bench_name,
        "n": n,
        "wall_ns": wall_ns,
        "ns_per_op": wall_ns / n,
        "cpu_ns": cpu_ns,
        "cpu_ns_per_op": cpu_ns / n,
        "user_ns_per_op": (ru1.ru_utime - ru0.ru_utime) * 1e9 / n,
        "sys_ns_per_op": (ru1.ru_stime - ru0.ru_stime) * 1e9 / n,
    }


# --------------------------------------------------------------------------------------------
# Parent: probing, calibration, interleaved rounds.
# --------------------------------------------------------------------------------------------


def run_child(*args: str) -> dict:
    """Run `micro.py --child ...` and return its JSON, or {"error": ...}; never raises."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    try:
        proc = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:  # the child was killed; its stacks are on stderr
        stderr = (exc.stderr or b"").decode(errors="replace")
        return {"error": f"timeout after {CHILD_TIMEOUT_S} s", "stderr": stderr[-STDERR_KEPT:]}
    if proc.returncode != 0:
        rc = proc.returncode
        if rc < 0:  # faulthandler's stack is in the stderr kept below
            error = f"killed by {signal.strsignal(-rc)}"
        else:
            last_line = (proc.stderr.strip().splitlines() or ["no output on stderr"])[-1]
            error = f"exit status {rc}: {last_line}"
        return {"error": error, "stderr": proc.stderr[-STDERR_KEPT:]}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"unreadable child output: {proc.stdout[-200:]!r}"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def describe(sample: dict) -> str:
    if "error" in sample:
        return f"ERROR {sample['error']}"
    return f"{sample['ns_per_op']:10.1f} ns/op  ({sample['wall_ns'] / 1e9:.3f} s)"


def calibrate(spec: Bench, loops: list[str]) -> int:
    """Smallest N (within a step) at which every loop's timed run lasts >= TARGET_S * margin,
    i.e. calibrated on the fastest loop; all loops then run this same N."""
    goal_s = TARGET_S * CALIBRATION_MARGIN
    n = spec.quick_n
    for _ in range(MAX_CALIBRATION_STEPS):
        walls = [run_child(loop, spec.name, str(n)).get("wall_ns") for loop in loops]
        fastest_s = min((w for w in walls if w is not None), default=None)
        if fastest_s is None:  # every loop failed: keep N, the rounds will report the errors
            break
        fastest_s /= 1e9
        log(f"  calibrate {spec.name:<22} N={n:<9} fastest {fastest_s:.3f} s")
        if fastest_s >= goal_s:
            break
        n = round_n(n * min(10.0, 1.1 * goal_s / fastest_s), spec.unit)
    return n


def run_rounds(
    benches: list[Bench], loops: list[str], ns: dict[str, int], rounds: int
) -> list[dict]:
    samples = []
    for r in range(1, rounds + 1):
        for spec in benches:
            for loop in loops:
                sample = run_child(loop, spec.name, str(ns[spec.name]))
                samples.append(
                    {"round": r, "bench": spec.name, "loop": loop, "n": ns[spec.name], **sample}
                )
                log(f"[round {r}/{rounds}] {spec.name:<22} {loop:<8} {describe(sample)}")
    return samples


# --------------------------------------------------------------------------------------------
# Summaries: medians, paired ratios, Markdown, PNG.
# --------------------------------------------------------------------------------------------

METRICS = {
    "ns_per_op": "Wall time, ns per operation (median)",
    "cpu_ns_per_op": "Process CPU time (user + sys, all threads), ns per operation (median)",
}


def ratio_columns(loops: list[str]) -> dict[str, tuple[str, ...]]:
    """Ratio column title -> reference loops (per round, the fastest of them is the reference)."""
    peers = tuple(p for p in PEERS if p in loops and p != SUBJECT)
    columns = {f"{SUBJECT}/asyncio": ("asyncio",)}
    if peers:
        columns[f"{SUBJECT}/best({', '.join(peers)})"] = peers
    return columns


def summarize(samples: list[dict], benches: list[Bench], loops: list[str]) -> dict:
    """Per benchmark and metric: median per loop, and median of the per-round ratios of the
    subject to each reference (pairing samples from the same round cancels slow drifts)."""
    ok = [s for s in samples if "error" not in s]
    rounds = sorted({s["round"] for s in samples})
    summary = {}
    for spec in benches:
        per_metric = {}
        for metric in METRICS:
            at = {(s["round"], s["loop"]): s[metric] for s in ok if s["bench"] == spec.name}
            medians = {}
            for loop in loops:
                vals = [at[(r, loop)] for r in rounds if (r, loop) in at]
                medians[loop] = statistics.median(vals) if vals else None
            ratios = {}
            for title, refs in ratio_columns(loops).items():
                paired = [
                    at[(r, SUBJECT)] / min(at[(r, ref)] for ref in refs if (r, ref) in at)
                    for r in rounds
                    if (r, SUBJECT) in at and any((r, ref) in at for ref in refs)
                ]
                ratios[title] = statistics.median(paired) if paired else None
            per_metric[metric] = {"median": medians, "ratio": ratios}
        summary[spec.name] = per_metric
    return summary


def fmt_ns(v: float | None) -> str:
    if v is None:
        return "error"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def geomean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else None


def markdown_table(metric: str, summary: dict, ns: dict[str, int], loops: list[str]) -> str:
    ratio_titles = list(ratio_columns(loops))
    head = ["benchmark", "N", *loops, *ratio_titles]
    rows = [head, ["---", *["---:"] * (len(head) - 1)]]
    for name, per_metric in summary.items():
        entry = per_metric[metric]
        rows.append(
            [f"`{name}`", f"{ns[name]:,}"]
            + [fmt_ns(entry["median"][loop]) for loop in loops]
            + [fmt_ratio(entry["ratio"][t]) for t in ratio_titles]
        )
    rows.append(
        ["geometric mean", ""]
        + [""] * len(loops)
        + [
            fmt_ratio(geomean([pm[metric]["ratio"][t] for pm in summary.values()]))
            for t in ratio_titles
        ]
    )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def markdown_report(result: dict, summary: dict, loops: list[str]) -> str:
    versions = ", ".join(f"{name} {v}" for name, v in result["versions"].items())
    missing = "; ".join(f"{name}: {why}" for name, why in result["missing"].items())
    lines = [
        "# Micro-benchmarks: latest run",
        "",
        f"- Date: {result['date']}",
        f"- Machine: {machine_summary(result['machine'])}",
        f"- Loops: {versions}",
    ]
    if missing:
        lines.append(f"- Missing loops: {missing}")
    quick = " (--quick: small N, a smoke test only)" if result["quick"] else ""
    lines += [
        (
            f"- {result['rounds']} round(s){quick}; every sample is a fresh process;"
            " loops interleaved within each round"
        ),
        (
            f"- Ratios are medians of per-round ratios; below 1 means {SUBJECT} is faster;"
            " `best(...)` is the faster peer in the same round"
        ),
    ]
    for metric, title in METRICS.items():
        lines += ["", f"## {title}", "", markdown_table(metric, summary, result["n"], loops)]
    errors = [s for s in result["samples"] if "error" in s]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [
            f"- round {s['round']}, `{s['bench']}`, {s['loop']}: {s['error']}" for s in errors
        ]
    return "\n".join(lines) + "\n"


def plot(summary: dict, loops: list[str], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: skipping the plot (pip install matplotlib)")
        return False
    names = list(summary)
    width = 0.8 / len(loops)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.3 * len(names)), 5.0))
    for i, loop in enumerate(loops):
        xs, heights = [], []
        for j, name in enumerate(names):
            v = summary[name]["ns_per_op"]["median"][loop]
            if v is not None:
                xs.append(j + (i - (len(loops) - 1) / 2) * width)
                heights.append(v)
        ax.bar(xs, heights, width, label=loop)
    ax.set_yscale("log")
    ax.set_ylabel("ns per operation (median, log scale; lower is better)")
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right")
    ax.set_title(f"Micro-benchmarks, {title}", fontsize=9)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def comma_list(choices, convert=str):
    """An argparse type: a comma-separated list of items from `choices`."""

    def parse(text: str) -> list:
        try:
            items = [convert(item.strip()) for item in text.split(",") if item.strip()]
        except ValueError:
            items = [None]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"choose from {', '.join(map(str, choices))} (got {text!r})"
            )
        return items

    return parse


def add_loops_arg(
    p: argparse.ArgumentParser, loops=LOOPS, what: str = "loops", note: str = "; missing ones are reported"
) -> None:
    """`--loops`, shared by the benchmark scripts (dns.py's are resolvers)."""
    p.add_argument(
        "--loops",
        type=comma_list(list(loops)),
        default=list(loops),
        metavar="LOOP[,LOOP]",
        help=f"{what} to compare (default: all of {', '.join(loops)}{note})",
    )


def add_only_arg(p: argparse.ArgumentParser, benches) -> None:
    """`--only`, shared by the benchmark scripts."""
    p.add_argument(
        "--only",
        type=comma_list(list(benches)),
        default=list(benches),
        metavar="NAME[,NAME]",
        help=f"benchmarks to run: {', '.join(benches)}",
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds (default 3; 1 with --quick)"
    )
    p.add_argument(
        "--quick", action="store_true", help="1 round, small fixed N, no calibration (smoke test)"
    )
    add_only_arg(p, BENCHES)
    add_loops_arg(p)
    p.add_argument("--child", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def child_main(args: list[str]) -> None:
    """`--child LOOP` probes a loop; `--child LOOP BENCH N` times one benchmark."""
    # A crash in a loop's native code, or a hang, leaves the Python stacks on stderr.
    faulthandler.enable()
    faulthandler.dump_traceback_later(CHILD_TIMEOUT_S - 5)
    if len(args) == 1:
        result = child_probe(args[0])
    else:
        loop, bench_name, n = args
        result = child_bench(loop, bench_name, int(n))
    print(json.dumps(result), flush=True)


def machine_info() -> dict:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
    }


def machine_summary(machine: dict) -> str:
    return f"{machine['platform']}, {machine['cpu_count']} CPUs, Python {machine['python']}"


def split_probes(probes: dict) -> tuple[list, dict]:
    """Loops whose probe succeeded, and {loop: reason} for the others (logged)."""
    loops = [loop for loop, pr in probes.items() if "error" not in pr]
    missing = {loop: pr["error"] for loop, pr in probes.items() if "error" in pr}
    for loop, why in missing.items():
        log(f"loop {loop} is missing: {why}")
    if not loops:
        log("no loop could be imported")
    return loops, missing


# Results of each interpreter version apart: NAME-py3.13-<stamp>.json, NAME-py3.13-latest.md.
PY_TAG = f"py{sys.version_info.major}.{sys.version_info.minor}"


def save_results(name, started, result, report, samples, extra=()) -> int:
    """Write results/NAME-pyX.Y-<UTC stamp>.json and results/NAME-pyX.Y-latest.md, print the
    report and the paths written (plus `extra` files); returns 1 if any sample failed, else 0."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS_DIR / f"{name}-{PY_TAG}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path = RESULTS_DIR / f"{name}-{PY_TAG}-latest.md"
    md_path.write_text(report)
    print(report)
    written = ", ".join(str(p.relative_to(HERE.parent)) for p in (json_path, md_path, *extra))
    took = f" in {result['duration_s']:.0f} s" if "duration_s" in result else ""
    log(f"wrote {written}{took}")
    errors = sum("error" in s for s in samples)
    if errors:
        log(f"{errors} sample(s) failed; see the Errors section")
    return 1 if errors else 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0

    probes = {loop: run_child(loop) for loop in args.loops}
    loops, missing = split_probes(probes)
    if not loops:
        return 1
    benches = [BENCHES[name] for name in args.only]

    started = dt.datetime.now(dt.UTC)
    if args.quick:
        ns = {spec.name: spec.quick_n for spec in benches}
    else:
        log(f"calibrating N so that every run lasts >= {TARGET_S * CALIBRATION_MARGIN:.2f} s")
        ns = {spec.name: calibrate(spec, loops) for spec in benches}
    samples = run_rounds(benches, loops, ns, args.rounds)
    summary = summarize(samples, benches, loops)

    result = {
        "benchmark": "micro",
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": {loop: probes[loop]["version"] for loop in loops},
        "loop_classes": {loop: probes[loop]["class"] for loop in loops},
        "missing": missing,
        "rounds": args.rounds,
        "quick": args.quick,
        "target_s": TARGET_S,
        "child_timeout_s": CHILD_TIMEOUT_S,
        "benchmarks": {spec.name: spec.doc for spec in benches},
        "n": ns,
        "samples": samples,
        "summary": summary,
    }
    report = markdown_report(result, summary, loops)
    png_path = RESULTS_DIR / f"micro-{PY_TAG}-latest.png"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    title = f"{result['date']}: {machine_summary(result['machine'])}"
    wrote_png = plot(summary, loops, png_path, title)
    return save_results("micro", started, result, report, samples, [png_path] if wrote_png else [])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
