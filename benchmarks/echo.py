#!/usr/bin/env python3
"""Echo-server benchmark of asyncio event loops: stdlib asyncio, uvloop, rloop and rose.

benchmarks/README.md ("Echo server: echo.py") explains what is measured and how.

Every sample is one fresh server process pinned to core 0 (``echo.py --server LOOP MODE``, or
the Rust floor ``echo-floor``) and one run of the Rust load generator ``loadgen`` pinned to
core 1: 100 connections, one fixed-size message in flight on each, a fixed total number of
messages. The server measures its own CPU time with ``getrusage`` between a ``start`` and a
``stop`` command on its stdin, which the parent sends right before and right after the
loadgen's timed run. The headline is server CPU time per request, user and system apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime as dt
import faulthandler
import importlib
import importlib.metadata
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
# micro.py puts the repository root on sys.path (the in-place rose first) when imported.
sys.path.insert(0, str(HERE))
from micro import (  # noqa: E402
    LOOPS,
    PEERS,
    SUBJECT,
    add_loops_arg,
    comma_list,
    log,
    split_probes,
    save_results,
)

LOADGEN_DIR = HERE / "loadgen"
LOADGEN_TARGET = LOADGEN_DIR / "target"
LOADGEN_BIN = LOADGEN_TARGET / "release" / "loadgen"
FLOOR_BIN = LOADGEN_TARGET / "release" / "echo-floor"

FLOOR = "floor"  # the Rust echo server (tokio, current-thread runtime)
MODES = ("protocol", "streams", "sock")
SIZES = (100, 1024, 65536)

SERVER_CPU = 0  # core the server is pinned to
CLIENT_CPU = 1  # core the load generator is pinned to
CONNS = 100
# Timed messages per sample, by size: sized so that the slowest loop's sample lasts a few
# seconds on the 2-core benchmark machine and the full run stays under ~10 minutes.
MESSAGES = {100: 60_000, 1024: 60_000, 65536: 20_000}
QUICK_MESSAGES = {100: 3_000, 1024: 3_000, 65536: 1_000}
# The floor runs this many times more messages: its CPU per request is small, and the kernel
# splits CPU time into user and system by sampling at each tick (250 Hz here), so a short
# floor run would read its user time from a handful of ticks.
FLOOR_SCALE = 4
WARMUP_PER_CONN = 10  # untimed round trips per connection before the timed run
READ_SIZE = 65536  # bytes asked for per read in the streams and sock modes

STARTUP_TIMEOUT_S = 30  # server ready, loadgen connected and warmed up
RUN_TIMEOUT_S = 120  # the loadgen's timed run
CONTROL_TIMEOUT_S = 10  # a reply to start/stop
EXIT_TIMEOUT_S = 5  # a child's exit once its stdin is closed
STDERR_KEPT = 4000  # characters of a failed child's stderr kept in the JSON


# --------------------------------------------------------------------------------------------
# Server child: one loop, one mode. Control on stdin, replies (JSON lines) on stdout.
# --------------------------------------------------------------------------------------------


def reply(obj: dict) -> None:
    os.write(1, (json.dumps(obj) + "\n").encode())


def loop_version(name: str) -> str:
    if name == "asyncio":
        return f"stdlib (Python {platform.python_version()})"
    module = importlib.import_module(name)
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(LOOPS.get(name) or name)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
    return str(version)


def describe_exc(exc: BaseException) -> str:
    text = str(exc)
    if not text:  # e.g. a bare NotImplementedError: name the function that raised it
        frames = traceback.extract_tb(exc.__traceback__)
        text = f"raised by {frames[-1].name}()" if frames else "no message"
    return f"{type(exc).__name__}: {text}"


class EchoProtocol(asyncio.Protocol):
    transport: asyncio.Transport

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def start_protocol(loop, unix_path, errors):
    if unix_path:
        return await loop.create_unix_server(EchoProtocol, unix_path, backlog=1024)
    return await loop.create_server(EchoProtocol, "127.0.0.1", 0, backlog=1024)


async def start_streams(loop, unix_path, errors):
    async def handle(reader, writer):
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:
            errors.append(describe_exc(exc))
        finally:
            writer.close()

    if unix_path:
        return await asyncio.start_unix_server(handle, unix_path, backlog=1024)
    return await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)


class SockServer:
    """sock mode: an accept task (loop.sock_accept) and one task per connection
    (loop.sock_recv, loop.sock_sendall)."""

    def __init__(self, loop, lsock, errors):
        self.loop, self.lsock, self.errors, self.tasks = loop, lsock, errors, set()
        self.sockets = [lsock]
        self.spawn(self.accept())

    def spawn(self, coro):
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def accept(self):
        try:
            while True:
                conn, _ = await self.loop.sock_accept(self.lsock)
                conn.setblocking(False)
                if conn.family != socket.AF_UNIX:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.spawn(self.serve(conn))
        except Exception as exc:
            self.errors.append(describe_exc(exc))

    async def serve(self, conn):
        loop = self.loop
        try:
            while True:
                data = await loop.sock_recv(conn, READ_SIZE)
                if not data:
                    break
                await loop.sock_sendall(conn, data)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:
            self.errors.append(describe_exc(exc))
        finally:
            conn.close()


async def start_sock(loop, unix_path, errors):
    if unix_path:
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(unix_path)
    else:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", 0))
    lsock.listen(1024)
    lsock.setblocking(False)
    return SockServer(loop, lsock, errors)


STARTERS = {"protocol": start_protocol, "streams": start_streams, "sock": start_sock}


def preflight(loop, address, family, wrap=None) -> str | None:
    """One blocking client in a thread sends a message and waits for its echo while the loop
    runs: a mode whose operations the loop lacks fails here, before any measurement. `wrap`
    turns the connected socket into the one to talk over (tls_echo.py: a TLS handshake)."""
    done = loop.create_future()
    message = b"preflight-" + os.urandom(8).hex().encode()

    def client():
        outcome = None
        try:
            with socket.socket(family, socket.SOCK_STREAM) as raw:
                raw.settimeout(5)
                raw.connect(address)
                with wrap(raw) if wrap else contextlib.nullcontext(raw) as s:
                    s.sendall(message)
                    got = b""
                    while len(got) < len(message):
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        got += chunk
                    if got != message:
                        outcome = f"echo mismatch: sent {message!r}, got {got!r}"
        except Exception as exc:
            outcome = f"preflight client: {describe_exc(exc)}"
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(outcome))

    threading.Thread(target=client, name="preflight", daemon=True).start()
    return loop.run_until_complete(done)


def start_control(errors: list, error_fields=None) -> None:
    """The server side of the parent's commands on stdin, in a thread: `start` clears `errors`
    and takes the CPU baseline, `stop` replies the server's own usage since then, and EOF
    replies a last usage and leaves at once (without tearing the connections down).
    `error_fields(errors, t0)` gives the usage reply's error entries (default: the first 20
    texts). The thread is blocked in read(2) between commands: it costs the loop nothing."""
    started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()

    def usage(event: str) -> dict:
        ru0, t0 = started
        ru1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        fields = error_fields(errors, t0) if error_fields else {"errors": errors[:20]}
        return {
            "event": event,
            "user_s": ru1.ru_utime - ru0.ru_utime,
            "sys_s": ru1.ru_stime - ru0.ru_stime,
            "wall_s": t1 - t0,
            "maxrss_kib": ru1.ru_maxrss,
            **fields,
        }

    def control():
        nonlocal started
        for line in sys.stdin.buffer:
            command = line.strip()
            if command == b"start":
                errors.clear()
                started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                reply({"event": "started"})
            elif command == b"stop":
                reply(usage("usage"))
        reply(usage("exit"))
        os._exit(0)

    threading.Thread(target=control, name="control", daemon=True).start()


def child_server(loop_name: str, mode: str, unix_path: str | None) -> None:
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the parent asks on a failure
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
        server = loop.run_until_complete(STARTERS[mode](loop, unix_path, errors))
        lsock = server.sockets[0]
        address = lsock.getsockname()
        problem = preflight(loop, address, lsock.family)
    except (NotImplementedError, AttributeError) as exc:
        reply({"event": "missing", "reason": describe_exc(exc)})
        return
    except Exception as exc:
        reply({"event": "error", "error": describe_exc(exc)})
        return
    if problem or errors:
        lacking = [e for e in errors if e.startswith(("NotImplementedError", "AttributeError"))]
        reason = "; ".join(lacking or errors or [problem or "preflight failed"])
        reply({"event": "missing" if lacking else "error", "reason": reason, "error": reason})
        return

    errors.clear()
    reply(
        {
            "event": "ready",
            "pid": os.getpid(),
            "port": address[1] if lsock.family != socket.AF_UNIX else None,
            "path": address if lsock.family == socket.AF_UNIX else None,
            "version": loop_version(loop_name),
            "class": f"{type(loop).__module__}.{type(loop).__qualname__}",
        }
    )
    start_control(errors)
    loop.run_forever()


def child_probe(loop_name: str) -> None:
    loop = importlib.import_module(loop_name).new_event_loop()
    cls = f"{type(loop).__module__}.{type(loop).__qualname__}"
    loop.close()
    print(json.dumps({"version": loop_version(loop_name), "class": cls}))


# --------------------------------------------------------------------------------------------
# Parent: children with timeouts, one sample, interleaved rounds.
# --------------------------------------------------------------------------------------------


class ChildError(Exception):
    def __init__(self, message: str, stderr: str = ""):
        super().__init__(message)
        self.stderr = stderr


def pin_and_tie(cpu: int):
    """preexec_fn: pin the child (and every thread it will start) to one core, and have the
    kernel kill it if the parent dies: no orphans, even after a SIGKILL of the harness."""
    parent = os.getpid()

    def setup():
        os.sched_setaffinity(0, {cpu})
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return setup


class Child:
    """A child process with JSON lines on stdout, commands on stdin, stderr kept in a file;
    every read has a timeout, and leaving the `with` block always ends the process."""

    def __init__(self, name: str, cmd: list[str], cpu: int):
        self.name = name
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            preexec_fn=pin_and_tie(cpu),
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.buffer = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def stderr(self) -> str:
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode(errors="replace")[-STDERR_KEPT:]

    def send(self, line: str) -> None:
        try:
            self.stdin.write(line.encode() + b"\n")
            self.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise ChildError(f"{self.name}: cannot send {line!r}: {exc}", self.stderr()) from exc

    def read_json(self, timeout: float) -> dict:
        """The next JSON line on the child's stdout (other lines are skipped)."""
        deadline = time.monotonic() + timeout
        fd = self.stdout.fileno()
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(obj, dict):
                    return obj
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildError(f"{self.name}: no reply within {timeout:.0f} s", self.stderr())
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.kill()
                    rc = self.proc.wait()
                    how = f"killed by {signal.strsignal(-rc)}" if rc < 0 else f"exit status {rc}"
                    raise ChildError(f"{self.name}: exited ({how})", self.stderr())
                self.buffer += chunk

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        """Close stdin (the child's signal to leave), wait a little, then kill."""
        try:
            if not self.stdin.closed:
                self.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
        self.stdout.close()
        self.stderr_file.close()


