//! The DNS part of `getaddrinfo`: one A or AAAA lookup with hickory-resolver, on the loop's own
//! tokio runtime (hickory spawns its connection tasks there), completed through the bridge.
//!
//! Everything glibc does before and after DNS — numeric hosts, /etc/hosts, services, flags,
//! socktype expansion, RFC 3484 ordering, error codes — is rose/_resolver.py's; this module
//! only answers "which addresses does DNS give for this absolute name and type", as glibc's
//! DNS backend would: servers, timeout and attempts, `rotate`, from resolv.conf. The search
//! list and ndots are applied by rose/_resolver.py, in glibc's order (res_nsearch), because
//! glibc searches with A and AAAA together and remembers a NODATA answer along the way.
//!
//! Invariants:
//! - `Resolvers` belongs to a `Reactor`, so a forked child (which builds a new reactor) also
//!   builds a new resolver and re-reads resolv.conf; the parent's is leaked with its runtime.
//! - The resolver is rebuilt whenever resolv.conf's identity (inode, size, mtime) changes; one
//!   `stat` per lookup.
//! - hickory's own cache is used: answers are kept for their TTL, negative answers for at most
//!   `NEGATIVE_TTL`. Its hosts-file support is off (glibc's file semantics are rose's).
//! - No Python object is touched in the lookup future; its output builds the Python tuple
//!   `(status, canonical name or None, [address text])` on the loop thread.

use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::config::{ResolveHosts, ServerOrderingStrategy};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, ResolveError, TokioResolver};
use pyo3::prelude::*;

use crate::bridge::Output;

/// The longest time a negative answer (NXDOMAIN, no data) is served from the cache.
const NEGATIVE_TTL: Duration = Duration::from_secs(2);
const CACHE_SIZE: usize = 1024;

/// What one lookup found. Python maps it to glibc's result or error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// NXDOMAIN for every name of the search list.
    NxDomain,
    /// The name exists, without records of this type.
    NoData,
    /// SERVFAIL: glibc goes on with the search list, and reports TRY_AGAIN at the end.
    ServFail,
    /// Timeout, network error: glibc's TRY_AGAIN, which ends the search.
    Again,
    /// A permanent failure of the query (FORMERR, NOTIMP...): glibc's NO_RECOVERY.
    Fail,
    /// Not a question hickory can answer as glibc would (a name it cannot parse, no usable
    /// resolv.conf): Python asks the system instead.
    Fallback,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NxDomain => "nxdomain",
            Status::NoData => "nodata",
            Status::ServFail => "servfail",
            Status::Again => "again",
            Status::Fail => "fail",
            Status::Fallback => "fallback",
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
struct ConfKey {
    path: String,
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// A reactor's resolver, built on first use and again when resolv.conf changes.
#[derive(Default)]
pub struct Resolvers {
    slot: Mutex<Option<(ConfKey, Arc<TokioResolver>)>>,
}

/// `options rotate` (hickory's parser does not keep it). The last `options` line wins per
/// option, as in glibc; a word anywhere on an options line counts.
fn has_rotate(conf: &str) -> bool {
    conf.lines()
        .map(|l| l.split(['#', ';']).next().unwrap_or(""))
        .filter(|l| l.trim_start().starts_with("options"))
        .any(|l| l.split_whitespace().skip(1).any(|w| w == "rotate"))
}

fn build(conf: &str) -> Option<TokioResolver> {
    let (config, mut opts) = hickory_resolver::system_conf::parse_resolv_conf(conf).ok()?;
    if config.name_servers().is_empty() {
        return None; // glibc would then ask 127.0.0.1; leave that to glibc
    }
    opts.cache_size = CACHE_SIZE;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.negative_max_ttl = Some(NEGATIVE_TTL);
    opts.server_ordering_strategy = if has_rotate(conf) {
        ServerOrderingStrategy::RoundRobin
    } else {
        ServerOrderingStrategy::UserProvidedOrder
    };
    opts.preserve_intermediates = true;
    Some(
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(opts)
            .build(),
    )
}

impl Resolvers {
    /// The resolver for the resolv.conf at `path`, rebuilt if the file changed since; None if
    /// the file cannot be read or names no server.
    pub fn get(&self, path: &str) -> Option<Arc<TokioResolver>> {
        let meta = std::fs::metadata(path).ok()?;
        let key = ConfKey {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        };
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, r)) = slot.as_ref() {
            if *k == key {
                return Some(Arc::clone(r));
            }
        }
        let conf = std::fs::read_to_string(path).ok()?;
        let resolver = Arc::new(build(&conf)?);
        *slot = Some((key, Arc::clone(&resolver)));
        Some(resolver)
    }
}

