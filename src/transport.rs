//! What rose's transports (stream: `stream.rs`, datagram: `udp.rs`) share: buffer views of
//! Python objects, errno classification, the calls back into the Python transport object, and
//! the close/pause/flow state machine of asyncio's `_SelectorTransport`.
//!
//! A core watches its own fd: it is the selector's watcher (`Watch::Core`, see selector.rs),
//! with the context its reader and writer run in kept in `Common` (what asyncio's watch handle
//! would hold); an event runs the core's `on_ready` through `core_ready` only if the core still
//! watches that direction. A core also keeps `loop._transports`' entry of its transport
//! (entered in `set_transport`, left before the core lets the transport go).

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PySystemExit};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use pyo3::{PyClass, PyTraverseError, PyVisit};

use crate::errors::py_helper;
use crate::event_loop::EventLoop;
use crate::gil_cell::GilCell;
use crate::handles::{copy_context, is_context, Handle};
use crate::metrics::Stats;
use crate::selector::CoreOps;

/// The most one read takes. asyncio reads up to 256 KiB (`max_size`); with 64 KiB messages
/// over loopback a 256 KiB `recv` measured twice the kernel time of a 64 KiB one (the copy
/// out of the socket, `_copy_to_iter`: 1.75-2.1 s against 0.78-1.06 s of system time for
/// 30,000 echoes). A stream may be delivered in any chunks, so 64 KiB it is.
pub const READ_SIZE: usize = 64 * 1024;

thread_local! {
    /// Reads land here first and are copied into a `bytes` of the exact size (what libuv-based
    /// uvloop does too): no 256 KiB allocation per read.
    static SCRATCH: RefCell<Vec<u8>> = {
        raise_heap_thresholds();
        RefCell::new(vec![0; READ_SIZE])
    };
}

/// glibc's malloc hands its heap's free top back to the system when it exceeds the trim
/// threshold, and adapts that threshold: freeing a block it had mmapped raises the mmap
/// threshold to that block's size and the trim threshold to twice it (mallopt(3), "dynamic
/// mmap threshold"). With 64 KiB messages a loop iteration makes and frees a `bytes` per ready
/// connection; with asyncio's streams on 3.13 and 3.14 (not on 3.11 or 3.15) that left a few
/// MiB free at the heap's top per iteration, which the default 128 KiB threshold gave back
/// and the next iteration faulted in again (strace: a `brk` every third request): streams
/// echo at 64 KiB on 3.14 spent 75 µs of system time per request, asyncio 40, rloop 32; with
/// `MALLOC_TRIM_THRESHOLD_=4194304` in the environment, 35. So the first read of a thread
/// frees a 4 MiB block from mmap, which leaves glibc adaptive, as in a program that once freed
/// a 4 MiB buffer: blocks under 4 MiB come from the heap, and up to 8 MiB of free heap is kept
/// (glibc's own adaptation goes up to 32 and 64 MiB). Measured after: 26 µs (rloop 24,
/// asyncio 29). Only the thresholds change: no allocation stays, and nothing is pinned.
fn raise_heap_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Over the default mmap threshold (128 KiB), so mmapped.
        const BLOCK: usize = 4 << 20;
        // SAFETY: a plain allocation, freed at once (free(NULL) does nothing); black_box keeps
        // the compiler from eliding the pair.
        unsafe { libc::free(std::hint::black_box(libc::malloc(BLOCK))) };
    }
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
    /// The watermarks as given (none: the defaults), boxed: most transports keep the defaults.
    limits: Option<Box<(Py<PyAny>, Py<PyAny>)>>,
}

impl Default for FlowControl {
    fn default() -> Self {
        Self {
            high: 64.0 * 1024.0,
            low: 16.0 * 1024.0,
            limits: None,
        }
    }
}

impl FlowControl {
    /// New watermarks (checked by the caller, and already converted to floats: a `__float__`
    /// is Python code, which must not run while the state is borrowed); returns the old ones
    /// to drop outside the borrow.
    pub fn set(&mut self, high: (f64, Py<PyAny>), low: (f64, Py<PyAny>)) -> Option<Box<(Py<PyAny>, Py<PyAny>)>> {
        self.high = high.0;
        self.low = low.0;
        self.limits.replace(Box::new((high.1, low.1)))
    }

    /// `get_write_buffer_limits()`: `(low, high)`.
    pub fn limits(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        Ok(match self.limits.as_deref() {
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
    /// The contexts the reader and the writer run in while watched: what asyncio's watch
    /// handles would hold (the transport's context, or a copy of the current one made when
    /// the watch began).
    pub read_ctx: Option<Py<PyAny>>,
    pub write_ctx: Option<Py<PyAny>>,
    pub flow: FlowControl,
    /// The protocol was told to pause writing (asyncio's `_protocol_paused`).
    pub protocol_paused: bool,
    /// Counted in the loop's open transports (from its making until `detach` or its drop).
    pub counted: bool,
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
            read_ctx: None,
            write_ctx: None,
            flow: FlowControl::default(),
            protocol_paused: false,
            counted: true,
        }
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.protocol)?;
        visit.call(&self.context)?;
        visit.call(&self.read_ctx)?;
        visit.call(&self.write_ctx)?;
        visit.call(&self.transport)
    }

