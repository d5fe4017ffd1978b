"""`loop.getaddrinfo` without a thread: glibc's getaddrinfo, rebuilt around one DNS question.

What glibc does around DNS is done here, in glibc's order, so the answer is the one
`socket.getaddrinfo` gives on this machine:

1. Arguments, flags, family, service and socktype/proto expansion: `socket.getaddrinfo` itself
   with AI_NUMERICHOST, which never leaves the process. It answers a numeric host (`127.1`,
   `fe80::1%lo`) or a None host outright, raises glibc's error for bad flags, families,
   services and socktypes (glibc checks them before the host), and `EAI_NONAME` for a name.
2. A name (CPython's IDNA encoding, as `socket.getaddrinfo` does it) is looked up in the hosts
   file with nss_files' semantics, then in DNS (src/dns.rs: hickory on the loop's runtime),
   per the nsswitch `hosts:` line `files dns`.
3. Several addresses are sorted as glibc sorts them (RFC 3484 with glibc's default tables and
   the source address the kernel picks for each), then expanded by step 1 per address.

Whatever this cannot answer as glibc would goes to asyncio's own path (the system call in the
default executor): an nsswitch `hosts:` line other than `files dns`, a non-empty
/etc/gai.conf, AI_ALL, AI_ADDRCONFIG on a host without both families configured, hosts-file
entries with scope ids, flags glibc has and this module does not know, and a resolv.conf that
hickory cannot use. So does `ROSE_RESOLVER=system`.

Environment (read at each call): `ROSE_RESOLVER` (`hickory`, the default, or `system`), and,
for tests, `ROSE_RESOLV_CONF` and `ROSE_HOSTS`, other paths for /etc/resolv.conf and
/etc/hosts.

Answers for names are cached (see `cached`): for their DNS TTL, and only while nothing else
they depend on changed (src/dns.rs `_dns_generation`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time

from ._rose import _dns_generation as _generation
from ._rose import _interface_addresses

_monotonic = time.monotonic

__all__ = ("DEFAULT", "cached", "getaddrinfo", "getnameinfo_inline", "mode")

# The resolver used when ROSE_RESOLVER is unset (`system` opts out).
DEFAULT = "hickory"

_AI_PASSIVE = socket.AI_PASSIVE
_AI_CANONNAME = socket.AI_CANONNAME
_AI_NUMERICHOST = socket.AI_NUMERICHOST
_AI_V4MAPPED = socket.AI_V4MAPPED
_AI_ALL = socket.AI_ALL
_AI_ADDRCONFIG = socket.AI_ADDRCONFIG
_AI_NUMERICSERV = socket.AI_NUMERICSERV
# The flags this module reproduces; any other goes to the system.
_KNOWN_FLAGS = _AI_PASSIVE | _AI_CANONNAME | _AI_NUMERICHOST | _AI_V4MAPPED | _AI_ADDRCONFIG | _AI_NUMERICSERV

_EAI_NONAME = socket.EAI_NONAME
_EAI_AGAIN = socket.EAI_AGAIN
_EAI_FAIL = socket.EAI_FAIL
_EAI_NODATA = getattr(socket, "EAI_NODATA", -5)


def mode() -> str:
    value = os.environ.get("ROSE_RESOLVER") or DEFAULT
    return "hickory" if value == "hickory" else "system"


# glibc's gai_strerror texts, which socket.getaddrinfo puts in its gaierror.
_MESSAGES = {
    _EAI_NONAME: "Name or service not known",
    _EAI_AGAIN: "Temporary failure in name resolution",
    _EAI_FAIL: "Non-recoverable failure in name resolution",
    _EAI_NODATA: "No address associated with hostname",
}


def _gaierror(code):
    return socket.gaierror(code, _MESSAGES[code])


class _Fallback(Exception):
    """This question is the system's to answer."""


# -- files, re-read when they change -------------------------------------------------------