def expect(reply_: dict, event: str, who: str) -> dict:
    if reply_.get("event") != event:
        raise ChildError(f"{who}: expected {event!r}, got {reply_}")
    return reply_


def run_sample(loop: str, mode: str, size: int, messages: int, args) -> dict:
    """One server process, one loadgen run. Returns the measurements, or {"missing": reason},
    or {"error": ..., "stderr": ...}; never raises (except KeyboardInterrupt)."""
    unix_path = None
    tmpdir = None
    if args.unix:
        tmpdir = tempfile.mkdtemp(prefix="rose-echo-")
        unix_path = os.path.join(tmpdir, "echo.sock")
    if loop == FLOOR:
        server_cmd = [str(FLOOR_BIN)] + (["--unix", unix_path] if unix_path else [])
    else:
        server_cmd = [sys.executable, str(Path(__file__).resolve()), "--server", loop, mode]
        server_cmd += [unix_path] if unix_path else []
    stage = "server start"
    try:
        with Child(f"{loop} server", server_cmd, SERVER_CPU) as server:
            try:
                ready = server.read_json(STARTUP_TIMEOUT_S)
                if ready.get("event") == "missing":
                    return {"missing": ready["reason"]}
                if ready.get("event") != "ready":
                    return {"error": ready.get("error", str(ready)), "stderr": server.stderr()}
                target = (
                    ["--unix", unix_path] if unix_path else ["--tcp", f"127.0.0.1:{ready['port']}"]
                )
                client_cmd = [
                    str(LOADGEN_BIN), *target,
                    "--conns", str(args.conns),
                    "--size", str(size),
                    "--messages", str(messages),
                    "--warmup", str(WARMUP_PER_CONN * args.conns),
                    "--wait",
                    "--timeout", str(STARTUP_TIMEOUT_S + RUN_TIMEOUT_S),
                ]  # fmt: skip
                stage = "loadgen connect and warm-up"
                with Child("loadgen", client_cmd, CLIENT_CPU) as client:
                    expect(client.read_json(STARTUP_TIMEOUT_S), "ready", "loadgen")
                    stage = "start"
                    server.send("start")
                    expect(server.read_json(CONTROL_TIMEOUT_S), "started", "server")
                    stage = "timed run"
                    client.send("go")
                    result = client.read_json(RUN_TIMEOUT_S + 10)
                    stage = "stop"
                    server.send("stop")
                    usage = expect(server.read_json(CONTROL_TIMEOUT_S), "usage", "server")
                    if result.get("event") != "result":
                        raise ChildError(f"loadgen: {result.get('error', result)}", client.stderr())
            except ChildError as exc:
                if loop != FLOOR and server.proc.poll() is None:
                    # The server's Python stacks (faulthandler) go to its stderr, kept below.
                    server.proc.send_signal(signal.SIGUSR1)
                    time.sleep(0.3)
                stderr = "\n".join(filter(None, [exc.stderr, server.stderr()]))
                return {"error": f"{stage}: {exc}", "stderr": stderr}
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    n = result["messages"]
    sample = {
        "messages": n,
        "elapsed_s": result["elapsed_s"],
        "rps": result["rps"],
        "user_us": usage["user_s"] * 1e6 / n,
        "sys_us": usage["sys_s"] * 1e6 / n,
        "cpu_us": (usage["user_s"] + usage["sys_s"]) * 1e6 / n,
        "busy": (usage["user_s"] + usage["sys_s"]) / usage["wall_s"],
        "p50_ms": result["latency_us"]["p50"] / 1e3,
        "p99_ms": result["latency_us"]["p99"] / 1e3,
        "server_usage": usage,
        "loadgen": result,
    }
    if usage.get("errors"):
        sample["error"] = "server errors during the run: " + "; ".join(usage["errors"][:5])
    return sample


