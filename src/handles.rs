//! Handles: `Handle` (from `call_soon`) and `TimerHandle` (from `call_later`/`call_at`).
//!
//! Small frozen pyclasses: the callback and its arguments live in a `GilCell` so `cancel()` can
//! drop them (breaking reference cycles, as asyncio's `Handle.cancel` does); the cancelled flag
//! and a timer's scheduled flag are atomics. A timer's `cancel()` bumps the owning loop's
//! cancelled-timer count through `LoopShared` (asyncio's `_timer_handle_cancelled`), so handles
//! hold no reference to the loop object itself.
//!
//! Running a handle enters its `contextvars.Context` with `PyContext_Enter`/`PyContext_Exit`
//! (what `Context.run` does, without a bound-method call per callback).
//!
//! Where asyncio has `_ThreadSafeHandle` (3.14+), a `call_soon_threadsafe` handle's run is
//! guarded: `running_on` holds the running thread while the callback runs, and `cancel()` or
//! `cancelled()` from any other thread wait (without the GIL) until it is back to 0. That guard
//! is atomics, a lock and a condition variable, not the GIL, so it needs nothing more under a
//! free-threaded build.
//!
//! Handles are not tracked by the cyclic garbage collector (`new_untracked`): with thousands of handles queued,
//! GC passes over them cost more than the loop itself (measured: `call_soon_batch`). Cycles
//! through a handle (`obj.timer = loop.call_later(t, obj.method)`) are broken instead the way
//! asyncio breaks them on `cancel()`: a one-shot handle gives up its callback once it has run
//! (in debug mode after the slow-callback check, which formats it), and `close()` releases
//! every pending handle's callback.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::PyTuple;
use pyo3::{PyClass, PyTraverseError, PyVisit};

use crate::errors::py_helper;
use crate::gil_cell::GilCell;
use crate::metrics::{Kind, Stats};

/// Where asyncio has `events._ThreadSafeHandle` (3.14+), a `call_soon_threadsafe` handle's
/// `cancel()` and `cancelled()`, called from another thread while its callback runs, wait until
/// the callback has returned (asyncio holds a lock around the run). Set once at import from
/// rose/_compat.py (`_set_threadsafe_handles`).
static THREADSAFE_HANDLES: AtomicBool = AtomicBool::new(false);
/// Threads waiting in `wait_until_run`, and what wakes them when any guarded callback ends
/// (rare: one lock and condition variable for all handles).
static RUN_WAITERS: AtomicUsize = AtomicUsize::new(0);
static RUN_DONE_LOCK: Mutex<()> = Mutex::new(());
static RUN_DONE: Condvar = Condvar::new();

pub(crate) fn set_threadsafe_handles(enabled: bool) {
    THREADSAFE_HANDLES.store(enabled, Ordering::Relaxed);
}

/// The calling thread, as a non-zero number.
fn thread_token() -> u64 {
    // SAFETY: pthread_self has no preconditions and never fails.
    (unsafe { libc::pthread_self() }) as u64
}

/// State a loop shares with the handles it made.
#[derive(Default)]
pub struct LoopShared {
    pub debug: AtomicBool,
    pub timer_cancelled: AtomicUsize,
    /// What `loop.metrics()` reports (see metrics.rs); transports hold it too.
    pub stats: Arc<Stats>,
}

/// What `run_keeping` hands back: the callback and arguments a one-shot handle gave up.
pub(crate) type Taken<'py> = Option<(Bound<'py, PyAny>, Bound<'py, PyTuple>)>;

struct Callback {
    callback: Py<PyAny>,
    args: Py<PyTuple>,
}

