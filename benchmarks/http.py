#!/usr/bin/env python3
"""HTTP/1.1 hello-world benchmark of asyncio event loops: stdlib asyncio, uvloop, rloop and rose.

benchmarks/README.md ("HTTP: http.py") explains what is measured and how.

Three servers answer `GET /` with `Hello, world!` over keep-alive connections: uvicorn with
httptools and a raw ASGI app, aiohttp.web, and a raw asyncio.Protocol written here. Every sample
is one fresh server process pinned to core 0 (``http.py --server KIND LOOP``) and one run of
``wrk`` pinned to core 1 (``taskset -c 1 wrk -t1 -c100 -d5s --latency``), after an unmeasured
1 s warm-up run of wrk. The server measures its own CPU time with ``getrusage`` between a
``start`` and a ``stop`` command on its stdin, sent right before and right after the timed wrk
run. The headline is server CPU time per request, user and system apart, and req/s.
"""

# ruff: noqa: E402  (sys.path is fixed before the imports: see below)
from __future__ import annotations

import os
import sys

# This file has the name of the standard library's `http` package, and Python puts a script's
# directory first on sys.path: take that directory off, import the real `http` (uvicorn and
# aiohttp need it), and only then put it back for echo.py and micro.py. Nothing may import
# `http` before this point (os and sys do not).
HERE_DIR = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != HERE_DIR]
import http  # noqa: F401

import argparse
import asyncio
import datetime as dt
import faulthandler
import importlib
import importlib.metadata
import logging
import re
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

HERE = Path(HERE_DIR)
sys.path.insert(0, HERE_DIR)
# echo.py imports micro.py, which puts the repository root on sys.path (the in-place rose first).
from echo import (
    Child,
    ChildError,
    describe_exc,
    expect,
    fmt_num,
    fmt_ratio,
    loop_version,
    pin_and_tie,
    probe,
    reply,
    start_control,
    table,
)
from micro import (
    PEERS,
    SUBJECT,
    add_loops_arg,
    comma_list,
    log,
    machine_info,
    save_results,
    split_probes,
)
from udp_subprocess import rose_build

KINDS = ("uvicorn", "aiohttp", "protocol")
KIND_DOCS = {
    "uvicorn": 'uvicorn with `http="httptools"`, a raw ASGI app (no framework),'
    ' `lifespan="off"`, `access_log=False`, `log_level="warning"`; `uvicorn.Server.serve()`'
    ' on the loop under test (`loop="none"`)',
    "aiohttp": "`aiohttp.web.Application`, one GET route returning"
    ' `web.Response(text="Hello, world!")`; `web.AppRunner(access_log=None)` + `web.SockSite`',
    "protocol": "a raw `asyncio.Protocol` (`loop.create_server`): finds each request's end"
    " (`\\r\\n\\r\\n`), answers a fixed `200 OK` with `Content-Length`, keeps the connection",
}
BODY = b"Hello, world!"

SERVER_CPU = 0  # core the server is pinned to
CLIENT_CPU = 1  # core wrk is pinned to
CONNS = 100
DURATION_S = 5  # timed wrk run per sample
QUICK_DURATION_S = 1
WARMUP_S = 1  # the unmeasured wrk run before it
BACKLOG = 1024

STARTUP_TIMEOUT_S = 30  # server ready (imports, start-up, preflight)
WRK_GRACE_S = 30  # wrk's run may last this much longer than its -d before it is killed
CONTROL_TIMEOUT_S = 10  # a reply to start/stop
PREFLIGHT_TIMEOUT_S = 5
OUTPUT_KEPT = 4000  # characters of wrk's output kept in the JSON on a failure


# --------------------------------------------------------------------------------------------
# Server child: one kind, one loop. Control on stdin, replies (JSON lines) on stdout.
# --------------------------------------------------------------------------------------------