def describe(sample: dict) -> str:
    if "missing" in sample:
        return f"missing: {sample['missing']}"
    if "error" in sample:
        return f"ERROR {sample['error']}"
    return (
        f"cpu {sample['user_us']:7.1f} + {sample['sys_us']:6.1f} us/req"
        f"  {sample['rps']:9,.0f} req/s  busy {sample['busy']:4.0%}  ({sample['elapsed_s']:.2f} s)"
    )


def run_rounds(loops, modes, sizes, messages, args) -> list[dict]:
    """Round after round: per size, the floor, then per mode every loop in turn."""
    samples = []
    for r in range(1, args.rounds + 1):
        for size in sizes:
            plan = ([(FLOOR, "-")] if args.floor else []) + [(lp, m) for m in modes for lp in loops]
            for loop, mode in plan:
                n = messages[size] * (FLOOR_SCALE if loop == FLOOR else 1)
                sample = run_sample(loop, mode, size, n, args)
                samples.append({"round": r, "loop": loop, "mode": mode, "size": size, **sample})
                log(
                    f"[round {r}/{args.rounds}] {fmt_size(size):>6} {mode:<8} {loop:<8} {describe(sample)}"
                )
    return samples


# --------------------------------------------------------------------------------------------
# Summaries: medians, paired ratios, Markdown.
# --------------------------------------------------------------------------------------------