#[pyclass(subclass, frozen, weakref, module = "rose._rose")]
pub struct Handle {
    cb: GilCell<Option<Callback>>,
    context: GilCell<HandleContext>,
    cancelled: AtomicBool,
    /// `call_soon`/`call_later` handles run once; `add_reader` handles run repeatedly.
    oneshot: bool,
    /// Made by `call_soon_threadsafe` (set each time a spare handle is reused).
    threadsafe: AtomicBool,
    /// What the metrics count it as: `metrics::Kind` (ready, timer, or an fd's watch).
    kind: AtomicU8,
    /// While a guarded callback runs (see `THREADSAFE_HANDLES`): the thread running it.
    running_on: AtomicU64,
    /// The loop's debug mode when the handle was made (asyncio asks the loop at cancel time;
    /// the flag rarely changes while handles are pending).
    debug: bool,
    source_traceback: GilCell<Option<Py<PyAny>>>,
    repr: GilCell<Option<Py<PyAny>>>,
}

#[pyclass(extends = Handle, frozen, module = "rose._rose")]
pub struct TimerHandle {
    /// The deadline, as f64 bits (mutable only for reuse from the loop's spare timers).
    when: AtomicU64,
    scheduled: AtomicBool,
    shared: Arc<LoopShared>,
}

/// Allocate a handle object and take it out of the cyclic GC's view (see the module note).
/// pyo3 gives every pyclass GC support; tracking is what costs.
pub(crate) fn new_untracked<T: PyClass>(py: Python<'_>, init: impl Into<PyClassInitializer<T>>) -> PyResult<Py<T>> {
    let obj = Py::new(py, init)?;
    // SAFETY: `obj` is a live object of a GC-enabled type; untracking is always allowed (the
    // collector then treats it as an external reference holder, never frees through it).
    unsafe { ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) };
    Ok(obj)
}

/// Whether `obj` is a `contextvars.Context` (exactly: what `PyContext_Enter` takes).
pub(crate) fn is_context(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: reading the type pointer of a live object.
    unsafe { ffi::Py_TYPE(obj.as_ptr()) == std::ptr::addr_of_mut!(ffi::PyContext_Type) }
}

/// The current context, copied (what `contextvars.copy_context()` returns).
pub(crate) fn copy_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: PyContext_CopyCurrent returns a new reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }.map(Bound::unbind)
}

/// A handle's context: the one given (`context=`), or the copy of the current context the
/// handle made (asyncio's rule when none is given).
///
/// A copy is hidden from the cyclic GC while the handle holds it, as the handle itself is
/// (see the module note): with thousands of handles pending (timers, a batch of callbacks),
/// their contexts were most of what each collection traversed (measured: 40% of
/// `timer_cancel`'s time in the GC, over the copies). It is tracked again before the handle
/// lets it go (CPython frees a context assuming it is tracked), so whoever else holds it
/// (`handle.get_context()`) holds an ordinary, tracked context once the handle is done.
struct HandleContext {
    obj: Py<PyAny>,
    untracked: bool,
}

impl HandleContext {
    /// `context=` as given, or a copy of the current context when it is None.
    fn given_or_copy(py: Python<'_>, context: Option<Bound<'_, PyAny>>) -> PyResult<Self> {
        match context {
            Some(ctx) if !ctx.is_none() => Ok(Self {
                obj: ctx.unbind(),
                untracked: false,
            }),
            _ => {
                let obj = copy_context(py)?;
                // SAFETY: a live context object we just made (GC-enabled, tracked at creation).
                unsafe { ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) };
                Ok(Self { obj, untracked: true })
            }
        }
    }

    fn none(py: Python<'_>) -> Self {
        Self {
            obj: py.None(),
            untracked: false,
        }
    }

    fn get(&self) -> &Py<PyAny> {
        &self.obj
    }
}

impl Drop for HandleContext {
    fn drop(&mut self) {
        if self.untracked {
            // Handles drop their state with the GIL held (their dealloc, the loop's own
            // methods: a handle is never sent to another thread without it), so no `attach`,
            // whose thread-local lookups measured a third of this drop.
            let obj = self.obj.as_ptr();
            // SAFETY: the GIL is held (above); a live GC-enabled object; tracking it again is
            // allowed once it is untracked, which the check makes sure of.
            unsafe {
                if ffi::PyObject_GC_IsTracked(obj) == 0 {
                    ffi::PyObject_GC_Track(obj.cast());
                }
            }
        }
    }
}

