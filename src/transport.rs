//! What rose's transports (stream: `stream.rs`, datagram: `udp.rs`) share: buffer views of
//! Python objects, errno classification, and the calls back into the Python transport object.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit, PyTypeError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::event_loop::EventLoop;

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

    /// New watermarks (checked by the caller); returns the old ones to drop outside borrows.
    pub fn set(&mut self, high: Bound<'_, PyAny>, low: Bound<'_, PyAny>) -> PyResult<Option<(Py<PyAny>, Py<PyAny>)>> {
        self.high = high.extract()?;
        self.low = low.extract()?;
        Ok(self.limits.replace((high.unbind(), low.unbind())))
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
) -> PyResult<()> {
    let handle = EventLoop::make_watch_handle(event_loop, slf.getattr(method)?)?;
    EventLoop::set_reader_or_writer(event_loop, fd, handle, write)
}

pub fn unwatch_fd(event_loop: &Bound<'_, EventLoop>, fd: RawFd, write: bool) -> PyResult<()> {
    EventLoop::remove_reader_or_writer(event_loop, fd, write).map(drop)
}

/// The type error of `write()`/`sendto()` for anything but bytes, bytearray and memoryview.
pub fn not_bytes_like(data: &Bound<'_, PyAny>) -> PyErr {
    match data.get_type().name().and_then(|n| n.repr()) {
        Ok(name) => PyTypeError::new_err(format!("data argument must be a bytes-like object, not {name}")),
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
