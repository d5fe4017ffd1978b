//! `GilCell`: interior mutability for state that is only touched with the GIL held.
//!
//! rose's pyclasses are `frozen` (no pyo3 borrow flag to pay for on every call) and keep their
//! mutable state in `GilCell`s. On a GIL build, holding a `Python<'py>` token means no other
//! thread runs Python or touches these cells, so the cell is `Sync`. The inner `RefCell` turns a
//! re-entrant borrow (a bug: Python code must never run while a cell is borrowed) into an error
//! instead of undefined behaviour. A free-threaded build would swap this for a mutex.

use std::cell::{Ref, RefCell, RefMut};

use pyo3::Python;

pub struct GilCell<T>(RefCell<T>);

// SAFETY: every access goes through `borrow_mut`/`try_borrow_mut`, which take a `Python` token;
// with the GIL held, only one thread at a time can reach the cell (see the module note).
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub const fn new(value: T) -> Self {
        Self(RefCell::new(value))
    }

    /// Borrow mutably. Panics on re-entrance, which is a bug in rose, not in user code.
    #[inline]
    pub fn borrow_mut<'a>(&'a self, _py: Python<'_>) -> RefMut<'a, T> {
        self.0.borrow_mut()
    }

    #[inline]
    pub fn try_borrow_mut<'a>(&'a self, _py: Python<'_>) -> Option<RefMut<'a, T>> {
        self.0.try_borrow_mut().ok()
    }

    /// A shared borrow, which others may take too, for state that is only read (the loop's
    /// reactor: the parked loop and a thread adding a watch meanwhile both use it).
    #[inline]
    pub fn try_borrow<'a>(&'a self, _py: Python<'_>) -> Option<Ref<'a, T>> {
        self.0.try_borrow().ok()
    }

    /// Shared borrow for the garbage collector's `__traverse__`, which pyo3 runs with the GIL
    /// held but without a `Python` token. Fails (and the caller reports nothing, which only
    /// keeps objects alive longer) if the cell is borrowed mutably at that moment.
    #[inline]
    pub fn try_borrow_for_gc(&self) -> Option<Ref<'_, T>> {
        self.0.try_borrow().ok()
    }
}
