"""rose's resolver (rose/_resolver.py, src/dns.rs) against glibc, with a real DNS server.

How glibc is made to see the test's zone: glibc's resolv.conf has no port option, and neither
it nor /etc/hosts can be moved by an environment variable. So each scenario runs in a child
process inside its own mount namespace (`unshare -m`, as root), where the test's resolv.conf
and hosts file are bind-mounted over /etc/resolv.conf and /etc/hosts, and dnsmasq listens on
port 53 of a loopback address of its own (127.53.x.y, picked free, so parallel runs do not
meet). There `socket.getaddrinfo` is glibc reading the test's configuration, so every answer,
DNS names included, is compared with the real thing.

Every scenario runs on both implementations: on stdlib, `loop.getaddrinfo` is glibc in the
executor, which checks the scenario's expectations themselves; on rose it is rose's resolver
(ROSE_RESOLVER=hickory). The child prints JSON; the test compares. Every dnsmasq is stopped
by its pid; nothing listens beyond loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap

import dnsmasq
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ZONE = [
    "--local=/test/",
    # the reverse zones of the test's addresses: an unknown address there is NXDOMAIN
    "--local=/100.51.198.in-addr.arpa/",
    "--local=/8.b.d.0.1.0.0.2.ip6.arpa/",
    "--host-record=www.example.test,198.51.100.7,2001:db8::7",
    "--host-record=v4.example.test,198.51.100.9",
    "--host-record=v6.example.test,2001:db8::9",
    "--host-record=only2.other.test,198.51.100.12",
    "--host-record=loop.example.test,127.0.0.5,::1",
    "--cname=c1.example.test,c2.example.test",
    "--cname=c2.example.test,www.example.test",
    "--txt-record=txt.example.test,no addresses here",
]
# A record set over 512 bytes (a truncated UDP answer: the client must retry over TCP) and a
# round-robin set, from an additional hosts file of dnsmasq's.
BIG = [f"198.51.100.{i} big.example.test" for i in range(100, 160)]
MULTI = ["198.51.100.21 multi.example.test", "198.51.100.3 multi.example.test", "2001:db8::21 multi.example.test"]

HOSTS = """\
127.0.0.1 localhost
127.0.0.1 runsc
127.0.0.1 vm
::1 localhost ip6-localhost
# glibc semantics: first entry gives the canonical name; both families of every line
198.51.100.50 filehost filehost.example.test FileAlias
2001:db8::50 filehost
198.51.100.51 filehost
10.9.8.7 v4file
fd00::77 v6file
198.51.100.60 www.example.test
"""


@pytest.fixture(scope="module")
def dns():
    """dnsmasq on port 53 of a free loopback address, and a silent server (a UDP socket that
    never answers) on another; the test's hosts file and resolv.conf beside them."""
    tmp = tempfile.mkdtemp(prefix="rose-dns-")
    try:
        addr = dnsmasq.free_loopback()
        with open(os.path.join(tmp, "zone.hosts"), "w") as f:
            f.write("\n".join(BIG + MULTI) + "\n")
        proc = dnsmasq.start(
            addr,
            f"--addn-hosts={os.path.join(tmp, 'zone.hosts')}",
            "--local-ttl=60",
            *ZONE,
            pid_file=os.path.join(tmp, "dnsmasq.pid"),
        )
    except dnsmasq.DnsmasqError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.fail(str(e), pytrace=False)
    silent_addr = dnsmasq.free_loopback()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((silent_addr, 53))
    try:
        yield {"addr": addr, "silent": silent_addr, "tmp": tmp}
    finally:
        silent.close()
        dnsmasq.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def resolv_conf(dns, *lines, server=None):
    return "\n".join([f"nameserver {server or dns['addr']}", *lines]) + "\n"


CHILD_PRELUDE = """
import asyncio, json, os, socket, sys, threading, time
IMPL = sys.argv[1]
if IMPL == "rose":
    import rose
    new_loop = rose.new_event_loop
else:
    new_loop = asyncio.new_event_loop

def enc(v):
    if isinstance(v, BaseException):
        return [type(v).__name__, getattr(v, "errno", None), str(v)]
    if isinstance(v, (list, tuple)):
        return [enc(x) for x in v]
    if isinstance(v, int):
        return int(v)
    return v

async def gai(*args, **kwargs):
    loop = asyncio.get_running_loop()
    try:
        return enc(await loop.getaddrinfo(*args, **kwargs))
    except Exception as exc:
        return enc(exc)

def sysgai(*args, **kwargs):
    try:
        return enc(socket.getaddrinfo(*args, **kwargs))
    except Exception as exc:
        return enc(exc)

def run(coro):
    loop = new_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
"""