fn classify(err: &ResolveError) -> Status {
    let Some(proto) = err.proto() else {
        return Status::Again;
    };
    match proto.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => match *response_code {
            ResponseCode::NXDomain => Status::NxDomain,
            ResponseCode::NoError => Status::NoData,
            ResponseCode::ServFail => Status::ServFail,
            // glibc's bookkeeping of a refusal across the search list and both families was
            // not matched in every case (tests/test_resolver.py): the system answers.
            ResponseCode::Refused => Status::Fallback,
            _ => Status::Fail,
        },
        ProtoErrorKind::Timeout | ProtoErrorKind::Io(_) | ProtoErrorKind::Busy => Status::Again,
        _ => Status::Again,
    }
}

fn strip_dot(name: &Name) -> String {
    let mut s = name.to_ascii();
    if s.len() > 1 && s.ends_with('.') {
        s.pop();
    }
    s
}

/// The outcome of one lookup, as plain data.
pub struct Answer {
    pub status: Status,
    pub canonical: Option<String>,
    pub addresses: Vec<String>,
    /// Seconds the answer stays valid (its records' smallest TTL, as hickory's cache counts).
    pub ttl: f64,
}

impl Answer {
    fn status(status: Status) -> Self {
        Self {
            status,
            canonical: None,
            addresses: Vec::new(),
            ttl: 0.0,
        }
    }

    fn into_output(self) -> Output {
        Box::new(move |py: Python<'_>| {
            Ok((self.status.as_str(), self.canonical, self.addresses, self.ttl)
                .into_pyobject(py)?
                .into_any()
                .unbind())
        })
    }
}

/// Look `name` up for `v6` (AAAA) or not (A).
pub async fn lookup(resolver: Option<Arc<TokioResolver>>, name: String, v6: bool) -> Answer {
    let Ok(parsed) = Name::from_ascii(&name) else {
        return Answer::status(Status::Fallback);
    };
    query(resolver, parsed, if v6 { RecordType::AAAA } else { RecordType::A }).await
}

/// One question: the addresses (A, AAAA) or the names (PTR, without their final dot) of the
/// answer, in the answer's order.
async fn query(resolver: Option<Arc<TokioResolver>>, parsed: Name, rtype: RecordType) -> Answer {
    let Some(resolver) = resolver else {
        return Answer::status(Status::Fallback);
    };
    let v6 = rtype == RecordType::AAAA;
    match resolver.lookup(parsed, rtype).await {
        Ok(found) => {
            let mut canonical = None;
            let mut addresses = Vec::new();
            for record in found.records() {
                let addr = match record.data() {
                    RData::A(a) if rtype == RecordType::A => a.0.to_string(),
                    RData::AAAA(a) if v6 => a.0.to_string(),
                    RData::PTR(p) if rtype == RecordType::PTR => strip_dot(&p.0),
                    _ => continue,
                };
                if canonical.is_none() {
                    canonical = Some(strip_dot(record.name()));
                }
                addresses.push(addr);
            }
            if addresses.is_empty() {
                Answer::status(Status::NoData)
            } else {
                let ttl = found
                    .valid_until()
                    .saturating_duration_since(std::time::Instant::now())
                    .as_secs_f64();
                Answer {
                    status: Status::Ok,
                    canonical,
                    addresses,
                    ttl,
                }
            }
        }
        Err(err) => Answer::status(classify(&err)),
    }
}

/// The future the loop spawns for `_dns_lookup`.
pub fn lookup_output(
    resolvers: &Resolvers,
    resolv_conf: &str,
    name: String,
    v6: bool,
) -> impl std::future::Future<Output = Output> + Send + 'static {
    let resolver = resolvers.get(resolv_conf);
    async move { lookup(resolver, name, v6).await.into_output() }
}

/// The future the loop spawns for `_dns_reverse`: the PTR names of `addr` (an IPv4 or IPv6
/// address in text), as `(status, None, [name], ttl)`.
pub fn reverse_output(
    resolvers: &Resolvers,
    resolv_conf: &str,
    addr: &str,
) -> impl std::future::Future<Output = Output> + Send + 'static {
    let resolver = resolvers.get(resolv_conf);
    let name = addr.parse::<std::net::IpAddr>().ok().map(Name::from);
    async move {
        let Some(name) = name else {
            return Answer::status(Status::Fallback).into_output();
        };
        let mut answer = query(resolver, name, RecordType::PTR).await;
        answer.canonical = None;
        answer.into_output()
    }
}

