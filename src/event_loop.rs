//! The compiled base of rose's loop: the ready queue, the timer heap, and the run step
//! (asyncio's `_run_once`), plus the scheduling methods on the hot path.
//!
//! One iteration, as DESIGN.md fixes it:
//! 1. drop cancelled timers (asyncio's clean-up rule: a full rebuild once more than half of
//!    over 100 scheduled timers are cancelled, else only from the head);
//! 2. if callbacks are ready (or the loop is stopping) do not block: poll I/O only when the
//!    last poll is older than `POLL_BUDGET_NS`; otherwise release the GIL — the only place
//!    it is released — and park in the reactor until the earliest timer, an fd, a signal or
//!    `call_soon_threadsafe`;
//! 3. with the GIL held: queue `add_reader`/`add_writer` callbacks, run Python's signal
//!    handlers, move due timers to the ready queue in heap order, then run exactly the
//!    callbacks that were ready at the start of this phase.
//!
//! All state sits in `GilCell`s (touched only with the GIL held, never across a call into
//! Python) or atomics. `call_soon_threadsafe` may come from any thread holding the GIL; it
//! appends to the same queue and wakes the reactor only if the loop is parked.

use std::cell::Ref;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyFloat, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::bridge::{self, Output, Pending};
use crate::clock::Clock;
use crate::clock::{monotonic_ns, ns_to_secs};
use crate::errors::{io_error, loop_closed, py_helper, reactor_busy};
use crate::gil_cell::GilCell;
use crate::handles::{new_untracked, Handle, LoopShared, Taken, TimerHandle};
use crate::metrics::{threshold_ns, Kind, Phase, Stats, BUCKETS, CALLBACK_TIMING, SLOW_THRESHOLD_NS};
use crate::reactor::{fork_generation, Reactor, Spawned, Wakeup, EV_DONE, EV_SELECTOR, EV_SIGNAL, EV_TIMER};
use crate::selector::{CoreOps, FdBuild, Selector, Watch, Watchers};
use crate::timers::TimerHeap;

/// While callbacks keep the loop busy, I/O is polled at least this often (rloop's figure).
const POLL_BUDGET_NS: i64 = 250_000;
/// asyncio's `_MIN_SCHEDULED_TIMER_HANDLES` and `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`.
const MIN_SCHEDULED_TIMER_HANDLES: usize = 100;
const MIN_CANCELLED_TIMER_HANDLES_FRACTION: f64 = 0.5;
/// `time.get_clock_info('monotonic').resolution` on Linux.
const CLOCK_RESOLUTION: f64 = 1e-09;
const NO_THREAD: i64 = 0;

/// A timer deadline in float seconds to the first nanosecond at or after it (never early).
/// Anything at or before the clock's start (negative, -inf, NaN: due at once) is 1 ns, so no
/// deadline is ever the reactor's "not armed" value (`i64::MIN`).
fn deadline_ns(when: f64) -> i64 {
    let ns = (when * 1e9).ceil();
    if ns.is_nan() {
        1
    } else {
        (ns as i64).max(1) // `as` saturates
    }
}

/// An entry of the ready queue: a handle, or a transport core's reader or writer (an fd
/// event of a core's own watch, see selector.rs), which runs only if the core still watches
/// that direction when its turn comes (asyncio skips a handle cancelled meanwhile).
enum Ready {
    Handle(Py<Handle>),
    Io(Py<PyAny>, &'static CoreOps, bool),
}

/// The (reader, writer) handles `loop._selector` shows for an fd.
type WatchHandles = (Option<Py<Handle>>, Option<Py<Handle>>);

#[pyclass(subclass, frozen, weakref, module = "rose._rose")]
pub struct EventLoop {
    ready: GilCell<VecDeque<Ready>>,
    timers: GilCell<TimerHeap<Py<TimerHandle>>>,
    selector: GilCell<Selector>,
    reactor: GilCell<Option<Reactor>>,
    shared: Arc<LoopShared>,
    wakeup: Arc<Wakeup>,
    stopping: AtomicBool,
    closed: AtomicBool,
    thread_id: AtomicI64,
    last_poll: AtomicI64,
    /// When `run_forever` started (CLOCK_MONOTONIC ns; 0 while it is not running): the
    /// loop's running time is the time `run_forever` ran less the time it was parked.
    running_since: AtomicI64,
    /// `time()` is replaced on the instance or overridden by a subclass (see `_user_clock`):
    /// the run step and `call_later` then ask it, as asyncio's do.
    user_clock: AtomicBool,
    selector_events: GilCell<Vec<(i32, u32)>>,
    /// What `set_debug` was given, unless a bool (see `_debug`).
    debug_value: GilCell<Option<Py<PyAny>>>,
    /// Spare `Handle`s that ran and that nobody else references (see `Handle::recyclable`).
    spare: GilCell<Vec<Py<Handle>>>,
    spare_timers: GilCell<Vec<Py<TimerHandle>>>,
    /// The longest timed callbacks so far, longest first: (ns, the handle named briefly, see
    /// `_brief_handle` in rose/_helpers.py).
    longest: GilCell<Vec<(u64, Py<PyAny>)>>,
    /// A callback must take longer than this to join `longest` (0 until it holds `LONGEST`).
    longest_floor: AtomicU64,
    /// `set_slow_callback_threshold` of this loop (ns; `THRESHOLD_OFF`, or `THRESHOLD_INHERIT`
    /// to follow the process-wide one).
    slow_threshold: AtomicU64,
    /// The asyncio futures of Rust tasks spawned on the runtime (see bridge.rs).
    pending: Pending,
    /// `loop._transports` (asyncio's weak-valued fd -> transport map, which `add_reader` and
    /// the `sock_*` methods consult): the Python transport of each rose transport core, by
    /// the core's fd. Borrowed pointers: a core enters its transport when it gets it and takes
    /// the entry out before it lets the transport go (`detach`, the GC's clear, its drop), so
    /// every pointer here is to a live object, and a transport nobody else holds can be
    /// collected as with asyncio's weak map.
    transports: GilCell<HashMap<i32, usize, FdBuild>>,
}

/// How many of the longest callbacks `metrics()` names.
const LONGEST: usize = 5;
const THRESHOLD_OFF: u64 = u64::MAX;
const THRESHOLD_INHERIT: u64 = u64::MAX - 1;

/// asyncio's `BaseEventLoop.create_task` and `asyncio.tasks` (see `create_task`).
static ASYNCIO_CREATE_TASK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static TASKS_MODULE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
/// `asyncio.futures` and the keyword names of `Future(loop=...)` (see `create_future`).
static FUTURES_MODULE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOOP_KWNAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();

/// How many spare handles (and, apart, timer handles) a loop keeps: enough for a burst of a
/// thousand callbacks (a `gather` of 1000 tasks, 1000 `call_soon`s from one callback) to reuse
/// handles instead of allocating most of them, at about 150 bytes each (~150 KiB at most).
const SPARE_HANDLES: usize = 1024;

impl EventLoop {
    /// What the loop shares with its handles and transports (the metrics' counters among it).
    pub(crate) fn shared(&self) -> &Arc<LoopShared> {
        &self.shared
    }

