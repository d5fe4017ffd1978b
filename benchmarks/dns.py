#!/usr/bin/env python3
"""Name resolution under load: 1000 concurrent getaddrinfo of distinct names, and one cached one.

benchmarks/README.md ("DNS") explains the method and shows the latest figures.

Four resolvers side by side, against one local dnsmasq on a loopback address:

- `asyncio`: the stdlib loop, `loop.getaddrinfo` = glibc's getaddrinfo in the default executor;
- `uvloop`: libuv's getaddrinfo on libuv's thread pool;
- `aiodns`: aiohttp's `AsyncResolver(nameservers=[dnsmasq])` (aiodns, c-ares) on the stdlib loop;
- `rose`: `loop.getaddrinfo` with `ROSE_RESOLVER=hickory` (rose/_resolver.py, src/dns.rs).

glibc reads /etc/resolv.conf, and only loopback servers may be asked here: so every sample is a
fresh child process in a mount namespace of its own (`unshare -m`, as tests/test_resolver.py
does) where a generated resolv.conf (`nameserver 127.53.x.y`) and hosts file are bind-mounted
over /etc/resolv.conf and /etc/hosts. dnsmasq answers every name under `bench.test` with
198.51.100.1 (`--address`), from itself, with a TTL of 300 s.

Each child, after one untimed lookup of a name of its own (first-use costs: the resolver's
construction, the first executor thread):

1. cold: `asyncio.gather` of N lookups (AF_INET, SOCK_STREAM: one A query each) of N names no
   process asked before (`r2b-n17.bench.test`: round, loop, index). Wall time (perf_counter),
   CPU time of the process (getrusage, all threads, user and system), and the peak thread count
   (/proc/self/status `Threads:`, sampled by a 1 ms loop timer and once after the gather, while
   executor threads still exist). Every answer is checked (198.51.100.1, the port).
2. warm: sequential `await` lookups of one name the cold phase resolved, in batches of 100
   until 0.2 s have passed: µs per lookup (wall and CPU). No resolver here caches but rose's
   (hickory's cache) and c-ares's (its query cache): glibc and libuv ask dnsmasq every time.

    python benchmarks/dns.py                 # 3 rounds, 1000 names
    python benchmarks/dns.py --rounds 5
    python benchmarks/dns.py --quick         # 1 round, 100 names
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import faulthandler
import gc
import importlib.metadata
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPT = str(Path(__file__).resolve())
sys.path.insert(0, str(HERE))
from micro import STDERR_KEPT, add_loops_arg, log, machine_info, machine_summary, save_results  # noqa: E402
from udp_subprocess import rose_build  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
import dnsmasq  # noqa: E402  (tests/dnsmasq.py: the tests' dnsmasq, on a free loopback address)

LOOPS = ("asyncio", "uvloop", "aiodns", "rose")
EXECUTOR_LOOPS = ("asyncio", "uvloop")
SUBJECT = "rose"
ZONE = "bench.test"
ANSWER = "198.51.100.1"
PORT = 443
NAMES, QUICK_NAMES = 1000, 100
WARM_MIN_S = 0.2  # the warm phase lasts at least this long
WARM_BATCH = 100
CHILD_TIMEOUT_S = 120
HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
# What rose's figures are held against (issue #13, item 4).
TARGETS = {"wall_vs_executor": 0.2, "wall_vs_aiodns": 1.0, "threads": 1, "warm_us": 5.0}


# --------------------------------------------------------------------------------------------
# Child: one loop, one cold gather, one warm series; inside the mount namespace.
# --------------------------------------------------------------------------------------------


def threads_now() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return len(os.listdir("/proc/self/task"))  # pragma: no cover


def cpu_s() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def loop_version(name: str) -> str:
    if name == "asyncio":
        return f"stdlib (Python {platform.python_version()})"
    if name == "aiodns":
        import pycares

        return (
            f"aiohttp {importlib.metadata.version('aiohttp')}, aiodns {importlib.metadata.version('aiodns')},"
            f" pycares {importlib.metadata.version('pycares')} (c-ares {pycares.ARES_VERSION})"
        )
    dist = {"uvloop": "uvloop", "rose": "rose-loop"}[name]
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        import rose

        return getattr(rose, "__version__", "unknown")


def make_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if name == "rose":
        sys.path.insert(0, str(ROOT))  # the in-place build first
        import rose

        return rose.new_event_loop()
    return asyncio.new_event_loop()  # asyncio, and aiodns on it


def make_lookup(name: str, loop, server: str):
    """(lookup coroutine function of a host name, checker of its result)."""
    if name == "aiodns":
        from aiohttp.resolver import AsyncResolver

        resolver = AsyncResolver(nameservers=[server])

        def lookup(host):
            return resolver.resolve(host, PORT, socket.AF_INET)

        def ok(result):
            return bool(result) and all(
                r["host"] == ANSWER and r["port"] == PORT and r["family"] == socket.AF_INET for r in result
            )

        return lookup, ok, resolver

    def lookup(host):
        return loop.getaddrinfo(host, PORT, family=socket.AF_INET, type=socket.SOCK_STREAM)

    def ok(result):
        return bool(result) and all(
            fam == socket.AF_INET and typ == socket.SOCK_STREAM and addr == (ANSWER, PORT)
            for fam, typ, _proto, _canon, addr in result
        )

    return lookup, ok, None


async def child_run(name: str, prefix: str, n: int, server: str) -> dict:
    loop = asyncio.get_running_loop()
    threads_start = threads_now()
    lookup, ok, resolver = make_lookup(name, loop, server)
    first = await lookup(f"{prefix}-first.{ZONE}")
    if not ok(first):
        raise SystemExit(f"wrong answer for the first lookup: {first!r}")

    names = [f"{prefix}-n{i}.{ZONE}" for i in range(n)]
    peak = [threads_now()]

    def sample():
        peak[0] = max(peak[0], threads_now())
        timer[0] = loop.call_later(0.001, sample)

    timer = [loop.call_later(0.001, sample)]
    gc.collect()
    u0, s0 = cpu_s()
    t0 = time.perf_counter()
    results = await asyncio.gather(*(lookup(h) for h in names), return_exceptions=True)
    t1 = time.perf_counter()
    u1, s1 = cpu_s()
    timer[0].cancel()
    peak[0] = max(peak[0], threads_now())
    bad = [(h, r) for h, r in zip(names, results, strict=True) if isinstance(r, BaseException) or not ok(r)]

    # Warm: one name the cold phase resolved, again and again.
    host = names[0]
    expected = await lookup(host)
    for _ in range(WARM_BATCH):
        await lookup(host)
    warm_bad = 0
    calls = 0
    u2, s2 = cpu_s()
    t2 = time.perf_counter()
    while True:
        for _ in range(WARM_BATCH):
            if await lookup(host) != expected:
                warm_bad += 1
        calls += WARM_BATCH
        t3 = time.perf_counter()
        if t3 - t2 >= WARM_MIN_S:
            break
    u3, s3 = cpu_s()
    peak[0] = max(peak[0], threads_now())

    out = {
        "loop": name,
        "names": n,
        "wall_ms": (t1 - t0) * 1e3,
        "cpu_ms": (u1 - u0 + s1 - s0) * 1e3,
        "user_ms": (u1 - u0) * 1e3,
        "sys_ms": (s1 - s0) * 1e3,
        "threads_start": threads_start,
        "threads_peak": peak[0],
        "warm_calls": calls,
        "warm_us": (t3 - t2) / calls * 1e6,
        "warm_cpu_us": (u3 - u2 + s3 - s2) / calls * 1e6,
        "executor_used": getattr(loop, "_default_executor", None) is not None,
    }
    if bad or warm_bad:
        out["error"] = f"{len(bad)} wrong cold answer(s), {warm_bad} wrong warm answer(s)"
        out["bad_examples"] = [[h, repr(r)[:300]] for h, r in bad[:5]]
    if resolver is not None:
        await resolver.close()
    return out


def child_main(args: list[str]) -> None:
    # The Python stacks on stderr if the child crashes, or when the parent, timing out, sends
    # SIGUSR1 (faulthandler.dump_traceback_later would start a thread, and threads are counted).
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # This directory holds benchmarks/http.py, which would shadow the stdlib's http (aiohttp).
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != str(HERE)]
    name = args[0]
    if len(args) == 1:
        loop = make_loop(name)
        cls = f"{type(loop).__module__}.{type(loop).__qualname__}"
        loop.close()
        if name == "aiodns":
            import aiohttp.resolver  # noqa: F401
        result = {"loop": name, "version": loop_version(name), "class": cls}
    else:
        prefix, n, server, core = args[1], int(args[2]), args[3], args[4]
        if core != "-":
            os.sched_setaffinity(0, {int(core)})  # before the loop: its threads inherit it
        loop = make_loop(name)
        asyncio.set_event_loop(loop)
        try:
            result = loop.run_until_complete(child_run(name, prefix, n, server))
        finally:
            loop.close()
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# Parent: dnsmasq, the namespace, interleaved rounds, the report.
# --------------------------------------------------------------------------------------------


class Dnsmasq:
    """dnsmasq on port 53 of a free loopback address, answering *.bench.test; the resolv.conf
    and hosts file that the children see."""

    def __init__(self, core: int | None):
        self.tmp = tempfile.mkdtemp(prefix="rose-dnsbench-")
        self.addr = dnsmasq.free_loopback()
        self.resolv_conf = os.path.join(self.tmp, "resolv.conf")
        self.hosts = os.path.join(self.tmp, "hosts")
        with open(self.resolv_conf, "w") as f:
            f.write(f"nameserver {self.addr}\n")
        with open(self.hosts, "w") as f:
            f.write(HOSTS)
        try:
            self.proc = dnsmasq.start(
                self.addr,
                f"--address=/{ZONE}/{ANSWER}",
                "--local-ttl=300",
                pid_file=os.path.join(self.tmp, "dnsmasq.pid"),
            )
        except dnsmasq.DnsmasqError as e:
            raise SystemExit(str(e)) from None
        if core is not None:
            os.sched_setaffinity(self.proc.pid, {core})

    def version(self) -> str:
        out = subprocess.run([self.proc.args[0], "--version"], capture_output=True, text=True).stdout
        return " ".join(out.split("Copyright")[0].split() or ["dnsmasq"])

    def drops(self) -> int:
        """Datagrams the kernel dropped at dnsmasq's UDP socket (its receive buffer full)."""
        local = f"{int.from_bytes(socket.inet_aton(self.addr), 'little'):08X}:0035"
        with open("/proc/net/udp") as f:
            for line in f:
                fields = line.split()
                if fields[1] == local:
                    return int(fields[-1])
        raise RuntimeError(f"dnsmasq's socket {local} is not in /proc/net/udp")

    def cpu_ticks(self) -> int:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def stop(self):
        dnsmasq.stop(self.proc)
        shutil.rmtree(self.tmp, ignore_errors=True)


