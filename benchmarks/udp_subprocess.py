#!/usr/bin/env python3
"""UDP echo and subprocess spawn benchmarks of asyncio event loops: asyncio, uvloop, rloop, rose.

benchmarks/README.md explains what each benchmark measures and how the results are written.

udp_echo: an echo server (create_datagram_endpoint + a DatagramProtocol that sendto()s every
datagram back) runs in a fresh child process pinned to core 0; a load generator, another fresh
child pinned to core 1, keeps a window of datagrams in flight on several sockets (sendmmsg and
recvmmsg through ctypes, so that it is not the bottleneck). The headline is the server's CPU
time per datagram (getrusage, user and system apart); datagrams/s are reported too.

spawn_true, spawn_echo_pipe: one coroutine awaits N subprocess round trips in sequence
(`/bin/true`, then `echo hi` with stdout=PIPE read to the end); the median round trip and the
CPU time per spawn.

The loops run interleaved in rounds and every sample is a fresh process (pair).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import datetime as dt
import errno
import faulthandler
import gc
import json
import os
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = str(Path(__file__).resolve())
# micro.py puts the repository root on sys.path (the in-place rose first) when imported.
sys.path.insert(0, str(HERE))
from micro import (  # noqa: E402
    PEERS,
    STDERR_KEPT,
    SUBJECT,
    child_probe,
    add_loops_arg,
    add_only_arg,
    fmt_ratio,
    log,
    machine_info,
    machine_summary,
    new_loop,
    ratio_columns,
    split_probes,
    save_results,
)

CHILD_TIMEOUT_S = 60  # a load generator or spawn child running longer is killed
SERVER_READY_TIMEOUT_S = 20  # the echo server must report its port within this
SERVER_EXIT_TIMEOUT_S = 10  # ... and exit this long after the load generator is done
SERVER_LIFETIME_S = CHILD_TIMEOUT_S + SERVER_READY_TIMEOUT_S + SERVER_EXIT_TIMEOUT_S
PROBE_TIMEOUT_S = CHILD_TIMEOUT_S  # two feature checks of at most 20 s each

HOST = "127.0.0.1"
UDP_COUNT, UDP_QUICK_COUNT = 200_000, 20_000  # timed datagrams per sample
UDP_SOCKETS = 4  # load generator sockets
UDP_WINDOW = 32  # datagrams in flight per socket: 4 x 32 fit the default 208 KiB rcvbuf
PAYLOAD_SIZE = 100
RECV_TIMEOUT_S = 0.5  # no reply for this long: the datagrams in flight count as lost
MAX_LOSS = 0.01  # a sample losing more than this fraction is an error
SPAWN_N, SPAWN_QUICK_N = 400, 40  # sequential spawns per sample
TRUE = "/bin/true"


def warmup_of(n: int, minimum: int) -> int:
    return max(minimum, n // 10)


# --------------------------------------------------------------------------------------------
# Benchmarks and their metrics.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    better: str | None  # "lower" or "higher": ratios are taken; None: shown, no ratio
    fmt: Callable[[float], str]


def f_us(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}" if v < 10 else f"{v:.1f}"


def f_int(v: float) -> str:
    return f"{v:,.0f}"


def f_pct(v: float) -> str:
    return f"{100 * v:.0f}%"


@dataclass(frozen=True)
class Bench:
    name: str
    feature: str  # which probe feature the benchmark needs
    metrics: tuple[Metric, ...]
    doc: str


UDP_METRICS = (
    Metric("cpu_us", "server CPU µs per datagram (user + sys)", "lower", f_us),
    Metric("user_us", "  user", "lower", f_us),
    Metric("sys_us", "  sys", "lower", f_us),
    Metric("dgram_per_s", "datagrams/s", "higher", f_int),
    Metric("server_busy", "server CPU busy (CPU / wall)", None, f_pct),
    Metric("client_idle", "load generator headroom (idle share)", None, f_pct),
    Metric("lost", "datagrams lost", None, f_int),
)
SPAWN_METRICS = (
    Metric("median_us", "median µs per round trip (wall)", "lower", f_us),
    Metric("mean_us", "mean µs per round trip (wall)", "lower", f_us),
    Metric("cpu_us", "loop process CPU µs per spawn (user + sys)", "lower", f_us),
    Metric("user_us", "  user", "lower", f_us),
    Metric("sys_us", "  sys", "lower", f_us),
    Metric("children_cpu_us", "children's CPU µs per spawn (user + sys)", "lower", f_us),
)
BENCHES = {
    b.name: b
    for b in (
        Bench(
            "udp_echo",
            "udp",
            UDP_METRICS,
            "UDP echo server on core 0 (create_datagram_endpoint, sendto() each datagram back),"
            " load generator on core 1 (sendmmsg/recvmmsg, several sockets with a window of"
            " datagrams in flight each); server getrusage per datagram",
        ),
        Bench(
            "spawn_true",
            "subprocess",
            SPAWN_METRICS,
            "`await (await asyncio.create_subprocess_exec('/bin/true')).wait()`, N times in"
            " sequence",
        ),
        Bench(
            "spawn_echo_pipe",
            "subprocess",
            SPAWN_METRICS,
            "`create_subprocess_exec('echo', 'hi', stdout=PIPE)`, `await proc.stdout.read()`"
            " (checked to be b'hi\\n'), `await proc.wait()`, N times in sequence",
        ),
    )
}


# --------------------------------------------------------------------------------------------
# Child processes. Every child prints one JSON line on stdout (the server two: ready, result).
# --------------------------------------------------------------------------------------------


def pin(core: int) -> None:
    if core >= 0:
        os.sched_setaffinity(0, {core})


def describe_exc(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def stop_on_exception(loop: asyncio.AbstractEventLoop, failures: list[dict]) -> None:
    """A loop logs an exception raised in a callback and carries on: record it and stop."""

    def on_exception(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        failures.append(context)
        loop.stop()

    loop.set_exception_handler(on_exception)


def check_failures(failures: list[dict]) -> None:
    if failures:
        context = failures[0]
        raise RuntimeError(f"callback failed: {context.get('exception') or context['message']!r}")


async def probe_udp(loop: asyncio.AbstractEventLoop) -> None:
    """An echo endpoint and a connected client endpoint exchange one datagram."""
    got = loop.create_future()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            if not got.done():
                got.set_result(data)

    server, _ = await loop.create_datagram_endpoint(Echo, local_addr=(HOST, 0))
    try:
        client, _ = await loop.create_datagram_endpoint(
            Client, remote_addr=server.get_extra_info("sockname")
        )
        try:
            client.sendto(b"probe")
            if await asyncio.wait_for(got, 5) != b"probe":
                raise RuntimeError("the echo came back changed")
        finally:
            client.close()
    finally:
        server.close()


async def probe_subprocess(loop: asyncio.AbstractEventLoop) -> None:
    proc = await asyncio.create_subprocess_exec(TRUE)
    if await asyncio.wait_for(proc.wait(), 10) != 0:
        raise RuntimeError(f"{TRUE} exited with {proc.returncode}")
    proc = await asyncio.create_subprocess_exec(
        shutil.which("echo") or "echo", "hi", stdout=asyncio.subprocess.PIPE
    )
    out = await asyncio.wait_for(proc.stdout.read(), 10)
    if out != b"hi\n" or await asyncio.wait_for(proc.wait(), 10) != 0:
        raise RuntimeError(f"echo hi gave {out!r}, exit status {proc.returncode}")


def child_probe_features(loop_name: str) -> dict:
    """micro.py's probe (version, class), then which features the loop supports: for each,
    None if it works, else the reason."""
    result = child_probe(loop_name)
    features = {}
    for feature, check in (("udp", probe_udp), ("subprocess", probe_subprocess)):
        loop = new_loop(loop_name)
        try:
            loop.run_until_complete(asyncio.wait_for(check(loop), 20))
            features[feature] = None
        except Exception as exc:  # noqa: BLE001 - any failure means the feature is lacking
            features[feature] = describe_exc(exc)
        finally:
            loop.close()
    result["features"] = features
    return result


def rusage_ns(who: int = resource.RUSAGE_SELF) -> tuple[int, int]:
    ru = resource.getrusage(who)
    return round(ru.ru_utime * 1e9), round(ru.ru_stime * 1e9)


def child_udp_server(loop_name: str, core: int) -> None:
    """Echo datagrams until the control endpoint gets b"stop"; the server's CPU time between
    b"start" and b"stop" is the measurement. Prints a ready line, then the result line."""
    pin(core)
    loop = new_loop(loop_name)
    failures: list[dict] = []
    stop_on_exception(loop, failures)
    errors: list[str] = []
    marks: dict[str, tuple[int, int, int]] = {}

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

        def error_received(self, exc):
            errors.append(describe_exc(exc))

    class Control(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            if data == b"start":
                gc.collect()
                marks["start"] = (time.perf_counter_ns(), *rusage_ns())
            elif data == b"stop":
                marks["stop"] = (time.perf_counter_ns(), *rusage_ns())
                loop.call_soon(loop.stop)
            self.transport.sendto(data, addr)  # the acknowledgement

    try:
        echo, _ = loop.run_until_complete(loop.create_datagram_endpoint(Echo, local_addr=(HOST, 0)))
        control, _ = loop.run_until_complete(
            loop.create_datagram_endpoint(Control, local_addr=(HOST, 0))
        )
        ready = {
            "port": echo.get_extra_info("sockname")[1],
            "control_port": control.get_extra_info("sockname")[1],
        }
        print(json.dumps(ready), flush=True)
        loop.run_forever()
        check_failures(failures)
        echo.close()
        control.close()
        loop.run_until_complete(asyncio.sleep(0.01))  # let connection_lost() run
    finally:
        loop.close()
    if "start" not in marks or "stop" not in marks:
        raise RuntimeError("the loop stopped before the measurement ended")
    (t0, u0, s0), (t1, u1, s1) = marks["start"], marks["stop"]
    result = {"wall_ns": t1 - t0, "user_ns": u1 - u0, "sys_ns": s1 - s0, "errors": errors[:10]}
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# The UDP load generator. Several connected sockets, each sending its share of the datagrams
# and keeping up to `window` of them in flight. The engines return counts (sent, received,
# lost, bad_size, ...); a datagram not answered within RECV_TIMEOUT_S is lost.
# --------------------------------------------------------------------------------------------


class IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(IOVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", MsgHdr), ("msg_len", ctypes.c_uint)]


def mmsg_vector(count: int, buf: ctypes.Array) -> ctypes.Array:
    """`count` message headers, each of one iovec over the same buffer (connected sockets:
    no addresses). The iovecs are kept alive by the vector's _keep attribute."""
    vec = (MMsgHdr * count)()
    iovs = (IOVec * count)()
    for i in range(count):
        iovs[i].iov_base = ctypes.cast(buf, ctypes.c_void_p)
        iovs[i].iov_len = len(buf)
        vec[i].msg_hdr.msg_iov = ctypes.pointer(iovs[i])
        vec[i].msg_hdr.msg_iovlen = 1
    vec._keep = (iovs, buf)  # type: ignore[attr-defined]
    return vec