async def asgi_app(scope, receive, send):
    """The raw ASGI app under uvicorn: no framework, no routing, the body is never read."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(BODY))],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


async def start_uvicorn(loop, sock, recorder):
    import httptools  # noqa: F401  (not installed: the kind is missing, with the reason)
    import uvicorn

    config = uvicorn.Config(
        asgi_app,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        loop="none",
    )
    # Config() ran logging.config.dictConfig, which drops the handlers of uvicorn's loggers;
    # they do not propagate to the root logger either.
    logging.getLogger("uvicorn").addHandler(recorder)
    server = uvicorn.Server(config)
    task = loop.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # raises what serve() raised
            raise RuntimeError("uvicorn's serve() returned before its server started")
        await asyncio.sleep(0.01)
    return server, task


async def start_aiohttp(loop, sock, recorder):
    from aiohttp import web

    async def hello(request):
        return web.Response(text="Hello, world!")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock, backlog=BACKLOG)
    await site.start()
    return runner, site


RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n" % len(BODY) + BODY
)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MAX_HEAD = 65536  # a request head longer than this is refused


class HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive for GET requests without bodies: every `\\r\\n\\r\\n` ends one
    request (pipelined requests are answered in order, in one write), anything but a GET
    gets a 400 and the connection closed."""

    transport: asyncio.Transport

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        buf = self.buffer + data if self.buffer else data
        start, replies = 0, 0
        while (end := buf.find(b"\r\n\r\n", start)) >= 0:
            if not buf.startswith(b"GET ", start):
                self.transport.write(RESPONSE * replies + BAD_REQUEST)
                self.transport.close()
                return
            replies += 1
            start = end + 4
        if replies:
            self.transport.write(RESPONSE if replies == 1 else RESPONSE * replies)
        self.buffer = buf[start:]
        if len(self.buffer) > MAX_HEAD:
            self.transport.write(BAD_REQUEST)
            self.transport.close()


async def start_protocol(loop, sock, recorder):
    return await loop.create_server(HttpProtocol, sock=sock, backlog=BACKLOG)


