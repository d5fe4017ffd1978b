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

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::{ffi, Borrowed};

use crate::errors::c_entry;
use crate::event_loop::EventLoop;

/// What argument errors call the four methods (see `Kind::qualname`).
static QUALNAMES: PyOnceLock<[String; 4]> = PyOnceLock::new();

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

    fn index(self) -> usize {
        self as usize
    }

    /// The name asyncio's own method reports in argument errors ("BaseEventLoop.call_soon"),
    /// as given to `_install_fast_methods`.
    fn qualname(self, py: Python<'_>) -> String {
        QUALNAMES
            .get(py)
            .map(|names| names[self.index()].clone())
            .unwrap_or_else(|| self.name().to_owned())
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
    // (named in argument errors only: no allocation on the way that succeeds)
    let method = || kind.qualname(py);
    let lead = kind.leading();
    // SAFETY: each pointer in `all` is a valid borrowed reference for the call's duration.
    let arg = |i: usize| unsafe { Borrowed::from_ptr(py, all[i]) }.to_owned();
    // Python's own binding of `(self, lead..., *args, context=None)`: positional first, then
    // keywords (a leading parameter may be passed by name), then what is still missing.
    let mut slots: [Option<Bound<'py, PyAny>>; 2] = [None, None];
    for (i, slot) in slots.iter_mut().enumerate().take(nargs.min(lead.len())) {
        *slot = Some(arg(i));
    }
    let mut context = None;
    for i in 0..nkw {
        // SAFETY: index < size of the kwnames tuple; the item is a borrowed str.
        let name = unsafe { Borrowed::from_ptr(py, ffi::PyTuple_GET_ITEM(kwnames, i as ffi::Py_ssize_t)) };
        let name = name.cast::<PyString>()?;
        let name = name.to_str()?;
        let value = arg(nargs + i); // keyword values follow the positional ones in `all`
        if name == "context" {
            context = Some(value);
        } else if let Some(pos) = lead.iter().position(|l| *l == name) {
            if slots[pos].is_some() {
                return Err(PyTypeError::new_err(format!(
                    "{}() got multiple values for argument '{name}'",
                    method()
                )));
            }
            slots[pos] = Some(value);
        } else {
            return Err(PyTypeError::new_err(format!(
                "{}() got an unexpected keyword argument '{name}'",
                method()
            )));
        }
    }
    let missing: Vec<_> = (0..lead.len())
        .filter(|&i| slots[i].is_none())
        .map(|i| lead[i])
        .collect();
    if !missing.is_empty() {
        let names = match missing.as_slice() {
            [one] => format!("'{one}'"),
            [a, b] => format!("'{a}' and '{b}'"),
            _ => unreachable!("at most two leading parameters"),
        };
        let plural = if missing.len() == 1 { "argument" } else { "arguments" };
        return Err(PyTypeError::new_err(format!(
            "{}() missing {} required positional {plural}: {names}",
            method(),
            missing.len()
        )));
    }
    let rest = if nargs <= lead.len() {
        PyTuple::empty(py)
    } else {
        PyTuple::new(py, (lead.len()..nargs).map(arg))?
    };
    let [first, second] = slots;
    let first = first.expect("bound above");
    // SAFETY: the descriptor only accepts instances of `EventLoop` (or subclasses) as self.
    let slf = unsafe { Borrowed::from_ptr(py, slf).cast_unchecked::<EventLoop>() };
    let slf = slf.as_borrowed();
    Ok(match kind {
        Kind::Soon => EventLoop::call_soon(&slf, first, rest, context)?
            .into_bound(py)
            .into_any(),
        Kind::SoonThreadsafe => EventLoop::call_soon_threadsafe(&slf, first, rest, context)?
            .into_bound(py)
            .into_any(),
        Kind::Later => EventLoop::call_later(&slf, first, second.expect("bound above"), rest, context)?
            .into_bound(py)
            .into_any(),
        Kind::At => EventLoop::call_at(&slf, first, second.expect("bound above"), rest, context)?
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
    c_entry(py, kind.name(), || {
        // SAFETY: forwarded from our caller's contract.
        unsafe { dispatch(py, kind, slf, args, nargsf, kwnames) }.map(Bound::unbind)
    })
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

// The docstrings start with a text signature (`inspect.signature` reads it).
const METHODS: [(&CStr, Raw, &CStr); 4] = [
    (
        c"call_soon",
        call_soon_raw,
        c"call_soon($self, callback, *args, context=None)\n--\n\nSchedule callback(*args) to run soon, in FIFO order.",
    ),
    (
        c"call_soon_threadsafe",
        call_soon_threadsafe_raw,
        c"call_soon_threadsafe($self, callback, *args, context=None)\n--\n\nLike call_soon(), from any thread; wakes a sleeping loop.",
    ),
    (
        c"call_later",
        call_later_raw,
        c"call_later($self, delay, callback, *args, context=None)\n--\n\nSchedule callback(*args) after delay seconds.",
    ),
    (
        c"call_at",
        call_at_raw,
        c"call_at($self, when, callback, *args, context=None)\n--\n\nSchedule callback(*args) at loop time `when`.",
    ),
];

/// Install the raw methods on `cls` (a subclass of `EventLoop`), replacing the inherited ones;
/// `qualnames` are what their argument errors call them (asyncio's, for its messages).
#[pyfunction]
pub fn _install_fast_methods(py: Python<'_>, cls: &Bound<'_, PyType>, qualnames: [String; 4]) -> PyResult<()> {
    let base = py.get_type::<EventLoop>();
    if !cls.is_subclass(&base)? {
        return Err(PyTypeError::new_err("expected a subclass of rose._rose.EventLoop"));
    }
    let _ = QUALNAMES.set(py, qualnames);
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
