//! The I/O core of rose's stream transports (TCP and Unix sockets): reading into `bytes` for
//! `Protocol.data_received` or into `BufferedProtocol.get_buffer()`, writing with an immediate
//! `send` and a zero-copy buffer flushed by `sendmsg`, flow control at the watermarks, and the
//! close/abort state machine — asyncio's `_SelectorSocketTransport` semantics, step for step.
//!
//! The public transport is the Python class `rose.transports._SelectorSocketTransport` (an
//! `asyncio.Transport`); it owns one `StreamTransport` and hands its hot methods (`write`) out
//! directly. Slow and rare paths stay in Python there, where asyncio's own formatting and logging
//! are at hand: `_fatal_error`, EOF handling, `_call_connection_lost`, the repr.
//!
//! Readiness comes from the loop's level-triggered selector, with the core itself as the
//! watcher (no handle: see transport.rs), registered only while the fd is watched, so nothing
//! here keeps the transport alive once it stops reading and writing. `pause_reading()` costs no
//! syscall: the fd stays registered and is dropped from the selector only if data arrives while
//! paused; `resume_reading()` then registers it again.
//!
//! An idle connection's memory is mostly this core and its Python transport (see
//! benchmarks/idle_rss.py): what only a buffering connection needs is boxed (`Outgoing`), the
//! peer's address is kept raw (`RawAddr`), and the hot methods of the Python transport are
//! installed as methods of its class (`_install_transport_methods`), not bound methods kept per
//! connection.
//!
//! State lives in one `GilCell`; no borrow is held across a call into Python.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicIsize, Ordering};

use pyo3::exceptions::{PyAttributeError, PyRuntimeError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView, PyType};
use pyo3::Borrowed;
use pyo3::{PyTraverseError, PyVisit};

use crate::errors::{c_entry, last_errno, os_error};
use crate::event_loop::EventLoop;
use crate::gil_cell::GilCell;
use crate::server::{sockname, AcceptedSocket};
use crate::sockaddr::RawAddr;
use crate::sockfd::SockFd;
use crate::transport::{
    call_transport, close, count_open, detach, fatal, force_close, forget_on_drop, is_closing, is_reading,
    list_transport, log_lost_write, maybe_pause_protocol, maybe_resume_protocol, not_bytes_like, pause_reading,
    protocol_of, read_ready_paused, release_objects, resume_reading, retry_later, set_transport,
    set_write_buffer_limits, start_reading, transport_of, try_copy, unwatch, watch, with_scratch, Common, Core,
    CoreState, RawBuffer, LOG_THRESHOLD_FOR_CONNLOST_WRITES,
};
use crate::write_buffer::{WriteBuffer, MAX_IOVECS};

/// A chunk of the write buffer: a `bytes` object kept as it is (zero-copy), or a copy of a
/// mutable buffer (`bytearray`, `memoryview`), which the caller may change after `write()`.
pub enum Chunk {
    Shared(Py<PyBytes>),
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            // SAFETY: a `bytes` object is immutable and lives as long as this chunk holds it;
            // its buffer pointer and size are fixed at creation.
            Chunk::Shared(b) => unsafe {
                let p = b.as_ptr();
                std::slice::from_raw_parts(ffi::PyBytes_AsString(p) as *const u8, ffi::PyBytes_Size(p) as usize)
            },
        }
    }
}

pub struct State {
    common: Common,
    /// The protocol is a `BufferedProtocol`.
    buffered: bool,
    eof: bool,
    /// Made the first time the connection buffers (or sends a file), then kept: an idle or
    /// always-sending connection carries no write buffer.
    out: Option<Box<Outgoing>>,
}

#[derive(Default)]
struct Outgoing {
    buf: WriteBuffer<Chunk>,
    /// asyncio's `_empty_waiter` (sendfile waits for the buffer to drain).
    empty_waiter: Option<Py<PyAny>>,
}

impl State {
    fn buf_is_empty(&self) -> bool {
        self.out.as_ref().is_none_or(|o| o.buf.is_empty())
    }

    fn out(&mut self) -> &mut Outgoing {
        self.out.get_or_insert_with(Default::default)
    }

