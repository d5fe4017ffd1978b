#!/usr/bin/env python3
"""What rose's always-on loop metrics cost, in instructions: this tree against a build without
them (a git revision, by default the commit before metrics came), both release builds, one run.

Counted with valgrind's callgrind, which counts instructions executed rather than time, so the
figures do not move with the machine's load (benchmarks/README.md, "Metrics cost"). Each figure is
instructions per operation: a child is counted at two sizes N1 < N2 and the difference is
divided by N2 - N1, which cancels start-up and import.

- the micro-benchmarks: `micro.py --child rose BENCH N` of each tree;
- protocol echo: a TCP echo `Protocol` (the server of echo.py's protocol mode) and a client
  `Protocol` on one rose loop, 20 connections, 100-byte messages, N round trips in all; one round
  trip is a server and a client callback each way, so both sides' costs are in it.

    python benchmarks/metrics_cost.py                 # baseline: the commit before metrics
    python benchmarks/metrics_cost.py --baseline REV  # any revision without them
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from micro import PY_TAG, RESULTS_DIR, log, machine_info, machine_summary  # noqa: E402

MICRO = {
    # name: (N1, N2). Small enough for callgrind (~50x slower than native), far enough apart
    # that what start-up costs differently from run to run (a few 100,000 instructions) moves
    # a per-operation figure by well under 1%.
    "call_soon_chain": (2000, 32000),
    "call_soon_batch": (2000, 32000),
    "call_later_spread": (1000, 16000),
    "timer_cancel": (2000, 32000),
    "sleep0": (1000, 16000),
    "future_roundtrip": (1000, 16000),
    "gather_1000": (2000, 22000),  # N counts tasks (micro.py: a multiple of 1000)
    "call_soon_threadsafe": (1000, 16000),
}
ECHO = (1000, 11000)


def default_baseline() -> str:
    """The commit before the one that added src/metrics.rs."""
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", "src/metrics.rs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not added:
        raise SystemExit("src/metrics.rs is not committed yet: give --baseline")
    return added[-1] + "^"


def echo_child(n: int) -> None:
    """`--echo-child N`: N echo round trips of 100 bytes over 20 connections on a rose loop."""
    import asyncio

    import rose

    conns, size = 20, 100
    message = b"m" * size

    class Server(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        left = [n]
        done = loop.create_future()

        class Client(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport, self.got = transport, 0

            def data_received(self, data):
                self.got += len(data)
                if self.got < size:
                    return
                self.got = 0
                left[0] -= 1
                if left[0] >= conns:
                    self.transport.write(message)
                elif left[0] == 0 and not done.done():
                    done.set_result(None)

        clients = [await loop.create_connection(Client, "127.0.0.1", port) for _ in range(conns)]
        for transport, _ in clients:
            transport.write(message)
        await done
        for transport, _ in clients:
            transport.close()
        server.close()
        await server.wait_closed()

    rose.run(main())


# The I/O poll is left out of the counts: its inclusive cost (callgrind_annotate) is taken off
# the total. Its code is the same with and without metrics, and how often it runs follows the
# wall clock (every 250 µs while callbacks keep the loop busy), so valgrind's slowdown makes it
# vary by a hundred instructions per operation from run to run. The metrics' own work around
# it is counted.
POLL = {"without": "_rose::event_loop::EventLoop::poll_events", "with": "_rose::event_loop::EventLoop::poll_events_at"}


def inclusive(out: str, function: str) -> int:
    r = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", out], capture_output=True, text=True, check=True
    )
    total = 0
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\([^)]*\)\s+[^:\s]*:(\S+)", line)  # count (share) file:function
        if m and m.group(2) == function:
            total += int(m.group(1).replace(",", ""))
    return total


def instructions(cmd: list[str], env: dict, poll: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        r = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr[-2000:]}")
        m = re.search(r"Collected : (\d+)", r.stderr)
        if not m:
            raise RuntimeError(f"no instruction count from callgrind: {r.stderr[-500:]}")
        polled = inclusive(out, poll)
        if not polled:
            raise RuntimeError(f"no {poll} in the profile: is it inlined?")
        return int(m.group(1)) - polled


def per_op(cmd_for_n, sizes, env, poll) -> float:
    n1, n2 = sizes
    i1 = instructions(cmd_for_n(n1), env, poll)
    i2 = instructions(cmd_for_n(n2), env, poll)
    return (i2 - i1) / (n2 - n1)


def python_binary() -> str:
    """The interpreter's own binary (valgrind must not count a pyenv shim's shell)."""
    real = os.path.realpath(sys.executable)
    return real


def build_baseline(rev: str, where: Path) -> Path:
    """A worktree of `rev` with its release extension built in place."""
    if where.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, check=False)
    subprocess.run(["git", "worktree", "add", "--detach", str(where), rev], cwd=ROOT, check=True)
    # The I/O poll left out of the counts there too (see POLL): the same attribute as here.
    source = where / "src" / "event_loop.rs"
    text = source.read_text()
    marker = "    fn poll_events(&self"
    if marker not in text:
        raise SystemExit(f"{rev}: no EventLoop::poll_events to leave out of the counts")
    source.write_text(text.replace(marker, "    #[inline(never)]\n" + marker, 1))
    target = ROOT / "target" / f"baseline-{sys.version_info.major}.{sys.version_info.minor}"
    env = dict(os.environ, PYO3_PYTHON=python_binary())
    log(f"building {rev} (release) into {target}")
    subprocess.run(
        ["cargo", "build", "--release", "--features", "extension-module", "--target-dir", str(target)],
        cwd=where,
        env=env,
        check=True,
    )
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    shutil.copy(target / "release" / "lib_rose.so", where / "rose" / f"_rose{suffix}")
    return where


# Children run with the cyclic GC off. Otherwise a full collection, a discrete event whose
# cost grows with every object the process holds (hence with what `import rose` imports),
# lands in one run and not the other and moves the figure by 50 instructions per operation
# or more, swamping the few instructions compared here.
GC_OFF = "import gc, runpy, sys; gc.disable(); sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


def commands(tree: Path, name: str, n: int) -> list[str]:
    py = python_binary()
    if name == "echo_protocol":
        return [py, "-c", GC_OFF, str(HERE / "metrics_cost.py"), "--echo-child", str(n)]
    return [py, "-c", GC_OFF, str(tree / "benchmarks" / "micro.py"), "--child", "rose", name, str(n)]


def environment(tree: Path, extra: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
    for name in ("ROSE_STATS", "ROSE_CALLBACK_TIMING"):
        env.pop(name, None)
    env.update(extra)
    return env


def measure(variants: dict[str, tuple[Path, dict]], only: list[str], rounds: int) -> dict:
    """{variant: {benchmark: [instructions/op of each round]}}, the variants interleaved."""
    figures: dict[str, dict[str, list[float]]] = {label: {} for label in variants}
    for name in only:
        sizes = ECHO if name == "echo_protocol" else MICRO[name]
        for _ in range(rounds):
            for label, (tree, extra) in variants.items():
                env = environment(tree, extra)
                poll = POLL["without" if label == "without" else "with"]
                value = per_op(lambda n, t=tree, b=name: commands(t, b, n), sizes, env, poll)
                figures[label].setdefault(name, []).append(value)
                log(f"{label}: {name} {value:.0f} instructions/op")
    return figures


def report(started, rev, figures, rounds, machine) -> str:
    lines = [
        "# Metrics cost (callgrind instructions per operation)",
        "",
        f"{started:%Y-%m-%d %H:%M} UTC, {machine_summary(machine)}; release builds, children with the"
        f" cyclic GC off. 'without': {rev}, before metrics; 'counters': this tree as it runs by default"
        " (counters always on); 'timed': this tree with every callback timed (ROSE_CALLBACK_TIMING=1:"
        f" histogram, longest callbacks). Medians of {rounds} interleaved rounds (range in brackets).",
        "",
        "| benchmark | without | counters | timed | counters / without | timed / without |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def cell(values):
        return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"

    for name in figures["counters"]:
        a = statistics.median(figures["without"][name])
        b = statistics.median(figures["counters"][name])
        c = statistics.median(figures["timed"][name])
        lines.append(
            f"| {name} | {cell(figures['without'][name])} | {cell(figures['counters'][name])} |"
            f" {cell(figures['timed'][name])} | {b / a:.3f} | {c / a:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", help="a revision without metrics (default: the commit before src/metrics.rs)")
    p.add_argument(
        "--only",
        default=",".join([*MICRO, "echo_protocol"]),
        help="comma-separated benchmarks (default: every micro-benchmark and echo_protocol)",
    )
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds (default 1: with the poll left out, counts repeat to the instruction)")
    p.add_argument("--echo-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.echo_child is not None:
        sys.path.insert(0, os.environ.get("PYTHONPATH", str(ROOT)).split(os.pathsep)[0])
        echo_child(args.echo_child)
        return 0
    if not shutil.which("valgrind"):
        log("valgrind is missing: apt-get install valgrind")
        return 1
    only = [x for x in args.only.split(",") if x]
    started = dt.datetime.now(dt.UTC)
    baseline = args.baseline or default_baseline()
    rev = subprocess.run(
        ["git", "rev-parse", "--short", baseline], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    base = build_baseline(baseline, ROOT / "target" / "metrics-baseline-tree")
    try:
        variants = {"without": (base, {}), "counters": (ROOT, {}), "timed": (ROOT, {"ROSE_CALLBACK_TIMING": "1"})}
        figures = measure(variants, only, args.rounds)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    machine = machine_info()
    text = report(started, rev, figures, args.rounds, machine)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIR / f"metrics_cost-{PY_TAG}-{stamp}.json").write_text(
        json.dumps({"baseline": rev, "rounds": args.rounds, **figures, "machine": machine}, indent=2) + "\n"
    )
    (RESULTS_DIR / f"metrics_cost-{PY_TAG}-latest.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