def in_namespace(dns: Dnsmasq, args: list[str], env: dict | None = None) -> dict:
    """Run `dns.py --child ARGS` in a mount namespace with the bench's resolv.conf and hosts;
    its JSON, or {"error": ...}."""
    script = (
        f"mount --bind {dns.resolv_conf} /etc/resolv.conf && mount --bind {dns.hosts} /etc/hosts"
        ' && exec "$@"'
    )
    child_env = dict(os.environ, ROSE_RESOLVER="hickory")
    for var in ("PYTHONASYNCIODEBUG", "ROSE_RESOLV_CONF", "ROSE_HOSTS", "LOCALDOMAIN", "RES_OPTIONS", "HOSTALIASES"):
        child_env.pop(var, None)
    child_env.update(env or {})
    cmd = ["unshare", "-m", "--", "sh", "-c", script, "sh", sys.executable, SCRIPT, "--child", *args]
    # unshare and sh exec: the process started is the Python child.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env)
    try:
        stdout, stderr = proc.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # faulthandler: the stacks
        time.sleep(1)
        proc.kill()
        stdout, stderr = proc.communicate()
        return {"error": f"timeout after {CHILD_TIMEOUT_S} s", "stderr": stderr[-STDERR_KEPT:]}
    proc = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    if proc.returncode != 0:
        rc = proc.returncode
        if rc < 0:
            error = f"killed by {signal.strsignal(-rc)}"
        else:
            error = f"exit status {rc}: " + (proc.stderr.strip().splitlines() or ["no output on stderr"])[-1]
        return {"error": error, "stderr": proc.stderr[-STDERR_KEPT:]}
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"unreadable child output: {proc.stdout[-200:]!r}", "stderr": proc.stderr[-STDERR_KEPT:]}
    if proc.stderr.strip():
        out["stderr"] = proc.stderr[-STDERR_KEPT:]
    return out


