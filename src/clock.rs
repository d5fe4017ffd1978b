//! The loop's clocks: `CLOCK_MONOTONIC` (the clock of `time.monotonic()` and `loop.time()`),
//! and the cheaper clock that times callbacks for the metrics.
//!
//! The callback clock is the CPU's time-stamp counter where the kernel itself uses it as its
//! clocksource (x86-64 with an invariant, synchronised TSC; `rdtsc` takes about 12 ns here
//! where `clock_gettime` takes about 23), converted to nanoseconds with a ratio measured
//! against `CLOCK_MONOTONIC` once 50 ms have passed since the first loop iteration; until
//! then, and everywhere else, it is `CLOCK_MONOTONIC` itself. The ratio is process-wide (the
//! TSC is too) and stays valid in a forked child.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `time.monotonic()`.
#[inline]
pub fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-parameter; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Nanoseconds to float seconds exactly as CPython's `_PyTime_AsSecondsDouble` rounds them, so
/// `loop.time()` and `time.monotonic()` agree to the last bit.
#[inline]
pub fn ns_to_secs(ns: i64) -> f64 {
    if ns % 1_000_000_000 == 0 {
        (ns / 1_000_000_000) as f64
    } else {
        ns as f64 / 1e9
    }
}

/// Ticks of the callback clock: the TSC, or CLOCK_MONOTONIC ns (see the module note).
#[derive(Clone, Copy)]
pub enum Clock {
    /// ns per tick as 32.32 fixed point.
    Tsc(u64),
    Monotonic,
}

static TSC_USABLE: OnceLock<bool> = OnceLock::new();
/// 32.32 fixed-point ns per TSC tick; 0 until calibrated.
static TSC_MULT: AtomicU64 = AtomicU64::new(0);
static TSC_BASE: AtomicU64 = AtomicU64::new(0);
static TSC_BASE_NS: AtomicI64 = AtomicI64::new(0);
/// How long the calibration baseline is.
const CALIBRATION_NS: i64 = 50_000_000;

#[cfg(target_arch = "x86_64")]
#[inline]
fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86-64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn rdtsc() -> u64 {
    0
}

fn tsc_usable() -> bool {
    *TSC_USABLE.get_or_init(|| {
        cfg!(target_arch = "x86_64")
            && std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
                .is_ok_and(|s| s.trim() == "tsc")
    })
}

impl Clock {
    /// The clock for one run phase; `now_ns` is CLOCK_MONOTONIC as the phase starts, which
    /// also advances the calibration.
    #[inline]
    pub fn current(now_ns: i64) -> Clock {
        let mult = TSC_MULT.load(Ordering::Relaxed);
        if mult != 0 {
            return Clock::Tsc(mult);
        }
        Self::calibrate(now_ns);
        Clock::Monotonic
    }

    #[cold]
    fn calibrate(now_ns: i64) {
        if !tsc_usable() {
            return;
        }
        let base_ns = TSC_BASE_NS.load(Ordering::Relaxed);
        if base_ns == 0 {
            TSC_BASE.store(rdtsc(), Ordering::Relaxed);
            TSC_BASE_NS.store(monotonic_ns(), Ordering::Relaxed);
            return;
        }
        if now_ns - base_ns < CALIBRATION_NS {
            return;
        }
        let (ns1, tsc1) = (monotonic_ns(), rdtsc());
        let ticks = tsc1.saturating_sub(TSC_BASE.load(Ordering::Relaxed));
        let ns = (ns1 - base_ns) as u64;
        if ticks > 0 {
            let mult = ((ns as u128) << 32) / ticks as u128;
            TSC_MULT.store((mult as u64).max(1), Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn now(self) -> u64 {
        match self {
            Clock::Tsc(_) => rdtsc(),
            Clock::Monotonic => monotonic_ns() as u64,
        }
    }

    #[inline]
    pub fn to_ns(self, ticks: u64) -> u64 {
        match self {
            Clock::Tsc(mult) => ((ticks as u128 * mult as u128) >> 32) as u64,
            Clock::Monotonic => ticks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_match_cpython_rounding() {
        // CPython divides whole seconds as integers, the rest as doubles.
        assert_eq!(ns_to_secs(5_000_000_000), 5.0);
        assert_eq!(ns_to_secs(1_500_000_000), 1.5);
        assert_eq!(ns_to_secs(123_456_789_012), 123_456_789_012_f64 / 1e9);
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a && a > 0);
    }
    #[test]
    fn monotonic_clock_is_nanoseconds() {
        assert_eq!(Clock::Monotonic.to_ns(12345), 12345);
        assert_eq!(Clock::Tsc(1 << 32).to_ns(777), 777);
        assert_eq!(Clock::Tsc(1 << 31).to_ns(1000), 500);
    }
}