STARTERS = {"uvicorn": start_uvicorn, "aiohttp": start_aiohttp, "protocol": start_protocol}
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def read_response(s: socket.socket, buf: bytes) -> tuple[int, dict, bytes, bytes]:
    """One response from a blocking socket: (status, headers, body, bytes left over)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {buf!r}")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or parts[0] != "HTTP/1.1" or not parts[1].isdigit():
        raise ValueError(f"bad status line {status_line!r}")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "-1"))
    if length < 0:
        raise ValueError(f"no Content-Length in {head!r}")
    while len(buf) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed in the body")
        buf += chunk
    return int(parts[1]), headers, buf[:length], buf[length:]


def preflight(loop, port: int) -> str | None:
    """A blocking client in a thread, while the loop runs: one request, then two pipelined
    ones, on one keep-alive connection; every answer must be a 200 with the body. A kind the
    loop cannot serve fails here, before any measurement."""
    done = loop.create_future()

    def client():
        outcome = None
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=PREFLIGHT_TIMEOUT_S) as s:
                buf = b""
                for batch in (1, 2):
                    s.sendall(REQUEST * batch)
                    for _ in range(batch):
                        status, headers, body, buf = read_response(s, buf)
                        if status != 200 or body != BODY:
                            raise ValueError(f"got {status} {body[:200]!r}")
                        if headers.get("connection", "").lower() == "close":
                            raise ValueError("the server closes the connection (no keep-alive)")
        except Exception as exc:
            outcome = f"preflight client: {describe_exc(exc)}"
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(outcome))

    threading.Thread(target=client, name="preflight", daemon=True).start()
    return loop.run_until_complete(done)


class RecordErrors(logging.Handler):
    """uvicorn and aiohttp log a failed request (ERROR, with the exception) rather than pass it
    to the loop's exception handler: record those too."""

    def __init__(self, errors: list[str]):
        super().__init__(logging.ERROR)
        self.errors = errors

    def emit(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        self.errors.append(describe_exc(exc) if exc else f"{record.name}: {record.getMessage()}")


LACKING = ("NotImplementedError", "AttributeError")


class Errors(list):
    """The exceptions recorded while serving (as text), and when the first came."""

    first_at = 0.0  # perf_counter

    def append(self, text):
        if not self:
            self.first_at = time.perf_counter()
        super().append(text)


def error_fields(errors: Errors, t0: float) -> dict:
    """The usage reply's error entries: each text with its count, how many, and when the
    first came (seconds into the window)."""
    return {
        "errors": dict(Counter(errors).most_common(20)),  # text -> how many times
        "error_count": len(errors),
        "first_error_s": errors.first_at - t0 if errors else None,
    }


def child_server(kind: str, loop_name: str) -> None:
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the parent asks on a failure
    errors = Errors()
    try:
        loop = importlib.import_module(loop_name).new_event_loop()
        asyncio.set_event_loop(loop)
    except Exception as exc:
        reply({"event": "missing", "reason": f"new_event_loop(): {describe_exc(exc)}"})
        return

    def on_exception(*args):  # (loop, context); rloop 0.5 passes the context alone
        context = args[-1]
        exc, message = context.get("exception"), context.get("message")
        if exc is None:
            errors.append(str(message))
            return
        where = ""
        if frames := traceback.extract_tb(exc.__traceback__):
            last = frames[-1]
            where = f" in {last.name}() at {'/'.join(Path(last.filename).parts[-2:])}:{last.lineno}"
        errors.append(f"{describe_exc(exc)} ({message}{where})")

    loop.set_exception_handler(on_exception)
    recorder = RecordErrors(errors)
    logging.getLogger().addHandler(recorder)  # aiohttp's loggers propagate to the root

    # IPPROTO_TCP, as getaddrinfo gives it to create_server(host, port): asyncio (and rose)
    # set TCP_NODELAY on an accepted socket only if its proto is IPPROTO_TCP, and uvicorn
    # writes the head and the body apart, which Nagle's algorithm and delayed ACKs stall.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    try:
        # `keep`: the server's objects stay referenced while the loop runs.
        keep = loop.run_until_complete(STARTERS[kind](loop, sock, recorder))  # noqa: F841
        problem = preflight(loop, port)
    except (NotImplementedError, AttributeError, ImportError) as exc:
        reply({"event": "missing", "reason": describe_exc(exc)})
        return
    except (Exception, SystemExit) as exc:  # uvicorn calls sys.exit(1) when start-up fails
        reason = "; ".join([describe_exc(exc), *errors[:3]])
        reply({"event": "error", "error": reason})
        return
    if problem or errors:
        lacking = [e for e in errors if e.startswith(LACKING)]
        reason = "; ".join(lacking or errors or [problem or "preflight failed"])
        reply({"event": "missing" if lacking else "error", "reason": reason, "error": reason})
        return

    errors.clear()
    reply(
        {
            "event": "ready",
            "pid": os.getpid(),
            "port": port,
            "version": loop_version(loop_name),
            "class": f"{type(loop).__module__}.{type(loop).__qualname__}",
        }
    )
    start_control(errors, error_fields)
    loop.run_forever()


# --------------------------------------------------------------------------------------------
# wrk: run it, read its report.
# --------------------------------------------------------------------------------------------

TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
TIME = r"([\d.]+)(us|ms|s|m|h)"


def to_ms(number: str, unit: str) -> float:
    return float(number) * TO_MS[unit]


def parse_wrk(text: str) -> dict:
    """wrk's report (with --latency) as numbers; raises ValueError without the essentials."""
    out: dict = {}
    m = re.search(r"^\s*(\d+) requests in " + TIME, text, re.M)
    rps = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
    if not m or not rps:
        raise ValueError("no 'N requests in' or 'Requests/sec:' line in wrk's output")
    out["requests"] = int(m.group(1))
    out["elapsed_s"] = to_ms(m.group(2), m.group(3)) / 1e3
    out["rps"] = float(rps.group(1))
    m = re.search(r"^\s*Latency\s+" + r"\s+".join([TIME] * 3), text, re.M)
    if m:
        g = m.groups()
        out["latency_ms"] = {
            "avg": to_ms(g[0], g[1]), "stdev": to_ms(g[2], g[3]), "max": to_ms(g[4], g[5])
        }  # fmt: skip
    dist = text.split("Latency Distribution", 1)
    if len(dist) == 2:
        percentiles = re.findall(r"^\s*([\d.]+)%\s+" + TIME, dist[1], re.M)
        out["latency_distribution_ms"] = {f"p{float(p):g}": to_ms(n, u) for p, n, u in percentiles}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    names = ("connect", "read", "write", "timeout")
    out["socket_errors"] = dict(zip(names, map(int, m.groups()), strict=True)) if m else {}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx_3xx"] = int(m.group(1)) if m else 0
    return out


def wrk_cmd(port: int | str, seconds: int, conns: int) -> list[str]:
    return [
        "taskset", "-c", str(CLIENT_CPU),
        "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/",
    ]  # fmt: skip


def run_wrk(port: int, seconds: int, conns: int) -> dict:
    """One wrk run; its parsed report plus the command and output. Raises ChildError."""
    cmd = wrk_cmd(port, seconds, conns)
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=seconds + WRK_GRACE_S,
            preexec_fn=pin_and_tie(CLIENT_CPU),  # the same core as taskset; and PDEATHSIG
        )
    except subprocess.TimeoutExpired as exc:
        raise ChildError(f"wrk: no result after {seconds + WRK_GRACE_S} s") from exc
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise ChildError(f"wrk: exit status {proc.returncode}", output[-OUTPUT_KEPT:])
    try:
        parsed = parse_wrk(proc.stdout)
    except ValueError as exc:
        raise ChildError(f"wrk: {exc}", output[-OUTPUT_KEPT:]) from exc
    return {**parsed, "cmd": " ".join(cmd), "output": proc.stdout}