impl Handle {
    pub(crate) fn new(
        py: Python<'_>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        shared: &Arc<LoopShared>,
        oneshot: bool,
    ) -> PyResult<Self> {
        let context = HandleContext::given_or_copy(py, context)?;
        Ok(Self {
            cb: GilCell::new(Some(Callback {
                callback: callback.unbind(),
                args: args.unbind(),
            })),
            context: GilCell::new(context),
            cancelled: AtomicBool::new(false),
            oneshot,
            threadsafe: AtomicBool::new(false),
            kind: AtomicU8::new(Kind::Ready as u8),
            running_on: AtomicU64::new(0),
            debug: shared.debug.load(Ordering::Relaxed),
            source_traceback: GilCell::new(None),
            repr: GilCell::new(None),
        })
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// What the metrics count this handle's runs as (`metrics::Kind` as a number).
    #[inline]
    pub(crate) fn kind(&self) -> u8 {
        self.kind.load(Ordering::Relaxed)
    }

    pub(crate) fn set_kind(&self, kind: Kind) {
        self.kind.store(kind as u8, Ordering::Relaxed);
    }

    pub(crate) fn set_threadsafe(&self, threadsafe: bool) {
        self.threadsafe.store(threadsafe, Ordering::Relaxed);
    }

    fn guarded(&self) -> bool {
        self.threadsafe.load(Ordering::Relaxed) && THREADSAFE_HANDLES.load(Ordering::Relaxed)
    }

    /// From another thread than the one running this handle's guarded callback: wait
    /// (without the GIL) until the callback has returned. The running thread itself goes on
    /// (asyncio's lock is reentrant).
    fn wait_until_run(&self, py: Python<'_>) {
        let running = self.running_on.load(Ordering::SeqCst);
        if running == 0 || running == thread_token() {
            return;
        }
        RUN_WAITERS.fetch_add(1, Ordering::SeqCst);
        let running_on = &self.running_on;
        py.detach(|| {
            let mut guard = RUN_DONE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            while running_on.load(Ordering::SeqCst) != 0 {
                guard = RUN_DONE.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
        });
        RUN_WAITERS.fetch_sub(1, Ordering::SeqCst);
    }

    /// Make a handle that ran (and that nobody else can see) new again, for the loop's pool
    /// of spare handles: the cheapest handle is the one not allocated.
    pub(crate) fn reinit(
        &self,
        py: Python<'_>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let context = HandleContext::given_or_copy(py, context)?;
        let old_ctx = std::mem::replace(&mut *self.context.borrow_mut(py), context);
        let old_cb = self.cb.borrow_mut(py).replace(Callback {
            callback: callback.unbind(),
            args: args.unbind(),
        });
        self.cancelled.store(false, Ordering::Relaxed);
        drop((old_ctx, old_cb)); // outside the borrows
        Ok(())
    }

    /// True when `slf` may go back to a pool of spares: a one-shot handle of exactly type
    /// `tp` (`Handle` or `TimerHandle`), made outside debug mode, referenced only by the caller,
    /// with no weak references.
    pub(crate) fn recyclable(slf: &Bound<'_, Self>, tp: *mut ffi::PyTypeObject) -> bool {
        let this = slf.get();
        if !this.oneshot || this.debug {
            return false;
        }
        let obj = slf.as_ptr();
        // SAFETY: reading the refcount, the type and (at the type's published
        // tp_weaklistoffset) the weak-reference list head of a live object.
        unsafe {
            if ffi::Py_TYPE(obj) != tp || ffi::Py_REFCNT(obj) != 1 {
                return false;
            }
            let offset = (*tp).tp_weaklistoffset;
            offset > 0 && (*obj.cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>()).is_null()
        }
    }

    /// Drop what a spare handle still holds (its context: values of context variables must not
    /// outlive the callback because a spare handle keeps them).
    #[inline]
    pub(crate) fn retire(&self, py: Python<'_>) {
        let old = std::mem::replace(&mut *self.context.borrow_mut(py), HandleContext::none(py));
        drop(old);
    }

    /// For the loop's `__traverse__`: what this handle keeps alive, when the loop's container
    /// is its only owner (reference count 1; weak references do not count). A handle is not
    /// tracked by the GC itself (see the module note), so a loop that owns it reports its
    /// contents as its own; one that someone else also holds reports nothing, since those
    /// references may come from outside the loop.
    pub(crate) fn traverse_if_owned(obj: &Bound<'_, Self>, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: reading the reference count of a live object.
        if unsafe { ffi::Py_REFCNT(obj.as_ptr()) } != 1 {
            return Ok(());
        }
        let this = obj.get();
        if let Some(cb) = this.cb.try_borrow_for_gc() {
            if let Some(cb) = &*cb {
                visit.call(&cb.callback)?;
                visit.call(&cb.args)?;
            }
        }
        if let Some(ctx) = this.context.try_borrow_for_gc() {
            visit.call(ctx.get())?;
        }
        if let Some(tb) = this.source_traceback.try_borrow_for_gc() {
            visit.call(&*tb)?;
        }
        if let Some(repr) = this.repr.try_borrow_for_gc() {
            visit.call(&*repr)?;
        }
        Ok(())
    }

    /// Give up the callback and its arguments (the loop is closing).
    pub(crate) fn release(&self, py: Python<'_>) {
        let cb = self.cb.borrow_mut(py).take();
        drop(cb);
    }

    /// A one-shot handle that ran has no more use for its callback.
    pub(crate) fn release_if_oneshot(&self, py: Python<'_>) {
        if self.oneshot {
            self.release(py);
        }
    }

    pub(crate) fn set_source_traceback(&self, py: Python<'_>, tb: Py<PyAny>) {
        let old = self.source_traceback.borrow_mut(py).replace(tb);
        drop(old); // outside the borrow: a drop may run Python code
    }

    pub(crate) fn cancel_bound(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        if this.cancelled.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let py = slf.py();
        if this.debug {
            // asyncio keeps the repr (with callback and arguments) of a handle cancelled in
            // debug mode, for the messages that may mention it later.
            let r = slf.repr()?.into_any().unbind();
            let old = this.repr.borrow_mut(py).replace(r);
            drop(old);
        }
        let dropped = this.cb.borrow_mut(py).take();
        drop(dropped); // may run arbitrary __del__ code: outside the borrow
        Ok(())
    }

    /// Run the callback in the handle's context. Exceptions go to the loop's exception
    /// handler, except `KeyboardInterrupt` and `SystemExit`, which are returned (they stop the
    /// loop, as in asyncio).
    pub(crate) fn run(slf: &Bound<'_, Self>, event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::run_inner::<false>(slf, event_loop).map(|_| ())
    }

    /// `run`, handing back the callback and arguments a one-shot handle gave up to run them
    /// (the caller drops them, or puts them back for a moment to format the handle).
    pub(crate) fn run_keeping<'py>(slf: &Bound<'py, Self>, event_loop: &Bound<'py, PyAny>) -> PyResult<Taken<'py>> {
        Self::run_inner::<true>(slf, event_loop)
    }

    /// Two copies: `run` (nothing handed back, the plain path of every callback) measured a few
    /// instructions cheaper apart than as `run_keeping` with the result dropped.
    #[inline(always)]
    fn run_inner<'py, const KEEP: bool>(
        slf: &Bound<'py, Self>,
        event_loop: &Bound<'py, PyAny>,
    ) -> PyResult<Taken<'py>> {
        let py = slf.py();
        let this = slf.get();
        let taken = if this.oneshot && !this.debug {
            this.cb.borrow_mut(py).take()
        } else {
            None
        };
        let kept = taken.is_some();
        let (callback, args) = match taken {
            Some(cb) => (cb.callback.into_bound(py), cb.args.into_bound(py)),
            None => match &*this.cb.borrow_mut(py) {
                // Bound clones: dropping them is a plain decref (a `Py` drop checks the GIL first).
                Some(cb) => (cb.callback.bind(py).clone(), cb.args.bind(py).clone()),
                None => return Ok(None),
            },
        };
        let guarded = this.guarded();
        if guarded {
            this.running_on.store(thread_token(), Ordering::SeqCst);
        }
        let result = this.call_in_context(py, &callback, &args);
        if guarded {
            this.running_on.store(0, Ordering::SeqCst);
            if RUN_WAITERS.load(Ordering::SeqCst) > 0 {
                // Under the lock: a waiter between its check and its wait cannot miss this.
                let _lock = RUN_DONE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
                RUN_DONE.notify_all();
            }
        }
        match result {
            Ok(()) => Ok(if KEEP && kept { Some((callback, args)) } else { None }),
            Err(err) if err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py) => {
                Err(err)
            }
            Err(err) => {
                // The exception handler gets the handle (`context['handle']`) and, as asyncio's,
                // it still has its callback: its repr and `_callback` name what failed. Taken
                // again afterwards (handles are outside the cyclic GC: see the module note).
                let restore = this.oneshot && !this.debug && !this.cancelled.load(Ordering::Relaxed);
                if restore {
                    let cb = Callback {
                        callback: callback.clone().unbind(),
                        args: args.clone().unbind(),
                    };
                    let old = this.cb.borrow_mut(py).replace(cb);
                    drop(old); // None: taken above
                }
                let reported = py_helper(py, "_callback_error")
                    .and_then(|f| f.call1((event_loop, slf, err.into_value(py), callback, args)));
                if restore {
                    let cb = this.cb.borrow_mut(py).take();
                    drop(cb);
                }
                reported?;
                Ok(None)
            }
        }
    }

    /// Give a one-shot handle back the callback it gave up to run (see `run_keeping`) while it
    /// is formatted; `unlend` takes it again.
    pub(crate) fn lend(&self, py: Python<'_>, taken: &Taken<'_>) {
        if let Some((callback, args)) = taken {
            let mut cb = self.cb.borrow_mut(py);
            if cb.is_none() {
                *cb = Some(Callback {
                    callback: callback.clone().unbind(),
                    args: args.clone().unbind(),
                });
            }
        }
    }

    pub(crate) fn unlend(&self, py: Python<'_>, taken: &Taken<'_>) {
        if taken.is_some() {
            let cb = self.cb.borrow_mut(py).take();
            drop(cb); // outside the borrow
        }
    }

    fn call_in_context(&self, py: Python<'_>, callback: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
        let ctx = self.context.borrow_mut(py).get().bind(py).clone();
        let ctx = &ctx;
        if !is_context(ctx) {
            // Whatever the user passed as `context=`: behave as asyncio does, `context.run(...)`.
            let mut all = vec![callback.clone()];
            all.extend(args.iter());
            ctx.call_method1("run", PyTuple::new(py, all)?)?;
            return Ok(());
        }
        // SAFETY: `ctx` is a live contextvars.Context (checked above).
        if unsafe { ffi::PyContext_Enter(ctx.as_ptr()) } < 0 {
            return Err(PyErr::fetch(py));
        }
        let result = if args.is_empty() {
            callback.call0()
        } else {
            callback.call1(args)
        };
        // SAFETY: we entered this context just above, on this thread.
        let exited = unsafe { ffi::PyContext_Exit(ctx.as_ptr()) };
        let _ = result?;
        if exited < 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(())
    }
}