    /// Spawn `fut` on the loop's runtime and return the asyncio Future it resolves on the loop
    /// thread (see bridge.rs).
    pub(crate) fn spawn_future<F>(slf: &Bound<'_, Self>, fut: F) -> PyResult<Py<PyAny>>
    where
        F: std::future::Future<Output = Output> + Send + 'static,
    {
        let py = slf.py();
        let this = slf.get();
        let future = slf.call_method0(pyo3::intern!(py, "create_future"))?;
        let id = this.pending.next_id();
        let spawned = this.reactor(py)?.spawn(id, fut);
        match spawned {
            Spawned::Running(abort) => this
                .pending
                .attach(&future, id, abort, fork_generation(), fork_generation)?,
            Spawned::Ready(out) => bridge::deliver(py, future.clone(), out)?,
        }
        Ok(future.unbind())
    }

    #[inline]
    fn check_closed(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            Err(loop_closed())
        } else {
            Ok(())
        }
    }

    #[inline]
    fn debug(&self) -> bool {
        self.shared.debug.load(Ordering::Relaxed)
    }

    /// The reactor, built on first use and rebuilt in a forked child (the parent's is leaked:
    /// dropping it would deregister fds from the epoll instance the parent still uses).
    ///
    /// A shared borrow: the loop holds one while it is parked (without the GIL), and another
    /// thread may take one meanwhile to add or remove a watch (`add_reader`,
    /// `transport.close()` or a buffering `write()` from outside the loop), which the kernel
    /// makes safe: epoll_ctl on the inner epoll set while the loop waits on it.
    fn reactor(&self, py: Python<'_>) -> PyResult<Ref<'_, Reactor>> {
        self.check_closed()?;
        let current = self.reactor.try_borrow(py).ok_or_else(reactor_busy)?;
        if current.as_ref().is_none_or(Reactor::is_stale) {
            drop(current);
            let mut cell = self.reactor.try_borrow_mut(py).ok_or_else(reactor_busy)?;
            if let Some(old) = cell.take() {
                std::mem::forget(old);
            }
            let fresh = Reactor::new().map_err(io_error)?;
            if let Some(mut sel) = self.selector.try_borrow_mut(py) {
                sel.reregister(&fresh);
            }
            *cell = Some(fresh);
        }
        let cell = self.reactor.try_borrow(py).ok_or_else(reactor_busy)?;
        Ok(Ref::map(cell, |c| c.as_ref().expect("reactor just built")))
    }

    fn make_handle(
        slf: &Bound<'_, Self>,
        method: &str,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        check_thread: bool,
    ) -> PyResult<Handle> {
        let py = slf.py();
        let this = slf.get();
        if this.debug() {
            py_helper(py, "_debug_check")?.call1((slf, method, &callback, check_thread))?;
        }
        let handle = Handle::new(py, callback, args, context, &this.shared, true)?;
        if this.debug() {
            handle.set_source_traceback(py, py_helper(py, "_extract_stack")?.call0()?.unbind());
        }
        Ok(handle)
    }

    /// A one-shot handle for `call_soon`/`call_soon_threadsafe`: a spare one when there is
    /// one (outside debug mode), else a new object.
    fn oneshot_handle(
        slf: &Bound<'_, Self>,
        method: &str,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        check_thread: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        if !this.debug() {
            let spare = this.spare.borrow_mut(py).pop();
            if let Some(handle) = spare {
                handle.get().reinit(py, callback, args, context)?;
                return Ok(handle);
            }
        }
        new_untracked(
            py,
            Self::make_handle(slf, method, callback, args, context, check_thread)?,
        )
    }

    /// `call_soon` and `call_soon_threadsafe`: queue a one-shot handle (the thread-safe one
    /// skips the debug-mode thread check).
    fn schedule_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        threadsafe: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        let method = if threadsafe {
            "call_soon_threadsafe"
        } else {
            "call_soon"
        };
        let handle = Self::oneshot_handle(slf, method, callback, args, context, !threadsafe)?;
        handle.get().set_threadsafe(threadsafe);
        this.ready.borrow_mut(py).push_back(Ready::Handle(handle.clone_ref(py)));
        // Wakes the loop only if it is parked, which means the caller is another thread:
        // `call_soon_threadsafe`, or a plain `call_soon` from outside the loop, which asyncio
        // would leave waiting until something else wakes the loop.
        let woke = this.wakeup.wake();
        if threadsafe {
            let stats = &this.shared.stats;
            stats.threadsafe_calls.add_shared(1);
            if woke {
                stats.threadsafe_wakeups.add_shared(1);
            }
        }
        Ok(handle)
    }

    fn schedule_timer(
        slf: &Bound<'_, Self>,
        when: f64,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        let spare = if this.debug() {
            None
        } else {
            this.spare_timers.borrow_mut(py).pop()
        };
        let handle = match spare {
            Some(timer) => {
                timer.bind(py).as_super().get().reinit(py, callback, args, context)?;
                timer.get().rearm(when);
                timer
            }
            None => {
                let base = Self::make_handle(slf, "call_at", callback, args, context, true)?;
                base.set_kind(Kind::Timer);
                new_untracked(
                    py,
                    PyClassInitializer::from(base).add_subclass(TimerHandle::new(when, &this.shared)),
                )?
            }
        };
        handle.get().set_scheduled(true);
        this.timers.borrow_mut(py).push(when, handle.clone_ref(py));
        this.shared.stats.timers_scheduled.add_shared(1);
        this.wakeup.wake(); // a parked loop re-reads its earliest deadline (see schedule_soon)
        Ok(handle)
    }

    fn clean_timers(&self, py: Python<'_>) {
        let mut timers = self.timers.borrow_mut(py);
        let n = timers.len();
        if n == 0 {
            return;
        }
        let cancelled = self.shared.timer_cancelled.load(Ordering::Relaxed);
        let removed =
            if n > MIN_SCHEDULED_TIMER_HANDLES && cancelled as f64 / n as f64 > MIN_CANCELLED_TIMER_HANDLES_FRACTION {
                let removed = timers.retain_and_heapify(|h| {
                    let keep = !h.bind(py).as_super().get().is_cancelled();
                    if !keep {
                        h.get().set_scheduled(false);
                    }
                    keep
                });
                self.shared.timer_cancelled.store(0, Ordering::Relaxed);
                removed
            } else {
                let mut removed = Vec::new();
                while timers
                    .peek()
                    .is_some_and(|(_, h)| h.bind(py).as_super().get().is_cancelled())
                {
                    let (_, h) = timers.pop().expect("peeked");
                    h.get().set_scheduled(false);
                    let _ = self
                        .shared
                        .timer_cancelled
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(1));
                    removed.push(h);
                }
                removed
            };
        drop(timers);
        // Outside the borrow: dropping may run Python code.
        for timer in removed {
            self.recycle_timer(py, timer.into_bound(py));
        }
    }