def in_namespace(impl, dns, body, conf, hosts=HOSTS, env=None, timeout=50, mounts=None, net=False):
    """Run `body` (after CHILD_PRELUDE) on `impl` in a mount namespace where `conf` and `hosts`
    are /etc/resolv.conf and /etc/hosts (and each of `mounts`, path: text, is that file);
    return what it prints, decoded from JSON. `net`: in a network namespace of its own too
    (only a loopback interface, down; no DNS server reachable)."""
    tmp = tempfile.mkdtemp(dir=dns["tmp"])
    files = {"/etc/resolv.conf": conf, "/etc/hosts": hosts, **(mounts or {})}
    paths = {}
    binds = []
    for i, (target, text) in enumerate(files.items()):
        paths[target] = os.path.join(tmp, f"file{i}")
        with open(paths[target], "w") as f:
            f.write(text)
        binds.append(f"mount --bind {paths[target]} {target}")
    paths["child.py"] = os.path.join(tmp, "child.py")
    with open(paths["child.py"], "w") as f:
        f.write(CHILD_PRELUDE + textwrap.dedent(body))
    script = " && ".join(binds) + ' && exec "$@"'
    child_env = dict(os.environ, PYTHONPATH=ROOT, ROSE_RESOLVER="hickory")
    # Debug mode keeps asyncio's executor path on rose (its log line reports the call); the
    # resolver is what these tests are about.
    child_env.pop("PYTHONASYNCIODEBUG", None)
    child_env.pop("ROSE_RESOLV_CONF", None)
    child_env.pop("ROSE_HOSTS", None)
    child_env.update(env or {})
    proc = subprocess.run(
        ["unshare", "-m", *(["-n"] if net else []), "--", "sh", "-c", script, "sh", sys.executable, paths["child.py"], impl],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), paths


# -- differential: loop.getaddrinfo against socket.getaddrinfo, same inputs -----------------

