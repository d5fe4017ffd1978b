"""A dnsmasq of a test's own: port 53 of a free loopback address (127.53.x.y, so parallel runs
do not meet), started in the foreground and stopped by its pid. Used by tests/test_resolver.py
and by benchmarks/dns.py; `make services` installs Debian's dnsmasq-base.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time


class DnsmasqError(RuntimeError):
    """dnsmasq is missing, or exited, or did not start listening in time."""


def free_loopback() -> str:
    """A 127.53.x.y whose port 53 is free for UDP and TCP."""
    for _ in range(50):
        addr = f"127.53.{random.randint(0, 255)}.{random.randint(1, 254)}"
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
                u.bind((addr, 53))
                t.bind((addr, 53))
        except OSError:
            continue
        return addr
    raise DnsmasqError("no free loopback address for port 53")


def binary() -> str:
    path = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not os.path.exists(path):
        raise DnsmasqError("dnsmasq is missing: `make services` installs it (Debian's dnsmasq-base)")
    return path


def start(addr: str, *args: str, pid_file: str = "", quiet: bool = False) -> subprocess.Popen:
    """dnsmasq on `addr` port 53 with no configuration but `args`; returns once it accepts
    TCP connections. Its output is piped (and reported if it exits early) unless `quiet`."""
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    proc = subprocess.Popen(
        [
            binary(),
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--port=53",
            f"--listen-address={addr}",
            "--bind-interfaces",
            "--user=root",
            f"--pid-file={pid_file}",
            *args,
        ],
        stdout=out,
        stderr=out,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                why = "" if quiet else proc.stderr.read().decode()
                raise DnsmasqError(f"dnsmasq exited with {proc.returncode}: {why}")
            with socket.socket() as s:
                if s.connect_ex((addr, 53)) == 0:
                    return proc
            if time.monotonic() > deadline:
                raise DnsmasqError("dnsmasq did not start")
            time.sleep(0.02)
    except BaseException:
        stop(proc)
        raise


def stop(proc: subprocess.Popen) -> None:
    """Stop it by its pid (SIGTERM, then SIGKILL after 10 s) and close its pipes."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
