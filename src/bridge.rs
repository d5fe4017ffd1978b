//! The completion bridge: Rust futures spawned on the loop's own tokio runtime, each resolving
//! an asyncio Future (made by `loop.create_future()`) on the loop thread, with no thread hop.
//!
//! - A spawned future's output is an `Output`: a `Send` closure that builds the Python result
//!   (or exception) when called with the GIL. No Python object is touched inside the tokio task;
//!   the closure runs on the loop thread, in the run step's poll phase.
//! - A future is polled once where it is made (reactor.rs `spawn`): one that is ready at once
//!   resolves its asyncio future before `spawn_future` returns, so awaiting it never yields.
//! - Otherwise its task pushes `(id, Output)` into the reactor's `Completions` and ends the park
//!   (`EV_DONE`); `drain` (GIL held) hands each output to the future registered under its id
//!   in `Pending`, unless that future is already done (cancelled).
//! - Cancelling the future runs its done-callback `Canceller`, which aborts the tokio task and
//!   forgets the id. A task aborted after it finished is harmless: its output finds no future.
//! - Tasks progress only while the loop polls the runtime (see reactor.rs).
//! - After `fork()` the child builds a new runtime (reactor.rs); tasks spawned in the parent
//!   are lost there: their futures stay pending forever in the child, and their abort handles
//!   (which point into the parent's leaked runtime) are never used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::errors::os_error;
use crate::gil_cell::GilCell;

/// What a finished task leaves for the loop thread: called once, with the GIL, to make the
/// future's result (`Ok`) or exception (`Err`).
pub type Output = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// The queue finished tasks push into. Owned by the reactor (rebuilt with it after fork).
#[derive(Default)]
pub struct Completions {
    queue: Mutex<Vec<(u64, Output)>>,
    len: AtomicUsize,
    notify: Notify,
}

impl Completions {
    /// Called by a task on the runtime (the loop thread, inside the park).
    pub fn push(&self, id: u64, out: Output) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push((id, out));
        self.len.fetch_add(1, Ordering::Release);
        // Only a park waiting on `notified()` needs waking; no permit is left behind.
        self.notify.notify_waiters();
    }

    pub fn has_any(&self) -> bool {
        self.len.load(Ordering::Acquire) != 0
    }

    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    fn take(&self) -> Vec<(u64, Output)> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        self.len.store(0, Ordering::Release);
        std::mem::take(&mut *q)
    }
}

/// The futures of a loop's spawned tasks, by id (GIL-held state of `EventLoop`, shared with
/// each future's `Canceller`).
#[derive(Clone)]
pub struct Pending(Arc<PendingInner>);

struct PendingInner {
    futures: GilCell<HashMap<u64, Py<PyAny>>>,
    next: AtomicU64,
}

impl Default for Pending {
    fn default() -> Self {
        Self(Arc::new(PendingInner {
            futures: GilCell::new(HashMap::new()),
            next: AtomicU64::new(0),
        }))
    }
}

impl Pending {
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(map) = self.0.futures.try_borrow_for_gc() {
            for fut in map.values() {
                visit.call(fut)?;
            }
        }
        Ok(())
    }

    /// Forget every future (loop closed or cleared by the GC); they stay pending.
    pub fn clear(&self, py: Python<'_>) {
        let map = self.0.futures.try_borrow_mut(py).map(|mut m| std::mem::take(&mut *m));
        drop(map);
    }

    fn forget(&self, py: Python<'_>, id: u64) {
        let fut = self.0.futures.borrow_mut(py).remove(&id);
        drop(fut);
    }

    /// A new id for a task about to be spawned.
    pub fn next_id(&self) -> u64 {
        self.0.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Register `future` as the one task `id` resolves, and make cancelling it abort the task.
    /// `generation` is the process generation of the runtime the task runs on, and `current`
    /// tells the generation now (the abort is skipped in a forked child).
    pub fn attach(
        &self,
        future: &Bound<'_, PyAny>,
        id: u64,
        abort: AbortHandle,
        generation: u64,
        current: fn() -> u64,
    ) -> PyResult<()> {
        let py = future.py();
        self.0.futures.borrow_mut(py).insert(id, future.clone().unbind());
        let canceller = Canceller {
            abort,
            generation,
            current,
            id,
            pending: self.clone(),
        };
        future.call_method1(pyo3::intern!(py, "add_done_callback"), (canceller,))?;
        Ok(())
    }
}

/// Hand finished outputs to their futures. GIL held, no cell borrowed (it calls into Python).
/// Every output is delivered even if one delivery fails; the first failure is returned.
pub fn drain(py: Python<'_>, pending: &Pending, completions: &Completions) -> PyResult<()> {
    let mut first_err = None;
    for (id, out) in completions.take() {
        let fut = pending.0.futures.borrow_mut(py).remove(&id);
        let Some(fut) = fut else { continue };
        if let Err(err) = deliver(py, fut.into_bound(py), out) {
            first_err.get_or_insert(err);
        }
    }
    first_err.map_or(Ok(()), Err)
}

pub fn deliver(py: Python<'_>, fut: Bound<'_, PyAny>, out: Output) -> PyResult<()> {
    if fut.call_method0(pyo3::intern!(py, "done"))?.is_truthy()? {
        return Ok(()); // cancelled; its Canceller has not run yet
    }
    match out(py) {
        Ok(value) => fut.call_method1(pyo3::intern!(py, "set_result"), (value,))?,
        Err(err) => fut.call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),))?,
    };
    Ok(())
}

/// The done-callback of a bridged future: aborts its task when the future is cancelled.
#[pyclass(frozen, module = "rose._rose")]
struct Canceller {
    abort: AbortHandle,
    generation: u64,
    current: fn() -> u64,
    id: u64,
    pending: Pending,
}

#[pymethods]
impl Canceller {
    fn __call__(&self, py: Python<'_>, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        if fut.call_method0(pyo3::intern!(py, "cancelled"))?.is_truthy()? {
            // A forked child must not touch the parent's runtime (its fds are shared).
            if self.generation == (self.current)() {
                self.abort.abort();
            }
            self.pending.forget(py, self.id);
        }
        Ok(())
    }
}

pub fn duration(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| pyo3::exceptions::PyValueError::new_err("seconds must be a non-negative finite number"))
}

/// Test hook (rose only): a future completed with `seconds` after a tokio sleep of `seconds`.
pub fn sleep(seconds: f64) -> PyResult<impl std::future::Future<Output = Output> + Send + 'static> {
    let d = duration(seconds)?;
    Ok(async move {
        tokio::time::sleep(d).await;
        Box::new(move |py: Python<'_>| Ok(seconds.into_pyobject(py)?.into_any().unbind())) as Output
    })
}

/// Test hook (rose only): an already-complete future resolving to `value` (the benchmark of
/// awaiting a Rust future, benchmarks/bridge.py).
pub async fn ready(value: Py<PyAny>) -> Output {
    Box::new(move |_py: Python<'_>| Ok(value))
}

/// Test hook (rose only): a future that fails with `OSError(errno, strerror)` after a tokio
/// sleep of `seconds`.
pub fn fail(seconds: f64, errno: i32) -> PyResult<impl std::future::Future<Output = Output> + Send + 'static> {
    let d = duration(seconds)?;
    Ok(async move {
        tokio::time::sleep(d).await;
        Box::new(move |_py: Python<'_>| Err(os_error(errno))) as Output
    })
}