    /// Keep a timer nobody else references as a spare, else let it go.
    fn recycle_timer(&self, py: Python<'_>, timer: Bound<'_, TimerHandle>) {
        let tp = <TimerHandle as pyo3::PyTypeInfo>::type_object_raw(py);
        if Handle::recyclable(timer.as_super(), tp) && self.spare_timers.borrow_mut(py).len() < SPARE_HANDLES {
            timer.as_super().get().retire(py);
            self.spare_timers.borrow_mut(py).push(timer.unbind());
        }
    }

    /// After a handle ran: keep it as a spare if nobody else can see it (inlined: it is the
    /// hot path of every callback, and measured 30 instructions dearer as a call).
    #[inline(always)]
    fn recycle(&self, py: Python<'_>, handle: Bound<'_, Handle>) {
        let tp = <Handle as pyo3::PyTypeInfo>::type_object_raw(py);
        if Handle::recyclable(&handle, tp) {
            if self.spare.borrow_mut(py).len() < SPARE_HANDLES {
                handle.get().retire(py);
                self.spare.borrow_mut(py).push(handle.unbind());
            }
        } else if let Ok(timer) = handle.cast_into::<TimerHandle>() {
            self.recycle_timer(py, timer);
        }
    }

    /// Wait for (or poll) events and turn them into ready callbacks; returns the clock
    /// (`CLOCK_MONOTONIC` ns) as of the poll. Signal numbers read from the wake-up socket are
    /// appended to `signals`.
    /// `clock_offset` is what the user's `time()` is ahead of `CLOCK_MONOTONIC` (seconds; 0
    /// unless `time()` is overridden).
    fn poll_events(&self, py: Python<'_>, busy: bool, clock_offset: f64, signals: &mut Vec<u8>) -> PyResult<i64> {
        self.poll_events_at(py, monotonic_ns(), busy, clock_offset, signals)
    }

    /// A function of its own, never inlined: benchmarks/metrics_cost.py leaves the I/O poll out
    /// of its instruction counts (it is unchanged code, and how often it runs depends on the
    /// wall clock, which valgrind's slowdown makes noisy).
    #[inline(never)]
    fn poll_events_at(
        &self,
        py: Python<'_>,
        mut now: i64,
        busy: bool,
        clock_offset: f64,
        signals: &mut Vec<u8>,
    ) -> PyResult<i64> {
        let selector_active = !self.selector.borrow_mut(py).is_empty();
        let recent = now - self.last_poll.load(Ordering::Relaxed) < POLL_BUDGET_NS;
        if recent && (busy || selector_active) {
            // The runtime was polled moments ago: do not enter it (DESIGN: entering costs
            // more than a callback). Watched fds are polled directly, without blocking; only
            // when they have nothing and no callback waits does the loop park below.
            if !selector_active {
                return Ok(now);
            }
            let mut events = self.selector_events.borrow_mut(py);
            self.reactor(py)?.selector_wait(&mut events).map_err(io_error)?;
            if !events.is_empty() || busy {
                self.queue_selector_events(py, &events)?;
                events.clear();
                return Ok(now);
            }
        }
        let reactor = self.reactor(py)?;
        let r: &Reactor = &reactor;
        let ev = if busy {
            self.last_poll.store(now, Ordering::Relaxed);
            r.poll_now()
        } else {
            let deadline = self
                .timers
                .borrow_mut(py)
                .peek()
                .map(|(when, _)| deadline_ns(*when - clock_offset));
            let wakeup: &Wakeup = &self.wakeup;
            wakeup.begin_park();
            let ev = py.detach(|| {
                let ev = r.park(deadline, wakeup);
                // Still without the GIL: threads queueing work while this thread waits for the
                // GIL need not wake a loop that is no longer asleep (it checks its queue next).
                wakeup.end_park();
                ev
            });
            let ev = ev.map_err(io_error)?;
            let parked_since = now;
            now = monotonic_ns();
            self.shared.stats.parked_ns.add((now - parked_since).max(0) as u64);
            self.last_poll.store(now, Ordering::Relaxed);
            ev
        };
        if ev & EV_TIMER != 0 {
            r.clear_timer();
        }
        if ev & EV_SIGNAL != 0 {
            r.clear_signal(signals);
        }
        // Readiness of the selector must be consumed whenever it is reported, even when its last
        // fd was unregistered since: a source left ready makes every park return at once without
        // polling the driver, which would starve the other sources (signals, timers).
        let poll_selector = (selector_active && busy) || ev & EV_SELECTOR != 0;
        let mut events = self.selector_events.borrow_mut(py);
        if poll_selector {
            r.selector_wait(&mut events).map_err(io_error)?;
        }
        let done = (ev & EV_DONE != 0 || r.completions().has_any()).then(|| Arc::clone(r.completions()));
        drop(reactor);
        if !events.is_empty() {
            self.queue_selector_events(py, &events)?;
            events.clear();
        }
        drop(events);
        if let Some(done) = done {
            bridge::drain(py, &self.pending, &done)?;
        }
        if ev & EV_SIGNAL != 0 {
            // Python's handlers (SIGINT's KeyboardInterrupt, signal.signal handlers) run now.
            py.check_signals()?;
        }
        Ok(now)
    }

    /// asyncio's `_process_events`: queue each ready reader/writer, dropping cancelled ones.
    fn queue_selector_events(&self, py: Python<'_>, events: &[(i32, u32)]) -> PyResult<()> {
        for &(fd, mask) in events {
            let (reader, writer) = self.selector.borrow_mut(py).handles_for(py, fd, mask);
            for (watch, write) in [(reader, false), (writer, true)] {
                match watch {
                    None => {}
                    Some(Watch::Handle(handle)) if handle.get().is_cancelled() => {
                        let removed = self.unregister(py, fd, write)?;
                        drop(removed);
                    }
                    Some(Watch::Handle(handle)) => self.ready.borrow_mut(py).push_back(Ready::Handle(handle)),
                    Some(Watch::Core(core, ops)) => self.ready.borrow_mut(py).push_back(Ready::Io(core, ops, write)),
                }
            }
        }
        Ok(())
    }

    fn unregister(&self, py: Python<'_>, fd: i32, write: bool) -> PyResult<Option<Watch>> {
        let reactor = self.reactor(py)?;
        Ok(self.selector.borrow_mut(py).remove(&reactor, fd, write))
    }

    /// The user's `time()` (see `user_clock`).
    fn user_time(slf: &Bound<'_, Self>) -> PyResult<f64> {
        slf.call_method0(pyo3::intern!(slf.py(), "time"))?.extract::<f64>()
    }

    /// How far the user's `time()` is ahead of the monotonic clock, in seconds.
    fn clock_offset(slf: &Bound<'_, Self>) -> PyResult<f64> {
        Ok(Self::user_time(slf)? - ns_to_secs(monotonic_ns()))
    }