    fn empty_waiter(&self) -> Option<&Py<PyAny>> {
        self.out.as_ref().and_then(|o| o.empty_waiter.as_ref())
    }
}

impl CoreState for State {
    type Dropped = VecDeque<Chunk>;

    fn common(&mut self) -> &mut Common {
        &mut self.common
    }

    fn pending(&self) -> usize {
        self.out.as_ref().map_or(0, |o| o.buf.len())
    }

    fn discard(&mut self) -> VecDeque<Chunk> {
        self.out.as_mut().map(|o| o.buf.clear()).unwrap_or_default()
    }
}

/// Python sees it by asyncio's class name (`rose._rose._SelectorSocketTransport`), so that a
/// watch it runs is named as asyncio names its reader: "<Handle
/// _SelectorSocketTransport._read_ready()>" in debug mode's slow-callback warnings.
#[pyclass(frozen, name = "_SelectorSocketTransport", module = "rose._rose")]
pub struct StreamTransport {
    event_loop: Py<EventLoop>,
    /// The peer's address as the connection began (asyncio's `peername`, converted when asked).
    peer: RawAddr,
    /// The socket and its fd (no syscall once the socket has let the fd go: see sockfd.rs).
    sock: SockFd,
    state: GilCell<State>,
}

impl Core for StreamTransport {
    type State = State;
    const WRITE_READY: &'static str = "_write_ready";

    fn state(&self) -> &GilCell<State> {
        &self.state
    }

    fn event_loop(&self) -> &Py<EventLoop> {
        &self.event_loop
    }

    fn fd(&self) -> RawFd {
        self.sock.number()
    }

    fn on_ready(slf: &Bound<'_, Self>, write: bool) -> PyResult<()> {
        if write {
            Self::_write_ready(slf)
        } else {
            Self::_read_ready(slf)
        }
    }
}

impl Drop for StreamTransport {
    fn drop(&mut self) {
        forget_on_drop(self);
    }
}

impl StreamTransport {
    fn on_eof(&self, py: Python<'_>) -> PyResult<()> {
        call_transport(py, transport_of(self, py), intern!(py, "_read_ready__on_eof"), ())
    }

    /// A callback of the protocol; its failure is reported as asyncio reports it.
    fn call_protocol(
        &self,
        py: Python<'_>,
        protocol: &Bound<'_, PyAny>,
        method: &Bound<'_, pyo3::types::PyString>,
        arg: Bound<'_, PyAny>,
        message: &str,
    ) -> PyResult<()> {
        match protocol.call_method1(method, (arg,)) {
            Ok(_) => Ok(()),
            Err(err) => fatal(self, py, err, message),
        }
    }