def preflight(dns: Dnsmasq) -> None:
    """glibc, inside the namespace, resolves the zone through dnsmasq (and nothing else)."""
    code = (
        "import socket, json; print(json.dumps([open('/etc/resolv.conf').read(),"
        f" socket.getaddrinfo('check.{ZONE}', {PORT}, socket.AF_INET, socket.SOCK_STREAM)[0][4]]))"
    )
    script = f"mount --bind {dns.resolv_conf} /etc/resolv.conf && mount --bind {dns.hosts} /etc/hosts" ' && exec "$@"'
    proc = subprocess.run(
        ["unshare", "-m", "--", "sh", "-c", script, "sh", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the namespace check failed: {proc.stderr.strip()}")
    conf, addr = json.loads(proc.stdout)
    if conf.split() != ["nameserver", dns.addr] or tuple(addr) != (ANSWER, PORT):
        raise SystemExit(f"the namespace check failed: resolv.conf {conf!r}, answer {addr!r}")


METRICS = (
    # key, title, format
    ("wall_ms", "cold: wall ms for {n} concurrent lookups", "{:,.1f}"),
    ("cpu_ms", "cold: CPU ms (user + sys, all threads)", "{:,.1f}"),
    ("user_ms", "&nbsp;&nbsp;user", "{:,.1f}"),
    ("sys_ms", "&nbsp;&nbsp;sys", "{:,.1f}"),
    ("threads_peak", "cold: peak thread count", "{:.0f}"),
    ("warm_us", "warm: µs per cached lookup (wall)", "{:,.2f}"),
    ("warm_cpu_us", "warm: CPU µs per cached lookup", "{:,.2f}"),
)


def summarize(samples: list[dict], loops: list[str]) -> dict:
    """{metric: {"median": {loop: v}, "range": {loop: (lo, hi)}, "ratio": {peer: median of
    per-round rose/peer}}}; the thread count's summary is the maximum, not the median."""
    good = [s for s in samples if "error" not in s]
    out = {}
    for key, _, _ in METRICS:
        by_loop = {loop: [s[key] for s in good if s["loop"] == loop] for loop in loops}
        agg = max if key == "threads_peak" else statistics.median
        entry = {
            "median": {loop: agg(v) if v else None for loop, v in by_loop.items()},
            "range": {loop: (min(v), max(v)) if v else None for loop, v in by_loop.items()},
            "ratio": {},
        }
        if SUBJECT in loops:
            for peer in loops:
                if peer == SUBJECT:
                    continue
                ratios = []
                for rnd in sorted({s["round"] for s in good}):
                    a = [s[key] for s in good if s["round"] == rnd and s["loop"] == SUBJECT]
                    b = [s[key] for s in good if s["round"] == rnd and s["loop"] == peer]
                    if a and b and b[0]:
                        ratios.append(a[0] / b[0])
                entry["ratio"][peer] = statistics.median(ratios) if ratios else None
        out[key] = entry
    return out


def verdicts(summary: dict, loops: list[str]) -> list[str]:
    if SUBJECT not in loops:
        return []
    lines = []
    wall = summary["wall_ms"]["ratio"]
    for peer in EXECUTOR_LOOPS:
        r = wall.get(peer)
        if r is not None:
            met = "met" if r <= TARGETS["wall_vs_executor"] else "**not met**"
            lines.append(f"- cold wall time, rose/{peer}: {r:.3f} (target ≤ {TARGETS['wall_vs_executor']}): {met}")
    r = wall.get("aiodns")
    if r is not None:
        met = "met" if r <= TARGETS["wall_vs_aiodns"] else "**not met**"
        lines.append(f"- cold wall time, rose/aiodns: {r:.2f} (target ≤ {TARGETS['wall_vs_aiodns']}): {met}")
    t = summary["threads_peak"]["median"].get(SUBJECT)
    if t is not None:
        met = "met" if t <= TARGETS["threads"] else "**not met**"
        lines.append(f"- rose's peak thread count: {t:.0f} (target {TARGETS['threads']}): {met}")
    w = summary["warm_us"]["median"].get(SUBJECT)
    if w is not None:
        met = "met" if w <= TARGETS["warm_us"] else "**not met**"
        lines.append(f"- rose's cached lookup: {w:.2f} µs (target ≤ {TARGETS['warm_us']:.0f} µs): {met}")
    return lines


def report(result: dict, summary: dict, loops: list[str]) -> str:
    m = result["machine"]
    build = result["rose_build"]
    lines = [
        "# DNS: concurrent getaddrinfo and a cached lookup: latest run",
        "",
        f"- Date: {result['started']}",
        f"- Machine: {machine_summary(m)}; load average (1, 5, 15 min)"
        f" {'/'.join(f'{x:.2f}' for x in m['loadavg_before'])} before the run,"
        f" {'/'.join(f'{x:.2f}' for x in m['loadavg_after'])} after",
        "- Resolvers: " + ", ".join(f"{loop} {result['versions'].get(loop, '?')}" for loop in loops),
        f"- rose from commit {build.get('commit', '?')}"
        + (" with uncommitted changes to its sources" if build.get("dirty") else "")
        + f", extension built {build.get('extension_built', '?')}; ROSE_RESOLVER=hickory",
        f"- Server: {result['dnsmasq']} on a 127.53.x.y loopback address (`--address=/{ZONE}/{ANSWER}`,"
        " TTL 300 s); every client in a mount namespace with its own /etc/resolv.conf and /etc/hosts"
        + ("; dnsmasq pinned to core 0, the client (all its threads) to core 1" if result["pinned"] else "; not pinned"),
        f"- {result['rounds']} round(s) of {result['names']} names; every sample is a fresh process;"
        " loops interleaved within each round; medians (thread count: the maximum);"
        " ratios are medians of per-round ratios, below 1 means rose is better",
        "",
        "| metric | " + " | ".join(loops) + " | " + " | ".join(f"rose/{p}" for p in loops if p != SUBJECT) + " |",
        "| --- | " + " | ".join("---:" for _ in loops) + " | " + " | ".join("---:" for p in loops if p != SUBJECT) + " |",
    ]
    for key, title, fmt in METRICS:
        e = summary[key]
        cells = [fmt.format(e["median"][loop]) if e["median"][loop] is not None else "n/a" for loop in loops]
        ratios = []
        for p in loops:
            if p == SUBJECT:
                continue
            r = e["ratio"].get(p)
            ratios.append("" if key == "threads_peak" or r is None else f"{r:.3f}" if r < 0.1 else f"{r:.2f}")
        lines.append(f"| {title.format(n=result['names'])} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
        if key in ("wall_ms", "warm_us"):
            rng = [
                "–".join(fmt.format(x) for x in e["range"][loop]) if e["range"][loop] else "" for loop in loops
            ]
            lines.append("| &nbsp;&nbsp;min–max over rounds | " + " | ".join(rng) + " | " + " | ".join("" for p in loops if p != SUBJECT) + " |")
    lines += ["", "## Targets (issue #13)", "", *verdicts(summary, loops)]
    notes = []
    for s in result["samples"]:
        if s.get("loop") == SUBJECT and s.get("executor_used"):
            notes.append(f"- round {s['round']}: rose used asyncio's executor path (a fallback of its resolver)")
        if s.get("dnsmasq_drops"):
            notes.append(
                f"- round {s['round']}, {s['loop']}: dnsmasq's socket dropped {s['dnsmasq_drops']} queries"
                " (its receive buffer full); the client's retries are in the wall time"
            )
    errors = [s for s in result["samples"] if "error" in s]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- round {s.get('round')}, {s.get('loop')}: {s['error']}" for s in errors]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help=f"1 round, {QUICK_NAMES} names (smoke test)")
    p.add_argument("--names", type=int, default=None, help=f"concurrent lookups (default {NAMES}; {QUICK_NAMES} with --quick)")
    add_loops_arg(p, LOOPS, "resolvers", note="")
    p.add_argument("--no-pin", action="store_true", help="do not pin dnsmasq to core 0 and the clients to core 1")
    p.add_argument("--child", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.names is None:
        args.names = QUICK_NAMES if args.quick else NAMES
    if args.rounds < 1 or args.names < 1:
        p.error("--rounds and --names must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0
    if os.geteuid() != 0 or not shutil.which("unshare"):
        log("dns.py needs root and unshare(1): each client runs in a mount namespace of its own")
        return 1
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    pin = not args.no_pin and os.cpu_count() >= 2
    dns = Dnsmasq(0 if pin else None)
    samples: list[dict] = []
    try:
        preflight(dns)
        log(f"dnsmasq on {dns.addr}; glibc resolves {ZONE} through it inside the namespace")
        versions, loops = {}, []
        for loop in args.loops:
            probe = in_namespace(dns, [loop])
            if "error" in probe:
                log(f"loop {loop} is missing: {probe['error']}")
                continue
            versions[loop] = probe["version"]
            loops.append(loop)
        if not loops:
            return 1
        for rnd in range(args.rounds):
            for index, loop in enumerate(loops):
                prefix = f"r{rnd}{'abcdefgh'[index]}{random.randrange(1 << 20):05x}"
                ticks, drops = dns.cpu_ticks(), dns.drops()
                sample = in_namespace(dns, [loop, prefix, str(args.names), dns.addr, "1" if pin else "-"])
                sample.update(
                    round=rnd + 1,
                    loop=loop,
                    dnsmasq_cpu_ms=(dns.cpu_ticks() - ticks) * 1e3 / os.sysconf("SC_CLK_TCK"),
                    dnsmasq_drops=dns.drops() - drops,
                )
                samples.append(sample)
                if "error" in sample:
                    log(f"round {rnd + 1}/{args.rounds} {loop:8} ERROR {sample['error']}")
                else:
                    log(
                        f"round {rnd + 1}/{args.rounds} {loop:8} cold {sample['wall_ms']:8.1f} ms wall"
                        f" {sample['cpu_ms']:8.1f} ms CPU  threads {sample['threads_peak']:3}"
                        f"  warm {sample['warm_us']:8.2f} µs  dnsmasq drops {sample['dnsmasq_drops']}" + ("  (executor used)" if sample["executor_used"] and loop == SUBJECT else "")
                    )
        dnsmasq_version = dns.version()
    finally:
        dns.stop()
    summary = summarize(samples, loops)
    machine = dict(machine_info(), loadavg_before=load_before, loadavg_after=os.getloadavg())
    result = {
        "benchmark": "dns",
        "started": started.isoformat(timespec="seconds"),
        "duration_s": (dt.datetime.now(dt.UTC) - started).total_seconds(),
        "rounds": args.rounds,
        "names": args.names,
        "pinned": pin,
        "machine": machine,
        "versions": versions,
        "dnsmasq": dnsmasq_version,
        "rose_build": rose_build(),
        "targets": TARGETS,
        "summary": summary,
        "samples": samples,
    }
    return save_results("dns", started, result, report(result, summary, loops), samples)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