def wrk_flags(run: dict) -> list[str]:
    flags = []
    if run["non_2xx_3xx"]:
        flags.append(f"{run['non_2xx_3xx']:,} non-2xx/3xx responses")
    if any(run["socket_errors"].values()):
        flags.append(
            "socket errors: " + ", ".join(f"{k} {v:,}" for k, v in run["socket_errors"].items())
        )
    return flags


def wrk_version() -> str:
    try:
        proc = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


# --------------------------------------------------------------------------------------------
# Parent: one sample, interleaved rounds.
# --------------------------------------------------------------------------------------------


def run_sample(kind: str, loop: str, args) -> dict:
    """One server process, a warm-up and a timed wrk run. Returns the measurements, or
    {"missing": reason}, or {"error": ..., "stderr": ...}; never raises (but
    KeyboardInterrupt)."""
    server_cmd = [sys.executable, str(Path(__file__).resolve()), "--server", kind, loop]
    stage = "server start"
    with Child(f"{loop} {kind} server", server_cmd, SERVER_CPU) as server:
        try:
            ready = server.read_json(STARTUP_TIMEOUT_S)
            if ready.get("event") == "missing":
                return {"missing": ready["reason"]}
            if ready.get("event") != "ready":
                return {"error": ready.get("error", str(ready)), "stderr": server.stderr()}
            port = ready["port"]
            stage = "warm-up"
            warmup = run_wrk(port, WARMUP_S, args.connections)
            stage = "start"
            server.send("start")
            expect(server.read_json(CONTROL_TIMEOUT_S), "started", "server")
            stage = "timed run"
            run = run_wrk(port, args.duration, args.connections)
            stage = "stop"
            server.send("stop")
            usage = expect(server.read_json(CONTROL_TIMEOUT_S), "usage", "server")
        except ChildError as exc:
            if server.proc.poll() is None:
                # The server's Python stacks (faulthandler) go to its stderr, kept below.
                server.proc.send_signal(signal.SIGUSR1)
                time.sleep(0.3)
            stderr = "\n".join(filter(None, [exc.stderr, server.stderr()]))
            return {"error": f"{stage}: {exc}", "stderr": stderr}
    n = run["requests"]
    if n == 0:
        return {"error": "wrk completed no request", "wrk": run, "server_usage": usage}
    cpu_s = usage["user_s"] + usage["sys_s"]
    dist = run.get("latency_distribution_ms", {})
    sample = {
        "requests": n,
        "elapsed_s": run["elapsed_s"],
        "rps": run["rps"],
        "user_us": usage["user_s"] * 1e6 / n,
        "sys_us": usage["sys_s"] * 1e6 / n,
        "cpu_us": cpu_s * 1e6 / n,
        "busy": cpu_s / usage["wall_s"],
        "p50_ms": dist.get("p50"),
        "p99_ms": dist.get("p99"),
        "flags": wrk_flags(run),
        "server_usage": usage,
        "wrk": run,
        "warmup": {k: v for k, v in warmup.items() if k != "output"},
    }
    if usage.get("errors"):  # flagged, not failed: wrk's figures say what they cost
        listed = "; ".join(f"{e} (x{k})" if k > 1 else e for e, k in usage["errors"].items())
        sample["flags"].append(
            f"{usage['error_count']} server exception(s), the first {usage['first_error_s']:.2f} s"
            f" into the {usage['wall_s']:.2f} s window: {listed}"
        )
    return sample


