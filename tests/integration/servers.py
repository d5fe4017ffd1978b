"""Real database servers for the integration tier: PostgreSQL and Redis, on loopback only.

Each server is started once per session from Debian's packages (``make services`` installs
them), in a fresh directory under the system's temp dir, on a free 127.0.0.1 port and on a
unix socket in that directory. Teardown stops the server by its pid and removes the
directory: nothing stays running and nothing stays in /tmp.

Both also speak TLS on loopback, with a certificate for 127.0.0.1 from a throwaway CA
(trustme): PostgreSQL on its one TCP port (the client asks, ``sslmode``), Redis on a second
port. The test modules import the fixtures (``postgres_server``, ``redis_server``) from here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
import trustme

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-4000:]
    except OSError as exc:
        return f"<{path}: {exc}>"


def stop_process(proc, sig=signal.SIGTERM):
    """Stop ``proc`` by its pid: ``sig``, a wait, then SIGKILL if it is still there."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)


def wait_until(ready, proc, what, log):
    """Poll ``ready()`` until it is true; fail with the server's log if it exits or is slow."""
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {proc.returncode} while starting:\n{_read(log)}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {START_TIMEOUT} s:\n{_read(log)}")
        time.sleep(0.05)


def write_tls_files(root, owner=None):
    """A fresh CA and a certificate for 127.0.0.1 signed by it, as files in ``root``:
    (ca.pem, server.crt, server.key), the key readable only by ``owner`` (a pwd entry)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = [os.path.join(root, name) for name in ("ca.pem", "server.crt", "server.key")]
    ca.cert_pem.write_to_path(paths[0])
    cert.cert_chain_pems[0].write_to_path(paths[1])
    cert.private_key_pem.write_to_path(paths[2])
    os.chmod(paths[2], 0o600)
    if owner is not None:
        for path in paths[1:]:
            os.chown(path, owner.pw_uid, owner.pw_gid)
    return paths


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Postgres:
    host: str  # 127.0.0.1
    port: int
    socket_dir: str  # holds .s.PGSQL.<port>
    ca_file: str  # the CA of the server's TLS certificate
    user: str = "postgres"
    database: str = "postgres"

    def dsn(self, unix=False, tls=False):
        """A libpq URI (asyncpg and psycopg both take it): over TCP without TLS, over TCP with
        TLS (the certificate verified against our CA, for 127.0.0.1), or over the unix socket."""
        if unix:
            return (
                f"postgresql://{self.user}@/{self.database}?host={self.socket_dir}&port={self.port}"
                "&sslmode=disable"
            )
        params = f"sslmode=verify-full&sslrootcert={self.ca_file}" if tls else "sslmode=disable"
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}?{params}"


def postgres_bindir():
    """The newest /usr/lib/postgresql/<major>/bin that has initdb and postgres."""
    found = [
        d
        for d in glob.glob("/usr/lib/postgresql/*/bin")
        if os.access(os.path.join(d, "initdb"), os.X_OK)
        and os.access(os.path.join(d, "postgres"), os.X_OK)
    ]
    if not found:
        raise RuntimeError("no /usr/lib/postgresql/*/bin/initdb: run `make services`")
    return max(found, key=lambda d: int(d.split("/")[-2].split(".")[0]))


def _as_postgres_user():
    """subprocess arguments that run a child as the `postgres` user when we are root
    (PostgreSQL refuses to run as root); nothing when we are not."""
    if os.geteuid() != 0:
        return {}, None
    pw = pwd.getpwnam("postgres")  # made by Debian's postgresql package
    for path in ("/", "/usr", "/usr/lib", "/usr/lib/postgresql"):
        if not os.stat(path).st_mode & 0o001:
            raise RuntimeError(f"the postgres user cannot traverse {path} (run `make services`)")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}, pw


def _postgres_ready(bindir, server):
    """The server accepts sessions, on its TCP port and on its unix socket."""
    return all(
        subprocess.call(
            [f"{bindir}/pg_isready", "-q", "-h", host, "-p", str(server.port), "-U", server.user],
            stdin=subprocess.DEVNULL,
        )
        == 0
        for host in (server.host, server.socket_dir)
    )


@contextlib.contextmanager
def run_postgres():
    bindir = postgres_bindir()
    as_user, pw = _as_postgres_user()
    root = tempfile.mkdtemp(prefix="rose-pg-")
    proc = None
    try:
        if pw is not None:
            os.chown(root, pw.pw_uid, pw.pw_gid)
        os.chmod(root, 0o700)
        data = os.path.join(root, "data")
        log = os.path.join(root, "server.log")
        ca_file, cert_file, key_file = write_tls_files(root, pw)
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": root}
        with open(os.path.join(root, "initdb.log"), "w") as out:
            if pw is not None:
                os.fchown(out.fileno(), pw.pw_uid, pw.pw_gid)
            rc = subprocess.call(
                [f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                 "--locale=C", "--no-sync"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=root, timeout=START_TIMEOUT, **as_user,
            )  # fmt: skip
        if rc != 0:
            raise RuntimeError(f"initdb failed ({rc}):\n{_read(os.path.join(root, 'initdb.log'))}")
        for _attempt in range(3):  # another process may take the free port before postgres does
            port = free_port()
            with open(log, "w") as out:
                proc = subprocess.Popen(
                    [f"{bindir}/postgres", "-D", data, "-p", str(port),
                     "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
                     "-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off", "-c", "autovacuum=off",
                     "-c", "shared_buffers=16MB", "-c", "max_connections=40",
                     "-c", "ssl=on", "-c", f"ssl_cert_file={cert_file}",
                     "-c", f"ssl_key_file={key_file}"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                    cwd=root, **as_user,
                )  # fmt: skip
            server = Postgres("127.0.0.1", port, root, ca_file)
            try:
                wait_until(
                    functools.partial(_postgres_ready, bindir, server), proc, "postgres", log
                )
                break
            except RuntimeError:
                if proc.poll() is None or "Address already in use" not in _read(log):
                    raise
        yield server
    finally:
        if proc is not None:
            # SIGINT is PostgreSQL's "fast" shutdown (what pg_ctl stop sends): it ends client
            # sessions; SIGTERM ("smart") would wait for any session a failed test left open.
            stop_process(proc, signal.SIGINT)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    with run_postgres() as server:
        yield server


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Redis:
    host: str  # 127.0.0.1
    port: int
    unix_socket: str
    tls_port: int  # TLS only, the certificate's CA in ca_file
    ca_file: str


def _redis_pings(family, address, tls_ca=None):
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(address)
            if tls_ca is not None:
                s = ssl.create_default_context(cafile=tls_ca).wrap_socket(
                    s, server_hostname=address[0]
                )
            with s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _redis_ready(server):
    return (
        _redis_pings(socket.AF_INET, (server.host, server.port))
        and _redis_pings(socket.AF_UNIX, server.unix_socket)
        and _redis_pings(socket.AF_INET, (server.host, server.tls_port), server.ca_file)
    )


@contextlib.contextmanager
def run_redis():
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("no redis-server: run `make services`")
    root = tempfile.mkdtemp(prefix="rose-redis-")
    proc = None
    try:
        log = os.path.join(root, "server.log")
        ca_file, cert_file, key_file = write_tls_files(root)
        for _attempt in range(3):  # another process may take a free port before redis does
            sock = os.path.join(root, "redis.sock")
            server = Redis("127.0.0.1", free_port(), sock, free_port(), ca_file)
            with open(log, "w") as out:
                proc = subprocess.Popen(
                    [binary, "--port", str(server.port), "--bind", "127.0.0.1",
                     "--unixsocket", server.unix_socket, "--unixsocketperm", "700",
                     "--save", "", "--appendonly", "no", "--dir", root, "--daemonize", "no",
                     "--tls-port", str(server.tls_port), "--tls-cert-file", cert_file,
                     "--tls-key-file", key_file, "--tls-ca-cert-file", ca_file,
                     "--tls-auth-clients", "no"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                )  # fmt: skip
            try:
                wait_until(functools.partial(_redis_ready, server), proc, "redis-server", log)
                break
            except RuntimeError:
                if proc.poll() is None or "Address already in use" not in _read(log):
                    raise
        yield server
    finally:
        if proc is not None:
            stop_process(proc, signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server():
    with run_redis() as server:
        yield server