def too_many_lost(lost: int, max_lost: float) -> None:
    """Give up at once rather than wait RECV_TIMEOUT_S for every window of a dead server."""
    if lost > max_lost:
        raise RuntimeError(f"{lost} datagrams lost: more than {MAX_LOSS:.0%}")


class MMsgFlows:
    """Per-socket windows driven through libc's sendmmsg and recvmmsg (via ctypes, which
    releases the GIL around each call): one system call per batch, not per datagram."""

    def __init__(self, socks: list[socket.socket], shares: list[int], window: int) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.sendmmsg, self.recvmmsg = libc.sendmmsg, libc.recvmmsg
        vec_p = ctypes.POINTER(MMsgHdr)
        self.sendmmsg.argtypes = [ctypes.c_int, vec_p, ctypes.c_uint, ctypes.c_int]
        self.recvmmsg.argtypes = [ctypes.c_int, vec_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
        self.sendmmsg.restype = self.recvmmsg.restype = ctypes.c_int
        self.send_vec = mmsg_vector(
            window, ctypes.create_string_buffer(b"x" * PAYLOAD_SIZE, PAYLOAD_SIZE)
        )
        self.recv_vec = mmsg_vector(window, ctypes.create_string_buffer(2048))  # lengths only
        self.fds = [s.fileno() for s in socks]
        self.shares, self.window = shares, window
        self.sent, self.in_flight = [0] * len(socks), [0] * len(socks)
        self.received = self.lost = self.bad = 0
        self.max_lost = MAX_LOSS * sum(shares)

    def busy(self, i: int) -> bool:
        return self.sent[i] < self.shares[i] or self.in_flight[i] > 0

    def refill(self, i: int) -> None:
        k = min(self.window - self.in_flight[i], self.shares[i] - self.sent[i])
        while k > 0:
            n = self.sendmmsg(self.fds[i], self.send_vec, k, socket.MSG_DONTWAIT)
            if n < 0:
                e = ctypes.get_errno()
                if e in (errno.EAGAIN, errno.EINTR):  # the send buffer is full: later
                    return
                raise OSError(e, f"sendmmsg: {os.strerror(e)}")
            self.sent[i] += n
            self.in_flight[i] += n
            k -= n

    def drain(self, i: int) -> int:
        """Receive whatever replies are queued on socket i, without blocking."""
        n = self.recvmmsg(self.fds[i], self.recv_vec, self.window, socket.MSG_DONTWAIT, None)
        if n < 0:
            e = ctypes.get_errno()
            if e in (errno.EAGAIN, errno.EINTR):
                return 0
            raise OSError(e, f"recvmmsg: {os.strerror(e)}")
        self.received += n
        self.in_flight[i] -= n
        if n and self.recv_vec[0].msg_len != PAYLOAD_SIZE:  # spot check, one per call
            self.bad += 1
        return n

    def lose_in_flight(self) -> None:
        self.lost += sum(self.in_flight)
        self.in_flight = [0] * len(self.in_flight)
        too_many_lost(self.lost, self.max_lost)

    def result(self, **extra: int) -> dict:
        return {
            "sent": sum(self.sent),
            "received": self.received,
            "lost": self.lost,
            "bad_size": self.bad,
            **extra,
        }


def engine_epoll(socks: list[socket.socket], shares: list[int], window: int):
    """One thread: epoll over the sockets, drain the ready ones and refill their windows.
    It sleeps while no reply is queued, the way a compiled (tokio) load generator does."""
    flows = MMsgFlows(socks, shares, window)
    index = {fd: i for i, fd in enumerate(flows.fds)}
    with select.epoll() as ep:
        for i, fd in enumerate(flows.fds):
            ep.register(fd, select.EPOLLIN)
            flows.refill(i)
        left = sum(flows.busy(i) for i in range(len(socks)))
        while left:
            events = ep.poll(RECV_TIMEOUT_S)
            if not events:  # nothing for RECV_TIMEOUT_S: what is in flight is lost
                flows.lose_in_flight()
            ready = [index[fd] for fd, _ in events] if events else range(len(socks))
            for i in ready:
                flows.drain(i)
                flows.refill(i)
            left = sum(flows.busy(i) for i in range(len(socks)))
    return flows.result()


def engine_spin(socks: list[socket.socket], shares: list[int], window: int):
    """One thread polling every socket in turn without ever sleeping, so the server's
    sendto() never pays for waking the load generator (whose CPU then always reads 100%:
    its headroom is the share of polling rounds that found no reply)."""
    flows = MMsgFlows(socks, shares, window)
    active = list(range(len(socks)))
    clock = time.monotonic
    last_progress = clock()
    polls = empty_polls = 0
    while active:
        progress = 0
        for i in active:
            flows.refill(i)
            progress += flows.drain(i)
        polls += 1
        now = clock()
        if progress:
            last_progress = now
        else:
            empty_polls += 1
            if now - last_progress > RECV_TIMEOUT_S:
                flows.lose_in_flight()
                last_progress = now
        active = [i for i in active if flows.busy(i)]
    return flows.result(polls=polls, empty_polls=empty_polls)


def engine_python(socks: list[socket.socket], shares: list[int], window: int):
    """Plain Python: one thread per socket, blocking send() and recv() of one datagram each
    (the GIL makes this the slowest load generator; a cross-check of the others)."""
    results: list = [None] * len(socks)

    def flow(i: int) -> None:
        sock, total = socks[i], shares[i]
        sock.settimeout(RECV_TIMEOUT_S)
        payload = b"x" * PAYLOAD_SIZE
        send, recv = sock.send, sock.recv
        sent = received = lost = bad = in_flight = 0
        try:
            while sent < total or in_flight:
                while in_flight < window and sent < total:
                    send(payload)
                    sent += 1
                    in_flight += 1
                try:
                    data = recv(2048)
                except TimeoutError:
                    lost += in_flight
                    in_flight = 0
                    too_many_lost(lost, MAX_LOSS * total)
                    continue
                received += 1
                in_flight -= 1
                bad += len(data) != PAYLOAD_SIZE
            results[i] = {"sent": sent, "received": received, "lost": lost, "bad_size": bad}
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            results[i] = exc

    threads = [threading.Thread(target=flow, args=(i,), daemon=True) for i in range(len(socks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return {key: sum(r[key] for r in results) for key in results[0]}


ENGINES = {"epoll": engine_epoll, "spin": engine_spin, "python": engine_python}


def run_engine(engine_name: str, socks: list[socket.socket], count: int, window: int) -> dict:
    """Send count datagrams, split between the sockets; wall and CPU time of the whole run."""
    shares = [count // len(socks) + (i < count % len(socks)) for i in range(len(socks))]
    t0, (u0, s0) = time.perf_counter_ns(), rusage_ns()
    counts = ENGINES[engine_name](socks, shares, window)
    t1, (u1, s1) = time.perf_counter_ns(), rusage_ns()
    return {"wall_ns": t1 - t0, "user_ns": u1 - u0, "sys_ns": s1 - s0, **counts}


def control(sock: socket.socket, command: bytes) -> None:
    sock.send(command)
    if sock.recv(64) != command:
        raise RuntimeError(f"the server did not acknowledge {command!r}")


def child_udp_client(
    port: int, control_port: int, count: int, warmup: int, sockets: int, window: int,
    engine_name: str, core: int,
) -> dict:  # fmt: skip
    pin(core)
    socks = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((HOST, port))
        socks.append(s)
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ctl.connect((HOST, control_port))
    ctl.settimeout(5)
    try:
        warm = run_engine(engine_name, socks, warmup, window)
        control(ctl, b"start")
        timed = run_engine(engine_name, socks, count, window)
        control(ctl, b"stop")
    finally:
        for s in [*socks, ctl]:
            s.close()
    timed["warmup_lost"] = warm["lost"]
    return timed


async def spawn_true() -> None:
    proc = await asyncio.create_subprocess_exec(TRUE)
    if await proc.wait() != 0:
        raise RuntimeError(f"{TRUE} exited with {proc.returncode}")


def spawn_echo_pipe_factory():
    echo = shutil.which("echo") or "/bin/echo"  # an absolute path: no PATH search per spawn
    pipe = asyncio.subprocess.PIPE

    async def spawn_echo_pipe() -> None:
        proc = await asyncio.create_subprocess_exec(echo, "hi", stdout=pipe)
        out = await proc.stdout.read()
        if await proc.wait() != 0 or out != b"hi\n":
            raise RuntimeError(f"echo hi gave {out!r}, exit status {proc.returncode}")

    return spawn_echo_pipe


def child_spawn(loop_name: str, bench_name: str, n: int) -> dict:
    once = spawn_true if bench_name == "spawn_true" else spawn_echo_pipe_factory()
    loop = new_loop(loop_name)
    failures: list[dict] = []
    stop_on_exception(loop, failures)

    async def run(k: int, times: list[int]) -> None:
        clock = time.perf_counter_ns
        for _ in range(k):
            t0 = clock()
            await once()
            times.append(clock() - t0)

    try:
        loop.run_until_complete(run(warmup_of(n, 5), []))
        check_failures(failures)
        times: list[int] = []
        gc.collect()
        u0, s0 = rusage_ns()
        cu0, cs0 = rusage_ns(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter_ns()
        loop.run_until_complete(run(n, times))
        t1 = time.perf_counter_ns()
        u1, s1 = rusage_ns()
        cu1, cs1 = rusage_ns(resource.RUSAGE_CHILDREN)
        check_failures(failures)
    finally:
        loop.close()
    if len(times) != n:
        raise RuntimeError(f"{len(times)} of {n} spawns completed")
    return {
        "wall_ns": t1 - t0,
        "median_us": statistics.median(times) / 1e3,
        "mean_us": (t1 - t0) / n / 1e3,
        "cpu_us": (u1 - u0 + s1 - s0) / n / 1e3,
        "user_us": (u1 - u0) / n / 1e3,
        "sys_us": (s1 - s0) / n / 1e3,
        "children_cpu_us": (cu1 - cu0 + cs1 - cs0) / n / 1e3,
    }


def child_main(args: list[str]) -> None:
    role, rest = args[0], args[1:]
    faulthandler.enable()
    # A hang leaves the Python stacks on stderr and ends the child before the parent kills it.
    lifetime = SERVER_LIFETIME_S if role == "udp-server" else CHILD_TIMEOUT_S - 5
    faulthandler.dump_traceback_later(lifetime, exit=True)
    if role == "probe":
        result = child_probe_features(rest[0])
    elif role == "udp-server":
        child_udp_server(rest[0], int(rest[1]))
        return
    elif role == "udp-client":
        port, control_port, count, warmup, sockets, window = map(int, rest[:6])
        result = child_udp_client(
            port, control_port, count, warmup, sockets, window, rest[6], int(rest[7])
        )
    elif role == "spawn":
        result = child_spawn(rest[0], rest[1], int(rest[2]))
    else:
        raise SystemExit(f"unknown child role {role!r}")
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# Parent: probing, samples, interleaved rounds.
# --------------------------------------------------------------------------------------------


def rose_build() -> dict:
    """Which rose was measured: the repository's commit, whether rose's sources differ from
    it, and when the extension module was built."""
    root = HERE.parent
    info: dict = {}
    try:
        git = ["git", "-C", str(root)]
        info["commit"] = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "rose", "src", "Cargo.toml"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        info["dirty"] = bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    extensions = sorted((root / "rose").glob("_rose*.so"))
    if extensions:
        built = dt.datetime.fromtimestamp(extensions[0].stat().st_mtime, dt.UTC)
        info["extension_built"] = built.isoformat(timespec="seconds")
    return info


def child_cmd(*args: object) -> list[str]:
    return [sys.executable, SCRIPT, "--child", *map(str, args)]


PR_SET_PDEATHSIG = 1


def tie_to_parent() -> None:
    """preexec_fn: the kernel kills the child if the harness dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def failure(returncode: int, stderr: str) -> dict:
    if returncode < 0:  # faulthandler's stack is in the stderr kept
        error = f"killed by {signal.strsignal(-returncode)}"
    else:
        last_line = (stderr.strip().splitlines() or ["no output on stderr"])[-1]
        error = f"exit status {returncode}: {last_line}"
    return {"error": error, "stderr": stderr[-STDERR_KEPT:]}


def last_json(stdout: str) -> dict:
    try:
        return json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"unreadable child output: {stdout[-200:]!r}"}


def run_child(*args: object, timeout: float = CHILD_TIMEOUT_S) -> dict:
    """Run this script with `--child ARGS` and return its JSON, or {"error": ...}."""
    try:
        proc = subprocess.run(
            child_cmd(*args),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=tie_to_parent,
        )
    except subprocess.TimeoutExpired as exc:  # the child was killed; its stacks are on stderr
        stderr = exc.stderr or b""
        stderr = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        return {"error": f"timeout after {timeout} s", "stderr": stderr[-STDERR_KEPT:]}
    if proc.returncode != 0:
        return failure(proc.returncode, proc.stderr)
    return last_json(proc.stdout)


def read_line(proc: subprocess.Popen, timeout: float) -> tuple[bytes | None, bytes]:
    """The first line of a child's stdout within timeout (None if it exits or is too slow),
    and whatever followed it in the same reads."""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None, data
        chunk = os.read(fd, 65536)
        if not chunk:
            return None, data
        data += chunk
    line, _, rest = data.partition(b"\n")
    return line, rest


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def udp_sample(loop: str, cfg: dict) -> dict:
    """One echo server process and one load generator process; the merged measurement."""
    with tempfile.TemporaryFile() as server_err:  # a file, not a pipe: it can never fill up
        server = subprocess.Popen(
            child_cmd("udp-server", loop, cfg["server_core"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=server_err,
            preexec_fn=tie_to_parent,
        )

        def server_stderr() -> str:
            server_err.seek(0)
            return server_err.read().decode(errors="replace")

        try:
            line, rest = read_line(server, SERVER_READY_TIMEOUT_S)
            if line is None:
                stop_process(server)
                out = failure(server.returncode, server_stderr())
                if server.returncode == -signal.SIGTERM:
                    out["error"] = f"the server was not ready within {SERVER_READY_TIMEOUT_S} s"
                return {"error": "server: " + out["error"], "stderr": out["stderr"]}
            ready = json.loads(line)
            client = run_child(
                "udp-client",
                ready["port"],
                ready["control_port"],
                cfg["count"],
                cfg["warmup"],
                cfg["sockets"],
                cfg["window"],
                cfg["client"],
                cfg["client_core"],
            )
            if "error" in client:
                error = "load generator: " + client["error"]
                if server.poll() is not None:  # the server died first: say so
                    error += f" (the server had exited: {failure(server.returncode, '')['error']})"
                    client["stderr"] = client.get("stderr", "") + server_stderr()[-STDERR_KEPT:]
                return {**client, "error": error}
            try:
                stdout, _ = server.communicate(timeout=SERVER_EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                stop_process(server)
                return {
                    "error": f"the server did not exit within {SERVER_EXIT_TIMEOUT_S} s",
                    "stderr": server_stderr()[-STDERR_KEPT:],
                }
            if server.returncode != 0:
                out = failure(server.returncode, server_stderr())
                return {"error": "server: " + out["error"], "stderr": out["stderr"]}
            srv = last_json((rest + stdout).decode(errors="replace"))
            if "error" in srv:
                return {"error": "server: " + srv["error"]}
        finally:
            stop_process(server)
    received = client["received"]
    if received == 0:
        return {"error": "no datagram came back", "client": client, "server": srv}
    if client["lost"] > MAX_LOSS * cfg["count"] or client["bad_size"]:
        return {
            "error": f"{client['lost']} datagrams lost, {client['bad_size']} of the wrong size",
            "client": client,
            "server": srv,
        }
    server_cpu = srv["user_ns"] + srv["sys_ns"]
    client_busy = (client["user_ns"] + client["sys_ns"]) / client["wall_ns"]
    return {
        "wall_ns": client["wall_ns"],
        "datagrams": received,
        "lost": client["lost"],
        "warmup_lost": client["warmup_lost"],
        "cpu_us": server_cpu / received / 1e3,
        "user_us": srv["user_ns"] / received / 1e3,
        "sys_us": srv["sys_ns"] / received / 1e3,
        "dgram_per_s": received / (client["wall_ns"] / 1e9),
        "server_busy": server_cpu / srv["wall_ns"],
        "client_busy": client_busy,
        "client_idle": (
            client["empty_polls"] / client["polls"] if "polls" in client else 1 - client_busy
        ),
        "client_cpu_us": (client["user_ns"] + client["sys_ns"]) / received / 1e3,
        "server_errors": srv["errors"],
    }


def describe(bench: str, sample: dict) -> str:
    if "error" in sample:
        return f"ERROR {sample['error']}"
    if bench == "udp_echo":
        return (
            f"{sample['cpu_us']:7.2f} µs CPU/dgram (user {sample['user_us']:.2f},"
            f" sys {sample['sys_us']:.2f})  {sample['dgram_per_s']:9,.0f} dgram/s"
            f"  server busy {100 * sample['server_busy']:.0f}%, load generator idle"
            f" {100 * sample['client_idle']:.0f}%  lost {sample['lost']}"
        )
    return (
        f"{sample['median_us']:7.0f} µs median  {sample['cpu_us']:6.0f} µs CPU/spawn"
        f"  (children {sample['children_cpu_us']:.0f})"
    )


def run_rounds(benches: list[Bench], loops: list[str], lacking: dict, cfg: dict) -> list[dict]:
    samples = []
    rounds = cfg["rounds"]
    for r in range(1, rounds + 1):
        for spec in benches:
            for loop in loops:
                if spec.feature in lacking.get(loop, {}):
                    continue
                if spec.name == "udp_echo":
                    sample = udp_sample(loop, cfg)
                    n = cfg["count"]
                else:
                    n = cfg["spawns"]
                    sample = run_child("spawn", loop, spec.name, n)
                samples.append({"round": r, "bench": spec.name, "loop": loop, "n": n, **sample})
                log(f"[round {r}/{rounds}] {spec.name:<16} {loop:<8} {describe(spec.name, sample)}")
    return samples


# --------------------------------------------------------------------------------------------
# Summaries and the Markdown report.
# --------------------------------------------------------------------------------------------


def summarize(samples: list[dict], benches: list[Bench], loops: list[str]) -> dict:
    """Per benchmark and metric: the median per loop, and the median over rounds of the ratio
    of the subject to the best reference in the same round (lowest, or highest for rates)."""
    ok = [s for s in samples if "error" not in s]
    rounds = sorted({s["round"] for s in samples})
    summary = {}
    for spec in benches:
        per_metric = {}
        for m in spec.metrics:
            at = {(s["round"], s["loop"]): s[m.key] for s in ok if s["bench"] == spec.name}
            medians, ranges = {}, {}
            for loop in loops:
                vals = [at[(r, loop)] for r in rounds if (r, loop) in at]
                medians[loop] = statistics.median(vals) if vals else None
                ranges[loop] = (min(vals), max(vals)) if vals else None
            ratios = {}
            if m.better:
                best = min if m.better == "lower" else max
                for title, refs in ratio_columns(loops).items():
                    paired = [
                        at[(r, SUBJECT)] / best(at[(r, ref)] for ref in refs if (r, ref) in at)
                        for r in rounds
                        if (r, SUBJECT) in at and any((r, ref) in at for ref in refs)
                    ]
                    ratios[title] = statistics.median(paired) if paired else None
            per_metric[m.key] = {"median": medians, "range": ranges, "ratio": ratios}
        summary[spec.name] = per_metric
    return summary


def markdown_table(spec: Bench, summary: dict, loops: list[str], lacking: dict) -> str:
    ratio_titles = list(ratio_columns(loops))
    head = ["metric", *loops, *ratio_titles]
    rows = [head, ["---", *["---:"] * (len(head) - 1)]]
    for m in spec.metrics:
        entry = summary[spec.name][m.key]
        cells = []
        for loop in loops:
            v = entry["median"][loop]
            if spec.feature in lacking.get(loop, {}):
                cells.append(f"lacks {spec.feature}")
            else:
                cells.append("error" if v is None else m.fmt(v))
        ratios = [fmt_ratio(entry["ratio"][t]) if m.better else "" for t in ratio_titles]
        rows.append([m.title.replace("  ", "&nbsp;&nbsp;"), *cells, *ratios])
        if m is spec.metrics[0]:  # how far the rounds disagree on the headline
            spread = [
                "" if entry["range"][loop] is None else "–".join(map(m.fmt, entry["range"][loop]))
                for loop in loops
            ]
            rows.append(["&nbsp;&nbsp;min–max over rounds", *spread, *[""] * len(ratio_titles)])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def fmt_load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in load)


def markdown_report(result: dict, summary: dict, benches: list[Bench], loops: list[str]) -> str:
    cfg = result["config"]
    versions = ", ".join(f"{name} {v}" for name, v in result["versions"].items())
    lines = [
        "# UDP echo and subprocess spawn: latest run",
        "",
        f"- Date: {result['date']}",
        f"- Machine: {machine_summary(result['machine'])}; load average (1, 5, 15 min)"
        f" {fmt_load(result['machine']['loadavg_before'])} before the run,"
        f" {fmt_load(result['machine']['loadavg_after'])} after",
        f"- Loops: {versions}",
    ]
    build = result["rose_build"]
    if build:
        lines.append(
            f"- {SUBJECT} from commit {build.get('commit', '?')}"
            + (" with uncommitted changes to its sources" if build.get("dirty") else "")
            + (
                f", extension built {build['extension_built']}"
                if "extension_built" in build
                else ""
            )
        )
    if result["missing"]:
        missing = "; ".join(f"{name}: {why}" for name, why in result["missing"].items())
        lines.append(f"- Missing loops: {missing}")
    for loop, feats in result["lacking"].items():
        for feature, why in feats.items():
            lines.append(f"- {loop} lacks {feature}: {why}")
    quick = " (--quick: small counts, a smoke test only)" if result["quick"] else ""
    lines += [
        (
            f"- {result['rounds']} round(s){quick}; every sample is a fresh process (pair);"
            " loops interleaved within each round"
        ),
        (
            f"- Ratios are medians of per-round ratios; below 1 means {SUBJECT} is better"
            " (for datagrams/s, above 1); `best(...)` is the better peer in the same round"
        ),
    ]
    by_name = {spec.name: spec for spec in benches}
    if "udp_echo" in by_name:
        pins = (
            f"server pinned to core {cfg['server_core']}, load generator to core"
            f" {cfg['client_core']}"
            if cfg["server_core"] >= 0
            else "not pinned (fewer than 2 cores available)"
        )
        lines += [
            "",
            "## UDP echo",
            "",
            (
                f"{cfg['count']:,} timed datagrams of {PAYLOAD_SIZE} bytes per sample (after"
                f" {cfg['warmup']:,} of warm-up), {cfg['sockets']} client sockets with"
                f" {cfg['window']} in flight each, `{cfg['client']}` load generator; {pins}."
                " CPU is the server process's getrusage between the start and stop of the"
                " timed phase, divided by the datagrams echoed."
            ),
            "",
            markdown_table(by_name["udp_echo"], summary, loops, result["lacking"]),
        ]
    for name, title in (
        ("spawn_true", "Subprocess spawn: `/bin/true`"),
        ("spawn_echo_pipe", "Subprocess spawn: `echo hi`, stdout=PIPE"),
    ):
        if name in by_name:
            lines += [
                "",
                f"## {title}",
                "",
                (
                    f"{cfg['spawns']:,} sequential round trips per sample (after"
                    f" {warmup_of(cfg['spawns'], 5)} of warm-up). Loop process CPU is its"
                    " getrusage (all threads); children's CPU is RUSAGE_CHILDREN (the forked"
                    " child before and after exec)."
                ),
                "",
                markdown_table(by_name[name], summary, loops, result["lacking"]),
            ]
    errors = [s for s in result["samples"] if "error" in s]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [
            f"- round {s['round']}, `{s['bench']}`, {s['loop']}: {s['error']}" for s in errors
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
        "--rounds", type=int, default=None, help="interleaved rounds (default 3; 1 with --quick)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"1 round, {UDP_QUICK_COUNT:,} datagrams, {SPAWN_QUICK_N} spawns (smoke test)",
    )
    add_only_arg(p, BENCHES)
    add_loops_arg(p)
    p.add_argument("--count", type=int, help=f"timed datagrams per sample (default {UDP_COUNT:,})")
    p.add_argument("--spawns", type=int, help=f"spawns per sample (default {SPAWN_N})")
    p.add_argument(
        "--sockets", type=int, default=UDP_SOCKETS, help=f"client sockets (default {UDP_SOCKETS})"
    )
    p.add_argument(
        "--window",
        type=int,
        default=UDP_WINDOW,
        help=f"datagrams in flight per socket (default {UDP_WINDOW})",
    )
    p.add_argument(
        "--client",
        choices=list(ENGINES),
        default="spin",
        help=(
            "load generator: sendmmsg/recvmmsg polling without sleeping (spin, the default),"
            " the same driven by epoll (epoll), or plain Python threads (python)"
        ),
    )
    p.add_argument("--child", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.count is None:
        args.count = UDP_QUICK_COUNT if args.quick else UDP_COUNT
    if args.spawns is None:
        args.spawns = SPAWN_QUICK_N if args.quick else SPAWN_N
    if min(args.count, args.spawns, args.sockets, args.window) < 1:
        p.error("--count, --spawns, --sockets and --window must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0

    probes = {loop: run_child("probe", loop, timeout=PROBE_TIMEOUT_S) for loop in args.loops}
    loops, missing = split_probes(probes)
    if not loops:
        return 1
    benches = [BENCHES[name] for name in args.only]
    needed = {spec.feature for spec in benches}
    lacking = {}
    for loop in loops:
        feats = {f: why for f, why in probes[loop]["features"].items() if why and f in needed}
        if feats:
            lacking[loop] = feats
            for feature, why in feats.items():
                log(f"loop {loop} lacks {feature}: {why}")

    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = (cores[0], cores[1]) if len(cores) >= 2 else (-1, -1)
    cfg = {
        "rounds": args.rounds,
        "count": args.count,
        "warmup": warmup_of(args.count, 1000),
        "sockets": args.sockets,
        "window": args.window,
        "payload_size": PAYLOAD_SIZE,
        "client": args.client,
        "server_core": server_core,
        "client_core": client_core,
        "spawns": args.spawns,
    }
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    samples = run_rounds(benches, loops, lacking, cfg)
    summary = summarize(samples, benches, loops)

    result = {
        "benchmark": "udp_subprocess",
        "date": started.isoformat(timespec="seconds"),
        "machine": {
            **machine_info(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "versions": {loop: probes[loop]["version"] for loop in loops},
        "loop_classes": {loop: probes[loop]["class"] for loop in loops},
        "rose_build": rose_build(),
        "missing": missing,
        "lacking": lacking,
        "rounds": args.rounds,
        "quick": args.quick,
        "config": cfg,
        "child_timeout_s": CHILD_TIMEOUT_S,
        "subject": SUBJECT,
        "peers": list(PEERS),
        "benchmarks": {spec.name: spec.doc for spec in benches},
        "metrics": {
            spec.name: {m.key: {"title": m.title.strip(), "better": m.better} for m in spec.metrics}
            for spec in benches
        },
        "samples": samples,
        "summary": summary,
    }
    return save_results(
        "udp_subprocess", started, result, markdown_report(result, summary, benches, loops), samples
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
