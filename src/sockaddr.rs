//! Socket addresses as Python's socket module gives them (its `makesockaddr`): the tuples of
//! IPv4 and IPv6 peers (`inet_ntop` text plus glibc's scope suffix), and AF_UNIX paths (a `str`
//! in the file system encoding, `bytes` for Linux's abstract namespace, `''` for an unnamed
//! socket). Used by the datagram transport for each sender and by accepted connections for
//! their peer and local names, so that no Python socket object is needed to answer.
//!
//! Pure conversions: no state, no syscall except `if_indextoname` for a scoped IPv6 address.

use std::net::Ipv6Addr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

extern "C" {
    // POSIX; the libc crate does not declare it.
    fn inet_ntop(
        af: libc::c_int,
        src: *const libc::c_void,
        dst: *mut libc::c_char,
        size: libc::socklen_t,
    ) -> *const libc::c_char;
}

/// `inet_ntop` of an IPv4 or IPv6 address (the text Python's socket module gives).
fn ntop(family: i32, src: *const libc::c_void) -> Option<String> {
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: `src` points to an in_addr/in6_addr matching `family`; `buf` is large enough for
    // either (INET6_ADDRSTRLEN is 46).
    let p = unsafe { inet_ntop(family, src, buf.as_mut_ptr(), buf.len() as libc::socklen_t) };
    if p.is_null() {
        return None;
    }
    // SAFETY: inet_ntop wrote a NUL-terminated string into `buf`.
    let text = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    text.to_str().ok().map(str::to_owned)
}

/// "a.b.c.d" without libc's `inet_ntop`, which formats IPv4 with `sprintf` (measured: a
/// quarter of the user time of receiving a datagram). Returns the buffer and its length.
fn dotted_quad(octets: [u8; 4]) -> ([u8; 15], usize) {
    let mut out = [0u8; 15];
    let mut n = 0;
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            out[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            out[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            out[n] = b'0' + (o / 10) % 10;
            n += 1;
        }
        out[n] = b'0' + o % 10;
        n += 1;
    }
    (out, n)
}

/// The `%scope` suffix glibc's `getnameinfo(NI_NUMERICHOST)` gives a scoped IPv6 address (and
/// so Python's socket module): the interface name for link-local addresses, else the number.
fn scope_suffix(ip: &Ipv6Addr, scope_id: u32) -> String {
    let o = ip.octets();
    let link_local = (o[0] == 0xfe && o[1] & 0xc0 == 0x80) || (o[0] == 0xff && o[1] & 0x0f == 0x02);
    if link_local {
        let mut name = [0 as libc::c_char; libc::IF_NAMESIZE + 1];
        // SAFETY: `name` has room for IF_NAMESIZE bytes and a NUL, as if_indextoname requires.
        if !unsafe { libc::if_indextoname(scope_id, name.as_mut_ptr()) }.is_null() {
            // SAFETY: if_indextoname wrote a NUL-terminated name.
            let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
            return format!("%{}", name.to_string_lossy());
        }
    }
    format!("%{scope_id}")
}

/// asyncio's address tuple for an IPv4/IPv6 sockaddr that `recvfrom` filled (what Python's
/// socket module makes of it).
pub(crate) fn addr_to_py<'py>(py: Python<'py>, storage: &libc::sockaddr_storage) -> PyResult<Bound<'py, PyAny>> {
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sa = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let host = dotted_quad(sa.sin_addr.s_addr.to_ne_bytes());
            let host = PyString::new(
                py,
                std::str::from_utf8(&host.0[..host.1]).expect("ASCII digits and dots"),
            );
            Ok((host, u16::from_be(sa.sin_port)).into_pyobject(py)?.into_any())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sa = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let mut host = ntop(libc::AF_INET6, (&sa.sin6_addr as *const libc::in6_addr).cast()).unwrap_or_default();
            if sa.sin6_scope_id != 0 {
                host.push_str(&scope_suffix(&Ipv6Addr::from(sa.sin6_addr.s6_addr), sa.sin6_scope_id));
            }
            let port = u16::from_be(sa.sin6_port);
            let tuple = (host, port, u32::from_be(sa.sin6_flowinfo), sa.sin6_scope_id);
            Ok(tuple.into_pyobject(py)?.into_any())
        }
        _ => Ok(py.None().into_bound(py)),
    }
}