    /// `recv` into the scratch buffer and copy into a new `bytes` (None at EOF).
    fn recv_bytes<'py>(&self, py: Python<'py>) -> Result<Option<Bound<'py, PyBytes>>, i32> {
        let fd = self.sock.get(py)?;
        with_scratch(|buf| {
            // SAFETY: reading at most `buf.len()` bytes into our own buffer.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            match n {
                n if n > 0 => {
                    self.stats().bytes_read.add_shared(n as u64);
                    Ok(Some(PyBytes::new(py, &buf[..n as usize])))
                }
                0 => Ok(None),
                _ => Err(last_errno()),
            }
        })
    }

    fn read_data(&self, py: Python<'_>, protocol: Bound<'_, PyAny>) -> PyResult<()> {
        match self.recv_bytes(py) {
            Ok(Some(data)) => self.call_protocol(
                py,
                &protocol,
                intern!(py, "data_received"),
                data.into_any(),
                "Fatal error: protocol.data_received() call failed.",
            ),
            Ok(None) => self.on_eof(py),
            Err(errno) if retry_later(errno) => Ok(()),
            Err(errno) => fatal(self, py, os_error(errno), "Fatal read error on socket transport"),
        }
    }

    fn read_buffered(&self, py: Python<'_>, protocol: Bound<'_, PyAny>) -> PyResult<()> {
        let buf = protocol
            .call_method1(intern!(py, "get_buffer"), (-1,))
            .and_then(|buf| match buf.len()? {
                0 => Err(PyRuntimeError::new_err("get_buffer() returned an empty buffer")),
                _ => Ok(buf),
            });
        let buf = match buf {
            Ok(buf) => buf,
            Err(err) => return fatal(self, py, err, "Fatal error: protocol.get_buffer() call failed."),
        };
        let mut view = match RawBuffer::get(&buf, true) {
            Ok(view) => view,
            Err(err) => return fatal(self, py, err, "Fatal read error on socket transport"),
        };
        let n = match self.sock.get(py) {
            // SAFETY: reading at most `view.len()` bytes into the protocol's writable buffer,
            // which stays exported (and so alive and unresized) until `view` is dropped.
            Ok(fd) => unsafe { libc::recv(fd, view.as_mut_ptr().cast(), view.len(), 0) },
            Err(errno) => {
                drop(view);
                return fatal(self, py, os_error(errno), "Fatal read error on socket transport");
            }
        };
        drop(view);
        if n > 0 {
            self.stats().bytes_read.add_shared(n as u64);
        }
        match n {
            n if n > 0 => self.call_protocol(
                py,
                &protocol,
                intern!(py, "buffer_updated"),
                (n as usize).into_pyobject(py)?.into_any(),
                "Fatal error: protocol.buffer_updated() call failed.",
            ),
            0 => self.on_eof(py),
            _ => match last_errno() {
                errno if retry_later(errno) => Ok(()),
                errno => fatal(self, py, os_error(errno), "Fatal read error on socket transport"),
            },
        }
    }

    /// One `sendmsg` of the buffered chunks; Ok(bytes sent) or Err(errno).
    fn flush(&self, py: Python<'_>, buf: &WriteBuffer<Chunk>) -> Result<usize, i32> {
        let fd = self.sock.get(py)?;
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOVECS];
        let count = buf.iovecs(&mut iov);
        // SAFETY: an all-zero msghdr is valid (no name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = count as _;
        // SAFETY: the iovecs point into chunks `buf` holds, alive during the call.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            Err(last_errno())
        } else {
            self.stats().bytes_written.add_shared(n as u64);
            Ok(n as usize)
        }
    }

    /// `write()` of a buffer whose bytes cannot be had: asyncio's checks in asyncio's order,
    /// then the error as a fatal write error.
    fn write_unsendable(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>, err: PyErr) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        {
            let mut st = this.state.borrow_mut(py);
            if st.eof {
                return Err(PyRuntimeError::new_err("Cannot call write() after write_eof()"));
            }
            if st.empty_waiter().is_some() {
                return Err(PyRuntimeError::new_err("unable to write; sendfile is in progress"));
            }
            if data.len()? == 0 {
                return Ok(());
            }
            if st.common.conn_lost > 0 {
                st.common.conn_lost += 1;
                return Ok(());
            }
        }
        fatal(this, py, err, "Fatal write error on socket transport")
    }

    fn shutdown_write(&self, py: Python<'_>) -> PyResult<()> {
        let fd = self.sock.get(py).map_err(os_error)?;
        // SAFETY: plain syscall on the transport's socket.
        if unsafe { libc::shutdown(fd, libc::SHUT_WR) } < 0 {
            return Err(os_error(last_errno()));
        }
        Ok(())
    }
}

#[pymethods]
impl StreamTransport {
    #[new]
    #[pyo3(signature = (event_loop, sock, protocol, buffered, context=None))]
    fn new(
        event_loop: Py<EventLoop>,
        sock: &Bound<'_, PyAny>,
        protocol: Py<PyAny>,
        buffered: bool,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        // A connection rose accepted comes with no socket object: the core takes its fd and
        // its peer's address over.
        let py = sock.py();
        let (sock, peer) = match sock.cast::<AcceptedSocket>() {
            Ok(accepted) => {
                let accepted = accepted.get();
                match accepted.take_fd() {
                    -1 => return Err(os_error(libc::EBADF)),
                    fd => (
                        SockFd::new_owned(fd, accepted.family(), accepted.proto()),
                        accepted.take_peer(py),
                    ),
                }
            }
            Err(_) => {
                let sock = SockFd::new(sock)?;
                let peer = RawAddr::peer_of(sock.number());
                (sock, peer)
            }
        };
        count_open(event_loop.get());
        Ok(Self {
            event_loop,
            peer,
            sock,
            state: GilCell::new(State {
                common: Common::new(protocol, context),
                buffered,
                eof: false,
                out: None,
            }),
        })
    }