class _Watched:
    """A file parsed once per identity (inode, size, mtime), compared by `stat` only when the
    resolver's generation moved since the last use (src/dns.rs watches the file)."""

    def __init__(self, parse):
        self._parse = parse
        self._key = None
        self._value = None
        self._seen = (None, None)

    def get(self, path, generation=None):
        if generation is None:
            generation = _generation()
        if self._seen == (path, generation):
            return self._value
        self._seen = (path, generation)
        try:
            st = os.stat(path)
            key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key = (path, None)
        if key != self._key:
            try:
                with open(path, "rb") as f:
                    data = f.read().decode("latin-1")
            except OSError:
                data = None
            self._value = self._parse(data)
            self._key = key
        return self._value


def _parse_nsswitch(data):
    """(hosts, services): whether the `hosts:` line is exactly `files dns`, and whether the
    `services:` line names only local sources (a lookup of a service name then never leaves
    the machine, so it may run on the loop thread). Without the file glibc's defaults differ
    (`dns [!UNAVAIL=return] files`): neither."""
    if data is None:
        return False, False
    hosts = services = None
    for line in data.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("hosts:"):
            hosts = line[len("hosts:") :].split()
        elif line.startswith("services:"):
            services = line[len("services:") :].split()
    return hosts == ["files", "dns"], services is None or set(services) <= {"files", "db"}


def _parse_gai_conf(data):
    """True when /etc/gai.conf changes nothing (missing or only comments)."""
    if data is None:
        return True
    return all(not line.split("#", 1)[0].strip() for line in data.splitlines())


def _parse_hosts(data):
    """[(family, packed address, text, [names])] in file order, as nss_files reads it; None
    when an entry is beyond this module (a scope id)."""
    entries = []
    if data is None:
        return entries
    for line in data.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        addr = fields[0]
        if "%" in addr:
            return None
        try:
            packed = socket.inet_pton(socket.AF_INET, addr)
            family = socket.AF_INET
        except OSError:
            try:
                packed = socket.inet_pton(socket.AF_INET6, addr)
                family = socket.AF_INET6
            except OSError:
                continue  # nss_files skips lines it cannot parse
        text = socket.inet_ntop(family, packed)
        entries.append((family, packed, text, [n.lower() for n in fields[1:]], fields[1]))
    return entries


_NSSWITCH = _Watched(_parse_nsswitch)
_GAI_CONF = _Watched(_parse_gai_conf)
_HOSTS = _Watched(_parse_hosts)


def _hosts_lookup(path, name, family, generation=None):
    """nss_files: (canonical name, [(family, text)]) of every entry naming `name`, in file
    order; for AF_INET or AF_INET6 only the entries of that family."""
    entries = _HOSTS.get(path, generation)
    if entries is None:
        raise _Fallback
    key = name.lower()
    canon = None
    found = []
    for fam, packed, text, names, first in entries:
        if key not in names:
            continue
        if family == socket.AF_INET and fam == socket.AF_INET6:
            # nss_files, asked for IPv4, reads a v4-mapped line as its IPv4 address and ::1 as
            # 127.0.0.1, and skips other IPv6 lines.
            if packed[:12] == b"\0" * 10 + b"\xff\xff":
                fam, text = socket.AF_INET, socket.inet_ntop(socket.AF_INET, packed[12:])
            elif packed == b"\0" * 15 + b"\1":
                fam, text = socket.AF_INET, "127.0.0.1"
            else:
                continue
        elif family not in (socket.AF_UNSPEC, fam):
            continue
        if canon is None:
            canon = first
        found.append((fam, text))
    return canon, found


# -- RFC 3484 sorting, as glibc does it ------------------------------------------------------