    /// True (and paused from now on) when a buffer of `size` bytes must pause the protocol.
    pub fn pause_now(&mut self, size: usize) -> bool {
        if size as f64 <= self.flow.high || self.protocol_paused {
            return false;
        }
        self.protocol_paused = true;
        true
    }

    /// True (and resumed from now on) when a buffer of `size` bytes lets the protocol resume.
    pub fn resume_now(&mut self, size: usize) -> bool {
        if !self.protocol_paused || size as f64 > self.flow.low {
            return false;
        }
        self.protocol_paused = false;
        true
    }

    /// Every Python object it holds, taken out (for the caller to drop outside the borrow).
    pub fn take_objects(&mut self) -> [Option<Py<PyAny>>; 5] {
        [
            self.protocol.take(),
            self.transport.take(),
            self.context.take(),
            self.read_ctx.take(),
            self.write_ctx.take(),
        ]
    }

    /// Whether one direction is watched, and the context it runs in.
    fn watch_state(&mut self, write: bool) -> (&mut bool, &mut Option<Py<PyAny>>) {
        if write {
            (&mut self.write_watched, &mut self.write_ctx)
        } else {
            (&mut self.read_watched, &mut self.read_ctx)
        }
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
    /// The core's own fd watch (see selector.rs).
    const OPS: &'static CoreOps = &CoreOps {
        ready: core_ready::<Self>,
        handle: core_handle::<Self>,
    };
    /// The reader callback (asyncio's `_read_ready`), or with `write` the writer's.
    fn on_ready(slf: &Bound<'_, Self>, write: bool) -> PyResult<()>;
    fn state(&self) -> &GilCell<Self::State>;
    fn event_loop(&self) -> &Py<EventLoop>;
    fn fd(&self) -> RawFd;

    /// The loop's counters (bytes moved, transports open).
    #[inline]
    fn stats(&self) -> &Stats {
        &self.event_loop().get().shared().stats
    }
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

/// Watch the fd in one direction (no-op if watched already): the core itself is the watcher
/// (see selector.rs), and the callback runs in the transport's context if it has one (3.15),
/// else in a copy of the current context, made now, as asyncio's watch handle makes it.
pub fn watch<C: Core>(slf: &Bound<'_, C>, write: bool) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let context = {
        let mut st = this.state().borrow_mut(py);
        let common = st.common();
        if *common.watch_state(write).0 {
            return Ok(());
        }
        common.context.as_ref().map(|c| c.clone_ref(py))
    };
    let context = match context {
        Some(c) => c,
        None => copy_context(py)?,
    };
    let old = {
        let mut st = this.state().borrow_mut(py);
        let (watched, ctx) = st.common().watch_state(write);
        *watched = true;
        ctx.replace(context)
    };
    drop(old); // outside the borrow
    EventLoop::watch_core(
        this.event_loop().bind(py),
        this.fd(),
        slf.clone().into_any().unbind(),
        C::OPS,
        write,
    )
    .inspect_err(|_| {
        let ctx = {
            let mut st = this.state().borrow_mut(py);
            let (watched, ctx) = st.common().watch_state(write);
            *watched = false;
            ctx.take()
        };
        drop(ctx);
    })
}

/// Stop watching one direction (if watched): a syscall; a reader or writer queued already
/// will not run.
pub fn unwatch<C: Core>(this: &C, py: Python<'_>, write: bool) -> PyResult<()> {
    let ctx = {
        let mut st = this.state().borrow_mut(py);
        let (watched, ctx) = st.common().watch_state(write);
        if !std::mem::replace(watched, false) {
            return Ok(());
        }
        ctx.take()
    };
    drop(ctx);
    EventLoop::remove_reader_or_writer(this.event_loop().bind(py), this.fd(), write).map(drop)
}

/// `CoreOps::ready` of a core: its reader or writer, in the watch's context, if the direction
/// is still watched. A failure is reported as asyncio reports a failing callback ("Exception
/// in callback _SelectorSocketTransport._read_ready()"), except `SystemExit` and
/// `KeyboardInterrupt`, which stop the loop.
fn core_ready<C: Core>(core: &Bound<'_, PyAny>, write: bool) -> PyResult<bool> {
    let py = core.py();
    let core = core.cast::<C>()?;
    let this = core.get();
    let ctx = {
        let mut st = this.state().borrow_mut(py);
        let (watched, ctx) = st.common().watch_state(write);
        if !*watched {
            return Ok(false);
        }
        ctx.as_ref().map(|c| c.clone_ref(py).into_bound(py))
    };
    let result = match &ctx {
        Some(ctx) if is_context(ctx) => {
            // SAFETY: `ctx` is a live contextvars.Context (checked above).
            if unsafe { ffi::PyContext_Enter(ctx.as_ptr()) } < 0 {
                return Err(PyErr::fetch(py));
            }
            let result = C::on_ready(core, write);
            // SAFETY: entered just above, on this thread.
            if unsafe { ffi::PyContext_Exit(ctx.as_ptr()) } < 0 {
                return Err(PyErr::fetch(py));
            }
            result
        }
        // Whatever was given as the transport's context: as asyncio, `context.run(callback)`.
        Some(ctx) => core
            .as_any()
            .getattr(ready_method::<C>(py, write))
            .and_then(|m| ctx.call_method1(intern!(py, "run"), (m,)))
            .map(drop),
        None => C::on_ready(core, write),
    };
    match result {
        Ok(()) => Ok(true),
        Err(err) if is_exit(py, &err) => Err(err),
        Err(err) => {
            let handle = core_handle::<C>(core.as_any(), write)?;
            let callback = core.as_any().getattr(ready_method::<C>(py, write))?;
            py_helper(py, "_callback_error")?.call1((
                this.event_loop().bind(py),
                handle,
                err.into_value(py),
                callback,
                PyTuple::empty(py),
            ))?;
            Ok(true)
        }
    }
}

fn ready_method<C: Core>(py: Python<'_>, write: bool) -> Bound<'_, PyString> {
    if write {
        PyString::intern(py, C::WRITE_READY)
    } else {
        intern!(py, "_read_ready").clone()
    }
}

/// `CoreOps::handle` of a core: a handle that runs its reader or writer in the watch's context.
fn core_handle<C: Core>(core: &Bound<'_, PyAny>, write: bool) -> PyResult<Py<Handle>> {
    let py = core.py();
    let core = core.cast::<C>()?;
    let this = core.get();
    let ctx = {
        let mut st = this.state().borrow_mut(py);
        st.common()
            .watch_state(write)
            .1
            .as_ref()
            .map(|c| c.clone_ref(py).into_bound(py))
    };
    let callback = core.as_any().getattr(ready_method::<C>(py, write))?;
    EventLoop::make_watch_handle(this.event_loop().bind(py), callback, ctx)
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
        if !common.pause_now(size) {
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
        if !common.resume_now(size) {
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
/// A new core counts as an open transport (`Common::counted`).
pub fn count_open(event_loop: &EventLoop) {
    event_loop
        .shared()
        .stats
        .transports_open
        .fetch_add(1, Ordering::Relaxed);
}

/// The core no longer counts as open (once).
fn count_closed<C: Core>(this: &C, common: &mut Common) {
    if std::mem::replace(&mut common.counted, false) {
        this.stats().transports_open.fetch_sub(1, Ordering::Relaxed);
    }
}

pub fn detach<C: Core>(this: &C, py: Python<'_>) {
    let taken = {
        let mut st = this.state().borrow_mut(py);
        count_closed(this, st.common());
        let dropped = st.discard();
        let common = st.common();
        common.conn_lost = common.conn_lost.max(1);
        common.closing = true;
        (release_objects(this, py, common), dropped)
    };
    drop(taken);
}

/// The core's Python transport (`_set_transport`), which it enters in `loop._transports`.
pub fn set_transport<C: Core>(this: &C, py: Python<'_>, transport: Py<PyAny>) {
    let event_loop = this.event_loop().get();
    event_loop.enter_transport(py, this.fd(), &transport);
    // A transport it had before was entered under the same fd: the new entry replaced it.
    let old = this.state().borrow_mut(py).common().transport.replace(transport);
    drop(old);
}

/// Enter the core's transport in `loop._transports` again (`enter`), or take it out
/// (asyncio's sendfile does both while it sends on the transport's socket itself).
pub fn list_transport<C: Core>(this: &C, py: Python<'_>, enter: bool) {
    let mut st = this.state().borrow_mut(py);
    let event_loop = this.event_loop().get();
    if let Some(t) = st.common().transport.as_ref() {
        if enter {
            event_loop.enter_transport(py, this.fd(), t);
        } else {
            event_loop.forget_transport(py, this.fd(), t);
        }
    }
}

/// Every Python object `common` holds, taken out for the caller to drop outside the borrow;
/// the transport leaves `loop._transports` first (see `EventLoop::transports`).
pub fn release_objects<C: Core>(this: &C, py: Python<'_>, common: &mut Common) -> [Option<Py<PyAny>>; 5] {
    if let Some(t) = common.transport.as_ref() {
        this.event_loop().get().forget_transport(py, this.fd(), t);
    }
    common.take_objects()
}

/// For a core's `Drop`: its transport leaves `loop._transports`, and it no longer counts as
/// open (a core dropped without a `detach`, its transport collected with it).
pub fn forget_on_drop<C: Core>(this: &C) {
    Python::attach(|py| {
        if let Some(mut st) = this.state().try_borrow_mut(py) {
            let common = st.common();
            count_closed(this, common);
            if let Some(t) = common.transport.as_ref() {
                this.event_loop().get().forget_transport(py, this.fd(), t);
            }
        }
    });
}
