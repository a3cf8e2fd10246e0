//! In-process limits: the embedded default, and the fallback when Redis is down.
//!
//! - `mod.rs`: [`MemoryStore`] and [`MemoryLimiter`], which picks the rule's
//!   state and sweeps idle keys;
//! - `gcra.rs`: GCRA on `governor`, its state in a map of ours;
//! - `counted.rs`: the rules counted in our own maps (windows, token
//!   bucket, concurrency);
//! - `keys.rs`: those maps, bounded in keys.

mod counted;
mod gcra;
mod keys;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ee_core::{Clock, Key, SystemClock};
use governor::clock::DefaultClock;
use governor::{Quota, RateLimiter};
use metrics::Counter;

use crate::Rule;
use crate::metrics::METRIC_MEMORY_KEYS_REFUSED_TOTAL;
use crate::store::{Admission, Decision, Limiter, RateLimitStore, StoreError};
use counted::{Bucket, Window, fixed_window, in_flight, sliding_window, token_bucket};
use gcra::{GcraCells, GcraLimiter, GovernorClock, gcra, gcra_refusal, sweep_due};
use keys::{Full, KeyMap};

/// The default bound of a [`MemoryStore`]: 100 000 keys per policy.
///
/// A key costs its map entry, 32 to 48 bytes (the key, 24, and the rule's
/// state: a timestamp for GCRA, counts for windows, tokens and a time for
/// the token bucket), one control byte, and the map's spare room (tables
/// double as they grow, so 1.15 to 2.3 times that): 40 to 110 bytes for an
/// IP key, plus the text of a text key (an API key, a user id) and its
/// allocation. So the default is ~4-11 MB per policy at the most, small
/// beside a service; and 100 000 clients seen within one window (keys idle
/// for a window are swept), per instance and policy, is more than one
/// instance serves at once: a per-minute policy fills it only at ~1 700 new
/// clients a second. A flood of made-up keys (rotated IPv6 addresses, forged
/// API keys) reaches any bound; this one keeps it to megabytes.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Limits kept in this process: GCRA on `governor`, the other rules on a
/// sharded map. Each instance of a service counts on its own; use
/// `RedisStore` to share limits between instances.
///
/// Keys that have been idle for a whole window are swept once per window (at
/// most every 10 s: a sweep walks every key), so memory follows the number of
/// keys active in the last window or 10 s.
///
/// Bounded in keys, per policy ([`DEFAULT_MAX_KEYS`] unless
/// [`with_max_keys`](Self::with_max_keys)). When a policy's map is full, a
/// request with a new key first sweeps the idle keys (at most once a second:
/// a flood of new keys walks the map once a second, not once a request); if
/// that frees nothing, the new key is refused as an outage
/// ([`StoreError::Unavailable`], so the layer's `on_backend_error` decides:
/// `fail_open` lets it through uncounted; `fail_closed`, and the default
/// `fallback_to_memory`, which has no other memory to fall back to, answer
/// 503 problem `ratelimit/unavailable` with `Retry-After: 1`). Keys already
/// there keep their counts and are never evicted to make room, so a flood of
/// new keys cannot reset an established client's limit. Each refusal is
/// counted in [`METRIC_MEMORY_KEYS_REFUSED_TOTAL`](crate::METRIC_MEMORY_KEYS_REFUSED_TOTAL).
///
/// ```
/// use ee_ratelimit::{MemoryStore, Policy, RateLimitLayer, Rule};
///
/// let layer = RateLimitLayer::builder(MemoryStore::new().with_max_keys(1_000_000))
///     .policy(Policy::new("api", Rule::per_minute(600)))
///     .build()?;
/// # Ok::<(), ee_ratelimit::RateLimitError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore<C = SystemClock> {
    clock: C,
    /// GCRA on governor's own TSC-based clock (faster than `Instant::now`);
    /// true for the system clock, false when a clock is given.
    fast_clock: bool,
    max_keys: usize,
}

impl MemoryStore {
    /// A store on the system clock.
    pub fn new() -> Self {
        Self {
            clock: SystemClock,
            fast_clock: true,
            max_keys: DEFAULT_MAX_KEYS,
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
            max_keys: DEFAULT_MAX_KEYS,
        }
    }

    /// Bounds each policy's state to `max_keys` keys (default
    /// [`DEFAULT_MAX_KEYS`]); see [`MemoryStore`] for what happens when one
    /// is full. 0 refuses every key.
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }
}