    /// The socket object of a connection that has none yet (see `SockFd::new_owned`): made
    /// now, `socket.socket(family, type, proto, fileno=fd)` in non-blocking mode, as
    /// `socket.accept()` and asyncio would have made it; from now on it owns the fd.
    fn _make_socket<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(sock) = self.sock.socket(py) {
            return Ok(sock.bind(py).clone());
        }
        let (family, kind, proto) = self.sock.kind();
        let fd = self.sock.get(py).map_err(os_error)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "fileno"), fd)?;
        let sock = py
            .import(intern!(py, "socket"))?
            .getattr(intern!(py, "socket"))?
            .call((family, kind, proto), Some(&kwargs))?;
        self.sock.adopt(&sock)?;
        sock.call_method1(intern!(py, "setblocking"), (false,))?;
        Ok(sock)
    }

    /// Close the fd if the core still owns it (no socket object was made); true if it did.
    fn _close_fd(&self) -> bool {
        self.sock.close_owned()
    }

    /// The peer's address, taken as the connection began (None if it had none).
    fn _peername<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.peer.to_py(py)
    }

    /// The fd the transport was made with (asyncio's `_sock_fd`).
    #[getter]
    fn _fd(&self) -> RawFd {
        self.sock.number()
    }

    /// The socket object, if there is one (made by `_make_socket`, or given).
    fn _socket(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.sock.socket(py).map(|s| s.clone_ref(py))
    }

    /// (family, type, proto) of the socket object `_make_socket` makes.
    fn _socket_kind(&self) -> (i32, i32, i32) {
        self.sock.kind()
    }

    /// `getsockname()` of the connection, without a socket object.
    fn _sockname<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let fd = self.sock.get(py).map_err(os_error)?;
        sockname(py, fd)
    }

    fn _set_transport(&self, py: Python<'_>, transport: Py<PyAny>) {
        set_transport(self, py, transport);
    }

    /// Enter the transport in `loop._transports` again (`enter`), or take it out.
    fn _list_transport(&self, py: Python<'_>, enter: bool) {
        list_transport(self, py, enter);
    }

    fn set_protocol(&self, py: Python<'_>, protocol: Py<PyAny>, buffered: bool) {
        let old = {
            let mut st = self.state.borrow_mut(py);
            st.buffered = buffered;
            st.common.protocol.replace(protocol)
        };
        drop(old);
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        protocol_of(self, py)
    }

    /// The reader callback (asyncio's `_read_ready`).
    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if read_ready_paused(this, py)? {
            return Ok(());
        }
        let (protocol, buffered) = {
            let st = this.state.borrow_mut(py);
            match &st.common.protocol {
                Some(p) => (p.clone_ref(py).into_bound(py), st.buffered),
                None => return Ok(()),
            }
        };
        if buffered {
            this.read_buffered(py, protocol)
        } else {
            this.read_data(py, protocol)
        }
    }

    /// The writer callback (asyncio's `_write_ready`): flush what `write()` buffered.
    fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let result = {
            let mut st = this.state.borrow_mut(py);
            if st.common.conn_lost > 0 || st.buf_is_empty() {
                return Ok(());
            }
            let out = st.out();
            let result = this.flush(py, &out.buf);
            if let Ok(n) = result {
                let sent = out.buf.consume(n);
                drop(st);
                drop(sent);
            }
            result
        };
        match result {
            Err(errno) if retry_later(errno) => Ok(()),
            Err(errno) => {
                unwatch(this, py, true)?;
                let (dropped, waiter) = {
                    let mut st = this.state.borrow_mut(py);
                    (st.discard(), st.empty_waiter().map(|w| w.clone_ref(py)))
                };
                drop(dropped);
                let exc = os_error(errno).into_value(py).into_any();
                fatal(
                    this,
                    py,
                    PyErr::from_value(exc.bind(py).clone()),
                    "Fatal write error on socket transport",
                )?;
                if let Some(w) = waiter {
                    w.bind(py).call_method1(intern!(py, "set_exception"), (exc,))?;
                }
                Ok(())
            }
            Ok(_) => {
                maybe_resume_protocol(this, py)?; // may append to the buffer
                                                  // Decided under the borrow, done after it: (closing, eof, the empty waiter).
                let drained = {
                    let st = this.state.borrow_mut(py);
                    st.buf_is_empty().then(|| {
                        let waiter = st.empty_waiter().map(|w| w.clone_ref(py));
                        (st.common.closing, st.eof, waiter)
                    })
                };
                if let Some((closing, eof, waiter)) = drained {
                    unwatch(this, py, true)?;
                    if let Some(w) = waiter {
                        w.bind(py).call_method1(intern!(py, "set_result"), (py.None(),))?;
                    }
                    if closing {
                        if let Some(t) = transport_of(this, py) {
                            t.bind(py)
                                .call_method1(intern!(py, "_call_connection_lost"), (py.None(),))?;
                        }
                    } else if eof {
                        this.shutdown_write(py)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// `transport.write(data)`: send at once if nothing is buffered, buffer the rest.
    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let bytes = data.cast::<PyBytes>().ok();
        let view = if bytes.is_some() {
            None
        } else if data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>() {
            match RawBuffer::get(data, false) {
                Ok(view) => Some(view),
                // A memoryview that is not C-contiguous: asyncio's `sock.send()` fails on it
                // the same way, after the state checks, as a fatal write error.
                Err(err) => return Self::write_unsendable(slf, data, err),
            }
        } else {
            return Err(not_bytes_like(data, "write"));
        };
        let slice: &[u8] = match (&bytes, &view) {
            (Some(b), _) => b.as_bytes(),
            (None, Some(v)) => v.as_slice(),
            (None, None) => unreachable!("one of them is set"),
        };
        let mut st = this.state.borrow_mut(py);
        if st.eof {
            return Err(PyRuntimeError::new_err("Cannot call write() after write_eof()"));
        }
        if st.empty_waiter().is_some() {
            return Err(PyRuntimeError::new_err("unable to write; sendfile is in progress"));
        }
        if slice.is_empty() {
            return Ok(());
        }
        if st.common.conn_lost > 0 {
            drop(st);
            return Self::_lost_write(slf);
        }
        let mut sent = 0;
        if st.buf_is_empty() {
            let n = match this.sock.get(py) {
                // SAFETY: sending from a live buffer of `slice.len()` bytes.
                Ok(fd) => unsafe { libc::send(fd, slice.as_ptr().cast(), slice.len(), libc::MSG_NOSIGNAL) },
                Err(errno) => {
                    drop(st);
                    return fatal(this, py, os_error(errno), "Fatal write error on socket transport");
                }
            };
            if n >= 0 {
                sent = n as usize;
                this.stats().bytes_written.add_shared(sent as u64);
                if sent == slice.len() {
                    return Ok(());
                }
            } else {
                let errno = last_errno();
                if !retry_later(errno) {
                    drop(st);
                    return fatal(this, py, os_error(errno), "Fatal write error on socket transport");
                }
            }
            drop(st);
            watch(slf, true)?; // a no-op when the writer is watched already
            st = this.state.borrow_mut(py);
        }
        match &bytes {
            Some(b) => {
                let out = st.out();
                out.buf.push(Chunk::Shared(Bound::clone(b).unbind()));
                let empty = out.buf.consume(sent);
                debug_assert!(empty.is_empty());
            }
            None => match try_copy(&slice[sent..]) {
                Ok(copy) => st.out().buf.push(Chunk::Owned(copy)),
                // Part of the data may have gone already: the stream cannot go on whole.
                Err(err) => {
                    drop(st);
                    return fatal(this, py, err, "Fatal write error on socket transport");
                }
            },
        }
        drop(st);
        drop(view);
        maybe_pause_protocol(this, py)
    }

    /// A write to a lost connection: counted, and from the fifth on logged, as asyncio does
    /// (also `writelines()`'s, which counts once per call).
    fn _lost_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let warn = {
            let mut st = slf.get().state.borrow_mut(py);
            let warn = st.common.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
            st.common.conn_lost += 1;
            warn
        };
        if warn {
            log_lost_write(py)?;
        }
        Ok(())
    }

    fn write_eof(&self, py: Python<'_>) -> PyResult<()> {
        let shutdown = {
            let mut st = self.state.borrow_mut(py);
            if st.common.closing || st.eof {
                return Ok(());
            }
            st.eof = true;
            st.buf_is_empty()
        };
        if shutdown {
            self.shutdown_write(py)?;
        }
        Ok(())
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        close(self, py)
    }

    fn _force_close(&self, py: Python<'_>, exc: Py<PyAny>) -> PyResult<()> {
        force_close(self, py, exc)
    }

    fn is_closing(&self, py: Python<'_>) -> bool {
        is_closing(self, py)
    }

    fn is_reading(&self, py: Python<'_>) -> bool {
        is_reading(self, py)
    }

    fn _pause_reading(&self, py: Python<'_>) -> bool {
        pause_reading(self, py)
    }

    fn _resume_reading(slf: &Bound<'_, Self>) -> PyResult<bool> {
        resume_reading(slf)
    }

    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        start_reading(slf)
    }

    /// Stop reading for good (EOF with the connection kept open).
    fn _stop_reading(&self, py: Python<'_>) -> PyResult<()> {
        unwatch(self, py, false)
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.state.borrow_mut(py).pending()
    }

    /// Set the watermarks (already checked by the caller, as asyncio checks them).
    fn _set_write_buffer_limits(&self, py: Python<'_>, high: Bound<'_, PyAny>, low: Bound<'_, PyAny>) -> PyResult<()> {
        set_write_buffer_limits(self, py, high, low)
    }

    fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        self.state.borrow_mut(py).common.flow.limits(py)
    }

    #[getter]
    fn _empty_waiter(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state.borrow_mut(py).empty_waiter().map(|w| w.clone_ref(py))
    }

    #[setter(_empty_waiter)]
    fn set_empty_waiter(&self, py: Python<'_>, waiter: Option<Py<PyAny>>) {
        let old = std::mem::replace(&mut self.state.borrow_mut(py).out().empty_waiter, waiter);
        drop(old);
    }

    #[getter]
    fn _conn_lost(&self, py: Python<'_>) -> u32 {
        self.state.borrow_mut(py).common.conn_lost
    }

    #[getter]
    fn _eof(&self, py: Python<'_>) -> bool {
        self.state.borrow_mut(py).eof
    }

    #[getter]
    fn _protocol_paused(&self, py: Python<'_>) -> bool {
        self.state.borrow_mut(py).common.protocol_paused
    }

    /// asyncio's `_paused`: `pause_reading()` was called (and not undone).
    #[getter]
    fn _paused(&self, py: Python<'_>) -> bool {
        self.state.borrow_mut(py).common.paused
    }

    /// (reading registered and not paused, writing registered) for the repr.
    fn _polling(&self, py: Python<'_>) -> (bool, bool) {
        let st = self.state.borrow_mut(py);
        (st.common.read_watched && !st.common.paused, st.common.write_watched)
    }

    fn _detach(&self, py: Python<'_>) {
        detach(self, py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.event_loop)?;
        // Not the socket: the GC then sees it as held from outside, so when an unclosed
        // transport is collected, its `__del__` (which warns and closes the socket, as
        // asyncio's) runs while the socket is still alive, and the socket's own finalizer
        // finds it closed and stays silent, as on asyncio. A socket refers to no object that
        // could lead back here, so no cycle goes through this edge.
        if let Some(st) = self.state.try_borrow_for_gc() {
            st.common.traverse(&visit)?;
            if let Some(out) = &st.out {
                visit.call(&out.empty_waiter)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            if let Some(mut st) = self.state.try_borrow_mut(py) {
                let waiter = st.out.as_mut().and_then(|o| o.empty_waiter.take());
                let taken = (release_objects(self, py, &mut st.common), waiter);
                drop(st);
                drop(taken);
            }
        });
    }
}

