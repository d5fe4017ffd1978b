//! Accepting connections: `_accept` takes one connection off a listening socket with
//! `accept4` and hands it out as an `AcceptedSocket` (the fd, the listener's family, type and
//! protocol, and the peer's raw address), with no Python socket object and no address tuple.
//! rose's `_accept_connection` (rose/loop.py) calls it; the stream transport made for the
//! connection takes the fd and the peer's address over (`take_fd`, `take_peer`), and makes the
//! socket object only when someone asks for it (rose/transports.py).
//!
//! Invariants: an `AcceptedSocket`'s fd is closed exactly once: by whoever took it, or by the
//! `AcceptedSocket` itself when it goes away untaken (a protocol factory that failed).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use pyo3::prelude::*;

use crate::errors::{last_errno, os_error};
use crate::gil_cell::GilCell;
use crate::sockaddr::{sockaddr_to_py, RawAddr};

#[pyclass(frozen, module = "rose._rose")]
pub struct AcceptedSocket {
    /// -1 once a transport took it.
    fd: AtomicI32,
    #[pyo3(get)]
    family: i32,
    #[pyo3(get, name = "type")]
    kind: i32,
    #[pyo3(get)]
    proto: i32,
    /// The peer's sockaddr, as long as `accept4` filled it (None once a transport took it).
    peer: GilCell<RawAddr>,
}

impl AcceptedSocket {
    /// Take the fd over (-1 if it was taken already).
    pub(crate) fn take_fd(&self) -> RawFd {
        self.fd.swap(-1, Ordering::Relaxed)
    }

    /// Take the peer's address over.
    pub(crate) fn take_peer(&self, py: Python<'_>) -> RawAddr {
        std::mem::replace(&mut *self.peer.borrow_mut(py), RawAddr::None)
    }

    pub(crate) fn family(&self) -> i32 {
        self.family
    }

    pub(crate) fn proto(&self) -> i32 {
        self.proto
    }
}

impl Drop for AcceptedSocket {
    fn drop(&mut self) {
        let fd = self.take_fd();
        if fd >= 0 {
            // SAFETY: the fd came from accept4 and nobody took it: it is ours to close.
            unsafe { libc::close(fd) };
        }
    }
}

#[pymethods]
impl AcceptedSocket {
    /// The connection's fd (-1 once a transport took it over).
    fn fileno(&self) -> RawFd {
        self.fd.load(Ordering::Relaxed)
    }

    /// The peer's address, as `socket.accept()` gives it.
    fn peername<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.peer.borrow_mut(py).to_py(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<rose accepted socket fd={}, family={}, type={}, proto={}, raddr={}>",
            self.fileno(),
            self.family,
            self.kind,
            self.proto,
            self.peername(py)?.repr()?
        ))
    }
}

/// One connection off the listening socket `fd` (of `family`, `kind`, `proto`), non-blocking
/// and close-on-exec, with TCP_NODELAY set when `nodelay` (asyncio sets it on every TCP
/// transport); None when none is waiting. Fails with the OSError `socket.accept()` raises
/// (`ConnectionAbortedError`, EMFILE, ...); EINTR is retried after Python's signal handlers
/// ran, as the socket module does.
#[pyfunction]
pub fn _accept(
    py: Python<'_>,
    fd: RawFd,
    family: i32,
    kind: i32,
    proto: i32,
    nodelay: bool,
) -> PyResult<Option<AcceptedSocket>> {
    loop {
        // SAFETY: an all-zero sockaddr_storage is a valid value to be filled in.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `storage` and `len` describe a buffer of the size given; an invalid `fd`
        // only fails the call.
        let conn = unsafe {
            libc::accept4(
                fd,
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if conn < 0 {
            match last_errno() {
                libc::EAGAIN => return Ok(None),
                libc::EINTR => {
                    py.check_signals()?;
                    continue;
                }
                errno => return Err(os_error(errno)),
            }
        }
        let len = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: accept4 filled the first `len` bytes of `storage`.
        let raw = unsafe { std::slice::from_raw_parts((&storage as *const libc::sockaddr_storage).cast::<u8>(), len) };
        let accepted = AcceptedSocket {
            fd: AtomicI32::new(conn),
            family,
            kind,
            proto,
            peer: GilCell::new(RawAddr::from_raw(raw)),
        };
        if nodelay {
            let on: libc::c_int = 1;
            // SAFETY: `conn` is a socket we own; the option value is a c_int of the size given.
            let rc = unsafe {
                libc::setsockopt(
                    conn,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(os_error(last_errno())); // `accepted` closes the fd
            }
        }
        return Ok(Some(accepted));
    }
}

/// `getsockname` of `fd`, as the socket module gives it.
pub(crate) fn sockname<'py>(py: Python<'py>, fd: RawFd) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: an all-zero sockaddr_storage is a valid value to be filled in.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` describe a buffer of the size given.
    if unsafe { libc::getsockname(fd, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len) } != 0 {
        return Err(os_error(last_errno()));
    }
    let len = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: getsockname filled the first `len` bytes of `storage`.
    let raw = unsafe { std::slice::from_raw_parts((&storage as *const libc::sockaddr_storage).cast::<u8>(), len) };
    sockaddr_to_py(py, raw)
}
