//! `GilCell`: interior mutability for state that is only touched with the GIL held.
//!
//! rose's pyclasses are `frozen` (no pyo3 borrow flag to pay for on every call) and keep their
//! mutable state in `GilCell`s. On a GIL build, holding a `Python<'py>` token means no other
//! thread runs Python or touches these cells, so the cell is `Sync`. The inner `RefCell` turns a
//! re-entrant borrow (a bug: Python code must never run while a cell is borrowed) into an error
//! instead of undefined behaviour. A free-threaded build would swap this for a mutex.

use std::cell::{Ref, RefCell, RefMut, UnsafeCell};

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

/// A value set at most once, with the GIL held, and never replaced or taken afterwards (until
/// the owner drops it): readers get a plain reference, and the cell costs no borrow flag (an
/// `Option<Py<..>>` in it is one pointer).
pub struct GilOnce<T>(UnsafeCell<Option<T>>);

// SAFETY: the value is written once (`set`, from None to Some) and only with the GIL held, and
// never changed afterwards; readers hold the GIL (or are the garbage collector, which runs with
// it), so no reader can see a write in progress.
unsafe impl<T: Send> Sync for GilOnce<T> {}

impl<T> GilOnce<T> {
    pub const fn new(value: Option<T>) -> Self {
        Self(UnsafeCell::new(value))
    }

    #[inline]
    pub fn get(&self, _py: Python<'_>) -> Option<&T> {
        self.get_for_gc()
    }

    /// For `__traverse__` (the GIL is held, without a token).
    #[inline]
    pub fn get_for_gc(&self) -> Option<&T> {
        // SAFETY: once set, the value never changes (see the `Sync` note), so a shared
        // reference to it stays valid as long as `self`.
        unsafe { (*self.0.get()).as_ref() }
    }

    /// Set the value if there is none yet; otherwise hand `value` back.
    pub fn set(&self, _py: Python<'_>, value: T) -> Result<(), T> {
        // SAFETY: the GIL is held (the token), so no other thread reads or writes the cell now;
        // a reference handed out earlier can only be to a value that is set, which is then
        // left alone here.
        let slot = unsafe { &mut *self.0.get() };
        if slot.is_some() {
            return Err(value);
        }
        *slot = Some(value);
        Ok(())
    }
}
