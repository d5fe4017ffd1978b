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
}

impl Answer {
    fn status(status: Status) -> Self {
        Self {
            status,
            canonical: None,
            addresses: Vec::new(),
        }
    }

    fn into_output(self) -> Output {
        Box::new(move |py: Python<'_>| {
            Ok((self.status.as_str(), self.canonical, self.addresses)
                .into_pyobject(py)?
                .into_any()
                .unbind())
        })
    }
}

/// Look `name` up for `v6` (AAAA) or not (A).
pub async fn lookup(resolver: Option<Arc<TokioResolver>>, name: String, v6: bool) -> Answer {
    let Some(resolver) = resolver else {
        return Answer::status(Status::Fallback);
    };
    let Ok(parsed) = Name::from_ascii(&name) else {
        return Answer::status(Status::Fallback);
    };
    let rtype = if v6 { RecordType::AAAA } else { RecordType::A };
    match resolver.lookup(parsed, rtype).await {
        Ok(found) => {
            let mut canonical = None;
            let mut addresses = Vec::new();
            for record in found.records() {
                let addr = match record.data() {
                    RData::A(a) if !v6 => a.0.to_string(),
                    RData::AAAA(a) if v6 => a.0.to_string(),
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
                Answer {
                    status: Status::Ok,
                    canonical,
                    addresses,
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
        let (addr, mask): (Vec<u8>, Vec<u8>) = match family {
            libc::AF_INET => {
                // SAFETY: family AF_INET: the sockaddr is a sockaddr_in (the mask too, if any).
                let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                let m = if ifa.ifa_netmask.is_null() {
                    vec![0; 4]
                } else {
                    // SAFETY: as above, for the netmask of an AF_INET address.
                    unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in) }
                        .sin_addr
                        .s_addr
                        .to_ne_bytes()
                        .to_vec()
                };
                (a.sin_addr.s_addr.to_ne_bytes().to_vec(), m)
            }
            libc::AF_INET6 => {
                // SAFETY: family AF_INET6: the sockaddr is a sockaddr_in6 (the mask too, if any).
                let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                let m = if ifa.ifa_netmask.is_null() {
                    vec![0; 16]
                } else {
                    // SAFETY: as above, for the netmask of an AF_INET6 address.
                    unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in6) }
                        .sin6_addr
                        .s6_addr
                        .to_vec()
                };
                (a.sin6_addr.s6_addr.to_vec(), m)
            }
            _ => continue,
        };
        let prefix = mask.iter().map(|b| b.count_ones()).sum();
        out.push((family, pyo3::types::PyBytes::new(py, &addr).unbind(), prefix));
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
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
