//! The timer heap: a binary min-heap keyed on the deadline, with exactly the sift rules of
//! CPython's `heapq` (the C `_heapq` module).
//!
//! asyncio keeps `TimerHandle`s in a plain list managed by `heapq`, comparing only `_when`.
//! `heapq` is not a stable sort, so the order in which timers with *equal* deadlines fire is
//! whatever its sifting produces. Users (and CPython's own tests) observe that order, so rose
//! reproduces the algorithm step for step instead of using `std::collections::BinaryHeap`.
//!
//! This module holds no Python objects of its own and is tested by `cargo test`.

/// A min-heap of `(deadline, item)` that reproduces `heapq`'s element order.
#[derive(Debug)]
pub struct TimerHeap<T> {
    items: Vec<(f64, T)>,
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        Self { items: Vec::new() }
    }
}

/// `heapq` compares with `<` only: `a < b` on the deadlines, so NaN behaves as in Python.
#[inline]
fn less(a: f64, b: f64) -> bool {
    a < b
}

impl<T> TimerHeap<T> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The earliest entry (`heap[0]`).
    pub fn peek(&self) -> Option<&(f64, T)> {
        self.items.first()
    }

    /// `heapq.heappush`.
    pub fn push(&mut self, when: f64, item: T) {
        self.items.push((when, item));
        let last = self.items.len() - 1;
        self.sift_down(0, last);
    }

    /// `heapq.heappop`.
    pub fn pop(&mut self) -> Option<(f64, T)> {
        let last = self.items.pop()?;
        if self.items.is_empty() {
            return Some(last);
        }
        let top = std::mem::replace(&mut self.items[0], last);
        self.sift_up(0);
        Some(top)
    }

    /// Keep the entries for which `keep` is true, then `heapq.heapify` what is left; this is
    /// asyncio's clean-up of cancelled timers (a list comprehension followed by `heapify`).
    /// Returns the removed items, so the caller can drop them where it is safe to.
    pub fn retain_and_heapify(&mut self, mut keep: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(self.items.len());
        for (when, item) in self.items.drain(..) {
            if keep(&item) {
                kept.push((when, item));
            } else {
                removed.push(item);
            }
        }
        self.items = kept;
        self.heapify();
        removed
    }

    /// Remove every entry, handing them to the caller.
    pub fn take_all(&mut self) -> Vec<(f64, T)> {
        std::mem::take(&mut self.items)
    }

    /// Iterate over the entries in heap (storage) order.
    pub fn iter(&self) -> impl Iterator<Item = &(f64, T)> {
        self.items.iter()
    }

    /// `heapq.heapify`, including the C module's cache-friendly order for large heaps: above
    /// 2500 entries it sifts sibling subtrees depth-first, which can arrange equal keys
    /// differently from the simple bottom-up pass.
    fn heapify(&mut self) {
        let n = self.items.len();
        if n <= 2500 {
            for i in (0..n / 2).rev() {
                self.sift_up(i);
            }
            return;
        }
        let m = n >> 1; // first childless node
        let leftmost = keep_top_bit(m + 1) - 1; // leftmost node in m's row
        let mhalf = m >> 1; // parent of the first childless node
        let mut i = leftmost;
        while i > mhalf {
            i -= 1;
            self.sift_up_chain(i);
        }
        let mut i = m;
        while i > leftmost {
            i -= 1;
            self.sift_up_chain(i);
        }
    }

    /// Sift `j`, then its parent while `j` is a right child (odd index), as the C heapify does.
    fn sift_up_chain(&mut self, mut j: usize) {
        loop {
            self.sift_up(j);
            if j & 1 == 0 {
                break;
            }
            j >>= 1;
        }
    }

    /// `heapq._siftdown`: move the entry at `pos` towards the root while it is smaller than
    /// its parent.
    fn sift_down(&mut self, start: usize, mut pos: usize) {
        while pos > start {
            let parent = (pos - 1) >> 1;
            if less(self.items[pos].0, self.items[parent].0) {
                self.items.swap(pos, parent);
                pos = parent;
            } else {
                break;
            }
        }
    }

    /// `heapq._siftup`: move the smaller child up until a leaf is reached, then sift the
    /// original entry back down from there.
    fn sift_up(&mut self, mut pos: usize) {
        let end = self.items.len();
        let start = pos;
        let mut child = 2 * pos + 1;
        while child < end {
            let right = child + 1;
            if right < end && !less(self.items[child].0, self.items[right].0) {
                child = right;
            }
            self.items.swap(pos, child);
            pos = child;
            child = 2 * pos + 1;
        }
        self.sift_down(start, pos);
    }
}

/// The largest power of two that is <= n (n > 0).
fn keep_top_bit(n: usize) -> usize {
    1usize << (usize::BITS - 1 - n.leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain<T>(h: &mut TimerHeap<T>) -> Vec<(f64, T)> {
        std::iter::from_fn(|| h.pop()).collect()
    }

    #[test]
    fn pops_in_deadline_order() {
        let mut h = TimerHeap::default();
        for (i, w) in [5.0, 1.0, 3.0, 2.0, 4.0].into_iter().enumerate() {
            h.push(w, i);
        }
        let order: Vec<f64> = drain(&mut h).into_iter().map(|(w, _)| w).collect();
        assert_eq!(order, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn equal_deadlines_follow_heapq_not_insertion() {
        // heapq with keys [1,1,1,1,1] pushed as 0..5 pops 0,2,4,1,3 (checked against CPython:
        // each pop moves the last element to the root, then `_siftup` walks it down to a leaf).
        let mut h = TimerHeap::default();
        for i in 0..5 {
            h.push(1.0, i);
        }
        let order: Vec<i32> = drain(&mut h).into_iter().map(|(_, i)| i).collect();
        assert_eq!(order, vec![0, 2, 4, 1, 3]);
    }

    #[test]
    fn retain_removes_and_keeps_heap_property() {
        let mut h = TimerHeap::default();
        for i in 0..5000u32 {
            h.push(f64::from((i * 7919) % 1000), i);
        }
        let removed = h.retain_and_heapify(|i| i % 3 != 0);
        assert_eq!(removed.len(), 1667);
        assert_eq!(h.len(), 5000 - 1667);
        let keys: Vec<f64> = drain(&mut h).into_iter().map(|(w, _)| w).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn pop_on_empty_is_none() {
        let mut h: TimerHeap<()> = TimerHeap::default();
        assert!(h.pop().is_none());
        assert!(h.peek().is_none());
    }

    #[test]
    fn top_bit() {
        assert_eq!(keep_top_bit(1), 1);
        assert_eq!(keep_top_bit(6), 4);
        assert_eq!(keep_top_bit(1024), 1024);
    }
}
