//! Raw `METH_FASTCALL | METH_KEYWORDS` entry points for the scheduling methods
//! (`call_soon`, `call_soon_threadsafe`, `call_later`, `call_at`).
//!
//! They are the hottest calls into rose: every `Task` step and every future callback goes
//! through `call_soon(cb, context=ctx)`. pyo3's generic wrapper (argument description tables,
//! keyword matching, a GIL-count guard) costs about as much as the work itself, so these four
//! parse their vector of arguments directly and call the same Rust code as the `#[pymethods]`
//! versions. `rose/loop.py` installs them on `Loop` with `_install_fast_methods`; the pyo3
//! methods stay on the compiled base class.
//!
//! Measured with callgrind (`call_soon` chain): ~200 instructions less per callback.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PySystemError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::{ffi, Borrowed};

use crate::event_loop::EventLoop;

#[derive(Clone, Copy)]
enum Kind {
    Soon,
    SoonThreadsafe,
    Later,
    At,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Soon => "call_soon",
            Kind::SoonThreadsafe => "call_soon_threadsafe",
            Kind::Later => "call_later",
            Kind::At => "call_at",
        }
    }

    /// Names of the leading positional parameters.
    fn leading(self) -> &'static [&'static str] {
        match self {
            Kind::Soon | Kind::SoonThreadsafe => &["callback"],
            Kind::Later => &["delay", "callback"],
            Kind::At => &["when", "callback"],
        }
    }
}

/// Parse `(lead..., *args, context=None)` from a vectorcall and run the method.
///
/// # Safety
/// `args` must point to `nargs + len(kwnames)` valid object pointers, as CPython passes them
/// to a `METH_FASTCALL | METH_KEYWORDS` function; `slf` must be an `EventLoop` instance.
unsafe fn dispatch<'py>(
    py: Python<'py>,
    kind: Kind,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: CPython's vectorcall convention (see the function's contract).
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf as usize) } as usize;
    let nkw = if kwnames.is_null() {
        0
    } else {
        // SAFETY: kwnames is a tuple of str when not NULL.
        unsafe { ffi::PyTuple_GET_SIZE(kwnames) as usize }
    };
    // SAFETY: as above, `args` holds nargs + nkw pointers.
    let all = unsafe { std::slice::from_raw_parts(args, nargs + nkw) };
    let method = kind.name();
    let lead = kind.leading();
    if nargs < lead.len() {
        let missing = &lead[nargs..];
        let names = missing
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(" and ");
        let plural = if missing.len() == 1 { "argument" } else { "arguments" };
        return Err(PyTypeError::new_err(format!(
            "{method}() missing {} required positional {plural}: {names}",
            missing.len()
        )));
    }
    let mut context = None;
    for i in 0..nkw {
        // SAFETY: index < size of the kwnames tuple; the item is a borrowed str.
        let name = unsafe { Borrowed::from_ptr(py, ffi::PyTuple_GET_ITEM(kwnames, i as ffi::Py_ssize_t)) };
        let name = name.cast::<PyString>()?;
        if name.to_str()? == "context" {
            // SAFETY: keyword values follow the positional ones in `all`.
            context = Some(unsafe { Borrowed::from_ptr(py, all[nargs + i]) }.to_owned());
        } else {
            return Err(PyTypeError::new_err(format!(
                "{method}() got an unexpected keyword argument '{}'",
                name.to_str()?
            )));
        }
    }
    // SAFETY: each pointer in `all` is a valid borrowed reference for the call's duration.
    let arg = |i: usize| unsafe { Borrowed::from_ptr(py, all[i]) }.to_owned();
    let rest = if nargs == lead.len() {
        PyTuple::empty(py)
    } else {
        PyTuple::new(py, (lead.len()..nargs).map(arg))?
    };
    // SAFETY: the descriptor only accepts instances of `EventLoop` (or subclasses) as self.
    let slf = unsafe { Borrowed::from_ptr(py, slf).cast_unchecked::<EventLoop>() };
    let slf = slf.as_borrowed();
    Ok(match kind {
        Kind::Soon => EventLoop::call_soon(&slf, arg(0), rest, context)?
            .into_bound(py)
            .into_any(),
        Kind::SoonThreadsafe => EventLoop::call_soon_threadsafe(&slf, arg(0), rest, context)?
            .into_bound(py)
            .into_any(),
        Kind::Later => EventLoop::call_later(&slf, arg(0), arg(1), rest, context)?
            .into_bound(py)
            .into_any(),
        Kind::At => EventLoop::call_at(&slf, arg(0), arg(1), rest, context)?
            .into_bound(py)
            .into_any(),
    })
}

/// The C entry point shared by the four methods: run `dispatch`, turn errors (and, should one
/// ever happen, a panic) into a Python exception.
///
/// # Safety
/// Called by CPython with the GIL held, following the `METH_FASTCALL | METH_KEYWORDS`
/// convention.
unsafe fn entry(
    kind: Kind,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls method implementations with the GIL held.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: forwarded from our caller's contract.
    let result = catch_unwind(AssertUnwindSafe(|| unsafe {
        dispatch(py, kind, slf, args, nargsf, kwnames)
    }));
    match result {
        Ok(Ok(obj)) => obj.into_ptr(),
        Ok(Err(err)) => {
            err.restore(py);
            std::ptr::null_mut()
        }
        Err(_) => {
            PySystemError::new_err(format!("rose internal error in {}()", kind.name())).restore(py);
            std::ptr::null_mut()
        }
    }
}

macro_rules! entry_point {
    ($fn_name:ident, $kind:expr) => {
        /// # Safety
        /// See `entry`.
        unsafe extern "C" fn $fn_name(
            slf: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargsf: ffi::Py_ssize_t,
            kwnames: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            // SAFETY: forwarded from CPython's call.
            unsafe { entry($kind, slf, args, nargsf, kwnames) }
        }
    };
}

entry_point!(call_soon_raw, Kind::Soon);
entry_point!(call_soon_threadsafe_raw, Kind::SoonThreadsafe);
entry_point!(call_later_raw, Kind::Later);
entry_point!(call_at_raw, Kind::At);

type Raw = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

const METHODS: [(&CStr, Raw, &CStr); 4] = [
    (
        c"call_soon",
        call_soon_raw,
        c"Schedule callback(*args) to run soon, in FIFO order.",
    ),
    (
        c"call_soon_threadsafe",
        call_soon_threadsafe_raw,
        c"Like call_soon(), from any thread; wakes a sleeping loop.",
    ),
    (
        c"call_later",
        call_later_raw,
        c"Schedule callback(*args) after delay seconds.",
    ),
    (
        c"call_at",
        call_at_raw,
        c"Schedule callback(*args) at loop time `when`.",
    ),
];

/// Install the raw methods on `cls` (a subclass of `EventLoop`), replacing the inherited ones.
#[pyfunction]
pub fn _install_fast_methods(py: Python<'_>, cls: &Bound<'_, PyType>) -> PyResult<()> {
    let base = py.get_type::<EventLoop>();
    if !cls.is_subclass(&base)? {
        return Err(PyTypeError::new_err("expected a subclass of rose._rose.EventLoop"));
    }
    for (name, func, doc) in METHODS {
        // The definition must outlive the descriptor: leak it (four per process).
        let def = Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: name.as_ptr() as *const c_char,
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: func,
            },
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: doc.as_ptr() as *const c_char,
        }));
        // SAFETY: `base` is a live type object and `def` lives forever.
        let descr = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(base.as_type_ptr(), def)) }?;
        cls.setattr(name.to_str().expect("ascii"), descr)?;
    }
    Ok(())
}