/// The address bytes of an AF_INET or AF_INET6 sockaddr (network order); None for others.
///
/// # Safety
/// `sa` points to a valid sockaddr of `family`'s size.
unsafe fn packed(sa: *const libc::sockaddr, family: i32) -> Option<Vec<u8>> {
    match family {
        libc::AF_INET => {
            // SAFETY: the caller's promise: a sockaddr_in for AF_INET.
            let sin = unsafe { &*(sa as *const libc::sockaddr_in) };
            Some(sin.sin_addr.s_addr.to_ne_bytes().to_vec())
        }
        libc::AF_INET6 => {
            // SAFETY: the caller's promise: a sockaddr_in6 for AF_INET6.
            let sin6 = unsafe { &*(sa as *const libc::sockaddr_in6) };
            Some(sin6.sin6_addr.s6_addr.to_vec())
        }
        _ => None,
    }
}

/// This host's interface addresses: `[(family, packed address, prefix length)]`, from
/// getifaddrs (what glibc's RFC 3484 sort and AI_ADDRCONFIG learn from netlink).
#[pyfunction]
pub fn _interface_addresses(py: Python<'_>) -> PyResult<Vec<(i32, Py<pyo3::types::PyBytes>, u32)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; the list is freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(crate::errors::io_error(std::io::Error::last_os_error()));
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points to a sockaddr of at least its family's size.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        // SAFETY: ifa_addr is non-null and of this family; ifa_netmask, when non-null, is
        // a sockaddr of the same family (getifaddrs fills both for one address).
        let Some(addr) = (unsafe { packed(ifa.ifa_addr, family) }) else {
            continue;
        };
        let mask = if ifa.ifa_netmask.is_null() {
            vec![0; addr.len()]
        } else {
            // SAFETY: as above.
            unsafe { packed(ifa.ifa_netmask, family) }.unwrap_or_default()
        };
        let prefix = mask.iter().map(|b| b.count_ones()).sum();
        out.push((family, pyo3::types::PyBytes::new(py, &addr).unbind(), prefix));
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

// -- What getaddrinfo's answers depend on besides DNS -------------------------------------

/// The environment variables that change a lookup's answer or path (rose/_resolver.py).
const WATCHED_ENV: [&str; 6] = [
    "ROSE_RESOLVER",
    "ROSE_RESOLV_CONF",
    "ROSE_HOSTS",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "HOSTALIASES",
];
/// The files rose/_resolver.py reads (ROSE_RESOLV_CONF and ROSE_HOSTS add theirs).
const WATCHED_FILES: [&str; 4] = ["/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/gai.conf"];
/// How often the files are also compared by `stat`, which sees what inotify cannot (a mount
/// over a file): the longest a changed answer can be served from rose's cache in that case.
const RESTAT_EVERY: Duration = Duration::from_secs(1);

type FileId = Option<(u64, u64, u64, i64, i64)>;

fn file_id(path: &str) -> FileId {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

fn cvt(ret: libc::c_int) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: a non-negative return of socket/inotify_init1/epoll_create1 is a new fd we own.
    (ret >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(ret) })
}

/// inotify on the watched files and their folders, and a netlink socket subscribed to address,
/// link and route changes, both in one epoll set: a lookup asks "did anything change?" with
/// one `epoll_wait(0)`.
struct Watch {
    fork_generation: u64,
    env: Vec<Option<std::ffi::OsString>>,
    paths: Vec<String>,
    ids: Vec<FileId>,
    epoll: Option<std::os::fd::OwnedFd>,
    // Held open for the epoll set, never read: any event makes a new `Watch`.
    #[allow(dead_code)]
    inotify: Option<std::os::fd::OwnedFd>,
    #[allow(dead_code)]
    netlink: Option<std::os::fd::OwnedFd>,
    last_stat: std::time::Instant,
}

fn read_env() -> Vec<Option<std::ffi::OsString>> {
    WATCHED_ENV.iter().map(std::env::var_os).collect()
}

