#!/usr/bin/env python3
"""TLS echo-server benchmark of asyncio event loops: stdlib asyncio, uvloop, rloop and rose.

echo.py's `protocol` mode with TLS: the server is ``loop.create_server`` with ``ssl=`` (an
``ssl.SSLContext`` holding a certificate made at startup with ``trustme``) and an
``asyncio.Protocol`` whose ``data_received`` writes the data back. Every sample is one fresh
server process pinned to core 0 and one run of the Rust load generator (``loadgen --tls-ca``:
tokio and rustls, verifying the server's certificate against the test CA) pinned to core 1:
100 connections, one 1 KiB message in flight on each, a fixed total number of messages. The
TLS handshakes happen while the load generator connects, before the warm-up: the timed run is
the record layer only. The headline is the server's CPU time per request, user and system
apart (``getrusage`` between the ``start`` and ``stop`` commands, as in echo.py); requests/s
are reported too. A loop without TLS support (rloop) is reported as n/a.

The server child, its control protocol, the load generator's build and the report's
formatting are echo.py's (imported, not copied).
"""

from __future__ import annotations

import argparse
import functools
import datetime as dt
import json
import os
import platform
import shutil
import signal
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = str(Path(__file__).resolve())
# micro.py puts the repository root on sys.path (the in-place rose first) when imported.
sys.path.insert(0, str(HERE))
import echo  # noqa: E402
from echo import (  # noqa: E402
    CLIENT_CPU,
    CONNS,
    CONTROL_TIMEOUT_S,
    LOADGEN_BIN,
    LOADGEN_DIR,
    LOADGEN_TARGET,
    METRICS,
    RUN_TIMEOUT_S,
    SERVER_CPU,
    STARTUP_TIMEOUT_S,
    WARMUP_PER_CONN,
    Child,
    ChildError,
    EchoProtocol,
    build_loadgen,
    describe,
    expect,
    fmt_num,
    fmt_ratio,
    fmt_size,
    probe,
    table,
    tokio_version,
)
from micro import (  # noqa: E402
    SUBJECT,
    add_loops_arg,
    log,
    machine_info,
    machine_summary,
    split_probes,
    save_results,
)
from idle_rss import build_line, rose_extension  # noqa: E402

SIZE = 1024  # bytes per message
MESSAGES = 60_000  # timed messages per sample
QUICK_MESSAGES = 3_000
ROUNDS = 3
MODE = "tls"  # the name under which the TLS server registers with echo.py's server child
CA_FILE = "ca.pem"  # in the certificate directory: the test CA's certificate
SERVER_FILE = "server.pem"  # ... and the server's key and certificate chain
SERVER_NAME = "127.0.0.1"  # the identity in the server's certificate (an IP address SAN)
REFERENCES = ("uvloop", "asyncio", "rloop")  # rose/ref ratios, in this order


# --------------------------------------------------------------------------------------------
# Server child: echo.py's child_server, with a TLS starter and a TLS preflight.
# --------------------------------------------------------------------------------------------


def make_certs(directory: Path) -> dict:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost (trustme)."""
    try:
        import trustme
    except ImportError as exc:
        raise SystemExit(f"tls_echo.py needs trustme: pip install trustme ({exc})") from exc
    ca = trustme.CA()
    leaf = ca.issue_cert(SERVER_NAME, "localhost")
    ca.cert_pem.write_to_path(str(directory / CA_FILE))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(directory / SERVER_FILE))
    return {
        "generator": f"trustme {getattr(trustme, '__version__', '?')}",
        "key_type": "ECDSA P-256 (trustme's default)",
        "identities": [SERVER_NAME, "localhost"],
    }


def tls_preflight(client_ctx: ssl.SSLContext):
    """echo.py's preflight over TLS: the client does a handshake first."""

    def wrap(raw):
        return client_ctx.wrap_socket(raw, server_hostname=SERVER_NAME)

    return functools.partial(echo.preflight, wrap=wrap)