# glibc's default tables (used when /etc/gai.conf sets nothing): (prefix, bits, value).
_LABEL_TEXT = [
    ("::1", 128, 0),
    ("2002::", 16, 2),
    ("::", 96, 3),
    ("::ffff:0:0", 96, 4),
    ("fec0::", 10, 5),
    ("fc00::", 7, 6),
    ("2001::", 32, 7),
    ("::", 0, 1),
]
_PRECEDENCE_TEXT = [
    ("::1", 128, 50),
    ("2002::", 16, 30),
    ("::", 96, 20),
    ("::ffff:0:0", 96, 10),
    ("::", 0, 40),
]
_LABELS = [(int(ipaddress.IPv6Address(p)), b, v) for p, b, v in _LABEL_TEXT]
_PRECEDENCE = [(int(ipaddress.IPv6Address(p)), b, v) for p, b, v in _PRECEDENCE_TEXT]


def _as_v6_int(family, packed):
    if family == socket.AF_INET:
        return (0xFFFF << 32) | int.from_bytes(packed, "big")
    return int.from_bytes(packed, "big")


def _match(table, value):
    for prefix, bits, val in table:
        shift = 128 - bits
        if (prefix >> shift) == (value >> shift):
            return val
    return 0  # pragma: no cover - every table ends with ::/0


def _scope(family, packed):
    if family == socket.AF_INET:
        a = int.from_bytes(packed, "big")
        if a >> 16 == 0xA9FE or a >> 24 == 127:
            return 2
        return 14
    if packed[0] == 0xFF:
        return packed[1] & 0xF
    a = int.from_bytes(packed, "big")
    if a >> 118 == 0x3FA or a == 1:  # fe80::/10, ::1
        return 2
    if a >> 118 == 0x3FB:  # fec0::/10
        return 5
    return 14


def _interfaces(generation):
    """{(family, packed address): (prefixlen, flags)} of this host's addresses (glibc's
    __check_pf list), plus whether it has non-loopback IPv4 and IPv6 addresses. Read again
    when the resolver's generation (the caller's, from `_generation()`) changes: netlink
    reports address changes."""
    global _IFACES
    if _IFACES[0] != generation:
        _IFACES = (generation, _read_interfaces())
    return _IFACES[1]


def _read_interfaces():
    table = {}
    seen4 = seen6 = False
    for family, packed, prefixlen in _interface_addresses():
        table[(family, packed)] = prefixlen
        if family == socket.AF_INET and packed != b"\x7f\x00\x00\x01":
            seen4 = True
        if family == socket.AF_INET6 and packed != socket.inet_pton(socket.AF_INET6, "::1"):
            seen6 = True
    return table, seen4, seen6


def _fls(value):
    """glibc's `fls`: the number of leading zero bits of a 32-bit value."""
    return 32 - value.bit_length()


def _source(family, text, port):
    """The source address the kernel picks to reach `text` (what glibc learns by a UDP
    connect), or None when it is unreachable."""
    try:
        s = socket.socket(family, socket.SOCK_DGRAM)
    except OSError:
        return None
    try:
        s.connect((text, port) if family == socket.AF_INET else (text, port, 0, 0))
        return socket.inet_pton(family, s.getsockname()[0].split("%", 1)[0])
    except OSError:
        return None
    finally:
        s.close()


