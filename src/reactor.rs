//! The reactor: the tokio current-thread runtime that a loop owns, and the few readiness
//! sources the loop parks on.
//!
//! Sources, each one `AsyncFd` registration with tokio's I/O driver:
//! - a `timerfd` armed (absolute, `CLOCK_MONOTONIC`, nanoseconds) to the earliest timer, so the
//!   park ends exactly at the deadline — tokio's own timer wheel has 1 ms granularity;
//! - the read end of a socket pair whose write end is Python's `signal.set_wakeup_fd`, so a
//!   signal ends the park and Python's handlers run at once;
//! - a level-triggered epoll instance holding the fds of `add_reader`/`add_writer` (the user's
//!   fds keep stdlib's level-triggered semantics and their blocking mode);
//! - a `Notify` for `call_soon_threadsafe`, signalled only while the loop is parked;
//! - the completion queue of Rust futures spawned on the runtime (see bridge.rs): a finished
//!   task pushes its output there and ends the park (`EV_DONE`).
//!
//! It also holds the DNS resolver (dns.rs), whose background tasks live on this runtime.
//!
//! Spawned tasks make progress only inside `park` and `poll_now`, which run the runtime's
//! scheduler (a current-thread runtime has no other thread): the run step enters one of them
//! at least every `POLL_BUDGET_NS` while busy, and parks in the runtime when idle.
//!
//! No Python object is touched here: the module works on raw fds and bit masks. Nothing else in
//! rose builds a tokio runtime. After `fork()` the child must not use (or even drop) the
//! parent's runtime — its epoll instance is shared with the parent — so the owner leaks it and
//! builds a new one (see `fork_generation`).

use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::bridge::{Completions, Output};
use crate::dns::Resolvers;

pub const EV_TIMER: u8 = 1;
pub const EV_SIGNAL: u8 = 2;
pub const EV_SELECTOR: u8 = 4;
pub const EV_WAKE: u8 = 8;
/// A spawned Rust future finished: its output waits in `Reactor::completions`.
pub const EV_DONE: u8 = 16;

const NOT_ARMED: i64 = i64::MIN;

static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Called in the child after `fork()` (from `os.register_at_fork`).
pub fn note_fork() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

pub fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::SeqCst)
}

/// Cross-thread wake-up of a parked loop.
#[derive(Default)]
pub struct Wakeup {
    notify: Notify,
    parked: AtomicBool,
}

impl Wakeup {
    /// Mark the loop parked. Must be called *before* the GIL is released: a thread that
    /// queues work after that point (it needs the GIL) then always sees the flag and leaves
    /// a `Notify` permit, which the park consumes.
    pub fn begin_park(&self) {
        self.parked.store(true, Ordering::SeqCst);
    }

    pub fn end_park(&self) {
        self.parked.store(false, Ordering::SeqCst);
    }

