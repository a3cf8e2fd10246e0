//! In-process limits: the embedded default, and the fallback when Redis is down.
//!
//! - `mod.rs`: [`MemoryStore`] and [`MemoryLimiter`], which picks the rule's
//!   state and sweeps idle keys;
//! - `gcra.rs`: GCRA on `governor`, its state in a map of ours;
//! - `counted.rs`: the rules counted in our own maps (windows, token
//!   bucket, concurrency).

mod counted;
mod gcra;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ee_core::{Clock, Key, SystemClock};
use foldhash::fast::RandomState;
use governor::clock::DefaultClock;
use governor::{Quota, RateLimiter};

use crate::Rule;
use crate::store::{Admission, Decision, Limiter, RateLimitStore, StoreError};
use counted::{Bucket, Window, fixed_window, in_flight, sliding_window, token_bucket};
use gcra::{GcraCells, GcraLimiter, GovernorClock, gcra, gcra_refusal, sweep_due};

/// Limits kept in this process: GCRA on `governor`, the other rules on a
/// sharded map. Each instance of a service counts on its own; use
/// `RedisStore` to share limits between instances.
///
/// Keys that have been idle for a whole window are swept once per window (at
/// most every 10 s: a sweep walks every key), so memory follows the number of
/// keys active in the last window or 10 s.
#[derive(Debug, Clone)]
pub struct MemoryStore<C = SystemClock> {
    clock: C,
    /// GCRA on governor's own TSC-based clock (faster than `Instant::now`);
    /// true for the system clock, false when a clock is given.
    fast_clock: bool,
}

impl MemoryStore {
    /// A store on the system clock.
    pub fn new() -> Self {
        Self {
            clock: SystemClock,
            fast_clock: true,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock> MemoryStore<C> {
    /// A store on another clock (`ee_testing::ManualClock` in tests).
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            fast_clock: false,
        }
    }
}

impl<C: Clock> RateLimitStore for MemoryStore<C> {
    type Limiter = MemoryLimiter<C>;

    fn limiter(&self, _name: &str, rule: &Rule) -> MemoryLimiter<C> {
        MemoryLimiter::build(*rule, self.clock.clone(), self.fast_clock)
    }
}

/// The shortest time between two sweeps of idle keys.
const MIN_SWEEP_INTERVAL_MS: u64 = 10_000;

/// Keyed maps hash with foldhash, seeded at random per map (hashbrown's
/// default): a few instructions per IP key where SipHash takes ~70, and an
/// attacker who picks keys cannot predict collisions without the seed.
type DashMap<K, V> = dashmap::DashMap<K, V, RandomState>;

/// One policy's in-process state.
pub struct MemoryLimiter<C: Clock = SystemClock> {
    rule: Rule,
    state: State<C>,
    clock: C,
    start: Instant,
    /// Unix time of `start` in milliseconds (system clock), else 0.
    epoch_ms: f64,
    /// Milliseconds since `start` of the last sweep of idle keys.
    last_sweep_ms: AtomicU64,
}

impl<C: Clock> std::fmt::Debug for MemoryLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLimiter")
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

enum State<C: Clock> {
    Gcra {
        limiter: GcraLimiter<C>,
        /// Nanoseconds per unit.
        emission_ns: u64,
        burst: u32,
    },
    Window(DashMap<Key, Window>),
    Bucket(DashMap<Key, Bucket>),
    InFlight(DashMap<Key, u32>),
}

impl MemoryLimiter {
    /// A limiter for `rule` on the system clock (GCRA on governor's fast clock).
    pub fn system(rule: Rule) -> Self {
        Self::build(rule, SystemClock, true)
    }
}

impl<C: Clock> MemoryLimiter<C> {
    /// A limiter for `rule` on `clock`.
    pub fn new(rule: Rule, clock: C) -> Self {
        Self::build(rule, clock, false)
    }

