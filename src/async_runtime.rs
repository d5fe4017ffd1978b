//! `RoseRuntime`: pyo3-async-runtimes' generic runtime interface on rose's loop, so Rust code
//! written against pyo3-async-runtimes (`generic::future_into_py::<RoseRuntime, _, _>`,
//! `generic::into_future::<RoseRuntime>`, `generic::get_current_loop::<RoseRuntime>`) runs
//! on the running rose loop's own tokio runtime, and its results reach Python on the loop
//! thread with no other thread involved.
//!
//! What it owns and its invariants:
//! - `CURRENT`, a thread-local: the tokio handle of the runtime of the rose loop running on this
//!   thread (set by `EventLoop::_run_forever_inner` through `enter`, restored when it returns),
//!   with the fork generation it was taken in. `spawn` uses it and nothing else: a spawn from a
//!   thread where no rose loop runs (or in a forked child, until the loop is entered again)
//!   spawns nothing and its `JoinHandle` resolves at once to `JoinError::NoLoop`; it never
//!   panics. `future_into_py` here checks first and raises `RuntimeError`, because
//!   pyo3-async-runtimes drops the handle of its first spawn (its Python future would stay
//!   pending forever).
//! - `spawn_blocking` has no blocking pool: it runs the closure in a task on the loop thread.
//!   pyo3-async-runtimes uses it only for a short `Python::attach` that hands the result to
//!   `call_soon_threadsafe`; that is what keeps delivery on the loop thread (on its own tokio
//!   runtime the same step is a hop to a blocking-pool thread). Blocking work belongs in
//!   `loop.run_in_executor`, not here.
//! - Unlike rose's own bridge (bridge.rs), these tasks take the GIL and call into Python inside
//!   the runtime: on the loop thread, either in `poll_now` (GIL held) or during the park (GIL
//!   released by the loop, re-taken by the task). The loop holds no `GilCell` borrow there, only
//!   the shared one of its reactor, so such Python code may use `call_soon_threadsafe` (which
//!   ends the park) and the like, but must not run a loop.
//! - Task locals (the event loop and contextvars context of `future_into_py`) live in a
//!   `tokio::task_local!`, as in pyo3-async-runtimes' tokio runtime.
//!
//! This is a compatibility layer; rose's own Rust API (`EventLoop::spawn_future`) stays the
//! fast path (see benchmarks/README.md, "bridge").

use std::cell::{OnceCell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;
use pyo3_async_runtimes::generic::{self, ContextExt, Runtime};
use pyo3_async_runtimes::TaskLocals;
use tokio::runtime::Handle;

use crate::bridge::duration;
use crate::reactor::fork_generation;

const NO_LOOP: &str = "no running rose event loop";

thread_local! {
    static CURRENT: RefCell<Option<(Handle, u64)>> = const { RefCell::new(None) };
}

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

/// While alive, `RoseRuntime` spawns on `handle` on this thread (see `enter`).
pub struct Entered {
    previous: Option<(Handle, u64)>,
}

/// Make `handle` (the running loop's runtime) the one `RoseRuntime` spawns on, on this thread,
/// until the guard is dropped.
pub fn enter(handle: Handle) -> Entered {
    let previous = CURRENT.with(|c| c.replace(Some((handle, fork_generation()))));
    Entered { previous }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // `try_with`: a guard dropped while the thread's locals are torn down has nothing to do.
        let _ = CURRENT.try_with(|c| c.replace(previous));
    }
}

fn current() -> Option<Handle> {
    CURRENT
        .try_with(|c| {
            c.borrow()
                .as_ref()
                .filter(|(_, generation)| *generation == fork_generation())
                .map(|(handle, _)| handle.clone())
        })
        .ok()
        .flatten()
}

/// pyo3-async-runtimes' runtime interface on the running rose loop (see the module note).
pub struct RoseRuntime;