METRICS = ("user_us", "sys_us", "cpu_us", "rps", "p50_ms", "p99_ms", "busy")


def ratio_defs(loops: list[str]) -> dict[str, tuple]:
    """title -> (metric, references, min or max: which reference is the best one)."""
    peers = tuple(p for p in PEERS if p in loops)
    defs: dict[str, tuple] = {}
    if "asyncio" in loops:
        defs[f"{SUBJECT}/asyncio CPU"] = ("cpu_us", ("asyncio",), min)
    if peers:
        best = f"best({', '.join(peers)})"
        defs[f"{SUBJECT}/{best} CPU"] = ("cpu_us", peers, min)
        defs[f"{SUBJECT}/{best} user CPU"] = ("user_us", peers, min)
        defs[f"{SUBJECT}/{best} req/s"] = ("rps", peers, max)
    defs[f"{SUBJECT} user CPU/floor user CPU"] = ("user_us", (FLOOR,), min)
    return defs


def summarize(samples, loops, modes, sizes, rounds) -> dict:
    """Per (mode, size): per loop the median of every metric, its missing reason or error
    count; and the medians of the per-round ratios of the subject to its references
    (pairing samples of the same round cancels the machine's slow drifts)."""
    ok = [s for s in samples if "error" not in s and "missing" not in s]
    summary = {}
    for mode in modes:
        for size in sizes:
            at = {}
            for s in ok:
                if s["size"] == size and (s["mode"] == mode or s["loop"] == FLOOR):
                    at[(s["round"], s["loop"])] = s
            per_loop = {}
            for loop in [*loops, FLOOR]:
                got = [at[(r, loop)] for r in rounds if (r, loop) in at]
                entry = {m: statistics.median(s[m] for s in got) if got else None for m in METRICS}
                entry["samples"] = len(got)
                mine = [
                    s for s in samples
                    if s["loop"] == loop and s["size"] == size and (loop == FLOOR or s["mode"] == mode)
                ]  # fmt: skip
                missing = next((s["missing"] for s in mine if "missing" in s), None)
                if missing:
                    entry["missing"] = missing
                entry["errors"] = sum("error" in s for s in mine)
                per_loop[loop] = entry
            ratios = {}
            for title, (metric, refs, pick) in ratio_defs(loops).items():
                paired = []
                for r in rounds:
                    if (r, SUBJECT) not in at or not any((r, ref) in at for ref in refs):
                        continue
                    reference = pick(at[(r, ref)][metric] for ref in refs if (r, ref) in at)
                    if reference > 0:  # a short run's user time can read 0 (tick sampling)
                        paired.append(at[(r, SUBJECT)][metric] / reference)
                ratios[title] = statistics.median(paired) if paired else None
            summary[f"{mode}/{size}"] = {
                "mode": mode,
                "size": size,
                "loops": per_loop,
                "ratios": ratios,
            }
    return summary


