#!/usr/bin/env python3
"""Memory per idle connection of asyncio event loops: stdlib asyncio, uvloop, rloop and rose.

Every sample is one fresh server process pinned to core 0 (``idle_rss.py --server LOOP``: a
minimal ``asyncio.Protocol`` echo server made with ``loop.create_server``) and one fresh client
process pinned to core 1 (``idle_rss.py --client PORT``: plain blocking Python sockets; its own
memory does not matter). After a short warm-up (a few connections that echo one message and
close), the parent reads the server's RSS from ``/proc/<pid>/status``; the client then opens
connections that stay idle, in two steps (a fifth, then the rest: 1,000, then up to 5,000);
after each step the parent waits until the server's protocol has seen every connection (the
server reports its count on stdout), has the server run ``gc.collect()`` and glibc's
``malloc_trim(0)``, lets it settle and reads the RSS again.

Why the trim: a fresh interpreter holds free heap memory left by its imports, more or less of
it depending on the loop, and the first connections reuse it without growing the RSS: without
the trim, the figure undercounts by an amount that says more about the loop's import than its
connections. After the trim, every reading is the pages that live allocations occupy.
(``--no-trim`` measures the untrimmed way.)

The headline is (RSS with 5,000 connections - RSS before) / 5,000: bytes per idle connection.
The slope between the two steps (from 1,000 to 5,000) is a check on it, free of whatever the
first connections allocate once. The server's fd count must grow by exactly one per
connection. The loops run interleaved in rounds and the figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import datetime as dt
import faulthandler
import gc
import importlib
import os
import platform
import resource
import signal
import socket
import statistics
import struct
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = str(Path(__file__).resolve())
# micro.py puts the repository root on sys.path (the in-place rose first) when imported.
sys.path.insert(0, str(HERE))
from echo import (  # noqa: E402
    CLIENT_CPU,
    SERVER_CPU,
    Child,
    ChildError,
    EchoProtocol,
    describe_exc,
    expect,
    fmt_num,
    loop_version,
    probe,
    reply,
    table,
)
from micro import (  # noqa: E402
    SUBJECT,
    add_loops_arg,
    fmt_ratio,
    log,
    machine_info,
    machine_summary,
    split_probes,
    save_results,
)
from udp_subprocess import rose_build  # noqa: E402

CONNS = 5000  # idle connections per sample
FIRST_STEP = 5  # the first checkpoint is at conns / this; the slope is taken from there on
WARMUP_CONNS = 20  # connections that echo one message and close before the baseline
TOUCH_SIZE = 100  # bytes echoed by a warm-up connection (and by every one with --touch)
BACKLOG = 1024
SETTLE_S = 0.5  # pause after gc.collect() and malloc_trim(0) before reading the RSS
STABLE_READS = 3  # ... then reads 0.2 s apart until two agree, at most this many more
ROUNDS = 5
FD_HEADROOM = 1000  # RLIMIT_NOFILE is raised to at least conns + this, both sides

STARTUP_TIMEOUT_S = 30  # server ready, client started
CONNECT_TIMEOUT_S = 60  # the client opening a step's connections
ACCEPT_TIMEOUT_S = 30  # the server seeing a step's connections
CONTROL_TIMEOUT_S = 10  # a reply to a command


def rose_extension() -> dict:
    """udp_subprocess.py's rose_build() (commit, uncommitted changes, build time), and whether
    the extension module carries DWARF debug info: the in-place build of `make test` or
    `make dev` does, `make release` (profile `release`, debug = false) does not; a debug
    build's CPU figures are not rose's."""
    info = rose_build()
    extensions = sorted((HERE.parent / "rose").glob("_rose*.so"))
    if extensions:
        info["extension"] = extensions[0].name
        info["extension_bytes"] = extensions[0].stat().st_size
        info["debug_info"] = has_debug_info(extensions[0])
    return info


def has_debug_info(path: Path) -> bool | None:
    """Whether a 64-bit little-endian ELF file has a .debug_info section (None: not such a
    file)."""
    data = path.read_bytes()
    if data[:6] != b"\x7fELF\x02\x01":
        return None
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i: int) -> tuple:  # sh_name, sh_type, sh_flags, sh_addr, sh_offset, ...
        return struct.unpack_from("<IIQQQ", data, shoff + i * shentsize)

    names = section(shstrndx)[4]
    for i in range(shnum):
        start = names + section(i)[0]
        if data[start : data.index(b"\0", start)] == b".debug_info":
            return True
    return False


def build_line(build: dict, changed: bool) -> list[str]:
    """The report's lines on which rose was measured."""
    if not build:
        return []
    kind = {True: "**a debug build** (it has debug info)", False: "a release build"}
    lines = [
        f"- {SUBJECT} from commit {build.get('commit', '?')}"
        + (" with uncommitted changes to its sources" if build.get("dirty") else "")
        + f", extension built {build.get('extension_built', '?')}"
        + (f", {kind[build['debug_info']]}" if build.get("debug_info") is not None else "")
    ]
    if changed:
        lines.append(f"- **Warning: {SUBJECT}'s extension module changed during the run**")
    return lines