AF_INET, AF_INET6, AF_UNSPEC = int(socket.AF_INET), int(socket.AF_INET6), 0
STREAM, DGRAM, RAW = int(socket.SOCK_STREAM), int(socket.SOCK_DGRAM), int(socket.SOCK_RAW)
F = socket.AddressInfo
CASES = [
    # numeric hosts
    ("127.0.0.1", 80),
    ("127.1", 80),
    ("0x7f.1", "http"),
    ("::1", 0),
    ("fe80::1%lo", 22),
    ("::ffff:1.2.3.4", 1),
    ("1.2.3.4", 0, AF_INET6),
    ("::1", 0, AF_INET),
    (None, 80),
    (None, 80, AF_UNSPEC, STREAM, 0, int(F.AI_PASSIVE)),
    (None, "domain", AF_INET6, 0, 0, int(F.AI_PASSIVE)),
    (b"127.0.0.1", b"80"),
    ("127.0.0.1", None),
    # services, socktypes, protos
    ("localhost", "http"),
    ("localhost", "domain"),
    ("localhost", "nosuchservice"),
    ("localhost", "80", AF_UNSPEC, 0, 0, int(F.AI_NUMERICSERV)),
    ("localhost", "http", AF_UNSPEC, 0, 0, int(F.AI_NUMERICSERV)),
    ("localhost", 80, AF_UNSPEC, DGRAM),
    ("localhost", 80, AF_UNSPEC, RAW),
    ("localhost", 80, AF_UNSPEC, STREAM, 17),
    ("localhost", 80, AF_UNSPEC, 0, 132),
    ("localhost", 80, AF_UNSPEC, 99),
    ("localhost", 80, AF_UNSPEC, DGRAM, 6),
    # families and flags
    ("localhost", 0, AF_INET),
    ("localhost", 0, AF_INET6),
    ("localhost", 0, 12345),
    ("localhost", 0, int(socket.AF_UNIX)),
    ("localhost", 0, AF_UNSPEC, 0, 0, int(F.AI_CANONNAME)),
    ("localhost", 0, AF_UNSPEC, 0, 0, int(F.AI_NUMERICHOST)),
    ("localhost", 0, AF_UNSPEC, 0, 0, 0x10000),
    ("localhost", 0, AF_UNSPEC, 0, 0, int(F.AI_ADDRCONFIG)),
    (None, 0, AF_UNSPEC, 0, 0, int(F.AI_CANONNAME)),
    ("vm", 0, AF_INET6, 0, 0, int(F.AI_V4MAPPED)),
    ("v4file", 0, AF_INET6, 0, 0, int(F.AI_V4MAPPED)),
    ("v4.example.test", 0, AF_INET6, 0, 0, int(F.AI_V4MAPPED)),
    ("runsc", 443, AF_INET, STREAM),
    # the hosts file
    ("filehost", 0),
    ("FILEHOST", 0, AF_UNSPEC, 0, 0, int(F.AI_CANONNAME)),
    ("filealias", 0, AF_INET, 0, 0, int(F.AI_CANONNAME)),
    ("filehost", 0, AF_INET6),
    ("filehost.example.test", 0, AF_INET),
    ("v4file", 0),
    ("v6file", 0),
    ("www.example.test", 0),  # in the hosts file: files before dns
    # IDNA, as CPython encodes it
    ("bücher.example.test", 0),
    ("x" * 64 + ".example.test", 0),
    ("", 0),
    # DNS: A/AAAA, CNAME chains, NXDOMAIN, NODATA, search, ndots, truncation, ordering
    ("c1.example.test", 80, AF_UNSPEC, STREAM, 0, int(F.AI_CANONNAME)),
    ("c2.example.test", 80, AF_INET6, STREAM),
    ("nxdomain.example.test", 0),
    ("nxdomain.example.test", 0, AF_INET),
    ("v4.example.test", 0),
    ("v4.example.test", 0, AF_INET6),
    ("v6.example.test", 0, AF_INET),
    ("v6.example.test", 0),
    ("txt.example.test", 0),
    ("txt.example.test", 0, AF_INET),
    ("v4", 0, AF_UNSPEC, STREAM, 0, int(F.AI_CANONNAME)),
    ("only2", 0, AF_INET, STREAM),
    ("v4.example.test.", 0, AF_INET, STREAM),
    ("v4.example", 0, AF_INET, STREAM),  # REFUSED as-is, NXDOMAIN searched: the system answers
    ("v4.example", 0, AF_UNSPEC, STREAM),
    ("nosuch", 0, AF_INET, STREAM),
    ("v4.example.", 0, AF_INET, STREAM),
    ("big.example.test", 0, AF_INET, STREAM),
    ("multi.example.test", 0, AF_UNSPEC, STREAM),
    ("loop.example.test", 0, AF_UNSPEC, STREAM),
]

DIFF_BODY = """
cases = CASES
async def main():
    out = []
    for case in cases:
        args, kwargs = case[:2], dict(zip(["family", "type", "proto", "flags"], case[2:]))
        out.append([await gai(*args, **kwargs), sysgai(*args, **kwargs)])
    return out
print(json.dumps(run(main())))
"""


def _run_cases(impl, dns, cases, conf):
    body = DIFF_BODY.replace("CASES", repr(cases))
    return in_namespace(impl, dns, body, conf)[0]


# dnsmasq rotates the records of a set on every answer, so two lookups of these names see two
# orders: they are compared as multisets, with the sequence of families kept (which glibc's
# RFC 3484 sort decides).
ROTATED = {"big.example.test", "multi.example.test"}


def _same(case, got, want):
    if case[0] in ROTATED and isinstance(got, list) and isinstance(want, list) and got and got[0][0] != "gaierror":
        return sorted(map(repr, got)) == sorted(map(repr, want)) and [g[0] for g in got] == [w[0] for w in want]
    return got == want


def test_differential_against_glibc(impl, dns):
    """Every case, loop.getaddrinfo == socket.getaddrinfo (glibc), value or error."""
    conf = resolv_conf(dns, "search example.test other.test", "options ndots:1 timeout:2 attempts:2")
    results = _run_cases(impl, dns, CASES, conf)
    mismatches = [
        (case, got, want) for case, (got, want) in zip(CASES, results, strict=True) if not _same(case, got, want)
    ]
    assert not mismatches, "\n".join(f"{c!r}:\n  loop  {g!r}\n  glibc {w!r}" for c, g, w in mismatches)


