//! The registrations of `add_reader`/`add_writer`: fd -> (reader, writer), kept in step with
//! the reactor's level-triggered epoll set, with the semantics of asyncio's selector loop
//! (`_add_reader`, `_remove_reader`, `_process_events`, `EpollSelector`).
//!
//! A watcher is a `Handle` (what asyncio registers) or, for rose's own transports, the
//! transport core itself (`Watch::Core`): a connection's read watch then costs no handle, no
//! bound method and no call through Python per event; the core keeps the context its callbacks
//! run in, which is the context asyncio's handle would have copied.
//!
//! The user's fd is never touched otherwise: its blocking mode stays as it is.
//!
//! One-shot watches (`add(.., oneshot)`, for `sock_recv`/`sock_sendall`, which watch an fd only until
//! one call completes): registered with `EPOLLONESHOT`, so once an event is reported the kernel
//! disarms the fd by itself and removing the watch afterwards costs no syscall; the fd stays in
//! the epoll set, disarmed ("dormant"), and the next watch re-arms it with one `EPOLL_CTL_MOD`
//! instead of an ADD now and a DEL later. A dormant fd that is closed leaves the epoll set on its
//! own; if its number comes back for another file, MOD fails with ENOENT and the watch is ADDed.
//! A disarmed fd never reports anything, so a dormant entry can't wake the loop, even if the
//! file outlives the fd through a duplicate.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::fd::RawFd;

use pyo3::prelude::*;

use crate::handles::Handle;
use crate::reactor::Reactor;

/// What a transport core's own watch runs (see transport.rs): `ready(core, write)` runs the
/// core's reader (or writer) if it still watches that direction (and says whether it ran);
/// `handle(core, write)` makes
/// a `Handle` that stands for the watch where one must be shown (an error report, a slow
/// callback, `loop._selector`).
pub struct CoreOps {
    pub ready: for<'py> fn(&Bound<'py, PyAny>, bool) -> PyResult<bool>,
    pub handle: for<'py> fn(&Bound<'py, PyAny>, bool) -> PyResult<Py<Handle>>,
}

/// The watcher of one direction of an fd.
pub enum Watch {
    /// `add_reader`/`add_writer` and the `sock_*` methods: a handle to run.
    Handle(Py<Handle>),
    /// A transport core watching its own socket: no handle, no bound method, no context of
    /// its own (the core keeps the context its callbacks run in).
    Core(Py<PyAny>, &'static CoreOps),
}

impl Watch {
    pub fn clone_ref(&self, py: Python<'_>) -> Self {
        match self {
            Watch::Handle(h) => Watch::Handle(h.clone_ref(py)),
            Watch::Core(c, ops) => Watch::Core(c.clone_ref(py), ops),
        }
    }
}

#[derive(Default)]
struct Registration {
    reader: Option<Watch>,
    writer: Option<Watch>,
    /// Registered with EPOLLONESHOT (see the module note).
    oneshot: bool,
    /// A one-shot registration reported an event: the kernel disarmed it.
    disarmed: bool,
}

impl Registration {
    fn epoll_events(&self) -> u32 {
        let mut ev = 0;
        if self.reader.is_some() {
            ev |= libc::EPOLLIN as u32;
        }
        if self.writer.is_some() {
            ev |= libc::EPOLLOUT as u32;
        }
        if self.oneshot && ev != 0 {
            ev |= libc::EPOLLONESHOT as u32;
        }
        ev
    }