    fn run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let stats = &this.shared.stats;
        stats.iterations.add(1);
        this.clean_timers(py);
        let busy = !this.ready.borrow_mut(py).is_empty() || this.stopping.load(Ordering::Relaxed);
        let mut signals = Vec::new();
        let user_clock = this.user_clock.load(Ordering::Relaxed);
        let offset = if user_clock { Self::clock_offset(slf)? } else { 0.0 };
        let now = this.poll_events(py, busy, offset, &mut signals)?;
        if !signals.is_empty() {
            // Handlers of `add_signal_handler` are queued as callbacks (Python side).
            slf.call_method1(
                pyo3::intern!(py, "_handle_signals"),
                (pyo3::types::PyBytes::new(py, &signals),),
            )?;
        }

        // Timers that are due, in heap order (asyncio: `_when < time() + clock_resolution`).
        {
            let mut timers = this.timers.borrow_mut(py);
            let end_time = if user_clock {
                Self::user_time(slf)? + CLOCK_RESOLUTION
            } else {
                ns_to_secs(now) + CLOCK_RESOLUTION
            };
            let mut ready = this.ready.borrow_mut(py);
            // `!(when >= end)` rather than `when < end`: a NaN deadline is due, as in asyncio.
            let mut fired = 0;
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            while timers.peek().is_some_and(|(when, _)| !(*when >= end_time)) {
                let (_, handle) = timers.pop().expect("peeked");
                handle.get().set_scheduled(false);
                ready.push_back(Ready::Handle(handle.into_bound(py).into_super().unbind()));
                fired += 1;
            }
            stats.timers_fired.add(fired);
        }

        let ntodo = this.ready.borrow_mut(py).len();
        let debug = this.debug();
        let threshold = if debug { THRESHOLD_OFF } else { this.slow_threshold_ns() };
        // Callbacks are timed (see metrics.rs) only when something reads the times: debug mode
        // (asyncio's slow-callback check), a slow-callback threshold, or callback timing asked
        // for (`rose.set_callback_timing`, `python -m rose --stats`).
        let timed = debug || threshold != THRESHOLD_OFF || CALLBACK_TIMING.load(Ordering::Relaxed);
        Self::run_ready(slf, ntodo, now, timed, debug, threshold)
    }

    /// Run the `ntodo` callbacks that were ready at the start of the phase; when `timed`, time
    /// each for the histogram, the longest callbacks and the slow-callback threshold. (One
    /// loop with a branch, not two copies: the copies measured dearer, their code crowding out
    /// the inlining of the per-callback steps.)
    #[inline(always)]
    fn run_ready(
        slf: &Bound<'_, Self>,
        ntodo: usize,
        now: i64,
        timed: bool,
        debug: bool,
        threshold: u64,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // Callbacks are counted straight into the loop's counters; `phase` adds up the timed
        // ones' durations until the phase ends. A callback that takes at least `notable_at`
        // joins the longest ones or is over the slow-callback threshold.
        let mut phase = Phase::new(&this.shared.stats);
        let clock = if timed { Clock::current(now) } else { Clock::Monotonic };
        let mut notable_at = if timed { this.notable_at(threshold) } else { u64::MAX };
        let mut t0 = if timed { clock.now() } else { 0 };
        for _ in 0..ntodo {
            let Some(entry) = this.ready.borrow_mut(py).pop_front() else {
                break;
            };
            let handle = match entry {
                Ready::Handle(handle) => handle.into_bound(py),
                Ready::Io(core, ops, write) => {
                    let core = core.into_bound(py);
                    if !timed {
                        if (ops.ready)(&core, write)? {
                            phase.count(Kind::Io as u8);
                        }
                        continue;
                    }
                    let start = if debug { monotonic_ns() } else { 0 };
                    let ran = (ops.ready)(&core, write)?;
                    let ns = if debug {
                        (monotonic_ns() - start).max(0) as u64
                    } else {
                        let t1 = clock.now();
                        let ns = clock.to_ns(t1.saturating_sub(t0));
                        t0 = t1;
                        ns
                    };
                    if !ran {
                        continue;
                    }
                    phase.count(Kind::Io as u8);
                    phase.time(ns);
                    if debug {
                        let handle = (ops.handle)(&core, write)?;
                        py_helper(py, "_check_slow_callback")?.call1((slf, handle, ns_to_secs(ns as i64)))?;
                    }
                    if ns >= notable_at {
                        let handle = (ops.handle)(&core, write)?.into_bound(py);
                        Self::notable(slf, &handle, &None, ns, threshold)?;
                        notable_at = this.notable_at(threshold);
                    }
                    t0 = clock.now(); // the reports are not the next callback's time
                    continue;
                }
            };
            let h = handle.get();
            if h.is_cancelled() {
                continue;
            }
            let kind = h.kind();
            if !timed {
                Handle::run(&handle, slf.as_any())?;
                phase.count(kind);
                this.recycle(py, handle);
            } else if debug {
                let start = monotonic_ns();
                Handle::run(&handle, slf.as_any())?;
                let ns = (monotonic_ns() - start).max(0) as u64;
                phase.count(kind);
                phase.time(ns);
                py_helper(py, "_check_slow_callback")?.call1((slf, &handle, ns_to_secs(ns as i64)))?;
                if ns >= notable_at {
                    Self::notable(slf, &handle, &None, ns, threshold)?;
                    notable_at = this.notable_at(threshold);
                }
                // What `Handle::run` does at once outside debug mode (see handles.rs).
                handle.get().release_if_oneshot(py);
                t0 = clock.now();
            } else {
                let taken = Handle::run_keeping(&handle, slf.as_any())?;
                let t1 = clock.now();
                let ns = clock.to_ns(t1.saturating_sub(t0));
                t0 = t1;
                phase.count(kind);
                phase.time(ns);
                if ns >= notable_at {
                    Self::notable(slf, &handle, &taken, ns, threshold)?;
                    notable_at = this.notable_at(threshold);
                    t0 = clock.now(); // the report is not the next callback's time
                }
                drop(taken);
                this.recycle(py, handle);
            }
        }
        Ok(())
    }

    /// The slow-callback threshold in force (ns; `THRESHOLD_OFF`: none).
    fn slow_threshold_ns(&self) -> u64 {
        match self.slow_threshold.load(Ordering::Relaxed) {
            THRESHOLD_INHERIT => match SLOW_THRESHOLD_NS.load(Ordering::Relaxed) {
                0 => THRESHOLD_OFF,
                ns => ns - 1, // stored plus one, so that 0 s (every callback) is not "off"
            },
            ns => ns,
        }
    }

    /// How long a callback must take to be looked at (see `notable`).
    fn notable_at(&self, threshold: u64) -> u64 {
        let floor = self.longest_floor.load(Ordering::Relaxed);
        threshold.min(floor.saturating_add(1))
    }

    /// A callback took `ns`: more than the shortest of the longest ones so far, or at least the
    /// slow-callback threshold. A one-shot handle gets its callback back for that moment: the
    /// Python helper logs a slow one in asyncio's format and names it briefly for the longest.
    #[cold]
    fn notable(
        slf: &Bound<'_, Self>,
        handle: &Bound<'_, Handle>,
        taken: &Taken<'_>,
        ns: u64,
        threshold: u64,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let slow = ns >= threshold;
        handle.get().lend(py, taken);
        let what = py_helper(py, "_notable_callback").and_then(|f| f.call1((slf, handle, ns, slow)));
        handle.get().unlend(py, taken);
        let what = what?.unbind();
        if slow {
            this.shared.stats.slow_callbacks.add(1);
        }
        if ns > this.longest_floor.load(Ordering::Relaxed) {
            let mut longest = this.longest.borrow_mut(py);
            let at = longest.iter().position(|(d, _)| *d < ns).unwrap_or(longest.len());
            longest.insert(at, (ns, what));
            let dropped = if longest.len() > LONGEST { longest.pop() } else { None };
            if longest.len() == LONGEST {
                this.longest_floor.store(longest[LONGEST - 1].0, Ordering::Relaxed);
            }
            drop(longest);
            drop(dropped); // outside the borrow
        }
        Ok(())
    }

    /// A handle that stands for a transport core's own fd watch where one must be shown (no
    /// debug checks, as asyncio's `_add_reader`).
    pub(crate) fn make_watch_handle(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        new_untracked(
            py,
            Handle::new(py, callback, PyTuple::empty(py), context, &slf.get().shared, false)?,
        )
    }

    /// Arm a one-shot watch again (its event came but the call would still block).
    pub(crate) fn rearm_oneshot_watch(&self, py: Python<'_>, fd: i32) -> PyResult<()> {
        let reactor = self.reactor(py)?;
        self.selector.borrow_mut(py).rearm(&reactor, fd).map_err(io_error)?;
        Ok(())
    }

    /// Watch `fd` for reading (`write=False`) or writing with `handle`, replacing and
    /// cancelling the previous handle (asyncio's `_add_reader`); `oneshot` for a watch that ends
    /// when one socket call completes (`sock_recv`, `sock_sendall`: see selector.rs).
    pub(crate) fn watch_fd(
        slf: &Bound<'_, Self>,
        fd: i32,
        handle: Py<Handle>,
        write: bool,
        oneshot: bool,
    ) -> PyResult<()> {
        handle.get().set_kind(Kind::Io);
        Self::watch(slf, fd, Watch::Handle(handle), write, oneshot)
    }

    /// Watch `fd` for reading (or writing) with a transport core's own watch (see
    /// selector.rs), replacing the previous watcher as `watch_fd` does.
    pub(crate) fn watch_core(
        slf: &Bound<'_, Self>,
        fd: i32,
        core: Py<PyAny>,
        ops: &'static CoreOps,
        write: bool,
    ) -> PyResult<()> {
        Self::watch(slf, fd, Watch::Core(core, ops), write, false)
    }

    fn watch(slf: &Bound<'_, Self>, fd: i32, watch: Watch, write: bool, oneshot: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let reactor = this.reactor(py)?;
        let old = this
            .selector
            .borrow_mut(py)
            .add(&reactor, fd, write, watch, oneshot)
            .map_err(io_error)?;
        drop(reactor);
        if let Some(Watch::Handle(old)) = old {
            Handle::cancel_bound(old.bind(py))?;
        }
        Ok(())
    }

    /// Let every queued and registered handle give up its callback (closing, or a cycle the
    /// GC breaks). Transport cores take part in the GC themselves.
    fn release_all<'a>(
        py: Python<'_>,
        ready: impl Iterator<Item = &'a Ready>,
        registered: impl Iterator<Item = &'a Watch>,
    ) {
        for entry in ready {
            if let Ready::Handle(h) = entry {
                h.get().release(py);
            }
        }
        for watch in registered {
            if let Watch::Handle(h) = watch {
                h.get().release(py);
            }
        }
    }

    /// `transport` (alive until `forget_transport`) uses `fd` (see `transports`).
    pub(crate) fn enter_transport(&self, py: Python<'_>, fd: i32, transport: &Py<PyAny>) {
        self.transports.borrow_mut(py).insert(fd, transport.as_ptr() as usize);
    }

    /// `transport` no longer uses `fd` (an entry of another transport stays).
    pub(crate) fn forget_transport(&self, py: Python<'_>, fd: i32, transport: &Py<PyAny>) {
        let mut map = self.transports.borrow_mut(py);
        if map.get(&fd) == Some(&(transport.as_ptr() as usize)) {
            map.remove(&fd);
        }
    }

    pub(crate) fn remove_reader_or_writer(slf: &Bound<'_, Self>, fd: i32, write: bool) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        if this.closed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match this.unregister(py, fd, write)? {
            Some(Watch::Handle(old)) => {
                Handle::cancel_bound(old.bind(py))?;
                Ok(true)
            }
            Some(Watch::Core(..)) => Ok(true),
            None => Ok(false),
        }
    }
}

