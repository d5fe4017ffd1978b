//! The hot `sock_*` methods: `sock_recv`, `sock_recv_into` and `sock_sendall` on the loop.
//!
//! asyncio's versions try the socket call first and, when it would block, watch the fd with a
//! callback that retries it and completes a future. rose keeps that shape and those semantics
//! (the Python coroutines in `rose/loop.py` keep asyncio's checks and call these primitives),
//! but does the socket calls here: no `BlockingIOError` is raised and caught on the common
//! path, and the retry callback is one `SockOp` object instead of a bound method, a
//! `functools.partial` and a list.
//!
//! A `SockOp` is the callback of a watch handle, as asyncio's `_sock_recv` is: it retries the
//! call each time the fd is ready and completes the future once; the future's done callback
//! (`_done`) removes the watch unless it was replaced meanwhile, as asyncio's
//! `_sock_read_done`/`_sock_write_done` do.

use std::os::fd::RawFd;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt};
use pyo3::{PyTraverseError, PyVisit};

use crate::errors::{last_errno, os_error};
use crate::event_loop::EventLoop;
use crate::gil_cell::GilCell;
use crate::handles::Handle;
use crate::sockfd::SockFd;
use crate::transport::{retry_later, try_alloc, with_scratch, RawBuffer, READ_SIZE};

/// `recv(fd, n)`: Ok(Some(bytes)), Ok(None) if it would block, or the socket error. As
/// CPython's `socket.recv`: `n == 0` returns `b''` without a syscall, and a buffer that cannot
/// be allocated is a MemoryError (never an abort: `n` is the caller's).
fn try_recv<'py>(py: Python<'py>, fd: RawFd, n: isize) -> PyResult<Option<Bound<'py, PyBytes>>> {
    if n < 0 {
        return Err(PyValueError::new_err("negative buffersize in recv"));
    }
    let n = n as usize;
    if n == 0 {
        return Ok(Some(PyBytes::new(py, b"")));
    }
    let mut big = if n > READ_SIZE { Some(try_alloc(n)?) } else { None };
    loop {
        let got = match big.as_mut() {
            None => with_scratch(|buf| {
                // SAFETY: reading at most `n` (<= buf.len()) bytes into our buffer.
                let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), n, 0) };
                (got >= 0).then(|| PyBytes::new(py, &buf[..got as usize]))
            }),
            Some(buf) => {
                // SAFETY: reading at most `n` bytes into the buffer's `n` bytes of capacity.
                let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), n, 0) };
                (got >= 0).then(|| {
                    // SAFETY: the kernel initialised the first `got` (<= n) bytes.
                    unsafe { buf.set_len(got as usize) };
                    PyBytes::new(py, buf)
                })
            }
        };
        match got {
            Some(data) => return Ok(Some(data)),
            None => match last_errno() {
                libc::EINTR => py.check_signals()?,
                errno if retry_later(errno) => return Ok(None),
                errno => return Err(os_error(errno)),
            },
        }
    }
}

/// `recv_into(buf)`: Ok(Some(nbytes)), Ok(None) if it would block, or the error. An empty
/// buffer gets 0 at once, without a syscall (CPython's `recv_into`).
fn try_recv_into(py: Python<'_>, fd: RawFd, buf: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    let mut view = RawBuffer::get(buf, true).map_err(|_| {
        let name = if buf.is_none() {
            "None".to_owned() // CPython's argument parser says None, not NoneType
        } else {
            buf.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        };
        PyTypeError::new_err(format!(
            "recv_into() argument 1 must be read-write bytes-like object, not {name}"
        ))
    })?;
    if view.len() == 0 {
        return Ok(Some(0));
    }
    loop {
        // SAFETY: reading at most `view.len()` bytes into the exported writable buffer.
        let got = unsafe { libc::recv(fd, view.as_mut_ptr().cast(), view.len(), 0) };
        if got >= 0 {
            return Ok(Some(got as usize));
        }
        match last_errno() {
            libc::EINTR => py.check_signals()?,
            errno if retry_later(errno) => return Ok(None),
            errno => return Err(os_error(errno)),
        }
    }
}

/// `send(data[pos:])`: the position reached (`pos` if it would block) and the length of
/// `data`, or the error.
fn try_send(py: Python<'_>, fd: RawFd, data: &Bound<'_, PyAny>, pos: usize) -> PyResult<(usize, usize)> {
    let view = RawBuffer::get(data, false)?;
    let pos = pos.min(view.len());
    let rest = &view.as_slice()[pos..];
    loop {
        // SAFETY: sending from the exported buffer, alive while `view` is.
        let sent = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
        if sent >= 0 {
            return Ok((pos + sent as usize, view.len()));
        }
        match last_errno() {
            libc::EINTR => py.check_signals()?,
            errno if retry_later(errno) => return Ok((pos, view.len())),
            errno => return Err(os_error(errno)),
        }
    }
}

enum Kind {
    Recv(isize),
    RecvInto(Py<PyAny>),
    /// The data and how much of it went out already.
    SendAll(Py<PyAny>, GilCell<usize>),
}

/// A pending `sock_*` call: the callback of the fd's watch handle.
#[pyclass(frozen, module = "rose._rose")]
pub struct SockOp {
    event_loop: Py<EventLoop>,
    /// The socket and its fd: a retry after the user closed the socket fails with EBADF, as
    /// asyncio's `sock.recv()` does, instead of reading the fd number's next owner.
    sock: SockFd,
    future: Py<PyAny>,
    kind: Kind,
    handle: GilCell<Option<Py<Handle>>>,
}

impl SockOp {
    fn is_write(&self) -> bool {
        matches!(self.kind, Kind::SendAll(..))
    }
}