/// What Python's socket module makes of the sockaddr in `raw` (its first `raw.len()` bytes,
/// as `accept`/`getsockname` filled them): `addr_to_py` for IPv4 and IPv6, a path for
/// AF_UNIX, `None` for an empty address, and `(family, bytes)` for any other family.
pub(crate) fn sockaddr_to_py<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    if raw.len() < std::mem::size_of::<libc::sa_family_t>() {
        return Ok(py.None().into_bound(py));
    }
    // SAFETY: an all-zero sockaddr_storage is valid; `raw` is at most its size (it came from
    // one), so the copy stays inside it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = raw.len().min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: both regions are at least `len` bytes and do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(raw.as_ptr(), (&mut storage as *mut libc::sockaddr_storage).cast(), len) };
    match storage.ss_family as i32 {
        libc::AF_INET | libc::AF_INET6 => addr_to_py(py, &storage),
        libc::AF_UNIX => {
            let path = &raw[std::mem::size_of::<libc::sa_family_t>()..];
            if path.first() == Some(&0) {
                // Linux's abstract namespace: every byte of the name, as bytes.
                return Ok(PyBytes::new(py, path).into_any());
            }
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            Ok(fs_decode(py, &path[..end])?.into_any())
        }
        family => Ok((family, PyBytes::new(py, &raw[2..])).into_pyobject(py)?.into_any()),
    }
}

/// A sockaddr kept small: an IPv4 address and port inline (16 bytes in all, no allocation),
/// any other address boxed. What a connection keeps of its peer's address until someone asks.
pub(crate) enum RawAddr {
    None,
    /// The address and the port, in network order, as the sockaddr_in holds them.
    V4([u8; 4], u16),
    Other(Box<OtherAddr>),
}

pub(crate) struct OtherAddr {
    len: u8,
    bytes: [u8; std::mem::size_of::<libc::sockaddr_un>()],
}

impl RawAddr {
    /// The first `raw.len()` bytes of a sockaddr, as the kernel filled them.
    pub(crate) fn from_raw(raw: &[u8]) -> Self {
        let family_len = std::mem::size_of::<libc::sa_family_t>();
        if raw.len() < family_len {
            return RawAddr::None;
        }
        let family = libc::sa_family_t::from_ne_bytes([raw[0], raw[1]]);
        if i32::from(family) == libc::AF_INET && raw.len() >= std::mem::size_of::<libc::sockaddr_in>() {
            // SAFETY: the family and the length say `raw` holds a sockaddr_in; read unaligned.
            let sa = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast::<libc::sockaddr_in>()) };
            return RawAddr::V4(sa.sin_addr.s_addr.to_ne_bytes(), sa.sin_port);
        }
        let mut other = OtherAddr {
            len: 0,
            bytes: [0; std::mem::size_of::<libc::sockaddr_un>()],
        };
        let len = raw.len().min(other.bytes.len());
        other.bytes[..len].copy_from_slice(&raw[..len]);
        other.len = len as u8;
        RawAddr::Other(Box::new(other))
    }

    /// The peer of the connected socket `fd` (`getpeername`), or None if it has none.
    pub(crate) fn peer_of(fd: libc::c_int) -> Self {
        // SAFETY: an all-zero sockaddr_storage is a valid value to be filled in.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `storage` and `len` describe a buffer of the size given.
        if unsafe { libc::getpeername(fd, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len) } != 0 {
            return RawAddr::None;
        }
        let len = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: getpeername filled the first `len` bytes of `storage`.
        Self::from_raw(unsafe {
            std::slice::from_raw_parts((&storage as *const libc::sockaddr_storage).cast::<u8>(), len)
        })
    }

    /// The address as Python's socket module gives it (`sockaddr_to_py`); None for none.
    pub(crate) fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            RawAddr::None => Ok(py.None().into_bound(py)),
            RawAddr::V4(addr, port) => {
                // SAFETY: an all-zero sockaddr_storage is valid; a sockaddr_in fits in it.
                let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                // SAFETY: as above: the storage is large and aligned enough for a sockaddr_in.
                let sa = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_port = *port;
                sa.sin_addr.s_addr = u32::from_ne_bytes(*addr);
                addr_to_py(py, &storage)
            }
            RawAddr::Other(other) => sockaddr_to_py(py, &other.bytes[..other.len as usize]),
        }
    }
}

/// `os.fsdecode` of a path (the file system encoding, surrogateescape), as the socket module
/// decodes AF_UNIX paths.
fn fs_decode<'py>(py: Python<'py>, path: &[u8]) -> PyResult<Bound<'py, PyString>> {
    // SAFETY: the pointer and length describe `path`; the call returns a new reference or NULL
    // with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyUnicode_DecodeFSDefaultAndSize(path.as_ptr().cast(), path.len() as ffi::Py_ssize_t),
        )
    }
    .map(|s| s.cast_into::<PyString>().expect("a str"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn dotted_quads_match_the_std_formatting() {
        for octets in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [255, 255, 255, 255],
            [10, 9, 100, 99],
            [1, 20, 200, 0],
        ] {
            let (buf, n) = dotted_quad(octets);
            assert_eq!(
                std::str::from_utf8(&buf[..n]).unwrap(),
                Ipv4Addr::from(octets).to_string()
            );
        }
    }
}