def _sort(addrs, port, generation):
    """glibc's rfc3484_sort over [(family, text)] (stable: rule 10 keeps the input order)."""
    table, _, _ = _interfaces(generation)
    info = []
    for index, (family, text) in enumerate(addrs):
        packed = socket.inet_pton(family, text)
        src = _source(family, text, port)
        prefixlen = 0
        if src is not None:
            lookup = src
            if family == socket.AF_INET and src[0] == 127:
                lookup = b"\x7f\x00\x00\x01"  # glibc's special case for lo
            prefixlen = table.get((family, lookup), 0)
        info.append((index, family, packed, src, prefixlen))

    def key_cmp(a1, a2):
        i1, f1, d1, s1, p1 = a1
        i2, f2, d2, s2, p2 = a2
        # Rule 1: avoid unusable destinations.
        if (s1 is not None) != (s2 is not None):
            return -1 if s1 is not None else 1
        sc1, sc2 = _scope(f1, d1), _scope(f2, d2)
        if s1 is not None:
            # Rule 2: prefer matching scope.
            m1, m2 = sc1 == _scope(f1, s1), sc2 == _scope(f2, s2)
            if m1 != m2:
                return -1 if m1 else 1
            # (Rules 3 and 4 need address flags no host here sets: deprecated, home.)
            # Rule 5: prefer matching label.
            l1 = _match(_LABELS, _as_v6_int(f1, d1)) == _match(_LABELS, _as_v6_int(f1, s1))
            l2 = _match(_LABELS, _as_v6_int(f2, d2)) == _match(_LABELS, _as_v6_int(f2, s2))
            if l1 != l2:
                return -1 if l1 else 1
        # Rule 6: prefer higher precedence.
        pr1, pr2 = _match(_PRECEDENCE, _as_v6_int(f1, d1)), _match(_PRECEDENCE, _as_v6_int(f2, d2))
        if pr1 != pr2:
            return -1 if pr1 > pr2 else 1
        # (Rule 7, native transport: equal unless an interface is a tunnel.)
        # Rule 8: prefer smaller scope.
        if sc1 != sc2:
            return -1 if sc1 < sc2 else 1
        # Rule 9: longest matching prefix (IPv4: only within the source's subnet).
        if s1 is not None and f1 == f2:
            b1 = b2 = 0
            if f1 == socket.AF_INET:
                dst1, src1 = int.from_bytes(d1, "big"), int.from_bytes(s1, "big")
                dst2, src2 = int.from_bytes(d2, "big"), int.from_bytes(s2, "big")
                # C's `0xffffffff << (32 - prefixlen)`: x86 masks the shift count to 5 bits.
                mask1 = (0xFFFFFFFF << ((32 - p1) & 31)) & 0xFFFFFFFF
                mask2 = (0xFFFFFFFF << ((32 - p2) & 31)) & 0xFFFFFFFF
                if src1 & mask1 == dst1 & mask1:
                    b1 = _fls(dst1 ^ src1)
                if src2 & mask2 == dst2 & mask2:
                    b2 = _fls(dst2 ^ src2)
            else:
                for i in range(0, 16, 4):
                    if d1[i : i + 4] != s1[i : i + 4] or d2[i : i + 4] != s2[i : i + 4]:
                        b1 = _fls(int.from_bytes(d1[i : i + 4], "big") ^ int.from_bytes(s1[i : i + 4], "big"))
                        b2 = _fls(int.from_bytes(d2[i : i + 4], "big") ^ int.from_bytes(s2[i : i + 4], "big"))
                        break
            if b1 != b2:
                return -1 if b1 > b2 else 1
        # Rule 10: leave the order unchanged.
        return -1 if i1 < i2 else 1

    import functools

    info.sort(key=functools.cmp_to_key(key_cmp))
    return [addrs[i[0]] for i in info]


_ENVIRONMENT = (None, None)


def _environment(generation):
    """(whether LOCALDOMAIN, RES_OPTIONS or HOSTALIASES is set, the resolv.conf path, the hosts
    path), read again when the generation moves (src/dns.rs watches these variables)."""
    global _ENVIRONMENT
    if _ENVIRONMENT[0] != generation:
        env = os.environ
        _ENVIRONMENT = (
            generation,
            (
                any(env.get(v) is not None for v in ("LOCALDOMAIN", "RES_OPTIONS", "HOSTALIASES")),
                env.get("ROSE_RESOLV_CONF") or "/etc/resolv.conf",
                env.get("ROSE_HOSTS") or "/etc/hosts",
            ),
        )
    return _ENVIRONMENT[1]


# -- the answer cache ------------------------------------------------------------------------

# Answers of getaddrinfo for names, by its arguments: (generation, expiry on the monotonic
# clock, result). An answer is served while the generation it was computed under is current
# (src/dns.rs `_dns_generation`: files, environment, interfaces, routes, fork) and its DNS
# records' TTL lasts; hosts-file answers last until a generation change. Negative answers are
# not kept here: hickory's cache keeps them for at most 2 seconds (src/dns.rs NEGATIVE_TTL).
_CACHE: dict[tuple, tuple[int, float, tuple]] = {}
_CACHE_SIZE = 1024
_FOREVER = float("inf")
_IFACES = (None, None)


