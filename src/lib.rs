//! `rose._rose`: the compiled core of rose, an asyncio event loop on a tokio reactor.
//! This file only assembles the module; each asyncio concept has its own module.

#![deny(unsafe_op_in_unsafe_fn)]

mod async_runtime;
mod bridge;
mod clock;
mod dns;
mod errors;
mod event_loop;
mod fastcall;
mod gil_cell;
mod handles;
mod metrics;
mod reactor;
mod selector;
mod server;
mod sock;
mod sockaddr;
mod sockfd;
mod stream;
pub mod timers;
mod transport;
mod udp;
pub mod write_buffer;

use pyo3::prelude::*;

/// Called in a forked child (`os.register_at_fork(after_in_child=...)`): every loop rebuilds
/// its reactor before its next use.
#[pyfunction]
fn _after_fork_child() {
    reactor::note_fork();
}

/// Called once at import with `rose._compat.THREADSAFE_HANDLES` (see handles.rs).
#[pyfunction]
fn _set_threadsafe_handles(enabled: bool) {
    handles::set_threadsafe_handles(enabled);
}

/// `rose.set_slow_callback_threshold`: the process-wide threshold (seconds; None: off) of loops
/// that have not set their own.
#[pyfunction]
#[pyo3(signature = (seconds))]
fn _set_slow_callback_threshold(seconds: Option<f64>) -> PyResult<()> {
    let ns = metrics::threshold_ns(seconds).map_err(pyo3::exceptions::PyValueError::new_err)?;
    // Stored plus one: 0 is "off", a threshold of 0 s reports every callback.
    let stored = if seconds.is_none() {
        0
    } else {
        ns.saturating_add(1).min(u64::MAX - 2)
    };
    metrics::SLOW_THRESHOLD_NS.store(stored, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// `rose.set_callback_timing`: time every callback of every loop (or only where needed).
#[pyfunction]
fn _set_callback_timing(enabled: bool) {
    metrics::CALLBACK_TIMING.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

/// The process-wide slow-callback threshold in seconds, or None.
#[pyfunction]
fn _get_slow_callback_threshold() -> Option<f64> {
    match metrics::SLOW_THRESHOLD_NS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => None,
        ns => Some((ns - 1) as f64 / 1e9),
    }
}

#[pymodule]
fn _rose(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<event_loop::EventLoop>()?;
    m.add_class::<handles::Handle>()?;
    m.add_class::<handles::TimerHandle>()?;
    for name in ["Handle", "TimerHandle"] {
        // Setting `__name__` makes the type's C name plain "TimerHandle" (not
        // "rose._rose.TimerHandle"), as in the messages Python builds from it for asyncio's own
        // handles: "'<' not supported between instances of 'TimerHandle' and 'int'".
        m.getattr(name)?.setattr("__name__", name)?;
    }
    m.add_class::<stream::StreamTransport>()?;
    m.add_class::<server::AcceptedSocket>()?;
    m.add_function(wrap_pyfunction!(server::_accept, m)?)?;
    m.add_function(wrap_pyfunction!(stream::_install_transport_methods, m)?)?;
    m.add_class::<udp::DatagramTransport>()?;
    m.add_class::<sock::SockOp>()?;
    m.add_function(wrap_pyfunction!(sock::_sock_try_recv, m)?)?;
    m.add_function(wrap_pyfunction!(sock::_sock_try_recv_into, m)?)?;
    m.add_function(wrap_pyfunction!(sock::_sock_try_send, m)?)?;
    m.add_function(wrap_pyfunction!(sock::_sock_wait, m)?)?;
    m.add_function(wrap_pyfunction!(dns::_interface_addresses, m)?)?;
    m.add_function(wrap_pyfunction!(dns::_dns_generation, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_child, m)?)?;
    m.add_function(wrap_pyfunction!(_set_threadsafe_handles, m)?)?;
    m.add_function(wrap_pyfunction!(_set_slow_callback_threshold, m)?)?;
    m.add_function(wrap_pyfunction!(_get_slow_callback_threshold, m)?)?;
    m.add_function(wrap_pyfunction!(_set_callback_timing, m)?)?;
    m.add(
        "_HISTOGRAM_BOUNDS_NS",
        (0..metrics::BUCKETS - 1)
            .map(|k| metrics::bucket_bound_ns(k).unwrap_or(0))
            .collect::<Vec<u64>>(),
    )?;
    m.add_function(wrap_pyfunction!(fastcall::_install_fast_methods, m)?)?;
    Ok(())
}
