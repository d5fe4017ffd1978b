//! What rose's transports (stream: `stream.rs`, datagram: `udp.rs`) share: buffer views of
//! Python objects, errno classification, and the calls back into the Python transport object.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PySystemExit};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use pyo3::{PyClass, PyTraverseError, PyVisit};

use crate::errors::py_helper;
use crate::event_loop::EventLoop;
use crate::gil_cell::GilCell;

/// The most one read takes. asyncio reads up to 256 KiB (`max_size`); with 64 KiB messages
/// over loopback a 256 KiB `recv` measured twice the kernel time of a 64 KiB one (the copy
/// out of the socket, `_copy_to_iter`: 1.75-2.1 s against 0.78-1.06 s of system time for
/// 30,000 echoes). A stream may be delivered in any chunks, so 64 KiB it is.
pub const READ_SIZE: usize = 64 * 1024;

thread_local! {
    /// Reads land here first and are copied into a `bytes` of the exact size (what libuv-based
    /// uvloop does too): no 256 KiB allocation per read.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_SIZE]);
}

/// Run `f` with the thread's read buffer (`READ_SIZE` bytes), or a fresh one if it is in use
/// (a finaliser run by the GC during an allocation in `f` could, in theory, read another
/// transport on this thread).
pub fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut vec![0; READ_SIZE]),
    })
}

/// An empty buffer with room for `n` bytes, or a MemoryError: sizes that come from Python
/// code never reach an allocation that aborts the process when it fails.
pub fn try_alloc(n: usize) -> PyResult<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(n).map_err(|_| PyMemoryError::new_err(()))?;
    Ok(buf)
}

/// A copy of `data` in a fresh buffer, or a MemoryError (see `try_alloc`).
pub fn try_copy(data: &[u8]) -> PyResult<Vec<u8>> {
    let mut buf = try_alloc(data.len())?;
    buf.extend_from_slice(data);
    Ok(buf)
}

/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
pub const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// A `Py_buffer` view of a Python object, released on drop (with the GIL, as always here).
pub struct RawBuffer(ffi::Py_buffer);

impl RawBuffer {
    pub fn get(obj: &Bound<'_, PyAny>, writable: bool) -> PyResult<Self> {
        let mut view = MaybeUninit::<ffi::Py_buffer>::uninit();
        let flags = if writable {
            ffi::PyBUF_WRITABLE
        } else {
            ffi::PyBUF_SIMPLE
        };
        // SAFETY: `view` is a valid out-parameter; on success it is filled and must be released.
        if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), flags) } < 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        // SAFETY: PyObject_GetBuffer succeeded, so the view is initialised.
        Ok(Self(unsafe { view.assume_init() }))
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.0.buf.cast()
    }

    pub fn len(&self) -> usize {
        self.0.len as usize
    }

    pub fn as_slice(&self) -> &[u8] {
        if self.0.len == 0 {
            return &[];
        }
        // SAFETY: a contiguous buffer of `len` bytes, exported until this view is released.
        unsafe { std::slice::from_raw_parts(self.0.buf as *const u8, self.0.len as usize) }
    }
}

impl Drop for RawBuffer {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer and is released once.
        unsafe { ffi::PyBuffer_Release(&mut self.0) };
    }
}

#[inline]
pub fn retry_later(errno: i32) -> bool {
    errno == libc::EAGAIN || errno == libc::EWOULDBLOCK || errno == libc::EINTR
}

pub fn is_exit(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py)
}

/// Call `method` of the Python transport object (None once detached: then nothing happens).
pub fn call_transport<'py>(
    py: Python<'py>,
    transport: Option<Py<PyAny>>,
    method: &Bound<'py, PyString>,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<()> {
    match transport {
        Some(t) => t.bind(py).call_method1(method, args).map(drop),
        None => Ok(()),
    }
}

/// asyncio's `_FlowControlMixin` state: the watermarks (compared as floats, since asyncio
/// accepts any real numbers, and kept as given for `get_write_buffer_limits`) and whether the
/// protocol was told to pause.
pub struct FlowControl {
    pub high: f64,
    pub low: f64,
    limits: Option<(Py<PyAny>, Py<PyAny>)>,
    pub protocol_paused: bool,
}

impl Default for FlowControl {
    fn default() -> Self {
        Self {
            high: 64.0 * 1024.0,
            low: 16.0 * 1024.0,
            limits: None,
            protocol_paused: false,
        }
    }
}

impl FlowControl {
    /// True (and paused from now on) when a buffer of `size` bytes must pause the protocol.
    pub fn pause_now(&mut self, size: usize) -> bool {
        if size as f64 <= self.high || self.protocol_paused {
            return false;
        }
        self.protocol_paused = true;
        true
    }