def describe(sample: dict) -> str:
    if "missing" in sample:
        return f"missing: {sample['missing']}"
    if "error" in sample:
        return f"ERROR {sample['error']}"
    flags = f"  FLAGGED: {'; '.join(sample['flags'])}" if sample["flags"] else ""
    return (
        f"cpu {sample['user_us']:7.1f} + {sample['sys_us']:6.1f} us/req"
        f"  {sample['rps']:9,.0f} req/s  p99 {fmt_num(sample['p99_ms'], 2)} ms"
        f"  busy {sample['busy']:4.0%}{flags}"
    )


def run_rounds(kinds: list[str], loops: list[str], args) -> list[dict]:
    """Round after round: per kind every loop in turn. A (kind, loop) found missing is not
    tried again."""
    samples: list[dict] = []
    missing: set[tuple[str, str]] = set()
    for r in range(1, args.rounds + 1):
        for kind in kinds:
            for loop in loops:
                if (kind, loop) in missing:
                    continue
                sample = run_sample(kind, loop, args)
                if "missing" in sample:
                    missing.add((kind, loop))
                samples.append({"round": r, "kind": kind, "loop": loop, **sample})
                log(f"[round {r}/{args.rounds}] {kind:<8} {loop:<8} {describe(sample)}")
    return samples


# --------------------------------------------------------------------------------------------
# Summaries: medians, paired ratios, Markdown.
# --------------------------------------------------------------------------------------------

METRICS = ("rps", "user_us", "sys_us", "cpu_us", "p50_ms", "p99_ms", "busy")


def ratio_defs(loops: list[str]) -> dict[str, tuple]:
    """title -> (metric, references, min or max: which reference is the best one)."""
    peers = tuple(p for p in PEERS if p in loops)
    defs: dict[str, tuple] = {}
    if "uvloop" in loops:
        defs[f"{SUBJECT}/uvloop req/s"] = ("rps", ("uvloop",), max)
        defs[f"{SUBJECT}/uvloop CPU"] = ("cpu_us", ("uvloop",), min)
    if peers:
        best = f"best({', '.join(peers)})"
        defs[f"{SUBJECT}/{best} req/s"] = ("rps", peers, max)
        defs[f"{SUBJECT}/{best} CPU"] = ("cpu_us", peers, min)
    return defs