#[pymethods]
impl SockOp {
    /// Retry the call (asyncio's `_sock_recv`, `_sock_recv_into`, `_sock_sendall`).
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let fut = self.future.bind(py);
        if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
            return Ok(());
        }
        let fd = self.sock.get(py).map_err(os_error);
        let outcome: PyResult<Option<Bound<'_, PyAny>>> = match (&self.kind, fd) {
            (_, Err(err)) => Err(err),
            (Kind::Recv(n), Ok(fd)) => try_recv(py, fd, *n).map(|d| d.map(Bound::into_any)),
            (Kind::RecvInto(buf), Ok(fd)) => {
                try_recv_into(py, fd, buf.bind(py)).map(|n| n.map(|n| PyInt::new(py, n).into_any()))
            }
            (Kind::SendAll(data, pos), Ok(fd)) => {
                let start = *pos.borrow_mut(py);
                try_send(py, fd, data.bind(py), start).map(|(at, total)| {
                    *pos.borrow_mut(py) = at;
                    (at >= total).then(|| py.None().into_bound(py))
                })
            }
        };
        match outcome {
            // try again next time
            Ok(None) => self.event_loop.get().rearm_oneshot_watch(py, self.sock.number()),
            Ok(Some(result)) => fut.call_method1(intern!(py, "set_result"), (result,)).map(drop),
            Err(err) if crate::transport::is_exit(py, &err) => Err(err),
            Err(err) => fut
                .call_method1(intern!(py, "set_exception"), (err.into_value(py),))
                .map(drop),
        }
    }

    /// The future's done callback: stop watching, unless the watch was replaced meanwhile
    /// (asyncio: "if not handle.cancelled(): remove_reader(fd)").
    fn _done(&self, py: Python<'_>, _future: &Bound<'_, PyAny>) -> PyResult<()> {
        let handle = self.handle.borrow_mut(py).take();
        if let Some(handle) = handle {
            if !handle.get().is_cancelled() {
                EventLoop::remove_reader_or_writer(self.event_loop.bind(py), self.sock.number(), self.is_write())?;
            }
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.event_loop)?;
        visit.call(self.sock.socket_for_gc())?;
        visit.call(&self.future)?;
        match &self.kind {
            Kind::Recv(_) => {}
            Kind::RecvInto(obj) | Kind::SendAll(obj, _) => visit.call(obj)?,
        }
        if let Some(h) = self.handle.try_borrow_for_gc() {
            visit.call(&*h)?;
        }
        Ok(())
    }
}

/// `n` as `socket.recv` converts its size: any integer-like object, and CPython's own
/// OverflowError ("... to convert to C ssize_t") for one that does not fit.
fn recv_size(n: &Bound<'_, PyAny>) -> PyResult<isize> {
    let py = n.py();
    // SAFETY: `n` is a live object; PyNumber_Index returns a new reference or NULL with an
    // exception set, and may run `__index__` (no borrow is held here).
    let index = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyNumber_Index(n.as_ptr())) }?;
    // SAFETY: `index` is an int; -1 with an exception set means it does not fit.
    let size = unsafe { ffi::PyLong_AsSsize_t(index.as_ptr()) };
    if size == -1 {
        if let Some(err) = PyErr::take(py) {
            return Err(err);
        }
    }
    Ok(size)
}

/// Try `recv(n)` once: the data, or None if it would block.
#[pyfunction]
pub fn _sock_try_recv<'py>(py: Python<'py>, fd: RawFd, n: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyBytes>>> {
    try_recv(py, fd, recv_size(n)?)
}

/// Try `recv_into(buf)` once: the byte count, or None if it would block.
#[pyfunction]
pub fn _sock_try_recv_into(py: Python<'_>, fd: RawFd, buf: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    try_recv_into(py, fd, buf)
}

/// Try `send(data)` once: None if all of it went, else the bytes sent (0 if it would block).
#[pyfunction]
pub fn _sock_try_send(py: Python<'_>, fd: RawFd, data: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    let (sent, total) = try_send(py, fd, data, 0)?;
    Ok((sent < total).then_some(sent))
}

/// Watch `sock`'s fd until the call completes `future`: kind 0 `recv(arg)`, 1
/// `recv_into(arg)`, 2 `sendall(arg)` with `sent` bytes already sent.
#[pyfunction]
#[pyo3(signature = (event_loop, future, sock, kind, arg, sent=0))]
pub fn _sock_wait(
    event_loop: &Bound<'_, EventLoop>,
    future: &Bound<'_, PyAny>,
    sock: &Bound<'_, PyAny>,
    kind: u8,
    arg: &Bound<'_, PyAny>,
    sent: usize,
) -> PyResult<()> {
    let py = event_loop.py();
    let kind = match kind {
        0 => Kind::Recv(recv_size(arg)?),
        1 => Kind::RecvInto(arg.clone().unbind()),
        _ => Kind::SendAll(arg.clone().unbind(), GilCell::new(sent)),
    };
    let sock = SockFd::new(sock)?;
    let fd = sock.number();
    let op = Bound::new(
        py,
        SockOp {
            event_loop: event_loop.clone().unbind(),
            sock,
            future: future.clone().unbind(),
            kind,
            handle: GilCell::new(None),
        },
    )?;
    let write = op.get().is_write();
    let handle = EventLoop::make_watch_handle(event_loop, op.clone().into_any(), None)?;
    let old = op.get().handle.borrow_mut(py).replace(handle.clone_ref(py));
    drop(old);
    EventLoop::watch_fd(event_loop, fd, handle, write, true)?;
    future.call_method1(intern!(py, "add_done_callback"), (op.getattr(intern!(py, "_done"))?,))?;
    Ok(())
}