    /// True (and resumed from now on) when a buffer of `size` bytes lets the protocol resume.
    pub fn resume_now(&mut self, size: usize) -> bool {
        if !self.protocol_paused || size as f64 > self.low {
            return false;
        }
        self.protocol_paused = false;
        true
    }

    /// New watermarks (checked by the caller, and already converted to floats: a `__float__`
    /// is Python code, which must not run while the state is borrowed); returns the old ones
    /// to drop outside the borrow.
    pub fn set(&mut self, high: (f64, Py<PyAny>), low: (f64, Py<PyAny>)) -> Option<(Py<PyAny>, Py<PyAny>)> {
        self.high = high.0;
        self.low = low.0;
        self.limits.replace((high.1, low.1))
    }

    /// `get_write_buffer_limits()`: `(low, high)`.
    pub fn limits(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        Ok(match &self.limits {
            Some((high, low)) => (low.clone_ref(py), high.clone_ref(py)),
            None => (
                (self.low as usize).into_pyobject(py)?.into_any().unbind(),
                (self.high as usize).into_pyobject(py)?.into_any().unbind(),
            ),
        })
    }
}

/// Tell the protocol to pause or resume writing (`method`); a failure goes to the loop's
/// exception handler through the Python transport's `_flow_control_failed`, as
/// `_FlowControlMixin` reports it.
pub fn flow_callback(
    py: Python<'_>,
    protocol: Option<Py<PyAny>>,
    transport: Option<Py<PyAny>>,
    method: &Bound<'_, PyString>,
    message: &str,
) -> PyResult<()> {
    let Some(protocol) = protocol else {
        return Ok(());
    };
    match protocol.bind(py).call_method0(method) {
        Ok(_) => Ok(()),
        Err(err) if is_exit(py, &err) => Err(err),
        Err(err) => call_transport(
            py,
            transport,
            intern!(py, "_flow_control_failed"),
            (message, err.into_value(py)),
        ),
    }
}

/// Register the transport `slf`'s callback `method` as the reader (or writer) of `fd`: a watch
/// handle exists only while registered, so a transport that neither reads nor writes is not
/// kept alive by the loop.
pub fn watch_fd(
    slf: &Bound<'_, PyAny>,
    event_loop: &Bound<'_, EventLoop>,
    fd: RawFd,
    write: bool,
    method: &Bound<'_, PyString>,
    context: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let handle = EventLoop::make_watch_handle(event_loop, slf.getattr(method)?, context)?;
    EventLoop::watch_fd(event_loop, fd, handle, write, false)
}

pub fn unwatch_fd(event_loop: &Bound<'_, EventLoop>, fd: RawFd, write: bool) -> PyResult<()> {
    EventLoop::remove_reader_or_writer(event_loop, fd, write).map(drop)
}

/// The type error of `write()`/`sendto()` (`method`) for anything but bytes, bytearray and
/// memoryview, in the running asyncio's words (they differ between versions: rose/_compat.py).
pub fn not_bytes_like(data: &Bound<'_, PyAny>, method: &str) -> PyErr {
    let py = data.py();
    match py_helper(py, "_not_bytes_like").and_then(|f| f.call1((data, method))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

/// The warning asyncio logs for writes to a lost connection (from the fifth on).
pub fn log_lost_write(py: Python<'_>) -> PyResult<()> {
    py.import(intern!(py, "asyncio.log"))?
        .getattr(intern!(py, "logger"))?
        .call_method1(intern!(py, "warning"), ("socket.send() raised exception.",))
        .map(drop)
}

/// What every rose transport core keeps (asyncio's `_SelectorTransport` state).
pub struct Common {
    pub protocol: Option<Py<PyAny>>,
    /// The context the protocol's callbacks run in (3.15's per-transport context); None: each
    /// watch and callback copies the current one, as asyncio before 3.15 does.
    pub context: Option<Py<PyAny>>,
    /// The Python transport, handed to protocol callbacks and to the slow paths.
    pub transport: Option<Py<PyAny>>,
    pub closing: bool,
    /// asyncio's `_conn_lost`: set when `connection_lost` is scheduled, then counts writes.
    pub conn_lost: u32,
    /// `pause_reading()` was called. The fd may still be registered: pausing costs no syscall;
    /// the fd leaves the selector only if data comes while paused (`read_ready_paused`).
    pub paused: bool,
    pub read_watched: bool,
    pub write_watched: bool,
    pub flow: FlowControl,
}

impl Common {
    pub fn new(protocol: Py<PyAny>, context: Option<Py<PyAny>>) -> Self {
        Self {
            protocol: Some(protocol),
            context,
            transport: None,
            closing: false,
            conn_lost: 0,
            paused: false,
            read_watched: false,
            write_watched: false,
            flow: FlowControl::default(),
        }
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.protocol)?;
        visit.call(&self.context)?;
        visit.call(&self.transport)
    }
}

/// A transport core's state: the common part plus its write buffer.
pub trait CoreState: Send {
    /// What `discard` takes out, dropped by the caller outside the borrow.
    type Dropped;
    fn common(&mut self) -> &mut Common;
    /// Bytes waiting to be written.
    fn pending(&self) -> usize;
    fn discard(&mut self) -> Self::Dropped;
}

/// A transport core: a frozen pyclass with its state, its loop and its fd. The state machine
/// shared by all of them (asyncio's `close`, `_force_close`, reading pause and resume, flow
/// control, fd watches) is the generic functions below.
pub trait Core: PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync {
    type State: CoreState;
    /// The name of the writer callback method.
    const WRITE_READY: &'static str;
    fn state(&self) -> &GilCell<Self::State>;
    fn event_loop(&self) -> &Py<EventLoop>;
    fn fd(&self) -> RawFd;
    /// Its link to the loop's counters (bytes, open transports).
    fn metrics(&self) -> &crate::metrics::TransportMetrics;
}

pub fn transport_of<C: Core>(this: &C, py: Python<'_>) -> Option<Py<PyAny>> {
    this.state()
        .borrow_mut(py)
        .common()
        .transport
        .as_ref()
        .map(|t| t.clone_ref(py))
}

pub fn context_of<'py, C: Core>(this: &C, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
    this.state()
        .borrow_mut(py)
        .common()
        .context
        .as_ref()
        .map(|c| c.bind(py).clone())
}