def test_zone_data_seen(impl, dns):
    """The differential above is not vacuous: the zone is answered (from dnsmasq, over TCP for
    the truncated set)."""
    conf = resolv_conf(dns, "search example.test other.test")
    cases = [("c1.example.test", 0, AF_INET, STREAM, 0, int(F.AI_CANONNAME)), ("big.example.test", 0, AF_INET, STREAM)]
    (cname, _), (big, _) = _run_cases(impl, dns, cases, conf)
    assert cname == [[AF_INET, STREAM, 6, "www.example.test", ["198.51.100.7", 0]]]
    assert sorted(r[4][0] for r in big) == sorted(line.split()[0] for line in BIG)


def test_ndots_and_search_order(impl, dns):
    """ndots:2: a name with fewer dots tries the search list first."""
    conf = resolv_conf(dns, "search other.test example.test", "options ndots:3")
    cases = [("v4", 0, AF_INET, STREAM), ("www.example.test", 0, AF_INET6, STREAM), ("only2", 0)]
    results = _run_cases(impl, dns, cases, conf)
    assert [g for g, _ in results] == [w for _, w in results]
    assert results[0][0] == [[AF_INET, STREAM, 6, "", ["198.51.100.9", 0]]]


def test_silent_server_is_eai_again_in_bounded_time(impl, dns):
    conf = resolv_conf(dns, "options timeout:1 attempts:1", server=dns["silent"])
    body = """
    async def main():
        t0 = time.monotonic()
        r = await gai("v4.example.test", 0, family=socket.AF_INET)
        return r, time.monotonic() - t0
    print(json.dumps(run(main())))
    """
    (result, elapsed), _ = in_namespace(impl, dns, body, conf)
    assert result == ["gaierror", socket.EAI_AGAIN, "[Errno -3] Temporary failure in name resolution"]
    assert elapsed < 10


def test_cancel_pending_lookup(impl, dns):
    """A lookup cancelled while the server is silent ends at once; the loop goes on."""
    conf = resolv_conf(dns, "options timeout:5 attempts:1", server=dns["silent"])
    body = """
    async def main():
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(loop.getaddrinfo("v4.example.test", 0))
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        task.cancel()
        try:
            await task
            outcome = "finished"
        except asyncio.CancelledError:
            outcome = "cancelled"
        after = await gai("127.0.0.1", 1, type=socket.SOCK_STREAM)
        return outcome, time.monotonic() - t0 < 1, after
    print(json.dumps(run(main())))
    """
    (outcome, prompt, after), _ = in_namespace(impl, dns, body, conf)
    assert (outcome, prompt) == ("cancelled", True)
    assert after == [[AF_INET, STREAM, 6, "", ["127.0.0.1", 1]]]


def test_fork_child_resolves(impl, dns):
    """A child forked after a lookup resolves on a fresh resolver (and sees a new hosts file)."""
    conf = resolv_conf(dns, "search example.test")
    body = """
    before = run(gai("v4", 0, family=socket.AF_INET, type=socket.SOCK_STREAM))
    with open("/etc/hosts", "a") as f:
        f.write("198.51.100.99 added-after-fork\\n")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        out = []
        t = threading.Thread(target=lambda: out.append([
            run(gai("www", 0, family=socket.AF_INET6, type=socket.SOCK_STREAM)),
            run(gai("added-after-fork", 0, family=socket.AF_INET, type=socket.SOCK_STREAM)),
        ]))
        t.start(); t.join()
        os.write(w, json.dumps(out[0]).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.waitpid(pid, 0)
    print(json.dumps([before, json.loads(data)]))
    """
    (before, (www6, added)), _ = in_namespace(impl, dns, body, conf)
    assert before == [[AF_INET, STREAM, 6, "", ["198.51.100.9", 0]]]
    assert www6 == [[AF_INET6, STREAM, 6, "", ["2001:db8::7", 0, 0, 0]]]
    assert added == [[AF_INET, STREAM, 6, "", ["198.51.100.99", 0]]]