def raise_nofile(needed: int) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"soft": soft, "hard": hard}


# --------------------------------------------------------------------------------------------
# Server child: one loop, an echo server that counts its connections. Control on stdin.
# --------------------------------------------------------------------------------------------


class Counts:
    open = 0  # connections whose connection_made ran and connection_lost did not
    made = 0  # connection_made calls in all


class CountingEcho(EchoProtocol):
    """echo.py's EchoProtocol (data_received writes the data back), counting connections."""

    def connection_made(self, transport):
        super().connection_made(transport)
        Counts.open += 1
        Counts.made += 1

    def connection_lost(self, exc):
        Counts.open -= 1


def child_server(loop_name: str, conns: int) -> None:
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the parent asks on a failure
    limit = raise_nofile(conns + FD_HEADROOM)
    errors: list[str] = []
    try:
        loop = importlib.import_module(loop_name).new_event_loop()
        asyncio.set_event_loop(loop)
    except Exception as exc:
        reply({"event": "missing", "reason": f"new_event_loop(): {describe_exc(exc)}"})
        return

    def on_exception(loop, context):
        exc = context.get("exception")
        errors.append(describe_exc(exc) if exc else str(context.get("message")))

    loop.set_exception_handler(on_exception)
    try:
        server = loop.run_until_complete(
            loop.create_server(CountingEcho, "127.0.0.1", 0, backlog=BACKLOG)
        )
    except (NotImplementedError, AttributeError) as exc:
        reply({"event": "missing", "reason": describe_exc(exc)})
        return
    except Exception as exc:
        reply({"event": "error", "error": describe_exc(exc)})
        return

    def control():
        """Blocked in read(2) between commands: it costs the loop nothing."""
        for line in sys.stdin.buffer:
            command = line.strip()
            if command == b"count":
                reply({"event": "count", "open": Counts.open, "made": Counts.made,
                       "errors": errors[:20]})  # fmt: skip
            elif command in (b"gc", b"gc trim"):
                gc.collect()
                if command.endswith(b"trim"):
                    # glibc gives the free memory of its heaps back to the kernel.
                    ctypes.CDLL(None).malloc_trim(0)
                reply({"event": "gc"})
        # Leave without tearing thousands of connections down on every loop.
        os._exit(0)

    reply(
        {
            "event": "ready",
            "pid": os.getpid(),
            "port": server.sockets[0].getsockname()[1],
            "version": loop_version(loop_name),
            "class": f"{type(loop).__module__}.{type(loop).__qualname__}",
            "nofile": limit,
        }
    )
    threading.Thread(target=control, name="control", daemon=True).start()
    loop.run_forever()


# --------------------------------------------------------------------------------------------
# Client child: blocking sockets, opened on command, kept open until stdin closes.
# --------------------------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(CONNECT_TIMEOUT_S)
    s.connect(("127.0.0.1", port))
    return s