    fn build(rule: Rule, clock: C, fast_clock: bool) -> Self {
        let state = match rule {
            Rule::Gcra {
                limit,
                period_ms,
                burst,
            } => {
                let emission_ns =
                    (period_ms.saturating_mul(1_000_000) / u64::from(limit.max(1))).max(1);
                let quota = Quota::with_period(Duration::from_nanos(emission_ns))
                    .expect("the emission interval is at least 1 ns")
                    .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1"));
                let limiter = if fast_clock {
                    GcraLimiter::Fast(RateLimiter::new(
                        quota,
                        GcraCells::default(),
                        DefaultClock::default(),
                    ))
                } else {
                    GcraLimiter::Given(Box::new(RateLimiter::new(
                        quota,
                        GcraCells::default(),
                        GovernorClock(clock.clone()),
                    )))
                };
                State::Gcra {
                    limiter,
                    emission_ns,
                    burst,
                }
            }
            Rule::FixedWindow { .. } | Rule::SlidingWindow { .. } => {
                State::Window(DashMap::default())
            }
            Rule::TokenBucket { .. } => State::Bucket(DashMap::default()),
            Rule::Concurrency { .. } => State::InFlight(DashMap::default()),
        };
        let start = clock.now();
        // On the system clock, windows line up with Unix time, as Redis's do,
        // so a fallback limiter's windows match the ones it stands in for.
        let epoch_ms = if fast_clock {
            SystemClock.unix_ms() as f64
        } else {
            0.0
        };
        Self {
            rule,
            state,
            clock,
            start,
            epoch_ms,
            last_sweep_ms: AtomicU64::new(0),
        }
    }

    /// Decides synchronously (the in-memory path never waits).
    #[inline(always)]
    pub fn decide(&self, key: &Key, cost: u32) -> Decision {
        // The hot path, inlined into the layer: GCRA on governor's clock;
        // ours is read only for a sweep, about once in 4096 decisions.
        if let State::Gcra {
            limiter: GcraLimiter::Fast(l),
            emission_ns,
            burst,
        } = &self.state
        {
            let decision = gcra(l, *emission_ns, *burst, key, cost.max(1));
            if sweep_due() {
                self.sweep_gcra();
            }
            return decision;
        }
        self.decide_other(key, cost.max(1))
    }

    /// Whether the request is allowed (and counted), without the detail a
    /// header needs: on GCRA a bare `check_key`; a refusal is decided in full.
    #[inline(always)]
    fn admit(&self, key: &Key, cost: u32) -> Admission {
        if let State::Gcra {
            limiter: GcraLimiter::Fast(l),
            emission_ns,
            burst,
        } = &self.state
        {
            let outcome = match NonZeroU32::new(cost).filter(|n| n.get() > 1) {
                None => Ok(l.check_key(key).map(drop)),
                Some(n) => l.check_key_n(key, n).map(|r| r.map(drop)),
            };
            if sweep_due() {
                self.sweep_gcra();
            }
            let not_until = match outcome {
                Ok(Ok(())) => return Admission::Allowed,
                Ok(Err(not_until)) => Some(not_until),
                Err(_insufficient) => None,
            };
            let refusal = gcra_refusal(l, *emission_ns, *burst, cost.max(1), not_until);
            return Admission::Decided(Ok(refusal));
        }
        match self.decide_other(key, cost.max(1)) {
            decision if decision.allowed => Admission::Allowed,
            decision => Admission::Decided(Ok(decision)),
        }
    }

    #[inline(never)]
    fn sweep_gcra(&self) {
        self.maybe_sweep(self.elapsed_ms());
    }

    /// GCRA on a given clock, and the rules counted in our own maps.
    #[inline(never)]
    fn decide_other(&self, key: &Key, cost: u32) -> Decision {
        if let State::Gcra {
            limiter: GcraLimiter::Given(l),
            emission_ns,
            burst,
        } = &self.state
        {
            let decision = gcra(l, *emission_ns, *burst, key, cost);
            if sweep_due() {
                self.sweep_gcra();
            }
            return decision;
        }
        self.decide_counted(key, cost)
    }