#[pymethods]
impl Handle {
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        if this.guarded() {
            this.wait_until_run(slf.py());
        }
        Self::cancel_bound(slf)
    }

    fn cancelled(&self, py: Python<'_>) -> bool {
        if self.guarded() {
            self.wait_until_run(py);
        }
        self.is_cancelled()
    }

    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.borrow_mut(py).get().clone_ref(py)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(r) = &*slf.get().repr.borrow_mut(py) {
            return Ok(r.clone_ref(py));
        }
        let this = slf.get();
        let threadsafe = this.threadsafe.load(Ordering::Relaxed);
        Ok(py_helper(py, "_handle_repr")?
            .call1((slf, this.debug, threadsafe))?
            .unbind())
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.cb.borrow_mut(py).as_ref().map(|c| c.callback.clone_ref(py))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.cb.borrow_mut(py).as_ref().map(|c| c.args.clone_ref(py))
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.is_cancelled()
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.borrow_mut(py).get().clone_ref(py)
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.source_traceback.borrow_mut(py).as_ref().map(|t| t.clone_ref(py))
    }

    #[setter(_source_traceback)]
    fn set_private_source_traceback(&self, py: Python<'_>, value: Option<Py<PyAny>>) {
        // The old value is dropped outside the borrow: its `__del__` may read this handle.
        let old = std::mem::replace(&mut *self.source_traceback.borrow_mut(py), value);
        drop(old);
    }
}