pub fn protocol_of<C: Core>(this: &C, py: Python<'_>) -> Option<Py<PyAny>> {
    this.state()
        .borrow_mut(py)
        .common()
        .protocol
        .as_ref()
        .map(|p| p.clone_ref(py))
}

/// asyncio's `_fatal_error(exc, message)` on the Python transport (it logs or reports, then
/// force-closes). `SystemExit` and `KeyboardInterrupt` propagate instead.
pub fn fatal<C: Core>(this: &C, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
    if is_exit(py, &err) {
        return Err(err);
    }
    call_transport(
        py,
        transport_of(this, py),
        intern!(py, "_fatal_error"),
        (err.into_value(py), message),
    )
}

/// Set the watched flag of one direction; returns its old value.
fn set_watched<C: Core>(this: &C, py: Python<'_>, write: bool, value: bool) -> bool {
    let mut st = this.state().borrow_mut(py);
    let common = st.common();
    let flag = if write {
        &mut common.write_watched
    } else {
        &mut common.read_watched
    };
    std::mem::replace(flag, value)
}

/// Watch the fd in one direction (no-op if watched already).
pub fn watch<C: Core>(slf: &Bound<'_, C>, write: bool) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    if set_watched(this, py, write, true) {
        return Ok(());
    }
    let method = if write {
        PyString::intern(py, C::WRITE_READY)
    } else {
        intern!(py, "_read_ready").clone()
    };
    let context = context_of(this, py);
    watch_fd(
        slf.as_any(),
        this.event_loop().bind(py),
        this.fd(),
        write,
        &method,
        context,
    )
    .inspect_err(|_| {
        set_watched(this, py, write, false);
    })
}

/// Stop watching one direction (if watched): a syscall, and the handle is cancelled.
pub fn unwatch<C: Core>(this: &C, py: Python<'_>, write: bool) -> PyResult<()> {
    if !set_watched(this, py, write, false) {
        return Ok(());
    }
    unwatch_fd(this.event_loop().bind(py), this.fd(), write)
}

pub fn schedule_connection_lost<C: Core>(this: &C, py: Python<'_>, exc: Py<PyAny>) -> PyResult<()> {
    let Some(t) = transport_of(this, py) else {
        return Ok(());
    };
    let callback = t.bind(py).getattr(intern!(py, "_call_connection_lost"))?;
    let args = PyTuple::new(py, [exc])?;
    EventLoop::call_soon(this.event_loop().bind(py), callback, args, context_of(this, py)).map(drop)
}

/// asyncio's `close()`: stop reading; once nothing is buffered, schedule `connection_lost`.
pub fn close<C: Core>(this: &C, py: Python<'_>) -> PyResult<()> {
    let lost = {
        let mut st = this.state().borrow_mut(py);
        let empty = st.pending() == 0;
        let common = st.common();
        if common.closing {
            return Ok(());
        }
        common.closing = true;
        if empty {
            common.conn_lost += 1;
        }
        empty
    };
    unwatch(this, py, false)?;
    if lost {
        unwatch(this, py, true)?;
        schedule_connection_lost(this, py, py.None())?;
    }
    Ok(())
}

