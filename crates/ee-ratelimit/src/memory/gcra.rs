//! GCRA on `governor`: its keyed state in a map of ours, so the
//! compare-and-swap inlines into the layer, on governor's fast clock or on
//! the store's.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ee_core::{Clock, Key};
use governor::RateLimiter;
use governor::clock::{DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;

use super::keys::{Full, KeyMap};
use crate::store::Decision;

thread_local! {
    /// A per-thread xorshift state: one GCRA decision in 4096, picked at
    /// random, looks at the clock for a sweep. Random, not every 4096th, so
    /// that limiters taking turns on one thread all get their share; per
    /// thread, so the hot path writes no shared cache line.
    static SWEEP_DICE: std::cell::Cell<u32> = const { std::cell::Cell::new(0x9E37_79B9) };

    /// Set when [`GcraCells`] refused a new key because its map is full, for
    /// the refusal path of the same decision, on the same thread, to tell
    /// that refusal from a limit (governor's `StateStore` seam has no room
    /// for an error of ours).
    static REFUSED_FULL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The state [`GcraCells`] answers for a new key it has no room for: an
/// arrival time ~292 years ahead, which governor refuses whatever the rule;
/// [`REFUSED_FULL`] then tells the refusal path that the map was full.
const FULL_TAT: u64 = u64::MAX / 2;

/// Whether the GCRA refusal being decided on this thread was a new key
/// refused for want of room (and clears the mark).
#[inline]
fn take_refused_full() -> bool {
    REFUSED_FULL.with(|full| full.replace(false))
}

/// Whether this GCRA decision is one of the 1 in 4096 that check for a sweep.
#[inline(always)]
pub(super) fn sweep_due() -> bool {
    SWEEP_DICE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        state.set(x);
        x & 4095 == 0
    })
}

/// `governor` wants its own clock trait; this adapts an [`ee_core::Clock`].
#[derive(Debug, Clone)]
pub(super) struct GovernorClock<C>(pub(super) C);

impl<C: Clock> governor::clock::Clock for GovernorClock<C> {
    type Instant = Instant;
    #[inline]
    fn now(&self) -> Instant {
        self.0.now()
    }
}

/// GCRA state per key: governor's theoretical arrival time (nanoseconds
/// since the limiter's start; 0 = never seen), as its own keyed store keeps
/// it, in a map of ours behind governor's `StateStore` seam, so that the
/// compare-and-swap inlines into the layer. Bounded in keys: a new key the
/// map has no room for is refused (see [`FULL_TAT`]).
pub(super) struct GcraCells(KeyMap<AtomicU64>);

impl GcraCells {
    /// Empty, holding at most `max_keys` keys.
    pub(super) fn new(max_keys: usize) -> Self {
        Self(KeyMap::new(max_keys))
    }
}

impl StateStore for GcraCells {
    type Key = Key;

    #[inline(always)]
    fn measure_and_replace<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(cell) = self.0.get(key) {
            return measure(&cell, f);
        }
        self.insert_and_measure(key, f)
    }
}

impl ShrinkableKeyedStateStore<Key> for GcraCells {
    fn retain_recent(&self, drop_below: Nanos) {
        let drop_below = u64::from(drop_below);
        self.0
            .retain(|_, tat| tat.load(Ordering::Relaxed) > drop_below);
    }

    fn shrink_to_fit(&self) {
        self.0.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl GcraCells {
    /// A key seen for the first time: inserted if the map has room, else
    /// refused (governor decides on [`FULL_TAT`], and the refusal is marked
    /// for [`gcra_refusal`]).
    #[cold]
    #[inline(never)]
    fn insert_and_measure<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        match self.0.entry(key, AtomicU64::default) {
            Ok(cell) => measure(&cell, f),
            Err(Full) => match f(Some(Nanos::from(FULL_TAT))) {
                Err(refused) => {
                    REFUSED_FULL.with(|full| full.set(true));
                    Err(refused)
                }
                // No rule this crate builds gets here (its burst would
                // span centuries): such a request passes, uncounted.
                Ok((allowed, _)) => Ok(allowed),
            },
        }
    }
}

/// governor's update of one cell: decide on the arrival time read, write the
/// next one only if no other decision wrote in between, else decide again.
#[inline(always)]
fn measure<T, E>(
    cell: &AtomicU64,
    f: impl Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
) -> Result<T, E> {
    let mut prev = cell.load(Ordering::Acquire);
    loop {
        let (result, next) = f(NonZeroU64::new(prev).map(|n| Nanos::from(n.get())))?;
        match cell.compare_exchange_weak(prev, next.into(), Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return Ok(result),
            Err(actual) => prev = actual,
        }
    }
}

pub(super) type Gcra<Clk> = RateLimiter<Key, GcraCells, Clk, StateInformationMiddleware>;

/// governor on its default (quanta) clock, or on the store's clock.
pub(super) enum GcraLimiter<C: Clock> {
    Fast(Gcra<DefaultClock>),
    Given(Box<Gcra<GovernorClock<C>>>),
}

#[inline(always)]
pub(super) fn gcra<Clk>(
    limiter: &Gcra<Clk>,
    emission_ns: u64,
    burst: u32,
    key: &Key,
    cost: u32,
) -> Result<Decision, Full>
where
    Clk: governor::clock::Clock,
    Clk::Instant: Reference,
{
    let t = |units: u64| Duration::from_nanos(emission_ns.saturating_mul(units));
    let outcome = if cost == 1 {
        Ok(limiter.check_key(key))
    } else {
        limiter.check_key_n(key, NonZeroU32::new(cost).expect("cost >= 1"))
    };
    match outcome {
        Ok(Ok(snapshot)) => {
            let remaining = snapshot.remaining_burst_capacity();
            Ok(Decision {
                allowed: true,
                remaining: remaining.into(),
                reset: t(u64::from(burst - remaining.min(burst))),
                retry_after: None,
                ticket: 0,
            })
        }
        Ok(Err(not_until)) => gcra_refusal(limiter, emission_ns, burst, cost, Some(not_until)),
        Err(_insufficient) => gcra_refusal(limiter, emission_ns, burst, cost, None),
    }
}

/// A refused GCRA decision: `not_until` when the cost fits the burst once
/// enough time has passed, `None` when it never can; [`Full`] when the key
/// was new and the map had no room for it.
#[cold]
#[inline(never)]
pub(super) fn gcra_refusal<Clk>(
    limiter: &Gcra<Clk>,
    emission_ns: u64,
    burst: u32,
    cost: u32,
    not_until: Option<governor::NotUntil<Clk::Instant>>,
) -> Result<Decision, Full>
where
    Clk: governor::clock::Clock,
    Clk::Instant: Reference,
{
    if take_refused_full() {
        return Err(Full);
    }
    let t = |units: u64| Duration::from_nanos(emission_ns.saturating_mul(units));
    Ok(match not_until {
        Some(not_until) => {
            let wait = not_until.wait_time_from(limiter.clock().now());
            Decision {
                allowed: false,
                remaining: 0,
                reset: wait + t(u64::from(burst.saturating_sub(cost))),
                retry_after: Some(wait),
                ticket: 0,
            }
        }
        None => Decision {
            allowed: false,
            remaining: 0,
            reset: t(u64::from(burst)),
            retry_after: None,
            ticket: 0,
        },
    })
}