    /// Wake the loop if (and only if) it is parked; a running loop sees new work anyway before
    /// it parks again, because it decides its timeout with the GIL held.
    #[inline]
    /// Wake the loop if it is parked; true if it was.
    pub fn wake(&self) -> bool {
        let parked = self.parked.load(Ordering::SeqCst);
        if parked {
            self.notify.notify_one();
        }
        parked
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: `fd` was just returned by a successful syscall and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Register an owned fd for readability with the current runtime's I/O driver.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` always returns its own open fd, which stays open until the `AsyncFd`
    // (its owner from here on) is dropped or forgotten.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// What `Reactor::spawn` did with a future.
pub enum Spawned {
    /// It was ready on its first poll: here is its output, for the caller to deliver now.
    Ready(Output),
    /// It runs as a task on the runtime; its output will come through the completion queue.
    Running(AbortHandle),
}

pub struct Reactor {
    rt: Runtime,
    timer: AsyncFd<OwnedFd>,
    armed: AtomicI64,
    signal_rx: AsyncFd<OwnedFd>,
    signal_tx: OwnedFd,
    selector: AsyncFd<OwnedFd>,
    completions: Arc<Completions>,
    resolvers: Resolvers,
    generation: u64,
}

impl Reactor {
    pub fn new() -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let _enter = rt.enter();
        // SAFETY: plain syscalls with constant arguments; the results are checked by `owned`.
        let tfd =
            owned(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) })?;
        let mut pair = [0 as libc::c_int; 2];
        // SAFETY: `pair` is a valid out-array of two ints.
        cvt(unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        })?;
        let signal_rx = owned(pair[0])?;
        let signal_tx = owned(pair[1])?;
        // SAFETY: plain syscall; checked by `owned`.
        let epfd = owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Self {
            timer: register(tfd)?,
            armed: AtomicI64::new(NOT_ARMED),
            signal_rx: register(signal_rx)?,
            signal_tx,
            selector: register(epfd)?,
            completions: Arc::default(),
            resolvers: Resolvers::default(),
            generation: fork_generation(),
            rt,
        })
    }

    /// True when this reactor was built in another process (before a fork).
    pub fn is_stale(&self) -> bool {
        self.generation != fork_generation()
    }

    /// Poll `fut` once, inline, in this runtime's context: a future that is ready at once (an
    /// already-completed value, an answer from a cache) gives its output back with no task, no
    /// queue and no loop iteration. Otherwise it is spawned here, already started (a lookup has
    /// sent its query), and its output is queued for the loop thread under `id`; the rest runs
    /// when the loop next polls the runtime. The inline poll's waker is a no-op: the task's
    /// first poll registers the real one, as a future must honour the latest waker only.
    pub fn spawn<F>(&self, id: u64, fut: F) -> Spawned
    where
        F: Future<Output = Output> + Send + 'static,
    {
        let mut fut = Box::pin(fut);
        {
            let _enter = self.rt.enter();
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return Spawned::Ready(out);
            }
        }
        let completions = Arc::clone(&self.completions);
        let abort = self
            .rt
            .spawn(async move {
                let out = fut.await;
                completions.push(id, out);
            })
            .abort_handle();
        Spawned::Running(abort)
    }

    /// A handle to this runtime, for `RoseRuntime` (async_runtime.rs) to spawn on while the loop
    /// runs. Spawning through it is the same as `spawn` without the completion queue.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt.handle().clone()
    }

    /// The queue finished tasks push into (drained by the loop with the GIL held).
    pub fn completions(&self) -> &Arc<Completions> {
        &self.completions
    }

    /// The resolver of this runtime (a forked child's new reactor has a new one).
    pub fn resolvers(&self) -> &Resolvers {
        &self.resolvers
    }

    /// The fd to hand to `signal.set_wakeup_fd`.
    pub fn signal_wakeup_fd(&self) -> RawFd {
        self.signal_tx.as_raw_fd()
    }

    /// Arm the timer fd to an absolute `CLOCK_MONOTONIC` deadline in ns, or disarm it.
    /// A syscall only when the deadline changes.
    fn arm(&self, deadline: Option<i64>) -> io::Result<()> {
        let want = deadline.unwrap_or(NOT_ARMED);
        if self.armed.load(Ordering::Relaxed) == want {
            return Ok(());
        }
        let mut spec: libc::itimerspec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: 0, tv_nsec: 0 },
        };
        if let Some(ns) = deadline {
            // A zero it_value would disarm: a deadline at or before the epoch of the clock
            // means "now", so use 1 ns.
            let ns = ns.max(1);
            spec.it_value.tv_sec = ns / 1_000_000_000;
            spec.it_value.tv_nsec = ns % 1_000_000_000;
        }
        // SAFETY: valid fd owned by `self.timer`; `spec` is a valid itimerspec.
        cvt(unsafe {
            libc::timerfd_settime(
                self.timer.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        })?;
        self.armed.store(want, Ordering::Relaxed);
        Ok(())
    }

    fn ready_mask(&self, cx: &mut Context<'_>) -> u8 {
        let mut ev = 0;
        if self.timer.poll_read_ready(cx).is_ready() {
            ev |= EV_TIMER;
        }
        if self.signal_rx.poll_read_ready(cx).is_ready() {
            ev |= EV_SIGNAL;
        }
        if self.selector.poll_read_ready(cx).is_ready() {
            ev |= EV_SELECTOR;
        }
        ev
    }

    /// Block until a source is ready, the deadline (ns, `CLOCK_MONOTONIC`) passes, or another
    /// thread calls `wakeup.wake()`. Called with the GIL released, after
    /// `wakeup.begin_park()` (with the GIL held) and before `wakeup.end_park()`.
    pub fn park(&self, deadline: Option<i64>, wakeup: &Wakeup) -> io::Result<u8> {
        self.arm(deadline)?;
        let ev = {
            let mut notified = pin!(wakeup.notify.notified());
            let mut done = pin!(self.completions.notified());
            self.rt.block_on(poll_fn(|cx| {
                let mut ev = self.ready_mask(cx);
                if notified.as_mut().poll(cx).is_ready() {
                    ev |= EV_WAKE;
                }
                // Registered first, then checked: a task finishing in between wakes this poll.
                if done.as_mut().poll(cx).is_ready() || self.completions.has_any() {
                    ev |= EV_DONE;
                }
                if ev != 0 {
                    Poll::Ready(ev)
                } else {
                    Poll::Pending
                }
            }))
        };
        Ok(ev)
    }

    /// Let the I/O driver poll once without blocking and report what is ready.
    pub fn poll_now(&self) -> u8 {
        self.rt.block_on(async {
            // Also runs the spawned tasks that are ready (the scheduler polls them before it
            // resumes this future).
            tokio::task::yield_now().await;
            let done = if self.completions.has_any() { EV_DONE } else { 0 };
            poll_fn(|cx| Poll::Ready(self.ready_mask(cx) | done)).await
        })
    }

    /// Consume the timer fd's expiry and clear its readiness.
    pub fn clear_timer(&self) {
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(Ok(mut guard)) = self.timer.poll_read_ready(&mut cx) {
            let mut buf = [0u8; 8];
            // SAFETY: reading 8 bytes into an 8-byte buffer from our own timer fd.
            unsafe { libc::read(self.timer.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            guard.clear_ready();
        }
        self.armed.store(NOT_ARMED, Ordering::Relaxed);
    }

    /// Drain the signal wake-up socket into `signals` and clear its readiness.
    /// Python's C-level handler writes one byte, the signal number, per signal.
    pub fn clear_signal(&self, signals: &mut Vec<u8>) {
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(Ok(mut guard)) = self.signal_rx.poll_read_ready(&mut cx) {
            let mut buf = [0u8; 256];
            loop {
                // SAFETY: reading into a local buffer of the given length from our own socket.
                let n = unsafe { libc::read(self.signal_rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                signals.extend_from_slice(&buf[..n as usize]);
            }
            guard.clear_ready();
        }
    }

    /// `epoll_ctl` on the user-fd selector.
    pub fn selector_ctl(&self, op: libc::c_int, fd: RawFd, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: fd as u64 };
        // SAFETY: valid epoll fd; `ev` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.selector.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Non-blocking `epoll_wait` on the user-fd selector. Clears the selector's readiness when
    /// nothing is ready, so the next park waits for a new edge.
    pub fn selector_wait(&self, out: &mut Vec<(RawFd, u32)>) -> io::Result<()> {
        out.clear();
        let mut cx = Context::from_waker(Waker::noop());
        let guard = self.selector.poll_read_ready(&mut cx);
        // Uninitialised: zeroing 3 KiB on every poll measured as the biggest user-space cost
        // of a loop iteration that handles one datagram.
        let mut events = [const { std::mem::MaybeUninit::<libc::epoll_event>::uninit() }; 256];
        let n = loop {
            // SAFETY: `events` has room for `events.len()` epoll_event structures, which the
            // kernel writes; only the first `n` are read below.
            let n = unsafe {
                libc::epoll_wait(
                    self.selector.as_raw_fd(),
                    events.as_mut_ptr().cast(),
                    events.len() as libc::c_int,
                    0,
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        };
        out.extend(events[..n].iter().map(|e| {
            // SAFETY: epoll_wait initialised the first `n` entries.
            let e = unsafe { e.assume_init() };
            (e.u64 as RawFd, e.events)
        }));
        if n == 0 {
            if let Poll::Ready(Ok(mut guard)) = guard {
                guard.clear_ready();
            }
        }
        Ok(())
    }
}