impl TimerHandle {
    pub(crate) fn new(when: f64, shared: &Arc<LoopShared>) -> Self {
        Self {
            when: AtomicU64::new(when.to_bits()),
            scheduled: AtomicBool::new(false),
            shared: shared.clone(),
        }
    }

    #[inline]
    pub(crate) fn deadline(&self) -> f64 {
        f64::from_bits(self.when.load(Ordering::Relaxed))
    }

    /// A spare timer gets a new deadline.
    pub(crate) fn rearm(&self, when: f64) {
        self.when.store(when.to_bits(), Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn set_scheduled(&self, value: bool) {
        self.scheduled.store(value, Ordering::Relaxed);
    }
}

#[pymethods]
impl TimerHandle {
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        let base = slf.as_super();
        if !base.get().is_cancelled() && this.scheduled.load(Ordering::Relaxed) {
            this.shared.timer_cancelled.fetch_add(1, Ordering::Relaxed);
            this.shared.stats.timers_cancelled.add_shared(1);
        }
        Handle::cancel_bound(base)
    }

    fn when(&self) -> f64 {
        self.deadline()
    }

    /// asyncio's TimerHandle: hashed by its deadline.
    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        pyo3::types::PyFloat::new(py, self.deadline()).hash()
    }

    /// asyncio's TimerHandle order: by deadline (`<=`/`>=` also when equal); equal when the
    /// deadline, callback, arguments and cancelled state are; other types: NotImplemented.
    fn __richcmp__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (slf.get().deadline(), other.get().deadline());
        let equal = || -> PyResult<bool> {
            if a != b {
                return Ok(false);
            }
            let (x, y) = (slf.as_super().get(), other.as_super().get());
            if x.is_cancelled() != y.is_cancelled() {
                return Ok(false);
            }
            let callbacks = |h: &Handle| {
                h.cb.borrow_mut(py)
                    .as_ref()
                    .map(|c| (c.callback.clone_ref(py), c.args.clone_ref(py)))
            };
            match (callbacks(x), callbacks(y)) {
                (None, None) => Ok(true),
                (Some((f, fa)), Some((g, ga))) => Ok(f.bind(py).eq(g.bind(py))? && fa.bind(py).eq(ga.bind(py))?),
                _ => Ok(false),
            }
        };
        let result = match op {
            CompareOp::Lt => a < b,
            CompareOp::Gt => a > b,
            CompareOp::Le => a < b || equal()?,
            CompareOp::Ge => a > b || equal()?,
            CompareOp::Eq => equal()?,
            CompareOp::Ne => !equal()?,
        };
        Ok(pyo3::types::PyBool::new(py, result).to_owned().into_any().unbind())
    }

    #[getter]
    fn _when(&self) -> f64 {
        self.deadline()
    }

    #[getter]
    fn _scheduled(&self) -> bool {
        self.scheduled.load(Ordering::Relaxed)
    }
}