/// asyncio's `_force_close(exc)`: drop the buffer, stop reading, schedule `connection_lost`.
pub fn force_close<C: Core>(this: &C, py: Python<'_>, exc: Py<PyAny>) -> PyResult<()> {
    let (dropped, had_pending, was_closing) = {
        let mut st = this.state().borrow_mut(py);
        if st.common().conn_lost > 0 {
            return Ok(());
        }
        let had_pending = st.pending() > 0;
        let dropped = st.discard();
        let common = st.common();
        common.conn_lost += 1;
        (dropped, had_pending, std::mem::replace(&mut common.closing, true))
    };
    if had_pending {
        unwatch(this, py, true)?;
    }
    drop(dropped);
    if !was_closing {
        unwatch(this, py, false)?;
    }
    schedule_connection_lost(this, py, exc)
}

pub fn is_closing<C: Core>(this: &C, py: Python<'_>) -> bool {
    this.state().borrow_mut(py).common().closing
}

pub fn is_reading<C: Core>(this: &C, py: Python<'_>) -> bool {
    let mut st = this.state().borrow_mut(py);
    let common = st.common();
    !common.closing && !common.paused
}

/// Returns True if reading was paused by this call (no syscall: see `Common::paused`).
pub fn pause_reading<C: Core>(this: &C, py: Python<'_>) -> bool {
    let mut st = this.state().borrow_mut(py);
    let common = st.common();
    if common.closing || common.paused {
        return false;
    }
    common.paused = true;
    true
}

/// Returns True if reading was resumed by this call.
pub fn resume_reading<C: Core>(slf: &Bound<'_, C>) -> PyResult<bool> {
    {
        let mut st = slf.get().state().borrow_mut(slf.py());
        let common = st.common();
        if common.closing || !common.paused {
            return Ok(false);
        }
        common.paused = false;
    }
    watch(slf, false)?;
    Ok(true)
}

/// Start watching for reads, if reading (the callback `connection_made` is followed by).
pub fn start_reading<C: Core>(slf: &Bound<'_, C>) -> PyResult<()> {
    if !is_reading(slf.get(), slf.py()) {
        return Ok(());
    }
    watch(slf, false)
}

/// At the top of a reader callback: true (and the fd is no longer watched) if reading is
/// paused or the connection is lost, so the callback must not read.
pub fn read_ready_paused<C: Core>(this: &C, py: Python<'_>) -> PyResult<bool> {
    let paused = {
        let mut st = this.state().borrow_mut(py);
        let common = st.common();
        if common.conn_lost > 0 {
            return Ok(true);
        }
        common.paused
    };
    if paused {
        // Paused without a syscall; data came: now stop watching (see `Common::paused`).
        unwatch(this, py, false)?;
    }
    Ok(paused)
}

pub fn maybe_pause_protocol<C: Core>(this: &C, py: Python<'_>) -> PyResult<()> {
    let protocol = {
        let mut st = this.state().borrow_mut(py);
        let size = st.pending();
        let common = st.common();
        if !common.flow.pause_now(size) {
            return Ok(());
        }
        common.protocol.as_ref().map(|p| p.clone_ref(py))
    };
    let method = intern!(py, "pause_writing");
    flow_callback(
        py,
        protocol,
        transport_of(this, py),
        method,
        "protocol.pause_writing() failed",
    )
}

pub fn maybe_resume_protocol<C: Core>(this: &C, py: Python<'_>) -> PyResult<()> {
    let protocol = {
        let mut st = this.state().borrow_mut(py);
        let size = st.pending();
        let common = st.common();
        if !common.flow.resume_now(size) {
            return Ok(());
        }
        common.protocol.as_ref().map(|p| p.clone_ref(py))
    };
    let method = intern!(py, "resume_writing");
    flow_callback(
        py,
        protocol,
        transport_of(this, py),
        method,
        "protocol.resume_writing() failed",
    )
}

/// New watermarks (checked by the caller, as asyncio checks them), then maybe pause.
pub fn set_write_buffer_limits<C: Core>(
    this: &C,
    py: Python<'_>,
    high: Bound<'_, PyAny>,
    low: Bound<'_, PyAny>,
) -> PyResult<()> {
    let high = (high.extract::<f64>()?, high.unbind());
    let low = (low.extract::<f64>()?, low.unbind());
    let old = this.state().borrow_mut(py).common().flow.set(high, low);
    drop(old);
    maybe_pause_protocol(this, py)
}

/// After `connection_lost`: the socket is closed (its fd number may belong to a new socket
/// already), so every I/O path must see the connection as lost; let go of the protocol, the
/// Python transport and anything buffered.
pub fn detach<C: Core>(this: &C, py: Python<'_>) {
    this.metrics().closed();
    let taken = {
        let mut st = this.state().borrow_mut(py);
        let dropped = st.discard();
        let common = st.common();
        common.conn_lost = common.conn_lost.max(1);
        common.closing = true;
        (
            common.protocol.take(),
            common.transport.take(),
            common.context.take(),
            dropped,
        )
    };
    drop(taken);
}