    /// The rules counted in our own maps.
    fn decide_counted(&self, key: &Key, cost: u32) -> Decision {
        let now_ms = self.elapsed_ms();
        let decision = match (&self.state, self.rule) {
            (State::Window(map), Rule::FixedWindow { limit, window_ms }) => {
                fixed_window(map, key, cost, limit, window_ms, now_ms)
            }
            (State::Window(map), Rule::SlidingWindow { limit, window_ms }) => {
                sliding_window(map, key, cost, limit, window_ms, now_ms)
            }
            (
                State::Bucket(map),
                Rule::TokenBucket {
                    capacity,
                    refill,
                    period_ms,
                },
            ) => token_bucket(map, key, cost, capacity, refill, period_ms, now_ms),
            (State::InFlight(map), Rule::Concurrency { max, .. }) => in_flight(map, key, cost, max),
            _ => unreachable!("state is built from the rule"),
        };
        self.maybe_sweep(now_ms);
        decision
    }

    /// Milliseconds on the window clock: since the Unix epoch on the system
    /// clock, since the store's start on a given clock.
    fn elapsed_ms(&self) -> f64 {
        self.epoch_ms
            + self
                .clock
                .now()
                .saturating_duration_since(self.start)
                .as_secs_f64()
                * 1000.0
    }

    /// Drops keys whose state is back to "never seen", at most once per window
    /// and at most every [`MIN_SWEEP_INTERVAL_MS`].
    fn maybe_sweep(&self, now_ms: f64) {
        let interval = match self.rule {
            Rule::Concurrency { .. } => return, // entries are removed at zero
            rule => rule
                .window_secs()
                .unwrap_or(1)
                .saturating_mul(1000)
                .max(MIN_SWEEP_INTERVAL_MS),
        };
        let now = now_ms as u64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < interval
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        match (&self.state, self.rule) {
            (State::Gcra { limiter, .. }, _) => match limiter {
                GcraLimiter::Fast(l) => {
                    l.retain_recent();
                    l.shrink_to_fit();
                }
                GcraLimiter::Given(l) => {
                    l.retain_recent();
                    l.shrink_to_fit();
                }
            },
            (State::Window(map), Rule::FixedWindow { window_ms, .. }) => {
                let index = now / window_ms;
                map.retain(|_, w| w.index >= index);
            }
            (State::Window(map), Rule::SlidingWindow { window_ms, .. }) => {
                let index = now / window_ms;
                map.retain(|_, w| w.index + 1 >= index);
            }
            (
                State::Bucket(map),
                Rule::TokenBucket {
                    capacity,
                    refill,
                    period_ms,
                },
            ) => {
                let rate = f64::from(refill) / period_ms as f64;
                map.retain(|_, b| b.tokens + (now_ms - b.at_ms) * rate < f64::from(capacity));
            }
            _ => {}
        }
    }

    /// Keys currently tracked (for tests and capacity checks).
    pub fn len(&self) -> usize {
        match &self.state {
            State::Gcra { limiter, .. } => match limiter {
                GcraLimiter::Fast(l) => l.len(),
                GcraLimiter::Given(l) => l.len(),
            },
            State::Window(map) => map.len(),
            State::Bucket(map) => map.len(),
            State::InFlight(map) => map.len(),
        }
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<C: Clock> Limiter for MemoryLimiter<C> {
    fn check(
        &self,
        key: &Key,
        cost: u32,
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
        std::future::ready(Ok(self.decide(key, cost)))
    }

    fn decides_now(&self) -> bool {
        true
    }

    #[inline(always)]
    fn check_now(&self, key: &Key, cost: u32) -> Option<Result<Decision, StoreError>> {
        Some(Ok(self.decide(key, cost)))
    }

    #[inline(always)]
    fn admit_now(&self, key: &Key, cost: u32) -> Admission {
        self.admit(key, cost)
    }

    fn release(&self, key: &Key, cost: u32, _ticket: u64) {
        if let State::InFlight(map) = &self.state {
            if let Some(mut n) = map.get_mut(key) {
                *n = n.saturating_sub(cost.max(1));
            }
            map.remove_if(key, |_, n| *n == 0);
        }
    }
}