def child_server(loop_name: str, cert_dir: str) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(os.path.join(cert_dir, SERVER_FILE))
    client_ctx = ssl.create_default_context(cafile=os.path.join(cert_dir, CA_FILE))

    async def start_tls(loop, unix_path, errors):
        return await loop.create_server(EchoProtocol, "127.0.0.1", 0, backlog=1024, ssl=server_ctx)

    # echo.child_server looks both up by name when it runs: a TLS mode without copying it.
    echo.STARTERS[MODE] = start_tls
    echo.preflight = tls_preflight(client_ctx)
    echo.child_server(loop_name, MODE, None)


# --------------------------------------------------------------------------------------------
# Parent: one sample, interleaved rounds.
# --------------------------------------------------------------------------------------------


def minor_faults(pid: int) -> int | None:
    """The process's minor page faults so far (/proc/<pid>/stat, field 10)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])
    except (OSError, IndexError, ValueError):
        return None


def run_sample(loop: str, messages: int, cert_dir: Path, args) -> dict:
    """One server process, one loadgen run (echo.py's run_sample with TLS). Returns the
    measurements, or {"missing": reason}, or {"error": ..., "stderr": ...}."""
    server_cmd = [sys.executable, SCRIPT, "--server", loop, str(cert_dir)]
    stage = "server start"
    with Child(f"{loop} server", server_cmd, SERVER_CPU) as server:
        try:
            ready = server.read_json(STARTUP_TIMEOUT_S)
            if ready.get("event") == "missing":
                return {"missing": ready["reason"]}
            if ready.get("event") != "ready":
                return {"error": ready.get("error", str(ready)), "stderr": server.stderr()}
            client_cmd = [
                str(LOADGEN_BIN),
                "--tcp", f"127.0.0.1:{ready['port']}",
                "--tls-ca", str(cert_dir / CA_FILE),
                "--tls-name", SERVER_NAME,
                "--conns", str(args.conns),
                "--size", str(SIZE),
                "--messages", str(messages),
                "--warmup", str(WARMUP_PER_CONN * args.conns),
                "--wait",
                "--timeout", str(STARTUP_TIMEOUT_S + RUN_TIMEOUT_S),
            ]  # fmt: skip
            stage = "loadgen connect, handshakes and warm-up"
            with Child("loadgen", client_cmd, CLIENT_CPU) as client:
                expect(client.read_json(STARTUP_TIMEOUT_S), "ready", "loadgen")
                stage = "start"
                server.send("start")
                expect(server.read_json(CONTROL_TIMEOUT_S), "started", "server")
                faults0 = minor_faults(ready["pid"])
                stage = "timed run"
                client.send("go")
                result = client.read_json(RUN_TIMEOUT_S + 10)
                stage = "stop"
                server.send("stop")
                usage = expect(server.read_json(CONTROL_TIMEOUT_S), "usage", "server")
                faults1 = minor_faults(ready["pid"])
                if result.get("event") != "result":
                    raise ChildError(f"loadgen: {result.get('error', result)}", client.stderr())
        except ChildError as exc:
            if server.proc.poll() is None:
                # The server's Python stacks (faulthandler) go to its stderr, kept below.
                server.proc.send_signal(signal.SIGUSR1)
                time.sleep(0.3)
            stderr = "\n".join(filter(None, [exc.stderr, server.stderr()]))
            return {"error": f"{stage}: {exc}", "stderr": stderr}
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
        "faults": (faults1 - faults0) / n if faults0 is not None and faults1 is not None else None,
        "tls": result.get("tls"),
        "version": ready.get("version"),
        "class": ready.get("class"),
        "server_usage": usage,
        "loadgen": result,
    }
    if usage.get("errors"):
        sample["error"] = "server errors during the run: " + "; ".join(usage["errors"][:5])
    return sample


def run_rounds(loops: list[str], messages: int, cert_dir: Path, args) -> list[dict]:
    """Round after round, every loop in turn; a loop found lacking TLS is not tried again."""
    samples = []
    lacking: dict[str, str] = {}
    for r in range(1, args.rounds + 1):
        for loop in loops:
            if loop in lacking:
                sample = {"missing": lacking[loop], "skipped": True}
            else:
                sample = run_sample(loop, messages, cert_dir, args)
                if "missing" in sample:
                    lacking[loop] = sample["missing"]
            samples.append({"round": r, "loop": loop, "mode": MODE, "size": SIZE, **sample})
            log(f"[round {r}/{args.rounds}] {loop:<8} {describe(sample)}")
    return samples


# --------------------------------------------------------------------------------------------
# Summary and report.
# --------------------------------------------------------------------------------------------

RATIO_METRICS = {"cpu_us": "CPU", "user_us": "user CPU", "sys_us": "sys CPU", "rps": "req/s"}


def summarize(samples: list[dict], loops: list[str], rounds: list[int]) -> dict:
    """Per loop the median of every metric (and its min-max), its missing reason or error
    count; and per reference the medians of the per-round ratios of rose to it."""
    ok = {(s["round"], s["loop"]): s for s in samples if "error" not in s and "missing" not in s}
    per_loop = {}
    for loop in loops:
        got = [ok[(r, loop)] for r in rounds if (r, loop) in ok]
        entry: dict = {m: statistics.median(s[m] for s in got) if got else None for m in METRICS}
        faults = [s["faults"] for s in got if s.get("faults") is not None]
        entry["faults"] = statistics.median(faults) if faults else None
        entry["cpu_us_range"] = (
            [min(s["cpu_us"] for s in got), max(s["cpu_us"] for s in got)] if got else None
        )
        entry["samples"] = len(got)
        entry["errors"] = sum("error" in s for s in samples if s["loop"] == loop)
        missing = next(
            (s["missing"] for s in samples if s["loop"] == loop and "missing" in s), None
        )
        if missing:
            entry["missing"] = missing
        per_loop[loop] = entry
    ratios: dict[str, dict] = {}
    for ref in REFERENCES:
        if ref == SUBJECT or ref not in loops or SUBJECT not in loops:
            continue
        ratios[ref] = {}
        for metric in RATIO_METRICS:
            paired = [
                ok[(r, SUBJECT)][metric] / ok[(r, ref)][metric]
                for r in rounds
                if (r, SUBJECT) in ok and (r, ref) in ok and ok[(r, ref)][metric] > 0
            ]
            ratios[ref][metric] = statistics.median(paired) if paired else None
    return {"loops": per_loop, "ratios": ratios}


def markdown_report(result: dict, summary: dict, loops: list[str]) -> str:
    machine = result["machine"]
    versions = ", ".join(f"{name} {v}" for name, v in result["versions"].items())
    missing = "; ".join(f"{name}: {why}" for name, why in result["missing_loops"].items())
    build = result["rose_build"]
    suites = sorted(
        {json.dumps(s["tls"], sort_keys=True) for s in result["samples"] if s.get("tls")}
    )
    negotiated = (
        ", ".join(f"{t['version']} {t['suite']}" for t in map(json.loads, suites)) or "unknown"
    )
    lines = [
        "# TLS echo benchmark: latest run",
        "",
        f"- Date: {result['date']}",
        f"- Machine: {machine_summary(machine)}, {machine['openssl']}; load average (1 min)"
        f" before the run {machine['loadavg_before'][0]:.2f}, after"
        f" {machine['loadavg_after'][0]:.2f}",
        f"- Loops: {versions}",
    ]
    lines += build_line(build, result.get("extension_changed", False))
    if missing:
        lines.append(f"- Missing loops: {missing}")
    quick = " (--quick: a smoke test, the numbers mean little)" if result["quick"] else ""
    lines += [
        f"- {result['rounds']} round(s){quick}, interleaved; server pinned to core {SERVER_CPU},"
        f" loadgen (Rust: tokio, rustls {result['rustls']} with ring) to core {CLIENT_CPU};"
        " TCP over loopback (127.0.0.1, TCP_NODELAY)",
        f"- Server: `loop.create_server(..., ssl=ctx)` with an `asyncio.Protocol` whose"
        f" `data_received` writes the data back; `ctx` is"
        " `ssl.create_default_context(Purpose.CLIENT_AUTH)` holding a certificate"
        f" ({result['cert']['key_type']}) from {result['cert']['generator']}; negotiated:"
        f" {negotiated}",
        f"- {result['conns']} connections (handshakes done before the warm-up, not timed), one"
        f" {fmt_size(SIZE)} message in flight on each; {result['messages']:,} timed messages per"
        f" sample after {WARMUP_PER_CONN} untimed round trips per connection",
        "- CPU is the server process's own `getrusage` (user and system apart) over the timed run,"
        " divided by the requests; figures are medians over rounds (each column its own median,"
        " so user + sys may differ a little from total). The kernel splits user from system time"
        " by sampling at each tick (their sum is exact): read the split as an estimate. `server"
        " busy` is the server's CPU time over the run's wall time",
        f"- Ratios are medians of per-round ratios. CPU ratios: below 1, {SUBJECT} uses less CPU"
        f" per request. req/s ratio: above 1, {SUBJECT} serves more",
        "",
        f"## Headline: {SUBJECT} against its peers",
        "",
    ]
    rows = [["ratio", *[f"{title}" for title in RATIO_METRICS.values()]]]
    for ref in REFERENCES:
        if ref == SUBJECT or ref not in loops:
            continue
        e = summary["loops"][ref]
        if ref not in summary["ratios"] or e["samples"] == 0:
            why = "no TLS" if e.get("missing") else "no sample"
            rows.append([f"{SUBJECT}/{ref}", *[f"n/a ({why})"] * len(RATIO_METRICS)])
            continue
        rows.append(
            [f"{SUBJECT}/{ref}", *[fmt_ratio(summary["ratios"][ref][m]) for m in RATIO_METRICS]]
        )
    lines += table(rows, ["---", *["---:"] * len(RATIO_METRICS)])
    lines += ["", f"## Per loop: {fmt_size(SIZE)} messages", ""]
    rows = [
        ["loop", "user µs/req", "sys µs/req", "total µs/req (min–max)", "req/s", "p50 ms",
         "p99 ms", "server busy", "page faults/req"]
    ]  # fmt: skip
    for loop in loops:
        e = summary["loops"][loop]
        name = f"**{loop}**" if loop == SUBJECT else loop
        if e["samples"] == 0:
            why = f"n/a: {e['missing']}" if e.get("missing") else f"error ({e['errors']} failed)"
            rows.append([name, why, *[""] * 7])
            continue
        lo, hi = e["cpu_us_range"]
        rows.append(
            [
                name, fmt_num(e["user_us"]), fmt_num(e["sys_us"]),
                f"{fmt_num(e['cpu_us'])} ({fmt_num(lo)}–{fmt_num(hi)})", fmt_num(e["rps"]),
                fmt_num(e["p50_ms"], 2), fmt_num(e["p99_ms"], 2), f"{e['busy']:.0%}",
                fmt_num(e["faults"], 2),
            ]
        )  # fmt: skip
    lines += table(rows, ["---", *["---:"] * 8])
    lines += [
        "",
        "`page faults/req`: the server's minor page faults over the timed run"
        " (`/proc/<pid>/stat`) per request. A TLS read of asyncio's and uvloop's SSL protocols"
        " with a plain `Protocol` asks for a 256 KiB `bytes` (`SSLObject.read(max_size)`);"
        " depending on glibc's dynamic mmap threshold, which a process settles early in its life"
        " (for uvloop it differed between runs here), that is a heap block or an"
        " `mmap`/`mremap`/`munmap` per read, with page faults: about 1 fault per request or more"
        " means a loop was on the `mmap` path, and its system time (tens of µs per request) is"
        " glibc's rather than the loop's. Setting"
        " `MALLOC_TOP_PAD_` or `MALLOC_MMAP_THRESHOLD_` turns the dynamic threshold off; in a"
        " trial here that put every loop on that path.",
    ]
    errors = [s for s in result["samples"] if "error" in s]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- round {s['round']}, {s['loop']}: {s['error']}" for s in errors]
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
    p.add_argument("--quick", action="store_true", help="1 round, few messages: a smoke test")
    add_loops_arg(p)
    p.add_argument(
        "--messages",
        type=int,
        default=None,
        help=f"timed messages per sample (default {MESSAGES:,})",
    )
    p.add_argument("--conns", type=int, default=CONNS, help=f"connections (default {CONNS})")
    p.add_argument(
        "--no-build",
        action="store_true",
        help="do not run cargo build for the loadgen (its binary must exist)",
    )
    p.add_argument("--server", nargs=2, metavar="ARG", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else ROUNDS
    if args.messages is None:
        args.messages = QUICK_MESSAGES if args.quick else MESSAGES
    if args.rounds < 1 or args.conns < 1 or args.messages < args.conns:
        p.error("--rounds and --conns must be positive, --messages at least --conns")
    return args


def crate_version(name: str) -> str:
    """A crate's version from the loadgen's Cargo.lock."""
    try:
        text = (LOADGEN_DIR / "Cargo.lock").read_text()
    except OSError:
        return "unknown"
    for block in text.split("[[package]]"):
        if f'name = "{name}"\n' in block:
            for line in block.splitlines():
                if line.startswith("version"):
                    return line.split('"')[1]
    return "unknown"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.server:
        child_server(args.server[0], args.server[1])
        return 0
    if max(SERVER_CPU, CLIENT_CPU) >= len(os.sched_getaffinity(0)):
        log(f"warning: fewer than {max(SERVER_CPU, CLIENT_CPU) + 1} cores: pinning will fail")
    if not args.no_build and not build_loadgen():
        return 1
    if not LOADGEN_BIN.exists():
        log(
            f"{LOADGEN_BIN} is missing: cargo build --release --manifest-path"
            f" {LOADGEN_DIR / 'Cargo.toml'} --target-dir {LOADGEN_TARGET}"
        )
        return 1
    probes = {loop: probe(loop) for loop in args.loops}
    loops, missing = split_probes(probes)
    if not loops:
        return 1

    cert_dir = Path(tempfile.mkdtemp(prefix="rose-tls-echo-"))
    try:
        cert = make_certs(cert_dir)
        load_before = os.getloadavg()
        if load_before[0] > 0.5:
            log(f"note: load average {load_before[0]:.2f} before the run: other work shares cores")
        build = rose_extension() if SUBJECT in loops else {}
        started = dt.datetime.now(dt.UTC)
        t0 = time.monotonic()
        try:
            samples = run_rounds(loops, args.messages, cert_dir, args)
        except KeyboardInterrupt:
            log("interrupted")
            return 130
    finally:
        shutil.rmtree(cert_dir, ignore_errors=True)
    rounds = list(range(1, args.rounds + 1))
    summary = summarize(samples, loops, rounds)
    build_after = rose_extension() if SUBJECT in loops else {}
    changed = build.get("extension_built") != build_after.get("extension_built")
    if changed:
        log(f"warning: {SUBJECT}'s extension module changed during the run")
    versions = {
        loop: next((s["version"] for s in samples if s["loop"] == loop and s.get("version")),
                   probes[loop]["version"])
        for loop in loops
    }  # fmt: skip
    result = {
        "benchmark": "tls_echo",
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - t0, 1),
        "machine": {
            **machine_info(),
            "openssl": ssl.OPENSSL_VERSION,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "kernel": platform.release(),
        },
        "versions": versions,
        "loop_classes": {loop: probes[loop]["class"] for loop in loops},
        "missing_loops": missing,
        "rose_build": build,
        "extension_changed": changed,
        "tokio": tokio_version(),
        "rustls": crate_version("rustls"),
        "cert": cert,
        "rounds": args.rounds,
        "quick": args.quick,
        "conns": args.conns,
        "size": SIZE,
        "messages": args.messages,
        "warmup_per_conn": WARMUP_PER_CONN,
        "server_cpu": SERVER_CPU,
        "client_cpu": CLIENT_CPU,
        "samples": samples,
        "summary": summary,
    }
    return save_results(
        "tls_echo", started, result, markdown_report(result, summary, loops), samples
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
