//! `rose_pyo3_async_test`: pyo3-async-runtimes' tokio runtime used as a third-party extension
//! uses it, for tests/test_pyo3_async.py (each function works on any asyncio loop).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3_async_runtimes::tokio as pyo3_tokio;

fn duration(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| PyValueError::new_err("seconds must be a non-negative finite number"))
}

/// How many `sleep` futures are alive (a cancelled one must be dropped).
static LIVE: AtomicUsize = AtomicUsize::new(0);

struct Live;

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A future resolving to `value` after a tokio sleep of `seconds`.
#[pyfunction]
fn sleep(py: Python<'_>, seconds: f64, value: Py<PyAny>) -> PyResult<Bound<'_, PyAny>> {
    let d = duration(seconds)?;
    LIVE.fetch_add(1, Ordering::Relaxed);
    let live = Live;
    pyo3_tokio::future_into_py(py, async move {
        let _live = live;
        tokio::time::sleep(d).await;
        Ok(value)
    })
}

/// A future of an already-complete Rust future resolving to `value`.
#[pyfunction]
fn ready(py: Python<'_>, value: Py<PyAny>) -> PyResult<Bound<'_, PyAny>> {
    pyo3_tokio::future_into_py(py, async move { Ok(value) })
}

/// Rust awaits `coro` (through `into_future`) and resolves to its result.
#[pyfunction]
fn await_coro(coro: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    let py = coro.py();
    let fut = pyo3_tokio::into_future(coro)?;
    pyo3_tokio::future_into_py(py, fut)
}

/// The event loop as the Rust future sees it (`get_current_loop` in its task).
#[pyfunction]
fn current_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    pyo3_tokio::future_into_py(py, async {
        Python::attach(|py| pyo3_tokio::get_current_loop(py).map(Bound::unbind))
    })
}

/// `ValueError("raised after {seconds}")` after a tokio sleep of `seconds`.
#[pyfunction]
fn raise_after(py: Python<'_>, seconds: f64) -> PyResult<Bound<'_, PyAny>> {
    let d = duration(seconds)?;
    pyo3_tokio::future_into_py(py, async move {
        tokio::time::sleep(d).await;
        Err::<(), _>(PyValueError::new_err(format!("raised after {seconds}")))
    })
}

/// How many `sleep` futures are alive.
#[pyfunction]
fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

#[pymodule]
fn rose_pyo3_async_test(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sleep, m)?)?;
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(await_coro, m)?)?;
    m.add_function(wrap_pyfunction!(current_loop, m)?)?;
    m.add_function(wrap_pyfunction!(raise_after, m)?)?;
    m.add_function(wrap_pyfunction!(live, m)?)?;
    Ok(())
}