/// Where the Python transport keeps its core: the offset of `_RoseTransport`'s `_core` slot
/// (see `_install_transport_methods`); 0 until installed.
static CORE_OFFSET: AtomicIsize = AtomicIsize::new(0);

/// The core in the `_core` slot of the Python transport `slf`.
///
/// # Safety
/// `slf` must be an instance of the class the methods were installed on (the method descriptor
/// checks that before the call), whose layout has the `_core` slot at `CORE_OFFSET`.
unsafe fn core_of<'a, 'py>(py: Python<'py>, slf: *mut ffi::PyObject) -> PyResult<Borrowed<'a, 'py, StreamTransport>> {
    let offset = CORE_OFFSET.load(Ordering::Relaxed);
    // SAFETY: see the function's contract; a slot holds an object pointer, or NULL when unset.
    let core = unsafe { *slf.cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>() };
    if core.is_null() {
        return Err(PyAttributeError::new_err("_core"));
    }
    // SAFETY: a live object the slot holds a reference to, for the call's duration.
    let core = unsafe { Borrowed::from_ptr(py, core) };
    Ok(core.cast::<StreamTransport>()?)
}

/// Run `f` as a method of the Python transport: Python's calling convention on the way out, a
/// panic (a bug) turned into a SystemError.
///
/// # Safety
/// As `core_of`.
unsafe fn transport_method(
    slf: *mut ffi::PyObject,
    name: &str,
    f: impl FnOnce(Python<'_>, &Bound<'_, StreamTransport>) -> PyResult<Py<PyAny>>,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the GIL held.
    let py = unsafe { Python::assume_attached() };
    c_entry(py, name, || {
        // SAFETY: forwarded from the caller's contract.
        let core = unsafe { core_of(py, slf) }?;
        f(py, &core)
    })
}

