//! Errors and the Python-side helpers the core calls on its slow paths.
//!
//! Rust errors become Python exceptions here, once: `io::Error` as `OSError(errno, strerror)`
//! (Python picks the subclass by errno), loop state errors as `RuntimeError` with asyncio's
//! own messages. Formatting that must match asyncio to the character (handle reprs, the
//! exception-handler context of a failing callback, the slow-callback warning) is done by
//! `rose/_helpers.py`, which uses asyncio's own formatting helpers.

use pyo3::exceptions::{PyOSError, PyRuntimeError, PySystemError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

static HELPERS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// An attribute of `rose._helpers`.
pub fn py_helper<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let module = HELPERS.get_or_try_init(py, || py.import("rose._helpers").map(Bound::unbind))?;
    module.bind(py).getattr(name)
}

pub fn loop_closed() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
}

pub fn reactor_busy() -> PyErr {
    PyRuntimeError::new_err("Non-thread-safe operation invoked on an event loop other than the current one")
}

/// `OSError(errno, strerror)`: Python picks the subclass from the errno
/// (`ConnectionResetError`, `BrokenPipeError`, ...), exactly as a failing socket call raises it.
pub fn os_error(errno: i32) -> PyErr {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    // Rust appends " (os error N)" to strerror's text.
    let strerror = match text.rfind(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    };
    PyOSError::new_err((errno, strerror))
}

/// An `io::Error` as the OSError Python would raise for it: with its errno and strerror (pyo3's
/// own conversion leaves errno None and keeps Rust's " (os error N)" text).
pub fn io_error(err: std::io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(errno) => os_error(errno),
        None => PyOSError::new_err(err.to_string()),
    }
}

/// The errno of the last failed libc call.
pub fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// What a raw C entry point (a `PyMethodDef` of rose's own: fastcall.rs, stream.rs) returns
/// for `f`'s outcome: a new reference, or NULL with the exception set; a panic, which would be
/// a bug in rose, becomes a SystemError naming the method instead of unwinding into CPython.
pub fn c_entry(py: Python<'_>, name: &str, f: impl FnOnce() -> PyResult<Py<PyAny>>) -> *mut ffi::PyObject {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(obj)) => obj.into_ptr(),
        Ok(Err(err)) => {
            err.restore(py);
            std::ptr::null_mut()
        }
        Err(_) => {
            PySystemError::new_err(format!("rose internal error in {name}()")).restore(py);
            std::ptr::null_mut()
        }
    }
}