def _remember(key, generation, ttl, result):
    if len(_CACHE) >= _CACHE_SIZE:
        # Drop the oldest entry (dicts keep insertion order).
        del _CACHE[next(iter(_CACHE))]
    _CACHE[key] = (generation, _monotonic() + ttl, tuple(result))


def cached(host, port, family, type, proto, flags):
    """A fresh list of the cached answer to these getaddrinfo arguments, or None."""
    key = (host, port, family, type, proto, flags)
    try:
        entry = _CACHE.get(key)
    except TypeError:
        return None  # an unhashable argument: asyncio's own checks will reject it
    if entry is None:
        return None
    generation, expires, result = entry
    if generation != _generation() or _monotonic() >= expires:
        _CACHE.pop(key, None)
        return None
    return list(result)


# -- getaddrinfo -----------------------------------------------------------------------------


async def _dns(loop, resolv_conf, name, v6):
    status, canon, addrs, ttl = await loop._dns_lookup(name, v6, resolv_conf)
    if status == "fallback":
        raise _Fallback
    return status, canon, addrs, ttl


def _parse_resolv_conf(data):
    """(search list, ndots) as glibc's res_init reads them: the last `search` or `domain`
    line wins; without one, the domain of the host name."""
    search = None
    ndots = 1
    for line in (data or "").splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "search":
            search = fields[1:7]
        elif fields[0] == "domain" and len(fields) > 1:
            search = [fields[1]]
        elif fields[0] == "options":
            for opt in fields[1:]:
                if opt.startswith("ndots:"):
                    try:
                        ndots = min(int(opt[6:]), 15)
                    except ValueError:
                        pass
    if search is None:
        host = socket.gethostname()
        search = [host.split(".", 1)[1]] if "." in host else []
    return [d.rstrip(".") for d in search if d not in (".", "")], ndots


_RESOLV_CONF = _Watched(_parse_resolv_conf)


async def _dns_name(loop, resolv_conf, fqdn, family):
    """One absolute name, A and/or AAAA at once (glibc's T_QUERY_A_AND_AAAA): (statuses,
    canonical name, [(family, text)], seconds the answer stays valid)."""
    name = fqdn + "."
    if family == socket.AF_UNSPEC:
        (s4, c4, a4, t4), (s6, c6, a6, t6) = await asyncio.gather(
            _dns(loop, resolv_conf, name, False), _dns(loop, resolv_conf, name, True)
        )
        results = [(s4, c4, a4, t4, socket.AF_INET), (s6, c6, a6, t6, socket.AF_INET6)]
    else:
        s, c, a, t = await _dns(loop, resolv_conf, name, family == socket.AF_INET6)
        results = [(s, c, a, t, family)]
    found = []
    canon = None
    ttl = _FOREVER
    for status, c, addrs, t, fam in results:
        if status == "ok":
            canon = canon or c
            found.extend((fam, a) for a in addrs)
        # A negative half of the answer is not kept here: only hickory's cache keeps it.
        ttl = min(ttl, t if status == "ok" else 0.0)
    statuses = {r[0] for r in results}
    if found:
        status = "ok"
    elif "again" in statuses or "fail" in statuses:
        status = "again" if "again" in statuses else "fail"
    elif "servfail" in statuses:
        status = "servfail"
    elif "nodata" in statuses:
        status = "nodata"
    else:
        status = "nxdomain"
    return status, canon, found, ttl


_H_ERRNO = {
    "nxdomain": _EAI_NONAME,
    "nodata": _EAI_NODATA,
    "servfail": _EAI_AGAIN,
    "again": _EAI_AGAIN,
    "fail": _EAI_FAIL,
}


