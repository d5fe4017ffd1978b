#!/usr/bin/env python3
"""Where one HTTP request's time goes: instructions per request, by shared object, of the
servers of http.py on each loop, counted by valgrind's callgrind.

benchmarks/README.md ("Where one request's time goes") explains what is measured and how.

Each sample is http.py's own server child (``http.py --server KIND LOOP``) run under
``valgrind --tool=callgrind --instr-atstart=no``: nothing is counted while the interpreter
starts, imports and serves a warm-up run of wrk; ``callgrind_control -i on`` then counts every
instruction the server runs during a timed wrk run (``-c10``), and ``-i off`` stops. The
server answers the same preflight and commands as under http.py; wrk's count of completed
requests divides the total. Instructions do not move with the machine's load (unlike time), so
one sample per server and loop is enough; the kernel's work is not counted (callgrind sees user
space only): http.py's system time per request shows it.
"""

# ruff: noqa: E402  (sys.path is fixed before the imports: see http.py)
from __future__ import annotations

import os
import sys

HERE_DIR = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != HERE_DIR]
import http  # noqa: F401  (the standard library's, before this directory is on sys.path)

import argparse
import datetime as dt
import importlib.util
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, HERE_DIR)
from echo import Child, ChildError, fmt_num, table

# benchmarks/http.py, under a name of its own (`http` is the standard library's).
_spec = importlib.util.spec_from_file_location("http_bench", Path(HERE_DIR) / "http.py")
http_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(http_bench)
KINDS, parse_wrk, wrk_cmd = http_bench.KINDS, http_bench.parse_wrk, http_bench.wrk_cmd
from micro import add_loops_arg, comma_list, log, machine_info, machine_summary, save_results

SCRIPT = str(Path(HERE_DIR) / "http.py")
SERVER_CPU = 0
START_TIMEOUT_S = 180  # valgrind makes the start-up about 50 times slower
WARMUP_S = 2
DEFAULT_SECONDS = 10
CONNECTIONS = 10

# Shared objects grouped under a name: the loop's compiled code, the interpreter, C parts of
# the frameworks (parsers), libc, the rest.
GROUPS = (
    ("the loop's compiled code", re.compile(r"/rose/_rose\.|/uvloop/loop\.|/rloop/_rloop\.")),
    ("asyncio's C Task and Future", re.compile(r"/_asyncio\.")),
    ("libpython", re.compile(r"libpython|/python3\.\d+$")),
    ("framework C parts", re.compile(r"httptools|aiohttp|multidict|yarl|propcache|frozenlist")),
    ("libc and loader", re.compile(r"libc\.so|ld-linux|libm\.so|libpthread")),
)


def group_of(obj: str) -> str:
    for name, pattern in GROUPS:
        if pattern.search(obj):
            return name
    return "other"


def unnamed_object(what: str) -> str:
    if re.search(r"\.rs:", what):
        return "/rose/_rose.(inlined)"
    if re.search(r"Python-3|/Include/|/Objects/|/Python/|pycore_|object\.h:", what):
        return "libpython (inlined)"
    return "?"


def annotate(path: str) -> tuple[int, Counter, Counter, Counter]:
    """(total, instructions by group, by shared object, by function) of a callgrind profile."""
    out = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--threshold=100", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = 0
    groups: Counter = Counter()
    objects: Counter = Counter()
    functions: Counter = Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        count = int(m.group(1).replace(",", ""))
        what = m.group(2)
        if "PROGRAM TOTALS" in what:
            total = count
            continue
        obj = re.search(r"\[([^\]]*)\]\s*$", what)
        # callgrind_annotate leaves the object out for code inlined from headers: tell it by
        # the source file (a Rust file is rose's; CPython's headers are the interpreter's).
        obj = obj.group(1) if obj else unnamed_object(what)
        groups[group_of(obj)] += count
        objects[os.path.basename(obj)] += count
        name = re.sub(r"\s*\[[^\]]*\]\s*$", "", what)
        functions[re.sub(r"^/tmp/python-build[^:]*/", "", name)] += count
    return total, groups, objects, functions