def echo_once(s: socket.socket) -> None:
    message = os.urandom(TOUCH_SIZE // 2).hex().encode()
    s.sendall(message)
    got = b""
    while len(got) < len(message):
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        got += chunk
    if got != message:
        raise ValueError(f"echo mismatch: sent {len(message)} bytes, got {len(got)} others")


def child_client(port: int, conns: int) -> None:
    faulthandler.enable()
    raise_nofile(conns + FD_HEADROOM)
    kept: list[socket.socket] = []
    for line in sys.stdin:
        words = line.split()
        try:
            if words[0] == "warm":  # connections that echo one message, then close
                for _ in range(int(words[1])):
                    with connect(port) as s:
                        echo_once(s)
                reply({"event": "warmed"})
            elif words[0] == "open":  # `open N [touch]`: N more idle connections
                t0 = time.perf_counter()
                fresh = [connect(port) for _ in range(int(words[1]))]
                if "touch" in words[2:]:
                    for s in fresh:
                        echo_once(s)
                kept += fresh
                reply({"event": "opened", "total": len(kept), "s": time.perf_counter() - t0})
        except Exception as exc:
            reply({"event": "error", "error": f"client: {describe_exc(exc)}",
                   "trace": traceback.format_exc()[-2000:]})  # fmt: skip
            return
    os._exit(0)


# --------------------------------------------------------------------------------------------
# Parent: one sample, interleaved rounds.
# --------------------------------------------------------------------------------------------

STATUS_FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def memory(pid: int) -> dict:
    """The process's RSS figures (bytes) from /proc/<pid>/status, and its open fds."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in STATUS_FIELDS:
                out[key] = int(value.split()[0]) * 1024  # kB
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def settled_memory(server: Child, pid: int, trim: bool) -> dict:
    """gc.collect() (and malloc_trim(0)) in the server, a pause, then reads until two in a row
    agree."""
    server.send("gc trim" if trim else "gc")
    expect(server.read_json(CONTROL_TIMEOUT_S), "gc", "server")
    time.sleep(SETTLE_S)
    last = memory(pid)
    for _ in range(STABLE_READS):
        time.sleep(0.2)
        now = memory(pid)
        if now["VmRSS"] == last["VmRSS"]:
            break
        last = now
    return now


def wait_for_conns(server: Child, count: int) -> dict:
    """Poll the server until exactly `count` connections are open in its protocol."""
    deadline = time.monotonic() + ACCEPT_TIMEOUT_S
    while True:
        server.send("count")
        got = expect(server.read_json(CONTROL_TIMEOUT_S), "count", "server")
        if got["errors"]:
            raise ChildError("server errors: " + "; ".join(got["errors"][:5]))
        if got["open"] == count:
            return got
        if time.monotonic() > deadline:
            raise ChildError(f"server: {got['open']} connections open, expected {count}")
        time.sleep(0.05)


def run_sample(loop: str, args) -> dict:
    """One server, one client. Returns the measurements, or {"missing": reason}, or
    {"error": ..., "stderr": ...}; never raises (except KeyboardInterrupt)."""
    server_cmd = [sys.executable, SCRIPT, "--server", loop, str(args.conns)]
    stage = "server start"
    with Child(f"{loop} server", server_cmd, SERVER_CPU) as server:
        try:
            ready = server.read_json(STARTUP_TIMEOUT_S)
            if ready.get("event") == "missing":
                return {"missing": ready["reason"]}
            if ready.get("event") != "ready":
                return {"error": ready.get("error", str(ready)), "stderr": server.stderr()}
            pid, port = ready["pid"], ready["port"]
            client_cmd = [sys.executable, SCRIPT, "--client", str(port), str(args.conns)]
            with Child("client", client_cmd, CLIENT_CPU) as client:
                stage = "warm-up"
                client.send(f"warm {WARMUP_CONNS}")
                expect(client.read_json(STARTUP_TIMEOUT_S), "warmed", "client")
                wait_for_conns(server, 0)
                stage = "baseline"
                steps = [{"conns": 0, **settled_memory(server, pid, args.trim)}]
                for target in sorted({args.conns // FIRST_STEP, args.conns}):
                    stage = f"opening {target} connections"
                    more = target - steps[-1]["conns"]
                    client.send(f"open {more}" + (" touch" if args.touch else ""))
                    opened = expect(client.read_json(CONNECT_TIMEOUT_S), "opened", "client")
                    wait_for_conns(server, target)
                    stage = f"measuring at {target} connections"
                    measured = settled_memory(server, pid, args.trim)
                    steps.append({"conns": target, "connect_s": opened["s"], **measured})
                stage = "final count"
                final = wait_for_conns(server, args.conns)
        except ChildError as exc:
            if server.proc.poll() is None:
                # The server's Python stacks (faulthandler) go to its stderr, kept below.
                server.proc.send_signal(signal.SIGUSR1)
                time.sleep(0.3)
            stderr = "\n".join(filter(None, [exc.stderr, server.stderr()]))
            return {"error": f"{stage}: {exc}", "stderr": stderr}
    first, mid, last = steps[0], steps[1], steps[-1]
    n = last["conns"]
    sample = {
        "bytes_per_conn": (last["VmRSS"] - first["VmRSS"]) / n,
        "anon_bytes_per_conn": (last["RssAnon"] - first["RssAnon"]) / n,
        "slope_bytes_per_conn": (
            (last["VmRSS"] - mid["VmRSS"]) / (n - mid["conns"]) if n > mid["conns"] else None
        ),
        "rss_before_mib": first["VmRSS"] / 2**20,
        "rss_after_mib": last["VmRSS"] / 2**20,
        "fds_per_conn": (last["fds"] - first["fds"]) / n,
        "accepted": final["made"] - WARMUP_CONNS,
        "steps": steps,
        "nofile": ready["nofile"],
    }
    if last["fds"] - first["fds"] != n:
        sample["warning"] = f"fd count grew by {last['fds'] - first['fds']}, not {n}"
    return sample


def describe(sample: dict) -> str:
    if "missing" in sample:
        return f"missing: {sample['missing']}"
    if "error" in sample:
        return f"ERROR {sample['error']}"
    slope = sample["slope_bytes_per_conn"]
    slope_text = "–" if slope is None else f"{slope:.0f}"
    return (
        f"{sample['bytes_per_conn']:7.0f} B/conn (anon {sample['anon_bytes_per_conn']:6.0f},"
        f" slope {slope_text:>6})"
        f"  RSS {sample['rss_before_mib']:.1f} -> {sample['rss_after_mib']:.1f} MiB"
        f"  fds/conn {sample['fds_per_conn']:.3f}"
    )


def run_rounds(loops: list[str], args) -> list[dict]:
    samples = []
    for r in range(1, args.rounds + 1):
        for loop in loops:
            sample = run_sample(loop, args)
            samples.append({"round": r, "loop": loop, **sample})
            log(f"[round {r}/{args.rounds}] {loop:<8} {describe(sample)}")
    return samples


# --------------------------------------------------------------------------------------------
# Summary and report.
# --------------------------------------------------------------------------------------------

METRICS = (
    "bytes_per_conn",
    "anon_bytes_per_conn",
    "slope_bytes_per_conn",
    "rss_before_mib",
    "rss_after_mib",
    "fds_per_conn",
)
REFERENCES = ("rloop", "uvloop", "asyncio")
TARGET_VS_RLOOP = 0.85  # the target: rose <= 0.85 x rloop's bytes per connection


def summarize(samples: list[dict], loops: list[str], rounds: list[int]) -> dict:
    ok = {(s["round"], s["loop"]): s for s in samples if "error" not in s and "missing" not in s}
    per_loop = {}
    for loop in loops:
        got = [ok[(r, loop)] for r in rounds if (r, loop) in ok]
        entry: dict = {"samples": len(got), "errors": sum(
            "error" in s for s in samples if s["loop"] == loop
        )}  # fmt: skip
        for m in METRICS:
            values = [s[m] for s in got if s[m] is not None]
            entry[m] = statistics.median(values) if values else None
            entry[f"{m}_range"] = [min(values), max(values)] if values else None
        missing = next(
            (s["missing"] for s in samples if s["loop"] == loop and "missing" in s), None
        )
        if missing:
            entry["missing"] = missing
        per_loop[loop] = entry
    ratios = {}
    for ref in REFERENCES:
        if ref not in loops or SUBJECT not in loops:
            continue
        for metric in ("bytes_per_conn", "slope_bytes_per_conn"):
            paired = [
                ok[(r, SUBJECT)][metric] / ok[(r, ref)][metric]
                for r in rounds
                if (r, SUBJECT) in ok and (r, ref) in ok
                and ok[(r, SUBJECT)][metric] is not None and ok[(r, ref)][metric]
            ]  # fmt: skip
            ratios[f"{SUBJECT}/{ref} {metric}"] = statistics.median(paired) if paired else None
    return {"loops": per_loop, "ratios": ratios}


def markdown_report(result: dict, summary: dict, loops: list[str]) -> str:
    machine = result["machine"]
    versions = ", ".join(f"{name} {v}" for name, v in result["versions"].items())
    missing = "; ".join(f"{name}: {why}" for name, why in result["missing_loops"].items())
    build = result["rose_build"]
    touch = (
        f"each connection first echoes one {TOUCH_SIZE}-byte message (`--touch`), then stays idle"
        if result["touch"]
        else "the connections never send a byte"
    )
    trim = (
        "`gc.collect()` and glibc's `malloc_trim(0)` (so that free heap memory left over from"
        " start-up, which the first connections would reuse unseen, is not in the baseline)"
        if result["trim"]
        else "`gc.collect()` (no `malloc_trim`: `--no-trim`)"
    )
    lines = [
        "# Memory per idle connection: latest run",
        "",
        f"- Date: {result['date']}",
        f"- Machine: {machine_summary(machine)}; load average (1 min) before the run"
        f" {machine['loadavg_before'][0]:.2f}, after {machine['loadavg_after'][0]:.2f}",
        f"- Loops: {versions}",
    ]
    lines += build_line(build, result.get("extension_changed", False))
    if missing:
        lines.append(f"- Missing loops: {missing}")
    lines += [
        f"- {result['rounds']} round(s), interleaved; every sample a fresh server (pinned to core"
        f" {SERVER_CPU}: `loop.create_server` with an `asyncio.Protocol` echo server) and a fresh"
        f" Python client (core {CLIENT_CPU}); TCP over loopback",
        f"- After {WARMUP_CONNS} warm-up connections (one echo each, closed), the server's RSS is"
        f" read (`VmRSS` of `/proc/<pid>/status`, after {trim} in the server and"
        f" {SETTLE_S} s of rest); then {result['conns']:,} connections are opened in two steps"
        f" ({result['first_step']:,}, then the rest) and the RSS is read again after each, once"
        f" the server's protocol has seen every connection; {touch}",
        f"- `bytes/conn` = (RSS with {result['conns']:,} connections − RSS before) /"
        f" {result['conns']:,}; `anon` the same from `RssAnon`; `slope` = the RSS growth per"
        f" connection from {result['first_step']:,} to {result['conns']:,} connections."
        " Figures are medians over rounds, min–max beside them. Ratios are medians of per-round"
        f" ratios; below 1, {SUBJECT} uses less memory per connection. Kernel socket buffers are"
        " not in RSS",
        "",
        f"## Headline: {SUBJECT} against its peers",
        "",
    ]
    rows = [["ratio", "bytes/conn", "slope"]]
    for ref in REFERENCES:
        key = f"{SUBJECT}/{ref} bytes_per_conn"
        if key in summary["ratios"]:
            rows.append(
                [
                    f"{SUBJECT}/{ref}",
                    fmt_ratio(summary["ratios"][key]),
                    fmt_ratio(summary["ratios"][f"{SUBJECT}/{ref} slope_bytes_per_conn"]),
                ]
            )
    lines += table(rows, ["---", "---:", "---:"])
    target = summary["ratios"].get(f"{SUBJECT}/rloop bytes_per_conn")
    if target is not None:
        verdict = "met" if target <= TARGET_VS_RLOOP else "not met"
        lines += [
            "",
            f"Target {SUBJECT} ≤ {TARGET_VS_RLOOP} × rloop's bytes per connection: **{verdict}**"
            f" ({target:.2f}).",
        ]

    def cell(e: dict, m: str, digits: int = 0) -> str:
        v, rng = e[m], e[f"{m}_range"]
        if v is None:
            return "–"
        if digits:
            return f"{v:.{digits}f}"
        return f"{v:,.0f} ({rng[0]:,.0f}–{rng[1]:,.0f})"

    lines += ["", "## Per loop", ""]
    rows = [
        ["loop", "bytes/conn (min–max)", "anon bytes/conn (min–max)",
         "slope bytes/conn (min–max)", "RSS before MiB", "RSS after MiB", "fds/conn"]
    ]  # fmt: skip
    for loop in loops:
        e = summary["loops"][loop]
        name = f"**{loop}**" if loop == SUBJECT else loop
        if e["samples"] == 0:
            why = (
                f"missing: {e['missing']}" if e.get("missing") else f"error ({e['errors']} failed)"
            )
            rows.append([name, why, *[""] * 5])
            continue
        rows.append(
            [
                name,
                cell(e, "bytes_per_conn"),
                cell(e, "anon_bytes_per_conn"),
                cell(e, "slope_bytes_per_conn"),
                fmt_num(e["rss_before_mib"]),
                fmt_num(e["rss_after_mib"]),
                f"{e['fds_per_conn']:.3f}",
            ]
        )
    lines += table(rows, ["---", *["---:"] * 6])
    problems = [s for s in result["samples"] if "error" in s or "warning" in s]
    if problems:
        lines += ["", "## Errors and warnings", ""]
        lines += [
            f"- round {s['round']}, {s['loop']}: {s.get('error') or s['warning']}" for s in problems
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"interleaved rounds (default {ROUNDS}; 1 with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="1 round, 1,000 connections: a smoke test")
    add_loops_arg(p)
    p.add_argument("--conns", type=int, default=None, help=f"idle connections (default {CONNS:,})")
    p.add_argument(
        "--touch",
        action="store_true",
        help=f"every connection echoes one {TOUCH_SIZE}-byte message before it goes idle",
    )
    p.add_argument(
        "--no-trim",
        dest="trim",
        action="store_false",
        help="read the RSS without malloc_trim(0) in the server first (see the report)",
    )
    p.add_argument("--server", nargs=2, metavar="ARG", help=argparse.SUPPRESS)
    p.add_argument("--client", nargs=2, metavar="ARG", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else ROUNDS
    if args.conns is None:
        args.conns = 1000 if args.quick else CONNS
    if args.rounds < 1 or args.conns < 2 * FIRST_STEP:
        p.error(f"--rounds must be positive and --conns at least {2 * FIRST_STEP}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.server:
        child_server(args.server[0], int(args.server[1]))
        return 0
    if args.client:
        child_client(int(args.client[0]), int(args.client[1]))
        return 0
    if max(SERVER_CPU, CLIENT_CPU) >= len(os.sched_getaffinity(0)):
        log(f"warning: fewer than {max(SERVER_CPU, CLIENT_CPU) + 1} cores: pinning will fail")
    nofile = raise_nofile(args.conns + FD_HEADROOM)  # the children inherit it
    if nofile["soft"] != resource.RLIM_INFINITY and nofile["soft"] < args.conns + 100:
        log(f"RLIMIT_NOFILE is {nofile['soft']} (hard {nofile['hard']}): too low for {args.conns}")
        return 1

    probes = {loop: probe(loop) for loop in args.loops}
    loops, missing = split_probes(probes)
    if not loops:
        return 1
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        log(f"note: load average {load_before[0]:.2f} before the run: other work shares the cores")
    build = rose_extension() if SUBJECT in loops else {}
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    try:
        samples = run_rounds(loops, args)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    rounds = list(range(1, args.rounds + 1))
    summary = summarize(samples, loops, rounds)
    build_after = rose_extension() if SUBJECT in loops else {}
    changed = build.get("extension_built") != build_after.get("extension_built")
    if changed:
        log(f"warning: {SUBJECT}'s extension module changed during the run")
    result = {
        "benchmark": "idle_rss",
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - t0, 1),
        "machine": {
            **machine_info(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "kernel": platform.release(),
        },
        "versions": {loop: probes[loop]["version"] for loop in loops},
        "loop_classes": {loop: probes[loop]["class"] for loop in loops},
        "missing_loops": missing,
        "rose_build": build,
        "extension_changed": changed,
        "rounds": args.rounds,
        "quick": args.quick,
        "conns": args.conns,
        "first_step": args.conns // FIRST_STEP,
        "touch": args.touch,
        "trim": args.trim,
        "warmup_conns": WARMUP_CONNS,
        "settle_s": SETTLE_S,
        "server_cpu": SERVER_CPU,
        "client_cpu": CLIENT_CPU,
        "nofile": nofile,
        "samples": samples,
        "summary": summary,
    }
    return save_results(
        "idle_rss", started, result, markdown_report(result, summary, loops), samples
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