async def _search(loop, resolv_conf, name, family, generation):
    """glibc's res_nsearch over the search list, with its error bookkeeping: a name with at
    least ndots dots (or a trailing one) is tried as it is first, and that answer's error is
    the one reported; NXDOMAIN, NODATA and SERVFAIL go on down the list, anything else (a
    timeout) ends it; a name not tried as it is yet is tried last."""
    search, ndots = _RESOLV_CONF.get(resolv_conf, generation)
    dots = name.count(".")
    trailing = name.endswith(".")
    name = name.rstrip(".")
    saved = last = None
    got_nodata = got_servfail = False
    if dots >= ndots or trailing:
        saved, canon, found, ttl = await _dns_name(loop, resolv_conf, name, family)
        if saved == "ok":
            return canon, found, ttl
        if trailing:
            raise _gaierror(_H_ERRNO[saved])
    for domain in search:
        last, canon, found, ttl = await _dns_name(loop, resolv_conf, f"{name}.{domain}", family)
        if last == "ok":
            return canon, found, ttl
        if last == "nodata":
            got_nodata = True
        elif last == "servfail":
            got_servfail = True
        elif last != "nxdomain":
            break
    if saved is None:
        last, canon, found, ttl = await _dns_name(loop, resolv_conf, name, family)
        if last == "ok":
            return canon, found, ttl
    if saved is not None:
        final = saved
    elif got_nodata:
        final = "nodata"
    elif got_servfail:
        final = "servfail"
    else:
        final = last
    raise _gaierror(_H_ERRNO[final])


async def _lookup_family(loop, resolv_conf, hosts, name, family, generation):
    """nss `files dns` for one family (AF_INET or AF_INET6), or both (AF_UNSPEC): (canonical
    name, [(family, text)], seconds it stays valid) or a gaierror."""
    canon, found = _hosts_lookup(hosts, name, family, generation)
    if found:
        return canon, found, _FOREVER
    return await _search(loop, resolv_conf, name, family, generation)


def _expand(addrs, canon, port, type, proto, flags):
    out = []
    sub = _AI_NUMERICHOST | (flags & (_AI_PASSIVE | _AI_NUMERICSERV))
    for family, text in addrs:
        out.extend(socket.getaddrinfo(text, port, family, type, proto, sub))
    if out and flags & _AI_CANONNAME:
        family, type_, proto_, _, sockaddr = out[0]
        out[0] = (family, type_, proto_, canon or "", sockaddr)
    return out


async def getaddrinfo(loop, host, port, family=0, type=0, proto=0, flags=0):
    """`loop.getaddrinfo` on rose's resolver; `_Fallback` when the system must answer."""
    key = (host, port, family, type, proto, flags)
    # Taken before anything is read: a change while this lookup runs makes its answer stale.
    generation = _generation()
    hosts_ok, services_ok = _NSSWITCH.get("/etc/nsswitch.conf", generation)
    if not services_ok and isinstance(port, (str, bytes)) and not port.isdigit():
        raise _Fallback
    # Step 1: everything glibc decides before the host, and numeric or None hosts.
    try:
        return socket.getaddrinfo(host, port, family, type, proto, flags | _AI_NUMERICHOST)
    except socket.gaierror as exc:
        if host is None or flags & _AI_NUMERICHOST or exc.errno != _EAI_NONAME:
            raise
    if flags & ~_KNOWN_FLAGS or family not in (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6):
        raise _Fallback
    name = host.encode("idna") if isinstance(host, str) else bytes(host)
    try:
        name = name.decode("ascii")
    except UnicodeDecodeError:
        raise _Fallback from None
    if not name or name.endswith("..") or "\x00" in name:
        raise _Fallback
    if not hosts_ok or not _GAI_CONF.get("/etc/gai.conf", generation):
        raise _Fallback
    overridden, resolv_conf, hosts = _environment(generation)
    if overridden:
        raise _Fallback  # glibc's own overrides of resolv.conf
    if flags & _AI_ADDRCONFIG:
        _, seen4, seen6 = _interfaces(generation)
        if not (seen4 and seen6):
            raise _Fallback

    # Step 2: the name's addresses.
    if family == socket.AF_INET6 and flags & _AI_V4MAPPED:
        try:
            canon, addrs, ttl = await _lookup_family(loop, resolv_conf, hosts, name, socket.AF_INET6, generation)
        except socket.gaierror:
            canon, addrs, ttl = await _lookup_family(loop, resolv_conf, hosts, name, socket.AF_INET, generation)
            addrs = [(socket.AF_INET6, "::ffff:" + a) for _, a in addrs]
    else:
        canon, addrs, ttl = await _lookup_family(loop, resolv_conf, hosts, name, family, generation)

    # Step 3: glibc's order, then the socktype expansion per address.
    if len(addrs) > 1:
        # glibc connects to each result's sockaddr, with the service's port.
        first = _expand(addrs[:1], canon, port, type, proto, flags)
        addrs = _sort(addrs, first[0][4][1] if first else 0, generation)
    result = _expand(addrs, canon, port, type, proto, flags)
    if ttl > 0:
        _remember(key, generation, ttl, result)
    return result