/// `write(data)` (`METH_O`).
///
/// # Safety
/// Called by CPython as a method of the class it was installed on (see `core_of`).
unsafe extern "C" fn transport_write(slf: *mut ffi::PyObject, data: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: forwarded from CPython's call.
    unsafe {
        transport_method(slf, "write", |py, core| {
            // SAFETY: the call's argument, alive for its duration.
            let data = Borrowed::from_ptr(py, data);
            StreamTransport::write(core, &data).map(|()| py.None())
        })
    }
}

macro_rules! transport_noargs {
    ($fn_name:ident, $name:literal, |$py:ident, $core:ident| $body:expr) => {
        /// `METH_NOARGS` method of the Python transport (see `transport_method`).
        ///
        /// # Safety
        /// Called by CPython as a method of the class it was installed on (see `core_of`).
        unsafe extern "C" fn $fn_name(slf: *mut ffi::PyObject, _unused: *mut ffi::PyObject) -> *mut ffi::PyObject {
            // SAFETY: forwarded from CPython's call.
            unsafe { transport_method(slf, $name, |$py, $core| $body) }
        }
    };
}

transport_noargs!(transport_is_closing, "is_closing", |py, core| Ok(
    pyo3::types::PyBool::new(py, core.get().is_closing(py))
        .to_owned()
        .into_any()
        .unbind()
));
transport_noargs!(transport_is_reading, "is_reading", |py, core| Ok(
    pyo3::types::PyBool::new(py, core.get().is_reading(py))
        .to_owned()
        .into_any()
        .unbind()
));
transport_noargs!(transport_get_write_buffer_size, "get_write_buffer_size", |py, core| Ok(
    core.get()
        .get_write_buffer_size(py)
        .into_pyobject(py)?
        .into_any()
        .unbind()
));
transport_noargs!(transport_get_protocol, "get_protocol", |py, core| Ok(core
    .get()
    .get_protocol(py)
    .unwrap_or_else(|| py.None())));