#[pymethods]
impl EventLoop {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn __new__(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyAny>>) -> Self {
        Self {
            ready: GilCell::new(VecDeque::new()),
            timers: GilCell::new(TimerHeap::default()),
            selector: GilCell::new(Selector::default()),
            reactor: GilCell::new(None),
            shared: Arc::new(LoopShared::default()),
            wakeup: Arc::new(Wakeup::default()),
            stopping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            thread_id: AtomicI64::new(NO_THREAD),
            debug_value: GilCell::new(None),
            last_poll: AtomicI64::new(0),
            running_since: AtomicI64::new(0),
            user_clock: AtomicBool::new(false),
            selector_events: GilCell::new(Vec::new()),
            spare: GilCell::new(Vec::new()),
            spare_timers: GilCell::new(Vec::new()),
            longest: GilCell::new(Vec::new()),
            longest_floor: AtomicU64::new(0),
            slow_threshold: AtomicU64::new(THRESHOLD_INHERIT),
            pending: Pending::default(),
            transports: GilCell::new(HashMap::default()),
        }
    }

    /// One A (or, `v6`, AAAA) lookup of `name` with hickory on the loop's runtime, configured
    /// by the resolv.conf at `resolv_conf`: a future of `(status, canonical name, [address])`
    /// (see dns.rs; rose/_resolver.py makes getaddrinfo's answer of it).
    fn _dns_lookup(slf: &Bound<'_, Self>, name: String, v6: bool, resolv_conf: &str) -> PyResult<Py<PyAny>> {
        let fut = crate::dns::lookup_output(slf.get().reactor(slf.py())?.resolvers(), resolv_conf, name, v6);
        Self::spawn_future(slf, fut)
    }

    /// The PTR names of the address `addr` with hickory on the loop's runtime: a future of
    /// `(status, None, [name], ttl)` (see dns.rs; rose/_resolver.py makes getnameinfo's answer).
    fn _dns_reverse(slf: &Bound<'_, Self>, addr: &str, resolv_conf: &str) -> PyResult<Py<PyAny>> {
        let fut = crate::dns::reverse_output(slf.get().reactor(slf.py())?.resolvers(), resolv_conf, addr);
        Self::spawn_future(slf, fut)
    }