def test_files_changed_are_reread(impl, dns):
    """A changed hosts file and a changed resolv.conf (another search domain) are noticed by
    the next lookup, with no pause: answers rose keeps in its cache (a DNS answer for its TTL,
    a hosts-file answer) are not served once their files change."""
    conf = resolv_conf(dns, "search example.test")
    other = resolv_conf(dns, "search other.test")
    body = f"""
    loop = new_loop()
    q = lambda n: loop.run_until_complete(gai(n, 0, family=socket.AF_INET, type=socket.SOCK_STREAM))
    before = [q(n) for n in ("only2", "newname", "www", "v4file", "v4file")]
    with open("/etc/resolv.conf", "w") as f:
        f.write({other!r})
    with open("/etc/hosts", "a") as f:
        f.write("198.51.100.98 newname\\n10.9.8.8 v4file\\n")
    after = [q(n) for n in ("only2", "newname", "www", "v4file")]
    loop.close()
    print(json.dumps([before, after]))
    """
    (before, after), _ = in_namespace(impl, dns, body, conf)
    assert before[0][0] == before[1][0] == "gaierror"
    assert before[2] == [[AF_INET, STREAM, 6, "", ["198.51.100.7", 0]]]
    assert before[3] == before[4] == [[AF_INET, STREAM, 6, "", ["10.9.8.7", 0]]]
    assert after[0] == [[AF_INET, STREAM, 6, "", ["198.51.100.12", 0]]]
    assert after[1] == [[AF_INET, STREAM, 6, "", ["198.51.100.98", 0]]]
    assert after[2][0] == "gaierror"
    assert sorted(a[4][0] for a in after[3]) == ["10.9.8.7", "10.9.8.8"]


def test_interface_changes_are_seen(impl, dns):
    """glibc orders several addresses by the routes and source addresses the host has now
    (RFC 3484): when interfaces or routes change, the next lookup follows, although rose keeps
    the earlier answer in its cache. In a network namespace of its own, whose loopback goes up
    and then gets an address of a documentation network."""
    hosts = "198.51.100.200 dual\n2001:db8::5 dual\n127.0.0.1 dual\n::1 dual\n"
    body = """
    import subprocess
    loop = new_loop()
    q = lambda: loop.run_until_complete(gai("dual", 80, type=socket.SOCK_STREAM))
    w = lambda: sysgai("dual", 80, type=socket.SOCK_STREAM)
    got = [(q(), q(), w())]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    got.append((q(), q(), w()))
    subprocess.run(["ip", "addr", "add", "198.51.100.1/24", "dev", "lo"], check=True)
    got.append((q(), q(), w()))
    loop.close()
    print(json.dumps(got))
    """
    got, _ = in_namespace(impl, dns, body, resolv_conf(dns), hosts=hosts, net=True)
    for first, again, want in got:
        assert first == again == want
    orders = [[a[4][0] for a in want] for _, _, want in got]
    assert orders[0] != orders[1] != orders[2], orders


def test_many_concurrent_lookups(impl, dns):
    """1000 concurrent lookups of distinct names (most NXDOMAIN) all answer as glibc does."""
    conf = resolv_conf(dns, "options timeout:2 attempts:2")
    body = """
    names = ["www.example.test", "v4.example.test"] + [f"n{i}.example.test" for i in range(998)]
    async def main():
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        got = await asyncio.gather(*(gai(n, 0, family=socket.AF_INET, type=socket.SOCK_STREAM) for n in names))
        return got, time.monotonic() - t0, threading.active_count()
    got, elapsed, threads = run(main())
    want = [sysgai(n, 0, family=socket.AF_INET, type=socket.SOCK_STREAM) for n in names]
    print(json.dumps([got == want, elapsed, threads, got[:2]]))
    """
    (same, elapsed, threads, first), _ = in_namespace(impl, dns, body, conf, timeout=55)
    assert same
    assert first[1] == [[AF_INET, STREAM, 6, "", ["198.51.100.9", 0]]]
    if impl == "rose":
        assert threads == 1  # no executor thread was started


