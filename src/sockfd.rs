//! The socket a transport (or a pending `sock_*` call) acts on, and whether it still owns its
//! fd.
//!
//! The cores make their syscalls on a raw fd number, but the fd belongs to a Python socket
//! object that user code may close under them (`create_connection(sock=s)`, then `s.close()`),
//! and the kernel hands the number to the next socket at once. asyncio makes its calls through
//! the socket object, so a closed socket fails them with EBADF and nothing reaches the number's
//! next owner. rose checks before each syscall that the socket still holds the same fd, and
//! once it does not, answers EBADF for good.
//!
//! The check reads the socket's fd as `fileno()` would, but without a call: the `sock_fd` field
//! that CPython's socket object keeps right after its object header (-1 once closed or
//! detached). That layout is probed once, on a real socket, open and then closed; where the
//! probe disagrees (or for an object that is not a socket) the check calls `fileno()`.
//!
//! A connection a rose server accepted has no socket object at first (`new_owned`): the core
//! owns the fd itself until someone asks for the socket (`adopt`, when the transport makes it),
//! and closes it itself (`close_owned`) if nobody did. No user code can close an fd it never
//! saw, so no check is needed while the core owns it.
//!
//! Invariants: `fd` is the number the socket had when the core was made; `LOST` is only ever
//! set, never cleared; once it is, no syscall is made on `fd` through this value. `OWNS` is set
//! only while there is no socket object; it is cleared once, at `adopt` or at close.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, Ordering};

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::gil_cell::GilOnce;

/// Where the socket object keeps its fd, if the probe confirmed it.
static LAYOUT: PyOnceLock<Option<usize>> = PyOnceLock::new();

/// The offset of `sock_fd` in CPython's `PySocketSockObject`: right after `PyObject_HEAD`.
const SOCK_FD_OFFSET: usize = std::mem::size_of::<ffi::PyObject>();

fn probe_layout(py: Python<'_>) -> PyResult<Option<usize>> {
    let socket = py
        .import(intern!(py, "socket"))?
        .getattr(intern!(py, "socket"))?
        .call0()?;
    let fileno: RawFd = socket.call_method0(intern!(py, "fileno"))?.extract()?;
    // SAFETY: reading an int at the field's offset inside a live `_socket.socket` object
    // (PyObject_HEAD is followed by at least `SOCKET_T sock_fd` in every CPython).
    let read = |obj: &Bound<'_, PyAny>| unsafe { *obj.as_ptr().cast::<u8>().add(SOCK_FD_OFFSET).cast::<RawFd>() };
    let open = read(&socket);
    socket.call_method0(intern!(py, "close"))?;
    let closed = read(&socket);
    Ok((open == fileno && closed == -1).then_some(SOCK_FD_OFFSET))
}

fn layout(py: Python<'_>) -> Option<usize> {
    *LAYOUT.get_or_init(py, || probe_layout(py).ok().flatten())
}

/// `SockFd::flags`: the socket's fd can be read at the probed offset.
const FAST: u8 = 1;
/// The fd is this value's own: no socket object yet (see the module note).
const OWNS: u8 = 2;
/// The socket let the fd go: no syscall on it any more.
const LOST: u8 = 4;

/// The pure part: has the socket lost the fd? `current` is the fd the socket holds now.
fn check(fd: RawFd, flags: &AtomicU8, current: impl FnOnce() -> RawFd) -> Result<RawFd, i32> {
    if flags.load(Ordering::Relaxed) & LOST != 0 {
        return Err(libc::EBADF);
    }
    if current() != fd {
        flags.fetch_or(LOST, Ordering::Relaxed);
        return Err(libc::EBADF);
    }
    Ok(fd)
}

pub struct SockFd {
    /// The socket object (none for an fd owned without one, until `adopt`).
    sock: GilOnce<Py<PyAny>>,
    fd: RawFd,
    /// For an fd owned without a socket object: the family and protocol of the socket object
    /// to make for it (its type is SOCK_STREAM).
    family: u8,
    proto: u16,
    /// `FAST`, `OWNS`, `LOST` (one byte: the value fits in 16 with the pointer).
    flags: AtomicU8,
}

/// Is `sock` a `_socket.socket` whose fd the probed layout can read?
fn fast_for(sock: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = sock.py();
    let socket_type = py.import(intern!(py, "_socket"))?.getattr(intern!(py, "socket"))?;
    Ok(layout(py).is_some() && sock.is_instance(&socket_type)?)
}