/// Why a `RoseRuntime` task did not run to completion.
#[derive(Debug)]
pub enum JoinError {
    /// Spawned where no rose loop runs: the future was dropped unpolled.
    NoLoop,
    /// The task panicked or was aborted (its loop closed).
    Task(tokio::task::JoinError),
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoLoop => f.write_str(NO_LOOP),
            Self::Task(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for PyErr {
    fn from(err: JoinError) -> Self {
        PyRuntimeError::new_err(err.to_string())
    }
}

impl generic::JoinError for JoinError {
    fn is_panic(&self) -> bool {
        matches!(self, Self::Task(err) if err.is_panic())
    }

    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        match self {
            Self::Task(err) => err.into_panic(),
            Self::NoLoop => Box::new(NO_LOOP),
        }
    }
}

/// The handle of a `RoseRuntime` task.
pub enum JoinHandle {
    Spawned(tokio::task::JoinHandle<()>),
    NoLoop,
}

impl Future for JoinHandle {
    type Output = Result<(), JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Spawned(handle) => Pin::new(handle).poll(cx).map_err(JoinError::Task),
            Self::NoLoop => Poll::Ready(Err(JoinError::NoLoop)),
        }
    }
}

impl Runtime for RoseRuntime {
    type JoinError = JoinError;
    type JoinHandle = JoinHandle;

    fn spawn<F>(fut: F) -> JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match current() {
            Some(handle) => JoinHandle::Spawned(handle.spawn(fut)),
            None => JoinHandle::NoLoop,
        }
    }

    fn spawn_blocking<F>(f: F) -> JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        Self::spawn(async move { f() })
    }
}

impl ContextExt for RoseRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS.try_with(|c| c.get().cloned()).unwrap_or_default()
    }
}

/// `generic::future_into_py::<RoseRuntime, _, _>`, or `RuntimeError("no running rose event
/// loop")` where no rose loop runs on this thread.
pub fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    if current().is_none() {
        return Err(JoinError::NoLoop.into());
    }
    generic::future_into_py::<RoseRuntime, _, T>(py, fut)
}

/// How many `sleep` futures are alive (test hook: a cancelled one must be dropped).
static LIVE: AtomicUsize = AtomicUsize::new(0);

struct Live;

impl Live {
    fn new() -> Self {
        LIVE.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Test hook: a tokio sleep of `seconds` on the loop's runtime, resolving to `seconds`.
pub fn sleep(py: Python<'_>, seconds: f64) -> PyResult<Bound<'_, PyAny>> {
    let d = duration(seconds)?;
    let live = Live::new();
    future_into_py(py, async move {
        let _live = live;
        tokio::time::sleep(d).await;
        Ok(seconds)
    })
}

/// Test hook: an already-complete Rust future resolving to `value`.
pub fn ready(py: Python<'_>, value: Py<PyAny>) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move { Ok(value) })
}

/// Test hook: Rust awaits `awaitable` (through `into_future`) and resolves to its result.
pub fn await_awaitable(awaitable: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    let py = awaitable.py();
    let fut = generic::into_future::<RoseRuntime>(awaitable)?;
    future_into_py(py, fut)
}

/// Test hook: the event loop as the Rust future sees it (`get_current_loop` in its task).
pub fn current_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async {
        Python::attach(|py| generic::get_current_loop::<RoseRuntime>(py).map(Bound::unbind))
    })
}

/// Test hook: the thread that polls the Rust future, as `threading.get_ident()` names it.
pub fn thread_ident(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async {
        Python::attach(|py| py.import("threading")?.call_method0("get_ident")?.into_py_any(py))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
        let mut fut = std::pin::pin!(fut);
        fut.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn spawn_without_a_loop_reports_no_loop() {
        let handle = RoseRuntime::spawn(async { unreachable!("must not run") });
        match poll_once(handle) {
            Poll::Ready(Err(err @ JoinError::NoLoop)) => {
                assert!(!generic::JoinError::is_panic(&err));
                assert_eq!(err.to_string(), "no running rose event loop");
            }
            _ => panic!("expected NoLoop"),
        }
        assert!(matches!(
            poll_once(RoseRuntime::spawn_blocking(|| unreachable!())),
            Poll::Ready(Err(JoinError::NoLoop))
        ));
    }

    #[test]
    fn no_task_locals_outside_a_task() {
        assert!(RoseRuntime::get_task_locals().is_none());
    }

    #[test]
    fn enter_restores_the_previous_handle() {
        // Only the thread-local is exercised: the runtime is never driven.
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(current().is_none());
        {
            let _outer = enter(rt.handle().clone());
            assert!(current().is_some());
            {
                let _inner = enter(rt.handle().clone());
                assert!(current().is_some());
            }
            assert!(current().is_some());
        }
        assert!(current().is_none());
    }
}