def test_resolv_conf_and_hosts_overrides(impl, dns):
    """ROSE_RESOLV_CONF and ROSE_HOSTS (rose-only, for tests) move rose's files; stdlib's
    glibc keeps /etc's (here: a silent server and no such host)."""
    conf = resolv_conf(dns, "options timeout:1 attempts:1", server=dns["silent"])
    other = os.path.join(dns["tmp"], "override.conf")
    with open(other, "w") as f:
        f.write(resolv_conf(dns))
    hosts = os.path.join(dns["tmp"], "override.hosts")
    with open(hosts, "w") as f:
        f.write("198.51.100.77 overridden\n")
    body = """
    print(json.dumps([run(gai("v4.example.test", 0, family=socket.AF_INET, type=socket.SOCK_STREAM)),
                      run(gai("overridden", 0, family=socket.AF_INET, type=socket.SOCK_STREAM))]))
    """
    env = {"ROSE_RESOLV_CONF": other, "ROSE_HOSTS": hosts}
    (v4, overridden), _ = in_namespace(impl, dns, body, conf, env=env)
    if impl == "rose":
        assert v4 == [[AF_INET, STREAM, 6, "", ["198.51.100.9", 0]]]
        assert overridden == [[AF_INET, STREAM, 6, "", ["198.51.100.77", 0]]]
    else:
        assert v4[:2] == ["gaierror", socket.EAI_AGAIN]
        assert overridden[:2] == ["gaierror", socket.EAI_AGAIN]


def test_system_opt_out_and_nsswitch_fallback(impl, dns):
    """ROSE_RESOLVER=system, and an nsswitch `hosts:` line with other sources, take the
    system's path (glibc): same answers, through the executor."""
    conf = resolv_conf(dns)
    body = """
    async def main():
        r = await gai("v4.example.test", 0, family=socket.AF_INET, type=socket.SOCK_STREAM)
        return r, threading.active_count() > 1
    print(json.dumps(run(main())))
    """
    (r, threaded), _ = in_namespace(impl, dns, body, conf, env={"ROSE_RESOLVER": "system"})
    assert r == [[AF_INET, STREAM, 6, "", ["198.51.100.9", 0]]]
    assert threaded

    nss = "hosts: files myhostname dns\n"
    (r, threaded), _ = in_namespace(impl, dns, body, conf, mounts={"/etc/nsswitch.conf": nss})
    assert r == [[AF_INET, STREAM, 6, "", ["198.51.100.9", 0]]]
    assert threaded


@pytest.fixture
def own_dns(dns):
    """A dnsmasq of this test's own (60 s TTLs), which the test may stop; stopped by pid."""
    addr = dnsmasq.free_loopback()
    proc = dnsmasq.start(addr, "--local-ttl=60", *ZONE, quiet=True)
    try:
        yield addr, proc.pid
    finally:
        dnsmasq.stop(proc)


def test_cache_keeps_answers_for_their_ttl(impl, dns, own_dns):
    """rose caches a positive answer for its TTL (60 s here): with the server gone, the name
    still resolves; a negative answer is kept at most 2 s. glibc has no cache: on stdlib both
    lookups after the stop time out (EAI_AGAIN), which is what the stdlib run asserts."""
    addr, pid = own_dns
    conf = resolv_conf(dns, "options timeout:1 attempts:1", server=addr)
    body = f"""
    loop = new_loop()
    q = lambda n: loop.run_until_complete(gai(n, 0, family=socket.AF_INET, type=socket.SOCK_STREAM))
    first, nx = q("v4.example.test"), q("nothere.example.test")
    os.kill({pid}, 15)
    time.sleep(2.5)
    after, nx_after = q("v4.example.test"), q("nothere.example.test")
    loop.close()
    print(json.dumps([first, nx, after, nx_after]))
    """
    (first, nx, after, nx_after), _ = in_namespace(impl, dns, body, conf)
    assert first == [[AF_INET, STREAM, 6, "", ["198.51.100.9", 0]]]
    assert nx[:2] == ["gaierror", socket.EAI_NONAME]
    assert nx_after[:2] == ["gaierror", socket.EAI_AGAIN]
    if impl == "rose":
        assert after == first
    else:
        assert after[:2] == ["gaierror", socket.EAI_AGAIN]