def fmt_size(size: int) -> str:
    if size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


def fmt_num(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "–"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}f}"


def fmt_ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def table(rows: list[list[str]], align: list[str]) -> list[str]:
    out = ["| " + " | ".join(rows[0]) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return out


def markdown_report(result: dict, summary: dict, loops: list[str]) -> str:
    versions = ", ".join(f"{name} {v}" for name, v in result["versions"].items())
    missing = "; ".join(f"{name}: {why}" for name, why in result["missing_loops"].items())
    counts = ", ".join(f"{fmt_size(s)}: {n:,}" for s, n in result["messages"].items())
    transport = "Unix sockets" if result["unix"] else "TCP over loopback (127.0.0.1, TCP_NODELAY)"
    lines = [
        "# Echo benchmark: latest run",
        "",
        f"- Date: {result['date']}",
        f"- Machine: {result['machine']['platform']}, {result['machine']['cpu_count']} CPUs,"
        f" Python {result['machine']['python']}; load average (1 min) before the run"
        f" {result['machine']['loadavg_before'][0]:.2f}, after {result['machine']['loadavg_after'][0]:.2f}",
        f"- Loops: {versions}",
    ]
    if missing:
        lines.append(f"- Missing loops: {missing}")
    quick = " (--quick: a smoke test, the numbers mean little)" if result["quick"] else ""
    lines += [
        f"- {result['rounds']} round(s){quick}, interleaved; server pinned to core {SERVER_CPU},"
        f" loadgen (Rust, tokio) to core {CLIENT_CPU}; {transport}",
        f"- {result['conns']} connections, one message in flight on each; timed messages per"
        f" sample: {counts} ({FLOOR_SCALE}x as many for the floor); {WARMUP_PER_CONN} untimed"
        " round trips per connection first",
        "- CPU is the server process's own `getrusage` (user and system apart) over the timed run,"
        " divided by the requests; figures are medians over rounds (each column its own median,"
        " so user + sys may differ a little from total). The kernel splits user from"
        " system time by sampling at each tick (their sum is exact): read the split as an"
        " estimate. `server busy` is the server's CPU time over the run's wall time: below 100%"
        " the server waited for the network or the loadgen, and its req/s say more about the"
        " machine than about the loop",
        f"- Ratios are medians of per-round ratios. CPU ratios: below 1, {SUBJECT} uses less CPU"
        f" per request. req/s ratio: above 1, {SUBJECT} serves more. `best(...)` is the better peer in the"
        " same round. The floor is a minimal tokio echo server (no Python), measured once per"
        " size and round and shown under every mode",
        "",
        f"## Headline: {SUBJECT} against its peers",
        "",
    ]
    titles = list(ratio_defs(loops))
    rows = [["mode", "size", *titles]]
    for entry in summary.values():
        rows.append(
            [f"`{entry['mode']}`", fmt_size(entry["size"])]
            + [fmt_ratio(entry["ratios"][t]) for t in titles]
        )
    lines += table(rows, ["---", "---:", *["---:"] * len(titles)])
    for mode in result["modes"]:
        lines += ["", f"## Mode `{mode}`: {MODE_DOCS[mode]}", ""]
        rows = [
            [
                "size", "loop", "user µs/req", "sys µs/req", "total µs/req", "req/s",
                "p50 ms", "p99 ms", "server busy",
            ]
        ]  # fmt: skip
        for size in result["sizes"]:
            entry = summary[f"{mode}/{size}"]
            for loop in [*loops, FLOOR] if result["floor"] else loops:
                e = entry["loops"][loop]
                name = "floor (tokio)" if loop == FLOOR else loop
                name = f"**{name}**" if loop == SUBJECT else name
                if e.get("missing") and e["samples"] == 0:
                    rows.append([fmt_size(size), name, f"missing: {e['missing']}", *[""] * 6])
                    continue
                if e["samples"] == 0:
                    rows.append([fmt_size(size), name, f"error ({e['errors']} failed)", *[""] * 6])
                    continue
                rows.append(
                    [
                        fmt_size(size), name,
                        fmt_num(e["user_us"]), fmt_num(e["sys_us"]), fmt_num(e["cpu_us"]),
                        fmt_num(e["rps"]), fmt_num(e["p50_ms"], 2), fmt_num(e["p99_ms"], 2),
                        f"{e['busy']:.0%}",
                    ]
                )  # fmt: skip
        lines += table(rows, ["---:", "---", *["---:"] * 7])
    errors = [s for s in result["samples"] if "error" in s]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [
            f"- round {s['round']}, {s['loop']}, `{s['mode']}`, {fmt_size(s['size'])}: {s['error']}"
            for s in errors
        ]
    return "\n".join(lines) + "\n"


MODE_DOCS = {
    "protocol": "an `asyncio.Protocol` whose `data_received` writes the data back"
    " (`loop.create_server`)",
    "streams": "`asyncio.start_server`; per connection `reader.read(65536)`, `writer.write`,"
    " `await writer.drain()`",
    "sock": "`loop.sock_accept` in a task, then per connection a task doing `loop.sock_recv(s,"
    " 65536)` and `loop.sock_sendall`",
}


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
    p.add_argument("--quick", action="store_true", help="1 round, few messages: a smoke test")
    add_loops_arg(p)
    p.add_argument(
        "--modes",
        type=comma_list(MODES),
        default=list(MODES),
        metavar="MODE[,MODE]",
        help=f"server modes (default: {','.join(MODES)})",
    )
    p.add_argument(
        "--sizes",
        type=comma_list(SIZES, int),
        default=list(SIZES),
        metavar="N[,N]",
        help=f"message sizes in bytes (default: {','.join(map(str, SIZES))})",
    )
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiply the message counts by this (default 1)"
    )
    p.add_argument("--conns", type=int, default=CONNS, help=f"connections (default {CONNS})")
    p.add_argument("--unix", action="store_true", help="Unix sockets instead of TCP")
    p.add_argument("--no-floor", dest="floor", action="store_false", help="skip the Rust floor")
    p.add_argument(
        "--no-build",
        action="store_true",
        help="do not run cargo build for the loadgen (its binaries must exist)",
    )
    p.add_argument("--server", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    p.add_argument("--probe", metavar="LOOP", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1 or args.conns < 1 or args.scale <= 0:
        p.error("--rounds, --conns and --scale must be positive")
    return args  # fmt: skip


def build_loadgen() -> bool:
    cmd = [
        "cargo", "build", "--release", "--quiet",
        "--manifest-path", str(LOADGEN_DIR / "Cargo.toml"),
        "--target-dir", str(LOADGEN_TARGET),
    ]  # fmt: skip
    log("building the load generator: " + " ".join(cmd))
    try:
        subprocess.run(cmd, check=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"cannot build the load generator: {exc}")
        return False
    return True


def tokio_version() -> str:
    """tokio's version from the loadgen's Cargo.lock."""
    try:
        text = (LOADGEN_DIR / "Cargo.lock").read_text()
    except OSError:
        return "unknown"
    for block in text.split("[[package]]"):
        if 'name = "tokio"' in block:
            for line in block.splitlines():
                if line.startswith("version"):
                    return line.split('"')[1]
    return "unknown"


def probe(loop: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", loop]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {STARTUP_TIMEOUT_S} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.server:
        loop, mode = args.server[0], args.server[1]
        unix = args.server[2] if len(args.server) > 2 else None
        child_server(loop, mode, unix)
        return 0
    if args.probe:
        child_probe(args.probe)
        return 0
    if os.cpu_count() is None or max(SERVER_CPU, CLIENT_CPU) >= len(os.sched_getaffinity(0)):
        log(f"warning: fewer than {max(SERVER_CPU, CLIENT_CPU) + 1} cores: pinning will fail")
    if not args.no_build and not build_loadgen():
        return 1
    for binary in (LOADGEN_BIN, FLOOR_BIN):
        if not binary.exists():
            log(
                f"{binary} is missing: cargo build --release --manifest-path"
                f" {LOADGEN_DIR / 'Cargo.toml'} --target-dir {LOADGEN_TARGET}"
            )
            return 1

    probes = {loop: probe(loop) for loop in args.loops}
    loops, missing = split_probes(probes)
    if not loops:
        return 1
    base = QUICK_MESSAGES if args.quick else MESSAGES
    messages = {size: max(args.conns, round(base[size] * args.scale)) for size in args.sizes}

    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        log(f"note: load average {load_before[0]:.2f} before the run: other work shares the cores")
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    try:
        samples = run_rounds(loops, args.modes, args.sizes, messages, args)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    rounds = list(range(1, args.rounds + 1))
    summary = summarize(samples, loops, args.modes, args.sizes, rounds)
    versions = {loop: probes[loop]["version"] for loop in loops}
    if args.floor:
        versions[FLOOR] = f"tokio {tokio_version()} (current-thread runtime)"
    result = {
        "benchmark": "echo",
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - t0, 1),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "executable": sys.executable,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "versions": versions,
        "loop_classes": {loop: probes[loop]["class"] for loop in loops},
        "missing_loops": missing,
        "rounds": args.rounds,
        "quick": args.quick,
        "unix": args.unix,
        "floor": args.floor,
        "conns": args.conns,
        "modes": args.modes,
        "sizes": args.sizes,
        "messages": messages,
        "floor_scale": FLOOR_SCALE,
        "warmup_per_conn": WARMUP_PER_CONN,
        "server_cpu": SERVER_CPU,
        "client_cpu": CLIENT_CPU,
        "mode_docs": {mode: MODE_DOCS[mode] for mode in args.modes},
        "samples": samples,
        "summary": summary,
    }
    return save_results("echo", started, result, markdown_report(result, summary, loops), samples)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
