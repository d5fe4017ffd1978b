//! Loop metrics: counters the run step keeps as it goes, always on (`loop.metrics()`).
//!
//! What it costs per callback (measured with callgrind: benchmarks/metrics_cost.py): one read
//! of the callback clock (clock.rs) at each callback's end, a subtraction, a multiply, a log2
//! bucket and a few counter updates.
//!
//! A callback's duration runs from the end of the one before it in the same run phase (or the
//! start of the phase) to its own end: the callback plus rose's own bookkeeping around it, a
//! few tens of nanoseconds. Counters the run step alone updates are plain load-and-store
//! atomics (one writer: the thread running the loop); the ones other threads touch
//! (`call_soon_threadsafe`, a transport written from another thread) add atomically.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Buckets of the callback-duration histogram: bucket 0 holds durations under 1024 ns, bucket
/// `k` (1..=BUCKETS-2) those in [2^(9+k), 2^(10+k)) ns, the last one everything from 2^34 ns
/// (17.2 s) on.
pub const BUCKETS: usize = 26;

/// The upper bound (exclusive) of histogram bucket `k`, in ns (None for the last one).
pub fn bucket_bound_ns(k: usize) -> Option<u64> {
    (k + 1 < BUCKETS).then(|| 1u64 << (10 + k))
}

#[inline]
fn bucket_of(ns: u64) -> usize {
    let bits = (64 - ns.leading_zeros()) as usize; // 0 for ns == 0
    bits.saturating_sub(10).min(BUCKETS - 1)
}

/// A counter written by one thread at a time (the loop's, holding the GIL).
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0
            .store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// For counters other threads may update too.
    #[inline]
    pub fn add_shared(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a callback was: queued by `call_soon` (or a signal), a timer, or an fd's watch.
#[derive(Clone, Copy)]
pub enum Kind {
    Ready = 0,
    Timer = 1,
    Io = 2,
}

#[derive(Default)]
pub struct Stats {
    pub iterations: Counter,
    /// By `Kind` (the fourth slot is never used: indexing with `kind & 3` needs no bounds check).
    pub callbacks: [Counter; 4],
    pub parked_ns: Counter,
    /// How long `run_forever` ran, in all (its calls ended so far): running time is this less
    /// `parked_ns`, with no clock read per iteration.
    pub run_ns: Counter,
    /// The timed callbacks' durations, added up (what the histogram counts).
    pub callback_ns: Counter,
    pub histogram: [Counter; BUCKETS],
    pub timers_scheduled: Counter,
    pub timers_cancelled: Counter,
    pub timers_fired: Counter,
    pub transports_open: AtomicI64,
    pub bytes_read: Counter,
    pub bytes_written: Counter,
    pub threadsafe_calls: Counter,
    pub threadsafe_wakeups: Counter,
    pub slow_callbacks: Counter,
}

/// What one run phase counts: callbacks straight into the loop's `Stats`, the timed
/// callbacks' total when the phase ends (also when it ends early, with an exception: `Drop`).
pub struct Phase<'a> {
    stats: &'a Stats,
    callback_ns: u64,
}

impl<'a> Phase<'a> {
    #[inline]
    pub fn new(stats: &'a Stats) -> Self {
        Self { stats, callback_ns: 0 }
    }

    /// A callback of `kind` (a `Kind` as a number) ran.
    #[inline]
    pub fn count(&mut self, kind: u8) {
        self.stats.callbacks[(kind & 3) as usize].add(1);
    }

    /// A timed callback took `ns`.
    #[inline]
    pub fn time(&mut self, ns: u64) {
        self.callback_ns += ns;
        self.stats.histogram[bucket_of(ns)].add(1);
    }
}

impl Drop for Phase<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.callback_ns != 0 {
            self.stats.callback_ns.add(self.callback_ns);
        }
    }
}

/// `rose.set_callback_timing`: time every callback (the histogram, the longest callbacks), not
/// only while a slow-callback threshold is set or in debug mode.
pub static CALLBACK_TIMING: AtomicBool = AtomicBool::new(false);

/// The process-wide slow-callback threshold of `rose.set_slow_callback_threshold` (ns; 0: off).
pub static SLOW_THRESHOLD_NS: AtomicU64 = AtomicU64::new(0);

/// Seconds (None or 0: off) to a threshold in ns, rejecting what is not a duration.
pub fn threshold_ns(seconds: Option<f64>) -> Result<u64, &'static str> {
    match seconds {
        None => Ok(0),
        Some(s) if s.is_nan() || s < 0.0 => Err("slow-callback threshold must be a non-negative number of seconds"),
        Some(s) => Ok((s * 1e9).min(u64::MAX as f64) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log2_from_one_microsecond() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1023), 0);
        assert_eq!(bucket_of(1024), 1);
        assert_eq!(bucket_of(2047), 1);
        assert_eq!(bucket_of(2048), 2);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        for k in 0..BUCKETS - 1 {
            let bound = bucket_bound_ns(k).unwrap();
            assert_eq!(bucket_of(bound - 1), k);
            assert_eq!(bucket_of(bound), k + 1);
        }
        assert_eq!(bucket_bound_ns(BUCKETS - 1), None);
    }

    #[test]
    fn thresholds() {
        assert_eq!(threshold_ns(None), Ok(0));
        assert_eq!(threshold_ns(Some(0.25)), Ok(250_000_000));
        assert!(threshold_ns(Some(-1.0)).is_err());
        assert!(threshold_ns(Some(f64::NAN)).is_err());
    }
}