impl SockFd {
    /// The socket `sock` as it is now (its `fileno()`).
    pub fn new(sock: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = sock.py();
        let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        Ok(Self {
            flags: AtomicU8::new(if fast_for(sock)? { FAST } else { 0 }),
            sock: GilOnce::new(Some(sock.clone().unbind())),
            fd,
            family: 0,
            proto: 0,
        })
    }

    /// An fd with no socket object, owned by this value from now on: a stream socket of
    /// `family` and `proto` (what `socket.socket(family, SOCK_STREAM, proto, fileno=fd)` would
    /// be made of, see `kind`).
    pub fn new_owned(fd: RawFd, family: i32, proto: i32) -> Self {
        Self {
            sock: GilOnce::new(None),
            flags: AtomicU8::new(OWNS),
            fd,
            family: family as u8, // AF_UNIX, AF_INET, AF_INET6
            proto: proto as u16,
        }
    }

    /// The socket object `sock` now holds the fd (it was made with `fileno=` this fd): from
    /// now on the socket owns it, and each syscall checks that it still does.
    pub fn adopt(&self, sock: &Bound<'_, PyAny>) -> PyResult<()> {
        let fast = fast_for(sock)?;
        if self.sock.set(sock.py(), sock.clone().unbind()).is_ok() {
            let flags = self.flags.load(Ordering::Relaxed) & !OWNS;
            self.flags
                .store(if fast { flags | FAST } else { flags }, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Close the fd if this value owns it (no socket object was made); true if it did.
    pub fn close_owned(&self) -> bool {
        if self.flags.fetch_and(!OWNS, Ordering::Relaxed) & OWNS == 0 {
            return false;
        }
        self.flags.fetch_or(LOST, Ordering::Relaxed);
        // SAFETY: the fd is ours (`OWNS`): nothing else holds or closes it.
        unsafe { libc::close(self.fd) };
        true
    }

    /// The fd to make a syscall on, or EBADF once the socket no longer owns it.
    #[inline]
    pub fn get(&self, py: Python<'_>) -> Result<RawFd, i32> {
        if self.flags.load(Ordering::Relaxed) & OWNS != 0 {
            return Ok(self.fd);
        }
        check(self.fd, &self.flags, || self.current(py))
    }

    fn current(&self, py: Python<'_>) -> RawFd {
        let Some(sock) = self.sock.get(py) else {
            return -1; // closed by its owner (`close_owned`)
        };
        let sock = sock.bind(py);
        if self.flags.load(Ordering::Relaxed) & FAST != 0 {
            // SAFETY: `sock` is a live `_socket.socket` (checked in `new`) whose layout the
            // probe confirmed: an int at this offset is its fd.
            return unsafe { *sock.as_ptr().cast::<u8>().add(SOCK_FD_OFFSET).cast::<RawFd>() };
        }
        sock.call_method0(intern!(py, "fileno"))
            .and_then(|n| n.extract())
            .unwrap_or(-1)
    }

    /// (family, type, proto) of an fd owned without a socket object.
    pub fn kind(&self) -> (i32, i32, i32) {
        (i32::from(self.family), libc::SOCK_STREAM, i32::from(self.proto))
    }

    /// The number the socket had, for bookkeeping only (selector keys, reprs): no syscall.
    pub fn number(&self) -> RawFd {
        self.fd
    }

    /// The socket object (None for an fd owned without one, see `new_owned`).
    pub fn socket(&self, py: Python<'_>) -> Option<&Py<PyAny>> {
        self.sock.get(py)
    }

    /// The socket object, for `__traverse__`.
    pub fn socket_for_gc(&self) -> Option<&Py<PyAny>> {
        self.sock.get_for_gc()
    }
}

impl Drop for SockFd {
    fn drop(&mut self) {
        // An owned fd nobody closed (the core went away unclosed): close it, not leak it.
        self.close_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_while_the_socket_holds_the_fd() {
        let flags = AtomicU8::new(0);
        assert_eq!(check(7, &flags, || 7), Ok(7));
        assert_eq!(check(7, &flags, || 7), Ok(7));
    }

    #[test]
    fn lost_for_good_once_the_socket_lets_it_go() {
        let flags = AtomicU8::new(0);
        assert_eq!(check(7, &flags, || -1), Err(libc::EBADF));
        // The number reused by another socket does not make it ours again.
        assert_eq!(check(7, &flags, || 7), Err(libc::EBADF));
        assert!(flags.load(Ordering::Relaxed) & LOST != 0);
    }

    #[test]
    fn another_fd_is_not_ours() {
        let flags = AtomicU8::new(0);
        assert_eq!(check(7, &flags, || 8), Err(libc::EBADF));
    }
}