impl Watch {
    fn new() -> Self {
        use std::os::fd::AsRawFd;
        let env = read_env();
        let mut paths: Vec<String> = WATCHED_FILES.iter().map(|p| (*p).to_owned()).collect();
        for extra in &env[1..3] {
            if let Some(p) = extra.as_ref().and_then(|p| p.to_str()) {
                if !p.is_empty() {
                    paths.push(p.to_owned());
                }
            }
        }
        let ids = paths.iter().map(|p| file_id(p)).collect();
        // SAFETY: plain syscalls with constant arguments.
        let epoll = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) });
        // SAFETY: as above, constant flags and no pointers.
        let inotify = cvt(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) });
        if let Some(fd) = &inotify {
            let file_mask =
                libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_CLOSE_WRITE | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;
            let dir_mask = file_mask | libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO;
            for path in &paths {
                let dir = std::path::Path::new(path)
                    .parent()
                    .and_then(|d| d.to_str())
                    .unwrap_or("/");
                for (p, mask) in [(path.as_str(), file_mask), (dir, dir_mask)] {
                    if let Ok(c) = std::ffi::CString::new(p) {
                        // SAFETY: `c` is a valid C string; a failure (missing file) leaves no watch.
                        unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
                    }
                }
            }
        }
        // SAFETY: a plain syscall.
        let netlink = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })
        .filter(|fd| {
            // SAFETY: an all-zero sockaddr_nl is valid; family and groups are then set.
            let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            addr.nl_groups = (libc::RTMGRP_LINK
                | libc::RTMGRP_IPV4_IFADDR
                | libc::RTMGRP_IPV6_IFADDR
                | libc::RTMGRP_IPV4_ROUTE
                | libc::RTMGRP_IPV6_ROUTE) as u32;
            // SAFETY: `addr` is a sockaddr_nl of the length given.
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                ) == 0
            }
        });
        let epoll = epoll.filter(|ep| {
            [&inotify, &netlink].iter().all(|fd| {
                let Some(fd) = fd else { return false };
                let mut ev = libc::epoll_event {
                    events: libc::EPOLLIN as u32,
                    u64: 0,
                };
                // SAFETY: both fds are open; `ev` is a valid epoll_event.
                unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev) == 0 }
            })
        });
        Self {
            fork_generation: crate::reactor::fork_generation(),
            env,
            paths,
            ids,
            epoll,
            inotify,
            netlink,
            last_stat: std::time::Instant::now(),
        }
    }

    /// Whether anything watched changed since the last call (the watches are then renewed by
    /// the caller, which builds a new `Watch`).
    fn changed(&mut self) -> bool {
        use std::os::fd::AsRawFd;
        if self.fork_generation != crate::reactor::fork_generation() {
            return true; // the parent's inotify and netlink fds are shared with it: our own
        }
        if read_env() != self.env {
            return true;
        }
        let Some(ep) = &self.epoll else {
            // No inotify or netlink here: compare by stat each time, and treat interfaces as
            // changed once per RESTAT_EVERY.
            if self.last_stat.elapsed() >= RESTAT_EVERY {
                return true;
            }
            return self.paths.iter().zip(&self.ids).any(|(p, id)| file_id(p) != *id);
        };
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `ep` is an open epoll fd and `ev` room for one event; timeout 0.
        if unsafe { libc::epoll_wait(ep.as_raw_fd(), &mut ev, 1, 0) } != 0 {
            return true;
        }
        if self.last_stat.elapsed() >= RESTAT_EVERY {
            self.last_stat = std::time::Instant::now();
            return self.paths.iter().zip(&self.ids).any(|(p, id)| file_id(p) != *id);
        }
        false
    }
}

static WATCH: Mutex<Option<Watch>> = Mutex::new(None);
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The resolver's generation: a number that changes whenever something getaddrinfo's answer
/// depends on, DNS aside, may have changed: the watched files (inotify, and `stat` once a
/// second), the environment variables of WATCHED_ENV, the host's addresses, links and routes
/// (netlink), or the process (fork). rose/_resolver.py keeps an answer only while the
/// generation it was computed under stays current (and its TTL lasts).
#[pyfunction]
pub fn _dns_generation() -> u64 {
    use std::sync::atomic::Ordering;
    // No Python runs under the lock, and its holder never waits for the GIL.
    let mut slot = WATCH.lock().unwrap_or_else(|e| e.into_inner());
    let changed = match slot.as_mut() {
        None => true,
        Some(w) => w.changed(),
    };
    if changed {
        // Closing a forked parent's fds in the child leaves the parent's watches intact.
        *slot = Some(Watch::new());
        GENERATION.fetch_add(1, Ordering::Relaxed);
    }
    GENERATION.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_is_read_from_options_lines() {
        assert!(has_rotate("nameserver 1.2.3.4\noptions ndots:2 rotate\n"));
        assert!(!has_rotate("nameserver 1.2.3.4\n# options rotate\n"));
        assert!(!has_rotate("search rotate\n"));
    }

    #[test]
    fn no_server_means_no_resolver() {
        assert!(build("search example.test\n").is_none());
        assert!(build("nameserver 127.0.0.1\n").is_some());
    }
}