/// The methods `_install_transport_methods` installs: name, function, flags, docstring (with a
/// text signature, which `inspect.signature` reads).
const TRANSPORT_METHODS: [(
    &std::ffi::CStr,
    ffi::PyMethodDefPointer,
    std::ffi::c_int,
    &std::ffi::CStr,
); 5] = [
    (
        c"write",
        ffi::PyMethodDefPointer {
            PyCFunction: transport_write,
        },
        ffi::METH_O,
        c"write($self, data, /)\n--\n\nWrite bytes-like data (sent at once if nothing is buffered).",
    ),
    (
        c"is_closing",
        ffi::PyMethodDefPointer {
            PyCFunction: transport_is_closing,
        },
        ffi::METH_NOARGS,
        c"is_closing($self, /)\n--\n\nReturn True if the transport is closing or closed.",
    ),
    (
        c"is_reading",
        ffi::PyMethodDefPointer {
            PyCFunction: transport_is_reading,
        },
        ffi::METH_NOARGS,
        c"is_reading($self, /)\n--\n\nReturn True if the transport is receiving.",
    ),
    (
        c"get_write_buffer_size",
        ffi::PyMethodDefPointer {
            PyCFunction: transport_get_write_buffer_size,
        },
        ffi::METH_NOARGS,
        c"get_write_buffer_size($self, /)\n--\n\nReturn the current size of the write buffer.",
    ),
    (
        c"get_protocol",
        ffi::PyMethodDefPointer {
            PyCFunction: transport_get_protocol,
        },
        ffi::METH_NOARGS,
        c"get_protocol($self, /)\n--\n\nReturn the current protocol.",
    ),
];