NI = socket.NI_NUMERICHOST
NAMEINFO_CASES = [
    (("127.0.0.1", 80), NI),
    (("127.0.0.1", 80), NI | socket.NI_NUMERICSERV),
    (("127.0.0.1", 53), NI | socket.NI_DGRAM),
    (("::1", 443, 0, 0), NI),
    (("fe80::1", 22, 0, 1), NI),
    (("fe80::1", 22, 0, 1), NI | getattr(socket, "NI_NUMERICSCOPE", 0)),
    (("198.51.100.7", 65000), NI),
    (("127.0.0.1", 80), NI | socket.NI_NAMEREQD),
    (("not an address", 80), NI),
    (("127.0.0.1",), NI),
    # reverse lookups: the hosts file, then DNS (dnsmasq's PTR records of its host records)
    (("127.0.0.1", 80), 0),
    (("198.51.100.9", 80), socket.NI_NUMERICSERV),
    (("198.51.100.7", 443), 0),
    (("2001:db8::9", 53, 0, 0), socket.NI_DGRAM),
    (("::1", 22, 0, 0), 0),
    (("198.51.100.50", 80), socket.NI_NAMEREQD),
    (("fd00::77", 80, 0, 0), 0),
    (("10.9.8.7", 80), socket.NI_NUMERICSERV | socket.NI_NAMEREQD),
    (("198.51.100.12", 80), socket.NI_NAMEREQD),
    (("198.51.100.200", 80), 0),
    (("198.51.100.200", 80), socket.NI_NAMEREQD),
    (("2001:db8::77", 80, 0, 0), 0),
    (("2001:db8::77", 80, 0, 0), socket.NI_NAMEREQD),
    (("::ffff:198.51.100.9", 80, 0, 0), 0),
    (("fe80::1", 22, 0, 1), 0),
    (("198.51.100.9", 80), socket.NI_NOFQDN),
]


def test_getnameinfo_against_glibc(impl, dns):
    """loop.getnameinfo == socket.getnameinfo: the numeric ones inline on rose, the reverse
    lookups (hosts file, then PTR with hickory) with no thread; scoped and v4-mapped
    addresses and NI_NOFQDN on asyncio's path."""
    body = """
    cases = CASES
    async def main():
        loop = asyncio.get_running_loop()
        out = []
        for sockaddr, flags in cases:
            try:
                got = enc(await loop.getnameinfo(sockaddr, flags))
            except Exception as exc:
                got = enc(exc)
            try:
                want = enc(socket.getnameinfo(sockaddr, flags))
            except Exception as exc:
                want = enc(exc)
            out.append([got, want])
        return out
    own = [c for c in cases if not c[1] & socket.NI_NOFQDN and c[0][0] != "fe80::1" and "ffff" not in c[0][0]]
    async def threads():
        loop = asyncio.get_running_loop()
        for sockaddr, flags in own:
            try:
                await loop.getnameinfo(sockaddr, flags)
            except Exception:
                pass  # compared with glibc above
        return threading.active_count()
    print(json.dumps([run(main()), run(threads())]))
    """.replace("CASES", repr(NAMEINFO_CASES))
    (results, threads), _ = in_namespace(impl, dns, body, resolv_conf(dns))
    mismatches = [(c, g, w) for c, (g, w) in zip(NAMEINFO_CASES, results, strict=True) if g != w]
    assert not mismatches, mismatches
    assert results[0][1] == ["127.0.0.1", "http"]
    assert results[NAMEINFO_CASES.index((("198.51.100.9", 80), socket.NI_NUMERICSERV))][1] == ["v4.example.test", "80"]
    if impl == "rose":
        assert threads == 1  # no executor thread was started


@pytest.mark.parametrize("rotate", [False, True], ids=["in-order", "rotate"])
def test_second_server_answers(impl, dns, rotate):
    """A silent first server, a working second one (`options rotate` or not): every lookup
    gets the zone's answer, as from glibc, within its timeouts."""
    conf = (
        f"nameserver {dns['silent']}\nnameserver {dns['addr']}\n"
        + ("options timeout:1 attempts:2 rotate\n" if rotate else "options timeout:1 attempts:2\n")
    )
    body = """
    async def main():
        names = ["v4.example.test", "www.example.test", "nxdomain.example.test"]
        got = [await gai(n, 0, family=socket.AF_INET, type=socket.SOCK_STREAM) for n in names]
        return got, [sysgai(n, 0, family=socket.AF_INET, type=socket.SOCK_STREAM) for n in names]
    print(json.dumps(run(main())))
    """
    (got, want), _ = in_namespace(impl, dns, body, conf)
    assert got == want
    assert got[0] == [[AF_INET, STREAM, 6, "", ["198.51.100.9", 0]]]