    fn slot(&mut self, write: bool) -> &mut Option<Watch> {
        if write {
            &mut self.writer
        } else {
            &mut self.reader
        }
    }
}

/// The (reader, writer) watchers of one fd.
pub type Watchers = (Option<Watch>, Option<Watch>);

/// A hasher for fds: one multiplication (Fibonacci hashing) instead of SipHash, whose cost
/// showed in every I/O event's lookup (~100 instructions per lookup under callgrind). Fds are
/// small non-negative integers chosen by the kernel, not by an attacker.
#[derive(Default)]
pub(crate) struct FdHasher(u64);

impl Hasher for FdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i32(&mut self, fd: i32) {
        self.0 = u64::from(fd as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type FdBuild = BuildHasherDefault<FdHasher>;

#[derive(Default)]
pub struct Selector {
    map: HashMap<RawFd, Registration, FdBuild>,
    /// Fds left in the epoll set, disarmed, by one-shot watches (see the module note).
    dormant: HashSet<RawFd, FdBuild>,
}

fn ctl_add_or_mod(reactor: &Reactor, fd: RawFd, events: u32, existed: bool) -> io::Result<()> {
    if existed {
        match reactor.selector_ctl(libc::EPOLL_CTL_MOD, fd, events) {
            // The fd was closed (and maybe reused) since: epoll dropped it on its own.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => reactor.selector_ctl(libc::EPOLL_CTL_ADD, fd, events),
            other => other,
        }
    } else {
        reactor.selector_ctl(libc::EPOLL_CTL_ADD, fd, events)
    }
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Register `watch` as the reader (or writer) of `fd`; returns the watcher it replaces,
    /// which the caller cancels if it is a handle (outside any borrow). `oneshot` asks for a watch that ends
    /// when one socket call completes (see the module note); an fd watched level-triggered in
    /// the other direction stays level-triggered.
    pub fn add(
        &mut self,
        reactor: &Reactor,
        fd: RawFd,
        write: bool,
        watch: Watch,
        oneshot: bool,
    ) -> io::Result<Option<Watch>> {
        let oneshot = oneshot && self.map.get(&fd).is_none_or(|r| r.oneshot);
        let existed = self.map.contains_key(&fd) || self.dormant.remove(&fd);
        let reg = self.map.entry(fd).or_default();
        let old = reg.slot(write).replace(watch);
        let was = (reg.oneshot, reg.disarmed);
        reg.oneshot = oneshot;
        reg.disarmed = false;
        if let Err(e) = ctl_add_or_mod(reactor, fd, reg.epoll_events(), existed) {
            // Undo: the registration stays as it was.
            let new = std::mem::replace(reg.slot(write), old);
            (reg.oneshot, reg.disarmed) = was;
            if reg.reader.is_none() && reg.writer.is_none() {
                self.map.remove(&fd);
            }
            drop(new);
            return Err(e);
        }
        Ok(old)
    }

    /// Arm a one-shot registration again after an event that did not complete its call.
    pub fn rearm(&mut self, reactor: &Reactor, fd: RawFd) -> io::Result<()> {
        let Some(reg) = self.map.get_mut(&fd) else {
            return Ok(());
        };
        if !reg.disarmed {
            return Ok(());
        }
        reg.disarmed = false;
        ctl_add_or_mod(reactor, fd, reg.epoll_events(), true)
    }

    /// Unregister the reader (or writer) of `fd`; returns the removed watcher.
    pub fn remove(&mut self, reactor: &Reactor, fd: RawFd, write: bool) -> Option<Watch> {
        let reg = self.map.get_mut(&fd)?;
        let old = reg.slot(write).take();
        let events = reg.epoll_events();
        // Errors are ignored as selectors' unregister does: the fd may be closed already.
        if events == 0 {
            let dormant = reg.oneshot && reg.disarmed;
            self.map.remove(&fd);
            if dormant {
                // The kernel disarmed it already: nothing to undo (see the module note).
                self.dormant.insert(fd);
            } else {
                let _ = reactor.selector_ctl(libc::EPOLL_CTL_DEL, fd, 0);
            }
        } else {
            reg.disarmed = false;
            let _ = reactor.selector_ctl(libc::EPOLL_CTL_MOD, fd, events);
        }
        old
    }

    /// Register everything again in a fresh reactor (after fork).
    pub fn reregister(&mut self, reactor: &Reactor) {
        self.dormant.clear();
        for (fd, reg) in &mut self.map {
            reg.disarmed = false;
            let _ = reactor.selector_ctl(libc::EPOLL_CTL_ADD, *fd, reg.epoll_events());
        }
    }

    /// The reader and writer of `fd`, if it is watched at all.
    pub fn get(&self, py: Python<'_>, fd: RawFd) -> Option<Watchers> {
        let reg = self.map.get(&fd)?;
        let clone = |w: &Option<Watch>| w.as_ref().map(|w| w.clone_ref(py));
        Some((clone(&reg.reader), clone(&reg.writer)))
    }

    pub fn fds(&self) -> Vec<RawFd> {
        self.map.keys().copied().collect()
    }

    /// Every registered watcher (for the loop's `__traverse__` and its metrics).
    pub fn watches(&self) -> impl Iterator<Item = &Watch> {
        self.map
            .values()
            .flat_map(|r| [r.reader.as_ref(), r.writer.as_ref()])
            .flatten()
    }

    /// Everything, for `close()`.
    pub fn take_all(&mut self) -> Vec<Watch> {
        self.dormant.clear();
        self.map
            .drain()
            .flat_map(|(_, r)| [r.reader, r.writer])
            .flatten()
            .collect()
    }

    /// The watchers to run for an epoll event on `fd`, as asyncio's `EpollSelector` maps it
    /// (errors and hang-ups wake both directions). Returns (reader, writer).
    pub fn handles_for(&mut self, py: Python<'_>, fd: RawFd, events: u32) -> Watchers {
        let Some(reg) = self.map.get_mut(&fd) else {
            return (None, None);
        };
        if reg.oneshot {
            reg.disarmed = true;
        }
        let readable = events & !(libc::EPOLLOUT as u32) != 0;
        let writable = events & !(libc::EPOLLIN as u32) != 0;
        let pick = |want: bool, w: &Option<Watch>| {
            if want {
                w.as_ref().map(|w| w.clone_ref(py))
            } else {
                None
            }
        };
        (pick(readable, &reg.reader), pick(writable, &reg.writer))
    }
}
