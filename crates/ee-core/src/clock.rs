//! Time as a dependency: monotonic instants for windows and leases, and wall-clock
//! Unix milliseconds for anything stored or compared across processes.
//!
//! Every ee crate reads time through a [`Clock`], so tests move time by hand
//! (`ee_testing::ManualClock`) instead of sleeping, and there is one fast
//! wall clock ([`unix_ms`]) instead of one per crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time. Layers that keep time in process (memory backends,
/// leases, windows) take a `Clock` so tests can move time by hand
/// (`ee_testing::ManualClock`) instead of sleeping.
///
/// ```
/// use ee_core::{Clock, SystemClock};
/// let clock = SystemClock;
/// let now = clock.unix_ms();
/// assert!(now > 1_700_000_000_000); // after November 2023
/// let wall = clock.system_time();
/// assert_eq!(wall.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64 / 1000, now / 1000);
/// ```
pub trait Clock: Clone + Send + Sync + 'static {
    /// The current monotonic instant.
    fn now(&self) -> Instant;

    /// Wall-clock time: milliseconds since the Unix epoch. The default reads
    /// the process's fast wall clock, [`unix_ms`].
    #[inline]
    fn unix_ms(&self) -> u64 {
        unix_ms()
    }

    /// Wall-clock time as a [`SystemTime`], from [`Clock::unix_ms`].
    #[inline]
    fn system_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.unix_ms())
    }
}

/// The real clocks: [`Instant::now`] and [`unix_ms`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Any [`Clock`] behind one type, so a struct that keeps a clock needs no
/// type parameter: the system clock with no indirection (the default), or a
/// given clock (`ee_testing::ManualClock` in tests) behind an `Arc`.
///
/// ```
/// use ee_core::{Clock, SharedClock, SystemClock};
/// let clocks = [SharedClock::default(), SharedClock::of(SystemClock)];
/// assert!(clocks.iter().all(|c| c.unix_ms() > 1_700_000_000_000));
/// ```
#[derive(Clone, Default)]
pub enum SharedClock {
    /// [`SystemClock`], read directly.
    #[default]
    System,
    /// Another clock.
    Custom(Arc<dyn ObjectClock>),
}

impl SharedClock {
    /// `clock` behind one type.
    pub fn of<C: Clock>(clock: C) -> Self {
        SharedClock::Custom(Arc::new(clock))
    }
}

impl std::fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SharedClock::System => "SharedClock::System",
            SharedClock::Custom(_) => "SharedClock::Custom",
        })
    }
}

impl Clock for SharedClock {
    #[inline]
    fn now(&self) -> Instant {
        match self {
            SharedClock::System => Instant::now(),
            SharedClock::Custom(c) => c.object_now(),
        }
    }

    #[inline]
    fn unix_ms(&self) -> u64 {
        match self {
            SharedClock::System => unix_ms(),
            SharedClock::Custom(c) => c.object_unix_ms(),
        }
    }
}

/// A [`Clock`] as an object ([`Clock`] is `Clone`, so not object safe):
/// what [`SharedClock`] holds. Implemented for every `Clock`.
pub trait ObjectClock: Send + Sync + 'static {
    /// [`Clock::now`].
    fn object_now(&self) -> Instant;
    /// [`Clock::unix_ms`].
    fn object_unix_ms(&self) -> u64;
}

impl<C: Clock> ObjectClock for C {
    fn object_now(&self) -> Instant {
        self.now()
    }
    fn object_unix_ms(&self) -> u64 {
        self.unix_ms()
    }
}

/// Unix time in milliseconds, cheap enough to read on every request.
///
/// quanta's clock (the CPU's time-stamp counter where it is invariant, else
/// the monotonic clock) plus an offset to the system clock, which is read
/// again every second: a step of the system clock (NTP, an operator) is
/// followed within that, and between two reads the error is the counter's
/// drift against the system clock (parts per million, well under a
/// millisecond).
///
/// ```
/// let before = std::time::SystemTime::now()
///     .duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
/// let now = ee_core::unix_ms();
/// assert!(now + 5 >= before && now < before + 5_000);
/// ```
#[inline]
pub fn unix_ms() -> u64 {
    UNIX_CLOCK.get_or_init(UnixClock::new).now_ms()
}

/// How often [`unix_ms`] reads the system clock, in milliseconds.
pub(crate) const SYNC_MS: u64 = 1000;

static UNIX_CLOCK: OnceLock<UnixClock> = OnceLock::new();

struct UnixClock {
    counter: quanta::Clock,
    start: u64,
    /// Unix milliseconds minus the counter's at the last system-clock read
    /// (wrapping).
    offset: AtomicU64,
    /// The counter's millisecond at which to read the system clock again.
    next_sync: AtomicU64,
}

impl UnixClock {
    /// Calibrates the counter (quanta: tens of milliseconds, once per
    /// process) and reads the system clock once, so the first reader already
    /// has a valid offset (published by the `OnceLock`).
    fn new() -> Self {
        let counter = quanta::Clock::new();
        let start = counter.raw();
        let clock = Self {
            counter,
            start,
            offset: AtomicU64::new(0),
            next_sync: AtomicU64::new(0),
        };
        let counter_ms = clock.counter_ms();
        clock
            .offset
            .store(system_ms().wrapping_sub(counter_ms), Ordering::Relaxed);
        clock
            .next_sync
            .store(counter_ms + SYNC_MS, Ordering::Relaxed);
        clock
    }

    #[inline]
    fn counter_ms(&self) -> u64 {
        self.counter.delta_as_nanos(self.start, self.counter.raw()) / 1_000_000
    }

    #[inline]
    fn now_ms(&self) -> u64 {
        let counter_ms = self.counter_ms();
        let next = self.next_sync.load(Ordering::Relaxed);
        // Due, or the counter went back before the last sync (a suspended
        // machine, a migrated VM): read the system clock.
        if counter_ms >= next || counter_ms + SYNC_MS < next {
            return self.sync(next);
        }
        counter_ms.wrapping_add(self.offset.load(Ordering::Relaxed))
    }

    /// Reads the system clock; the one thread that moves `next_sync` on
    /// from `seen` stores the new offset, taken against the counter read
    /// right after the system clock (so a thread paused before it cannot
    /// store a late one).
    #[cold]
    #[inline(never)]
    fn sync(&self, seen: u64) -> u64 {
        let unix_ms = system_ms();
        let counter_ms = self.counter_ms();
        if self
            .next_sync
            .compare_exchange(
                seen,
                counter_ms + SYNC_MS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            self.offset
                .store(unix_ms.wrapping_sub(counter_ms), Ordering::Relaxed);
        }
        unix_ms
    }
}

/// The system clock's Unix time in milliseconds.
fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() * 1000 + u64::from(d.subsec_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_follows_the_system_clock() {
        for _ in 0..3 {
            let before = system_ms();
            let ours = unix_ms();
            let after = system_ms();
            // Within the counter's rounding (a millisecond each way).
            assert!(
                ours + 1 >= before && ours <= after + 1,
                "{before} {ours} {after}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn system_time_is_unix_ms() {
        let clock = SystemClock;
        let ms = clock
            .system_time()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(ms.abs_diff(clock.unix_ms()) <= 2);
    }
}