impl<C: Clock> RateLimitStore for MemoryStore<C> {
    type Limiter = MemoryLimiter<C>;

    /// A limiter holding at most the store's `max_keys` keys; its refusals
    /// of new keys are counted in
    /// [`METRIC_MEMORY_KEYS_REFUSED_TOTAL`](crate::METRIC_MEMORY_KEYS_REFUSED_TOTAL)
    /// with label `policy` = `name`.
    fn limiter(&self, name: &str, rule: &Rule) -> MemoryLimiter<C> {
        let refused = metrics::counter!(
            METRIC_MEMORY_KEYS_REFUSED_TOTAL,
            "policy" => name.to_owned()
        );
        MemoryLimiter::build(
            *rule,
            self.clock.clone(),
            self.fast_clock,
            self.max_keys,
            refused,
        )
    }
}

/// The shortest time between two sweeps of idle keys.
const MIN_SWEEP_INTERVAL_MS: u64 = 10_000;

/// The shortest time between two sweeps for room when a map is full: a
/// flood of new keys walks the map at most once a second.
const FULL_SWEEP_INTERVAL_MS: u64 = 1_000;

/// One policy's in-process state, bounded in keys as [`MemoryStore`] says.
pub struct MemoryLimiter<C: Clock = SystemClock> {
    rule: Rule,
    state: State<C>,
    clock: C,
    start: Instant,
    /// Unix time of `start` in milliseconds (system clock), else 0.
    epoch_ms: f64,
    /// Milliseconds since `start` of the last sweep of idle keys.
    last_sweep_ms: AtomicU64,
    max_keys: usize,
    /// New keys refused for want of room (a no-op counter for a limiter
    /// made outside a store, which has no policy name).
    refused: Counter,
}

impl<C: Clock> std::fmt::Debug for MemoryLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLimiter")
            .field("rule", &self.rule)
            .field("max_keys", &self.max_keys)
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
    Window(KeyMap<Window>),
    Bucket(KeyMap<Bucket>),
    InFlight(KeyMap<u32>),
}

impl MemoryLimiter {
    /// A limiter for `rule` on the system clock (GCRA on governor's fast
    /// clock), holding at most [`DEFAULT_MAX_KEYS`] keys. For another bound,
    /// or its refusals counted under the policy's name, make it with a store:
    /// `MemoryStore::new().with_max_keys(n).limiter(name, &rule)`.
    pub fn system(rule: Rule) -> Self {
        Self::build(rule, SystemClock, true, DEFAULT_MAX_KEYS, Counter::noop())
    }
}

impl<C: Clock> MemoryLimiter<C> {
    /// A limiter for `rule` on `clock`, holding at most [`DEFAULT_MAX_KEYS`]
    /// keys (see [`MemoryLimiter::system`] for another bound).
    pub fn new(rule: Rule, clock: C) -> Self {
        Self::build(rule, clock, false, DEFAULT_MAX_KEYS, Counter::noop())
    }