def median_of(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(samples: list[dict], kinds: list[str], loops: list[str], rounds: list[int]) -> dict:
    """Per kind: per loop the median of every metric, its missing reason, error and flag
    counts; and the medians of the per-round ratios of the subject to its references
    (pairing samples of the same round cancels the machine's slow drifts). Flagged samples
    count; failed ones do not."""
    ok = [s for s in samples if "error" not in s and "missing" not in s]
    summary = {}
    for kind in kinds:
        at = {(s["round"], s["loop"]): s for s in ok if s["kind"] == kind}
        per_loop = {}
        for loop in loops:
            got = [at[(r, loop)] for r in rounds if (r, loop) in at]
            entry: dict = {m: median_of([s[m] for s in got]) for m in METRICS}
            entry["samples"] = len(got)
            mine = [s for s in samples if s["kind"] == kind and s["loop"] == loop]
            missing = next((s["missing"] for s in mine if "missing" in s), None)
            if missing:
                entry["missing"] = missing
            entry["errors"] = sum("error" in s for s in mine)
            entry["flagged"] = sum(bool(s.get("flags")) for s in got)
            per_loop[loop] = entry
        ratios = {}
        for title, (metric, refs, pick) in ratio_defs(loops).items():
            paired = []
            for r in rounds:
                if (r, SUBJECT) not in at or not any((r, ref) in at for ref in refs):
                    continue
                reference = pick(at[(r, ref)][metric] for ref in refs if (r, ref) in at)
                if reference > 0:
                    paired.append(at[(r, SUBJECT)][metric] / reference)
            ratios[title] = statistics.median(paired) if paired else None
        summary[kind] = {"kind": kind, "loops": per_loop, "ratios": ratios}
    return summary


def markdown_report(result: dict, summary: dict, loops: list[str]) -> str:
    versions = ", ".join(f"{name} {v}" for name, v in result["versions"].items())
    stack = result["stack"]
    missing = "; ".join(f"{name}: {why}" for name, why in result["missing_loops"].items())
    machine = result["machine"]
    quick = " (--quick: a smoke test, the numbers mean little)" if result["quick"] else ""
    lines = [
        "# HTTP benchmark: latest run",
        "",
        f"- Date: {result['date']}",
        f"- Machine: {machine['platform']}, {machine['cpu_count']} CPUs, Python"
        f" {machine['python']}; load average (1 min) before the run"
        f" {machine['loadavg_before'][0]:.2f}, after {machine['loadavg_after'][0]:.2f}",
        f"- Loops: {versions}",
    ]
    if missing:
        lines.append(f"- Missing loops: {missing}")
    lines += [
        f"- Servers: uvicorn {stack['uvicorn']} with httptools {stack['httptools']};"
        f" aiohttp {stack['aiohttp']} ({stack['aiohttp_parser']} request parser);"
        " a raw `asyncio.Protocol`",
        f"- Load: {stack['wrk']}: `{' '.join(result['wrk_cmd'])}` after an unmeasured"
        f" {WARMUP_S} s run",
        f"- {result['rounds']} round(s){quick}, interleaved; a fresh server process per sample,"
        f" pinned to core {SERVER_CPU}; wrk pinned to core {CLIENT_CPU}",
        "- CPU is the server process's own `getrusage` (user and system apart) between `start`"
        " and `stop` around the timed wrk run, divided by wrk's request count; req/s and p99"
        " latency are wrk's. Figures are medians over rounds (each column its own median, so"
        " user + sys may differ a little from total); the user/system split is sampled by the"
        " kernel's tick, the total is exact. `server busy` is server CPU over the window's"
        " wall time: below 100%, the server waited for wrk",
        f"- Ratios are medians of per-round ratios: req/s above 1, {SUBJECT} serves more; CPU"
        f" below 1, {SUBJECT} spends less per request. `best(...)` is the better peer in the"
        " same round (among those that ran the kind)",
        "- A sample is flagged for wrk's socket errors or non-2xx/3xx responses, or exceptions in"
        " the server: it still counts in the medians (see Flagged samples); a failed sample"
        " (see Errors) does not",
        "",
        f"## Headline: {SUBJECT} against its peers",
        "",
    ]
    titles = list(ratio_defs(loops))
    rows = [["server", *titles]]
    for kind, entry in summary.items():
        rows.append([f"`{kind}`", *[fmt_ratio(entry["ratios"][t]) for t in titles]])
    lines += table(rows, ["---", *["---:"] * len(titles)])
    lines += ["", "## Per server and loop", ""]
    header = ["server", "loop", "req/s", "user µs/req", "sys µs/req", "total µs/req", "p99 ms"]
    rows = [[*header, "server busy", "flagged"]]
    for kind, entry in summary.items():
        for loop in loops:
            e = entry["loops"][loop]
            name = f"**{loop}**" if loop == SUBJECT else loop
            if e["samples"] == 0:
                what = f"missing: {e['missing']}" if e.get("missing") else f"error ({e['errors']})"
                rows.append([f"`{kind}`", name, what, *[""] * 6])
                continue
            flagged = f"{e['flagged']} of {e['samples']}" if e["flagged"] else ""
            if e["errors"]:
                flagged += f"{', ' if flagged else ''}{e['errors']} failed"
            rows.append(
                [
                    f"`{kind}`", name, fmt_num(e["rps"]),
                    fmt_num(e["user_us"]), fmt_num(e["sys_us"]), fmt_num(e["cpu_us"]),
                    fmt_num(e["p99_ms"], 2), f"{e['busy']:.0%}", flagged,
                ]
            )  # fmt: skip
    lines += table(rows, ["---", "---", *["---:"] * 7])
    lines += ["", "## Servers", ""]
    lines += [f"- `{kind}`: {KIND_DOCS[kind]}" for kind in result["kinds"]]
    flagged = [s for s in result["samples"] if s.get("flags") and "error" not in s]
    if flagged:
        lines += ["", "## Flagged samples (counted in the medians)", ""]
        lines += [
            f"- round {s['round']}, `{s['kind']}`, {s['loop']}: {'; '.join(s['flags'])}"
            for s in flagged
        ]
    errors = [s for s in result["samples"] if "error" in s]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- round {s['round']}, `{s['kind']}`, {s['loop']}: {s['error']}" for s in errors]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds (default 3; 1 with --quick)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"1 round of {QUICK_DURATION_S} s samples, results not saved: a smoke test",
    )
    add_loops_arg(p)
    p.add_argument(
        "--kinds",
        type=comma_list(KINDS),
        default=list(KINDS),
        metavar="KIND[,KIND]",
        help=f"servers (default: {','.join(KINDS)})",
    )
    p.add_argument(
        "--duration",
        type=int,
        default=None,
        metavar="SECONDS",
        help=f"timed wrk run per sample (default {DURATION_S}; {QUICK_DURATION_S} with --quick)",
    )
    p.add_argument(
        "--connections", type=int, default=CONNS, help=f"wrk's connections (default {CONNS})"
    )
    p.add_argument("--server", nargs=2, metavar=("KIND", "LOOP"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.duration is None:
        args.duration = QUICK_DURATION_S if args.quick else DURATION_S
    if args.rounds < 1 or args.duration < 1 or args.connections < 1:
        p.error("--rounds, --duration and --connections must be positive")
    return args


def dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def aiohttp_parser() -> str:
    try:
        from aiohttp import http_parser
    except ImportError:
        return "no"
    return "C" if http_parser.HttpRequestParser.__module__ == "aiohttp._http_parser" else "Python"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.server:
        child_server(*args.server)
        return 0
    if shutil.which("wrk") is None:
        log("wrk is missing: apt-get install wrk")
        return 2
    if shutil.which("taskset") is None:
        log("taskset is missing: apt-get install util-linux")
        return 2
    if max(SERVER_CPU, CLIENT_CPU) >= len(os.sched_getaffinity(0)):
        log(f"warning: fewer than {max(SERVER_CPU, CLIENT_CPU) + 1} cores: pinning will fail")

    probes = {loop: probe(loop) for loop in args.loops}  # echo.py --probe LOOP, in a child
    loops, missing = split_probes(probes)
    if not loops:
        return 1
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        log(f"note: load average {load_before[0]:.2f} before the run: other work shares the cores")
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    try:
        samples = run_rounds(args.kinds, loops, args)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    rounds = list(range(1, args.rounds + 1))
    summary = summarize(samples, args.kinds, loops, rounds)
    result = {
        "benchmark": "http",
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - t0, 1),
        "machine": {
            **machine_info(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "python": sys.version,
        "versions": {loop: probes[loop]["version"] for loop in loops},
        "loop_classes": {loop: probes[loop]["class"] for loop in loops},
        "missing_loops": missing,
        "rose_build": rose_build(),
        "stack": {
            "uvicorn": dist_version("uvicorn"),
            "httptools": dist_version("httptools"),
            "aiohttp": dist_version("aiohttp"),
            "aiohttp_parser": aiohttp_parser(),
            "wrk": wrk_version(),
        },
        "rounds": args.rounds,
        "quick": args.quick,
        "kinds": args.kinds,
        "kind_docs": {kind: KIND_DOCS[kind] for kind in args.kinds},
        "wrk_duration_s": args.duration,
        "warmup_s": WARMUP_S,
        "connections": args.connections,
        "wrk_cmd": wrk_cmd("PORT", args.duration, args.connections),
        "server_cpu": SERVER_CPU,
        "client_cpu": CLIENT_CPU,
        "samples": samples,
        "summary": summary,
    }
    report = markdown_report(result, summary, loops)
    if args.quick:  # a smoke test: its numbers are not worth a results file
        print(report)
        log(f"took {result['duration_s']:.0f} s; --quick: results not saved")
        failed = sum("error" in s for s in samples)
        if failed:
            log(f"{failed} sample(s) failed; see the Errors section")
        return 1 if failed else 0
    return save_results("http", started, result, report, samples)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