    /// Test hook (rose only, see bridge.rs): a future that a tokio sleep on the loop's runtime
    /// completes with `seconds`.
    fn _rust_sleep(slf: &Bound<'_, Self>, seconds: f64) -> PyResult<Py<PyAny>> {
        Self::spawn_future(slf, bridge::sleep(seconds)?)
    }

    /// Test hook (rose only): a future failed with `OSError(errno)` after a tokio sleep.
    fn _rust_fail(slf: &Bound<'_, Self>, seconds: f64, errno: i32) -> PyResult<Py<PyAny>> {
        Self::spawn_future(slf, bridge::fail(seconds, errno)?)
    }

    /// Test hook (rose only): an already-complete Rust future through rose's own bridge,
    /// resolving to `value`.
    fn _rust_ready(slf: &Bound<'_, Self>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        Self::spawn_future(slf, bridge::ready(value))
    }

    /// Test hooks (rose only) of pyo3-async-runtimes on rose (async_runtime.rs): each is
    /// `generic::future_into_py::<RoseRuntime, _, _>` of a Rust future, spawned on the running
    /// rose loop (whichever loop the method is called on).
    fn _pyo3_async_sleep<'py>(&self, py: Python<'py>, seconds: f64) -> PyResult<Bound<'py, PyAny>> {
        crate::async_runtime::sleep(py, seconds)
    }

    fn _pyo3_async_ready<'py>(&self, py: Python<'py>, value: Py<PyAny>) -> PyResult<Bound<'py, PyAny>> {
        crate::async_runtime::ready(py, value)
    }

    fn _pyo3_async_await<'py>(&self, awaitable: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        crate::async_runtime::await_awaitable(awaitable)
    }

    fn _pyo3_async_current_loop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::async_runtime::current_loop(py)
    }

    fn _pyo3_async_thread_ident<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::async_runtime::thread_ident(py)
    }

    #[staticmethod]
    fn _pyo3_async_live() -> usize {
        crate::async_runtime::live()
    }

    /// asyncio's `_check_closed()`, called by most loop methods (a C call, not a Python frame).
    fn _check_closed(&self) -> PyResult<()> {
        self.check_closed()
    }

    /// `create_future()`: `futures.Future(loop=self)` as asyncio's, the class looked up at each
    /// call as asyncio's is (no Python frame, no keyword dict).
    fn create_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let futures = FUTURES_MODULE.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py.import(pyo3::intern!(py, "asyncio.futures"))?.into_any().unbind())
        })?;
        let future_type = futures.bind(py).getattr(pyo3::intern!(py, "Future"))?;
        let kwnames = LOOP_KWNAMES.get_or_try_init(py, || -> PyResult<Py<PyTuple>> {
            Ok(PyTuple::new(py, [pyo3::intern!(py, "loop")])?.unbind())
        })?;
        let args = [slf.as_ptr()];
        // SAFETY: a vectorcall of a live callable with one keyword argument (`loop`, named by
        // the tuple `kwnames`), whose value is in `args`; it returns a new reference or NULL
        // with an exception set.
        unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                pyo3::ffi::PyObject_Vectorcall(future_type.as_ptr(), args.as_ptr(), 0, kwnames.as_ptr()),
            )
        }
    }

    /// `create_task()`: the common case in Rust — no task factory, outside debug mode, only
    /// `name=`/`context=` — which is `asyncio.Task(coro, loop=self, name=..., context=...)` on
    /// every version. Anything else (a task factory, debug mode's source traceback, 3.12+'s
    /// other keywords, wrong arguments) runs the running asyncio's own `create_task`, so its
    /// semantics and messages are that version's.
    #[pyo3(signature = (coro, *args, **kwargs))]
    fn create_task(
        slf: &Bound<'_, Self>,
        coro: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        kwargs: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let simple_kwargs = match &kwargs {
            None => true,
            Some(kw) => kw.iter().all(|(key, _)| {
                key.cast::<PyString>()
                    .is_ok_and(|k| k.to_str().is_ok_and(|k| k == "name" || k == "context"))
            }),
        };
        let fast = args.is_empty()
            && simple_kwargs
            && !this.debug()
            && !this.closed.load(Ordering::Relaxed)
            && slf.getattr(pyo3::intern!(py, "_task_factory"))?.is_none();
        if !fast {
            let asyncio_create_task = ASYNCIO_CREATE_TASK.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                Ok(py
                    .import(pyo3::intern!(py, "asyncio.base_events"))?
                    .getattr(pyo3::intern!(py, "BaseEventLoop"))?
                    .getattr(pyo3::intern!(py, "create_task"))?
                    .unbind())
            })?;
            let mut all = vec![slf.clone().into_any(), coro];
            all.extend(args.iter());
            return Ok(asyncio_create_task
                .bind(py)
                .call(PyTuple::new(py, all)?, kwargs.as_ref())?
                .unbind());
        }
        let tasks = TASKS_MODULE.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py.import(pyo3::intern!(py, "asyncio.tasks"))?.into_any().unbind())
        })?;
        // Looked up at each call, as asyncio's `tasks.Task` is.
        let task_type = tasks.bind(py).getattr(pyo3::intern!(py, "Task"))?;
        let kw = match kwargs {
            Some(kw) => kw.copy()?,
            None => PyDict::new(py),
        };
        kw.set_item(pyo3::intern!(py, "loop"), slf)?;
        Ok(task_type.call((coro,), Some(&kw))?.unbind())
    }

    /// The counters of `loop.metrics()` (rose/loop.py makes them a `LoopMetrics`).
    fn _metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let st: &Stats = &self.shared.stats;
        let d = PyDict::new(py);
        d.set_item("iterations", st.iterations.get())?;
        d.set_item("callbacks_ready", st.callbacks[Kind::Ready as usize].get())?;
        d.set_item("callbacks_timer", st.callbacks[Kind::Timer as usize].get())?;
        d.set_item("callbacks_io", st.callbacks[Kind::Io as usize].get())?;
        d.set_item("parked_ns", st.parked_ns.get())?;
        // The time run_forever ran (so far, if it runs now), less the time it was parked.
        let since = self.running_since.load(Ordering::Relaxed);
        let current = if since != 0 {
            (monotonic_ns() - since).max(0) as u64
        } else {
            0
        };
        let run_ns = st.run_ns.get() + current;
        d.set_item("running_ns", run_ns.saturating_sub(st.parked_ns.get()))?;
        d.set_item("callback_ns", st.callback_ns.get())?;
        d.set_item("callback_timing", CALLBACK_TIMING.load(Ordering::Relaxed))?;
        let longest: Vec<(u64, Py<PyAny>)> = self
            .longest
            .borrow_mut(py)
            .iter()
            .map(|(ns, what)| (*ns, what.clone_ref(py)))
            .collect();
        d.set_item("longest", longest)?;
        d.set_item("timers_scheduled", st.timers_scheduled.get())?;
        d.set_item("timers_cancelled", st.timers_cancelled.get())?;
        d.set_item("timers_fired", st.timers_fired.get())?;
        let watchers = self.selector.try_borrow(py).map_or(0, |s| s.watches().count());
        d.set_item("fd_watchers", watchers)?;
        d.set_item("transports", st.transports_open.load(Ordering::Relaxed).max(0))?;
        d.set_item("bytes_read", st.bytes_read.get())?;
        d.set_item("bytes_written", st.bytes_written.get())?;
        d.set_item("threadsafe_calls", st.threadsafe_calls.get())?;
        d.set_item("threadsafe_wakeups", st.threadsafe_wakeups.get())?;
        d.set_item("slow_callbacks", st.slow_callbacks.get())?;
        let hist: Vec<u64> = st.histogram.iter().map(|c| c.get()).collect();
        d.set_item("histogram", PyTuple::new(py, hist)?)?;
        debug_assert_eq!(st.histogram.len(), BUCKETS);
        Ok(d)
    }

    /// This loop's slow-callback threshold (seconds; None: off), overriding the process-wide
    /// one of `rose.set_slow_callback_threshold`.
    #[pyo3(signature = (seconds))]
    fn _set_slow_callback_threshold(&self, seconds: Option<f64>) -> PyResult<()> {
        let ns = threshold_ns(seconds).map_err(PyValueError::new_err)?;
        let stored = if seconds.is_none() {
            THRESHOLD_OFF
        } else {
            ns.min(THRESHOLD_INHERIT - 1)
        };
        self.slow_threshold.store(stored, Ordering::Relaxed);
        Ok(())
    }

    /// The slow-callback threshold in force for this loop, in seconds (None: off).
    fn _get_slow_callback_threshold(&self) -> Option<f64> {
        match self.slow_threshold_ns() {
            THRESHOLD_OFF => None,
            ns => Some(ns as f64 / 1e9),
        }
    }

    /// `time.monotonic()`'s clock, at full resolution.
    fn time(&self) -> f64 {
        ns_to_secs(monotonic_ns())
    }

    /// Whether `time()` is the user's (set by the Python layer when `time` is assigned on the
    /// instance or overridden in a subclass).
    #[getter]
    fn _user_clock(&self) -> bool {
        self.user_clock.load(Ordering::Relaxed)
    }

    #[setter(_user_clock)]
    fn set_user_clock(&self, value: bool) {
        self.user_clock.store(value, Ordering::Relaxed);
    }

    #[pyo3(signature = (callback, *args, context=None))]
    pub(crate) fn call_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        Self::schedule_soon(slf, callback, args, context, false)
    }

    #[pyo3(signature = (callback, *args, context=None))]
    pub(crate) fn call_soon_threadsafe(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        Self::schedule_soon(slf, callback, args, context, true)
    }

    #[pyo3(signature = (delay, callback, *args, context=None))]
    pub(crate) fn call_later(
        slf: &Bound<'_, Self>,
        delay: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        let now = if slf.get().user_clock.load(Ordering::Relaxed) {
            Self::user_time(slf)?
        } else {
            ns_to_secs(monotonic_ns())
        };
        let when = match delay.cast::<PyFloat>() {
            Ok(f) => now + f.value(),
            Err(_) => PyFloat::new(slf.py(), now).add(&delay)?.extract::<f64>()?,
        };
        Self::schedule_timer(slf, when, callback, args, context)
    }

    #[pyo3(signature = (when, callback, *args, context=None))]
    pub(crate) fn call_at(
        slf: &Bound<'_, Self>,
        when: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        let when: f64 = when.extract()?;
        Self::schedule_timer(slf, when, callback, args, context)
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    fn is_running(&self) -> bool {
        self.thread_id.load(Ordering::Relaxed) != NO_THREAD
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn get_debug(&self, py: Python<'_>) -> Py<PyAny> {
        self._debug(py)
    }

    /// The debug setting as given (asyncio keeps any object: `set_debug(1)` makes
    /// `get_debug()` return 1); the core acts on its truth.
    #[getter]
    fn _debug(&self, py: Python<'_>) -> Py<PyAny> {
        match &*self.debug_value.borrow_mut(py) {
            Some(value) => value.clone_ref(py),
            None => pyo3::types::PyBool::new(py, self.debug())
                .to_owned()
                .into_any()
                .unbind(),
        }
    }

    #[setter(_debug)]
    fn set_private_debug(&self, value: Bound<'_, PyAny>) -> PyResult<()> {
        let py = value.py();
        let truth = value.is_truthy()?;
        let kept = (!value.is_instance_of::<pyo3::types::PyBool>()).then(|| value.unbind());
        let old = std::mem::replace(&mut *self.debug_value.borrow_mut(py), kept);
        drop(old);
        self.shared.debug.store(truth, Ordering::Relaxed);
        Ok(())
    }

    #[getter]
    fn _stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    #[setter(_stopping)]
    fn set_private_stopping(&self, value: bool) {
        self.stopping.store(value, Ordering::Relaxed);
    }

    #[getter]
    fn _closed(&self) -> bool {
        self.is_closed()
    }

    #[getter]
    fn _thread_id(&self) -> Option<i64> {
        match self.thread_id.load(Ordering::Relaxed) {
            NO_THREAD => None,
            id => Some(id),
        }
    }

    #[setter(_thread_id)]
    fn set_private_thread_id(&self, value: Option<i64>) {
        self.thread_id.store(value.unwrap_or(NO_THREAD), Ordering::Relaxed);
    }

    /// Run iterations until `stop()`; the Python `run_forever` wraps this with the running-loop
    /// bookkeeping.
    fn _run_forever_inner(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        // pyo3-async-runtimes' `RoseRuntime` spawns on this loop's runtime while it runs.
        let _entered = crate::async_runtime::enter(this.reactor(slf.py())?.handle());
        this.running_since.store(monotonic_ns(), Ordering::Relaxed);
        let result = loop {
            if let Err(e) = Self::run_once(slf) {
                break Err(e);
            }
            if this.stopping.load(Ordering::Relaxed) {
                break Ok(());
            }
        };
        this.stopping.store(false, Ordering::Relaxed);
        let since = this.running_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            this.shared.stats.run_ns.add((monotonic_ns() - since).max(0) as u64);
        }
        result
    }

    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run_once(slf)
    }

    /// Wake the loop if it sleeps in its poll (asyncio's `_write_to_self`).
    fn _write_to_self(&self) {
        self.wakeup.wake();
    }

    /// The fd to install with `signal.set_wakeup_fd` while the loop runs.
    fn _signal_wakeup_fd(&self, py: Python<'_>) -> PyResult<i32> {
        Ok(self.reactor(py)?.signal_wakeup_fd())
    }

    /// A `Handle` for `add_reader`/`add_writer` (no debug checks, as in asyncio).
    #[pyo3(signature = (callback, args, context=None))]
    fn _make_handle(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        new_untracked(
            slf.py(),
            Handle::new(slf.py(), callback, args, context, &slf.get().shared, false)?,
        )
    }

    /// Queue an existing handle (asyncio's `_add_callback`): used for signal handlers.
    fn _add_callback(&self, py: Python<'_>, handle: Py<Handle>) {
        if !handle.get().is_cancelled() {
            self.ready.borrow_mut(py).push_back(Ready::Handle(handle));
        }
    }

    /// Watch `fd` for reading (`write=False`) or writing with `handle` (level-triggered),
    /// replacing and cancelling the previous handle, as asyncio's `_add_reader`.
    fn _watch(slf: &Bound<'_, Self>, fd: i32, handle: Py<Handle>, write: bool) -> PyResult<()> {
        Self::watch_fd(slf, fd, handle, write, false)
    }

    /// Stop watching `fd` in one direction; True if a handle was registered (it is cancelled).
    fn _unwatch(slf: &Bound<'_, Self>, fd: i32, write: bool) -> PyResult<bool> {
        Self::remove_reader_or_writer(slf, fd, write)
    }

    /// `(reader, writer)` handles watching `fd`, or None (for the read-only selector view). A
    /// transport core's own watch is shown as a handle made for the occasion.
    fn _watched(&self, py: Python<'_>, fd: i32) -> PyResult<Option<WatchHandles>> {
        let watched: Option<Watchers> = self.selector.borrow_mut(py).get(py, fd);
        let Some((reader, writer)) = watched else {
            return Ok(None);
        };
        let shown = |watch: Option<Watch>, write: bool| -> PyResult<Option<Py<Handle>>> {
            match watch {
                None => Ok(None),
                Some(Watch::Handle(h)) => Ok(Some(h)),
                Some(Watch::Core(core, ops)) => (ops.handle)(core.bind(py), write).map(Some),
            }
        };
        Ok(Some((shown(reader, false)?, shown(writer, true)?)))
    }

    /// Every watched fd.
    fn _watched_fds(&self, py: Python<'_>) -> Vec<i32> {
        self.selector.borrow_mut(py).fds()
    }

    /// The rose transport using `fd`, or None (`loop._transports[fd]`).
    fn _transport(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> Option<Py<PyAny>> {
        let fd: i32 = fd.extract().ok()?; // any other number is no transport's
        let ptr = *self.transports.borrow_mut(py).get(&fd)?;
        // SAFETY: an entry points to a live transport (see `transports`).
        Some(unsafe { Bound::from_borrowed_ptr(py, ptr as *mut pyo3::ffi::PyObject) }.unbind())
    }

    /// Every (fd, transport) of `loop._transports`.
    fn _transport_items(&self, py: Python<'_>) -> Vec<(i32, Py<PyAny>)> {
        let map = self.transports.borrow_mut(py);
        let entry = |fd: &i32, ptr: &usize| {
            // SAFETY: as in `_transport`.
            let transport = unsafe { Bound::from_borrowed_ptr(py, *ptr as *mut pyo3::ffi::PyObject) };
            (*fd, transport.unbind())
        };
        map.iter().map(|(fd, ptr)| entry(fd, ptr)).collect()
    }

    /// Drop every queued callback, timer and registration and the reactor; the loop is closed
    /// from here on.
    /// The loop takes part in the cyclic GC: a loop dropped unclosed with callbacks pending
    /// (which often refer back to it: `loop.stop`, a task, a transport's protocol) must be
    /// found garbage, so that `Loop.__del__` warns and closes it, as asyncio's does.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: the GC runs traverse with the GIL held; the token only binds handles to read
        // their fields (no Python API is called, no reference is made or dropped).
        let py = unsafe { Python::assume_attached() };
        if let Some(value) = self.debug_value.try_borrow_for_gc() {
            visit.call(&*value)?;
        }
        if let Some(ready) = self.ready.try_borrow_for_gc() {
            for entry in ready.iter() {
                match entry {
                    Ready::Handle(h) => Handle::traverse_if_owned(h.bind(py), &visit)?,
                    Ready::Io(core, ..) => visit.call(core)?,
                }
            }
        }
        if let Some(timers) = self.timers.try_borrow_for_gc() {
            for (_, t) in timers.iter() {
                Handle::traverse_if_owned(t.bind(py).as_super(), &visit)?;
            }
        }
        if let Some(selector) = self.selector.try_borrow_for_gc() {
            for watch in selector.watches() {
                match watch {
                    Watch::Handle(h) => Handle::traverse_if_owned(h.bind(py), &visit)?,
                    Watch::Core(core, _) => visit.call(core)?,
                }
            }
        }
        self.pending.traverse(&visit)?;
        Ok(())
    }

    /// What the GC calls to break a cycle through the loop: release every pending callback
    /// (what `close()` does to them).
    fn __clear__(&self) {
        Python::attach(|py| {
            let ready = self.ready.try_borrow_mut(py).map(|mut r| std::mem::take(&mut *r));
            let timers = self.timers.try_borrow_mut(py).map(|mut t| t.take_all());
            let registered = self.selector.try_borrow_mut(py).map(|mut s| s.take_all());
            Self::release_all(py, ready.iter().flatten(), registered.iter().flatten());
            for (_, t) in timers.iter().flatten() {
                t.bind(py).as_super().get().release(py);
            }
            drop((ready, timers, registered));
            self.pending.clear(py);
        });
    }

    fn _close(&self, py: Python<'_>) -> PyResult<()> {
        if self.is_running() {
            return Err(PyValueError::new_err("cannot close a running loop"));
        }
        self.closed.store(true, Ordering::Relaxed);
        let ready = std::mem::take(&mut *self.ready.borrow_mut(py));
        let timers = self.timers.borrow_mut(py).take_all();
        let registered = self.selector.borrow_mut(py).take_all();
        let spare = std::mem::take(&mut *self.spare.borrow_mut(py));
        let spare_timers = std::mem::take(&mut *self.spare_timers.borrow_mut(py));
        let reactor = self.reactor.try_borrow_mut(py).ok_or_else(reactor_busy)?.take();
        if let Some(r) = reactor {
            if r.is_stale() {
                std::mem::forget(r);
            } else {
                drop(r);
            }
        }
        // Break reference cycles through pending handles (they are not GC-tracked).
        Self::release_all(py, ready.iter(), registered.iter());
        for (_, t) in timers.iter() {
            t.bind(py).as_super().get().release(py);
        }
        drop((ready, timers, registered, spare, spare_timers));
        self.pending.clear(py);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_never_round_early() {
        for when in [0.1, 1.0 / 3.0, 12_345.678_901_234, 1e-9, 7.0] {
            let ns = deadline_ns(when);
            assert!(ns as f64 >= when * 1e9, "{when} -> {ns}");
            assert!(ns_to_secs(ns) >= when || (ns as f64 - when * 1e9) < 1.0);
        }
        assert_eq!(deadline_ns(f64::NAN), 1);
        assert_eq!(deadline_ns(f64::NEG_INFINITY), 1);
        assert_eq!(deadline_ns(-9.3e9), 1);
        assert_eq!(deadline_ns(-1.0), 1);
        assert_eq!(deadline_ns(0.0), 1);
        assert_eq!(deadline_ns(1e300), i64::MAX);
    }
}