    fn build(rule: Rule, clock: C, fast_clock: bool, max_keys: usize, refused: Counter) -> Self {
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
                        GcraCells::new(max_keys),
                        DefaultClock::default(),
                    ))
                } else {
                    GcraLimiter::Given(Box::new(RateLimiter::new(
                        quota,
                        GcraCells::new(max_keys),
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
                State::Window(KeyMap::new(max_keys))
            }
            Rule::TokenBucket { .. } => State::Bucket(KeyMap::new(max_keys)),
            Rule::Concurrency { .. } => State::InFlight(KeyMap::new(max_keys)),
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
            max_keys,
            refused,
        }
    }

    /// Decides synchronously (the in-memory path never waits).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when `key` is new and the policy's map is
    /// full, even once idle keys are swept (see [`MemoryStore`]).
    #[inline(always)]
    pub fn decide(&self, key: &Key, cost: u32) -> Result<Decision, StoreError> {
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
            return match decision {
                Ok(decision) => Ok(decision),
                Err(Full) => self.full(key, cost.max(1)),
            };
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
            let cost = cost.max(1);
            return Admission::Decided(
                match gcra_refusal(l, *emission_ns, *burst, cost, not_until) {
                    Ok(refusal) => Ok(refusal),
                    Err(Full) => self.full(key, cost),
                },
            );
        }
        match self.decide_other(key, cost.max(1)) {
            Ok(decision) if decision.allowed => Admission::Allowed,
            result => Admission::Decided(result),
        }
    }

    #[inline(never)]
    fn sweep_gcra(&self) {
        self.maybe_sweep(self.elapsed_ms());
    }

    /// GCRA on a given clock, and the rules counted in our own maps.
    #[inline(never)]
    fn decide_other(&self, key: &Key, cost: u32) -> Result<Decision, StoreError> {
        match self.try_decide(key, cost) {
            Ok(decision) => Ok(decision),
            Err(Full) => self.full(key, cost),
        }
    }

    /// One decision, any rule; [`Full`] when the key is new and the map has
    /// no room for it.
    fn try_decide(&self, key: &Key, cost: u32) -> Result<Decision, Full> {
        let State::Gcra {
            limiter,
            emission_ns,
            burst,
        } = &self.state
        else {
            return self.decide_counted(key, cost);
        };
        let decision = match limiter {
            GcraLimiter::Fast(l) => gcra(l, *emission_ns, *burst, key, cost),
            GcraLimiter::Given(l) => gcra(l, *emission_ns, *burst, key, cost),
        };
        if sweep_due() {
            self.sweep_gcra();
        }
        decision
    }

    /// `key` is new and the map is full: sweeps the idle keys if the last
    /// sweep is at least [`FULL_SWEEP_INTERVAL_MS`] old, and decides again
    /// if that (or a sweep or release since) made room; else refuses the key
    /// as an outage.
    #[cold]
    #[inline(never)]
    fn full(&self, key: &Key, cost: u32) -> Result<Decision, StoreError> {
        let swept = self.sweep_for_room();
        if (swept || self.len() < self.max_keys)
            && let Ok(decision) = self.try_decide(key, cost)
        {
            return Ok(decision);
        }
        self.refused.increment(1);
        Err(StoreError::Unavailable(format!(
            "the in-memory rate-limit store is full ({} of {} keys for this policy): \
             raise MemoryStore::with_max_keys or use RedisStore",
            self.len(),
            self.max_keys
        )))
    }

    /// The rules counted in our own maps.
    fn decide_counted(&self, key: &Key, cost: u32) -> Result<Decision, Full> {
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

    /// The time between two sweeps of idle keys: a window, at least
    /// [`MIN_SWEEP_INTERVAL_MS`]; `None` for concurrency limits, whose keys
    /// go when their last request ends.
    fn sweep_interval_ms(&self) -> Option<u64> {
        match self.rule {
            Rule::Concurrency { .. } => None,
            rule => Some(
                rule.window_secs()
                    .unwrap_or(1)
                    .saturating_mul(1000)
                    .max(MIN_SWEEP_INTERVAL_MS),
            ),
        }
    }

    /// Takes the turn to sweep, if the last sweep is at least `interval_ms`
    /// old and no other thread took it first.
    fn claim_sweep(&self, now_ms: f64, interval_ms: u64) -> bool {
        let now = now_ms as u64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= interval_ms
            && self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Drops keys whose state is back to "never seen", at most once per window
    /// and at most every [`MIN_SWEEP_INTERVAL_MS`].
    fn maybe_sweep(&self, now_ms: f64) {
        if let Some(interval) = self.sweep_interval_ms()
            && self.claim_sweep(now_ms, interval)
        {
            self.sweep(now_ms);
        }
    }

    /// The map is full: sweeps now, unless the last sweep is less than
    /// [`FULL_SWEEP_INTERVAL_MS`] old (or the rule has nothing to sweep);
    /// whether it swept.
    fn sweep_for_room(&self) -> bool {
        if self.sweep_interval_ms().is_none() {
            return false;
        }
        let now_ms = self.elapsed_ms();
        if !self.claim_sweep(now_ms, FULL_SWEEP_INTERVAL_MS) {
            return false;
        }
        self.sweep(now_ms);
        true
    }

    /// Drops keys whose state is back to "never seen": a sweep never resets
    /// a limit, it forgets what is already forgotten.
    fn sweep(&self, now_ms: f64) {
        let now = now_ms as u64;
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

    /// The most keys this limiter holds (see [`MemoryStore::with_max_keys`]).
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }
}

impl<C: Clock> Limiter for MemoryLimiter<C> {
    fn check(
        &self,
        key: &Key,
        cost: u32,
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
        std::future::ready(self.decide(key, cost))
    }

    fn decides_now(&self) -> bool {
        true
    }

    #[inline(always)]
    fn check_now(&self, key: &Key, cost: u32) -> Option<Result<Decision, StoreError>> {
        Some(self.decide(key, cost))
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