def run_sample(kind: str, loop: str, seconds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        profile = os.path.join(tmp, "callgrind.out")
        cmd = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
            f"--callgrind-out-file={profile}", sys.executable, SCRIPT, "--server", kind, loop,
        ]  # fmt: skip
        with Child(f"{kind}/{loop} server", cmd, SERVER_CPU) as server:
            ready = server.read_json(START_TIMEOUT_S)
            if ready.get("event") != "ready":
                return {"kind": kind, "loop": loop, "error": str(ready)}
            port, pid = ready["port"], ready["pid"]
            subprocess.run(wrk_cmd(port, WARMUP_S, CONNECTIONS), capture_output=True, check=True)
            subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True, check=True)
            wrk = subprocess.run(
                wrk_cmd(port, seconds, CONNECTIONS), capture_output=True, text=True, check=True
            )
            subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True, check=True)
            # Written now (a dump of what was counted), not at exit: the server may be killed.
            subprocess.run(["callgrind_control", "--dump", str(pid)], capture_output=True, check=True)
            dumps = sorted(Path(tmp).glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
            if not dumps:
                return {"kind": kind, "loop": loop, "error": "callgrind wrote no profile"}
            total, groups, objects, functions = annotate(str(dumps[-1]))
        report = parse_wrk(wrk.stdout)
    n = report["requests"]
    return {
        "kind": kind,
        "loop": loop,
        "requests": n,
        "instructions": total,
        "per_request": total / n,
        "groups": {g: c / n for g, c in groups.items()},
        "objects": {o: c / n for o, c in objects.most_common()},
        "top_functions": [(f, c / n) for f, c in functions.most_common(25)],
    }


def markdown_report(result: dict) -> str:
    lines = [
        "# Instructions per HTTP request: latest run",
        "",
        f"- Date: {result['started']}",
        f"- Machine: {machine_summary(result['machine'])}",
        f"- Loops: {', '.join(result['loops'])}; servers: {', '.join(result['kinds'])} (http.py's)",
        f"- One sample each: the server under callgrind (user-space instructions), counting only "
        f"during a {result['seconds']} s `wrk -t1 -c{CONNECTIONS}` run after a {WARMUP_S} s "
        "warm-up; divided by wrk's completed requests",
        "",
    ]
    names = [g for g, _ in GROUPS] + ["other"]
    rows = [["server", "loop", "requests", "instructions/request", *names]]
    by = {(s["kind"], s["loop"]): s for s in result["samples"] if "error" not in s}
    for kind in result["kinds"]:
        for loop in result["loops"]:
            s = by.get((kind, loop))
            if s is None:
                continue
            rows.append(
                [f"`{kind}`", loop, str(s["requests"]), fmt_num(s["per_request"], 0)]
                + [fmt_num(s["groups"].get(g, 0.0), 0) for g in names]
            )
    lines += table(rows, ["---", "---"] + ["---:"] * (len(rows[0]) - 2))
    if "rose" in result["loops"]:
        lines += ["", "rose / peer, instructions per request:", ""]
        peers = [p for p in result["loops"] if p != "rose"]
        rows = [["server", *peers]]
        for kind in result["kinds"]:
            rose = by.get((kind, "rose"))
            cells = []
            for p in peers:
                peer = by.get((kind, p))
                cells.append(f"{rose['per_request'] / peer['per_request']:.2f}" if rose and peer else "")
            rows.append([f"`{kind}`", *cells])
        lines += table(rows, ["---"] + ["---:"] * len(peers))
    errors = [s for s in result["samples"] if "error" in s]
    if errors:
        lines += ["", "## Errors", ""] + [f"- `{s['kind']}` on {s['loop']}: {s['error']}" for s in errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_loops_arg(parser)
    parser.set_defaults(loops=["rose", "uvloop"])
    parser.add_argument("--kinds", type=comma_list(KINDS), default=list(KINDS))
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS)
    args = parser.parse_args(argv)
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate", "wrk", "taskset"):
        if shutil.which(tool) is None:
            log(f"{tool} is missing (apt-get install valgrind wrk util-linux)")
            return 2
    started = dt.datetime.now(dt.UTC)
    samples = []
    for kind in args.kinds:
        for loop in args.loops:
            log(f"{kind} on {loop} under callgrind ...")
            try:
                sample = run_sample(kind, loop, args.seconds)
            except (ChildError, subprocess.CalledProcessError, ValueError) as exc:
                sample = {"kind": kind, "loop": loop, "error": str(exc)}
            if "error" not in sample:
                log(f"  {sample['requests']} requests, {sample['per_request']:,.0f} instructions each")
            samples.append(sample)
    result = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "loops": args.loops,
        "kinds": args.kinds,
        "seconds": args.seconds,
        "samples": samples,
    }
    return save_results("http_profile", started, result, markdown_report(result), samples)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