# The getnameinfo flags `getnameinfo` reproduces; others (NI_NOFQDN, NI_IDN) go to the system.
_NI_KNOWN = socket.NI_NAMEREQD | socket.NI_NUMERICSERV | socket.NI_DGRAM | getattr(socket, "NI_NUMERICSCOPE", 0)


async def getnameinfo(loop, sockaddr, flags):
    """`loop.getnameinfo` of a name (no NI_NUMERICHOST) on rose's resolver, as glibc answers
    it through nss `files dns`: the first hosts-file line with the address gives its first
    name, else the first PTR name DNS gives; with neither, the numeric address, or EAI_NONAME
    under NI_NAMEREQD. `_Fallback` when the system must answer."""
    generation = _generation()
    hosts_ok, services_ok = _NSSWITCH.get("/etc/nsswitch.conf", generation)
    if flags & ~_NI_KNOWN or not hosts_ok or not (services_ok or flags & socket.NI_NUMERICSERV):
        raise _Fallback
    # The numeric answer first: glibc's (and CPython's) checks of the arguments, the service,
    # and the host to fall back on.
    numeric, service = socket.getnameinfo(sockaddr, (flags | socket.NI_NUMERICHOST) & ~socket.NI_NAMEREQD)
    if "%" in numeric or (len(sockaddr) > 3 and sockaddr[3]):
        raise _Fallback  # a scoped address
    family = socket.AF_INET6 if ":" in numeric else socket.AF_INET
    packed = socket.inet_pton(family, numeric)
    if family == socket.AF_INET6 and (
        packed[:12] == b"\0" * 10 + b"\xff\xff" or (packed[:12] == b"\0" * 12 and packed[12:15] != b"\0" * 3)
    ):
        raise _Fallback  # v4-mapped and v4-compatible addresses: glibc's own handling
    overridden, resolv_conf, hosts = _environment(generation)
    if overridden:
        raise _Fallback
    entries = _HOSTS.get(hosts, generation)
    if entries is None:
        raise _Fallback
    for fam, addr, _text, _names, first in entries:
        if fam == family and addr == packed:
            return first, service
    status, _, names, _ttl = await loop._dns_reverse(numeric, resolv_conf)
    if status == "ok" and names:
        return names[0], service
    if status not in ("nxdomain", "nodata"):
        raise _Fallback  # a timeout or a failing server: glibc's error bookkeeping
    if flags & socket.NI_NAMEREQD:
        raise _gaierror(_EAI_NONAME)
    return numeric, service


def getnameinfo_inline(sockaddr, flags):
    """Whether `socket.getnameinfo(sockaddr, flags)` never leaves the machine, so the loop may
    call it at once: a numeric host (NI_NUMERICHOST), and a numeric or local service. Reverse
    DNS stays on asyncio's path (the executor)."""
    if not flags & socket.NI_NUMERICHOST:
        return False
    return bool(flags & socket.NI_NUMERICSERV) or _NSSWITCH.get("/etc/nsswitch.conf")[1]