/// Install the core's hot methods on `cls` (rose's stream transport class) as methods of the
/// class, as a C type's are: `write`, `is_closing`, `is_reading`, `get_write_buffer_size` and
/// `get_protocol` call the core in the transport's `_core` slot (described by `slot`,
/// `_RoseTransport.__dict__['_core']`) with no Python frame, no bound method kept per
/// connection and no attribute lookup per call. False, and nothing installed, if `slot` is not
/// an object slot named `_core` of `cls`'s layout: the caller then defines them in Python.
#[pyfunction]
pub fn _install_transport_methods(py: Python<'_>, cls: &Bound<'_, PyType>, slot: &Bound<'_, PyAny>) -> PyResult<bool> {
    let member_type = py
        .import(intern!(py, "types"))?
        .getattr(intern!(py, "MemberDescriptorType"))?;
    if !slot.get_type().is(&member_type) {
        return Ok(false);
    }
    // SAFETY: `slot` is a member descriptor (checked above): a PyMemberDescrObject whose
    // d_member describes the slot.
    let (owner, offset, type_code, name) = unsafe {
        let descr = slot.as_ptr().cast::<ffi::PyMemberDescrObject>();
        let member = (*descr).d_member;
        (
            (*descr).d_common.d_type,
            (*member).offset,
            (*member).type_code,
            std::ffi::CStr::from_ptr((*member).name),
        )
    };
    // SAFETY: `owner` is the descriptor's live type object.
    let owner = unsafe { Borrowed::from_ptr(py, owner.cast::<ffi::PyObject>()) };
    let basicsize: isize = cls.getattr(intern!(py, "__basicsize__"))?.extract()?;
    let fits = offset > 0 && offset as usize % std::mem::size_of::<usize>() == 0 && offset < basicsize;
    if name != c"_core" || type_code != ffi::Py_T_OBJECT_EX || !fits || !cls.is_subclass(&owner)? {
        return Ok(false);
    }
    CORE_OFFSET.store(offset, Ordering::Relaxed);
    for (name, meth, flags, doc) in TRANSPORT_METHODS {
        // The definition must outlive the descriptor: leak it (five per process).
        let def = Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: meth,
            ml_flags: flags,
            ml_doc: doc.as_ptr(),
        }));
        // SAFETY: `cls` is a live type object and `def` lives forever.
        let descr = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(cls.as_type_ptr(), def)) }?;
        cls.setattr(name.to_str().expect("ascii"), descr)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    /// An idle connection's memory is mostly its core and its Python transport (see
    /// benchmarks/idle_rss.py): what only a buffering connection needs is boxed (`Outgoing`),
    /// and the core, with CPython's object and GC headers (32 bytes), fits pymalloc's 176-byte
    /// class. A field more must be weighed against that.
    #[test]
    fn a_connection_core_stays_small() {
        assert!(std::mem::size_of::<super::StreamTransport>() + 32 <= 176);
        assert_eq!(std::mem::size_of::<crate::sockaddr::RawAddr>(), 16);
        assert_eq!(std::mem::size_of::<crate::sockfd::SockFd>(), 16);
    }
}
