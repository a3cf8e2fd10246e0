//! In-process limits: the embedded default, and the fallback when Redis is down.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ee_core::{Clock, Key, SystemClock};
use foldhash::fast::RandomState;
use governor::clock::{DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::Rule;
use crate::store::{Admission, Decision, Limiter, RateLimitStore, StoreError};

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

thread_local! {
    /// A per-thread xorshift state: one GCRA decision in 4096, picked at
    /// random, looks at the clock for a sweep. Random, not every 4096th, so
    /// that limiters taking turns on one thread all get their share; per
    /// thread, so the hot path writes no shared cache line.
    static SWEEP_DICE: std::cell::Cell<u32> = const { std::cell::Cell::new(0x9E37_79B9) };
}

/// Whether this GCRA decision is one of the 1 in 4096 that check for a sweep.
#[inline(always)]
fn sweep_due() -> bool {
    SWEEP_DICE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        state.set(x);
        x & 4095 == 0
    })
}

/// The shortest time between two sweeps of idle keys.
const MIN_SWEEP_INTERVAL_MS: u64 = 10_000;

/// `governor` wants its own clock trait; this adapts an [`ee_core::Clock`].
#[derive(Debug, Clone)]
struct GovernorClock<C>(C);

impl<C: Clock> governor::clock::Clock for GovernorClock<C> {
    type Instant = Instant;
    #[inline]
    fn now(&self) -> Instant {
        self.0.now()
    }
}

/// Keyed maps hash with foldhash, seeded at random per map (hashbrown's
/// default): a few instructions per IP key where SipHash takes ~70, and an
/// attacker who picks keys cannot predict collisions without the seed.
type DashMap<K, V> = dashmap::DashMap<K, V, RandomState>;

/// GCRA state per key: governor's theoretical arrival time (nanoseconds
/// since the limiter's start; 0 = never seen), as its own keyed store keeps
/// it, in a map of ours behind governor's `StateStore` seam, so that the
/// compare-and-swap inlines into the layer.
#[derive(Default)]
struct GcraCells(DashMap<Key, AtomicU64>);

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
    #[cold]
    #[inline(never)]
    fn insert_and_measure<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let cell = self.0.entry(key.clone()).or_default();
        measure(&cell, f)
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

type Gcra<Clk> = RateLimiter<Key, GcraCells, Clk, StateInformationMiddleware>;

/// governor on its default (quanta) clock, or on the store's clock.
enum GcraLimiter<C: Clock> {
    Fast(Gcra<DefaultClock>),
    Given(Box<Gcra<GovernorClock<C>>>),
}

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

#[derive(Debug, Clone, Copy)]
struct Window {
    index: u64,
    current: u64,
    previous: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: f64,
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
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
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

#[inline(always)]
fn gcra<Clk>(limiter: &Gcra<Clk>, emission_ns: u64, burst: u32, key: &Key, cost: u32) -> Decision
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
            Decision {
                allowed: true,
                remaining: remaining.into(),
                reset: t(u64::from(burst - remaining.min(burst))),
                retry_after: None,
                ticket: 0,
            }
        }
        Ok(Err(not_until)) => gcra_refusal(limiter, emission_ns, burst, cost, Some(not_until)),
        Err(_insufficient) => gcra_refusal(limiter, emission_ns, burst, cost, None),
    }
}

/// A refused GCRA decision: `not_until` when the cost fits the burst once
/// enough time has passed, `None` when it never can.
#[cold]
#[inline(never)]
fn gcra_refusal<Clk>(
    limiter: &Gcra<Clk>,
    emission_ns: u64,
    burst: u32,
    cost: u32,
    not_until: Option<governor::NotUntil<Clk::Instant>>,
) -> Decision
where
    Clk: governor::clock::Clock,
    Clk::Instant: Reference,
{
    let t = |units: u64| Duration::from_nanos(emission_ns.saturating_mul(units));
    match not_until {
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
    }
}

fn ms_to_duration(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

/// The key's counts in window `index`: a later window starts empty, keeping
/// the last window's count as `previous` when it is the one just before.
fn window_at<'m>(
    map: &'m DashMap<Key, Window>,
    key: &Key,
    index: u64,
) -> dashmap::mapref::one::RefMut<'m, Key, Window> {
    let mut w = map.entry(key.clone()).or_insert(Window {
        index,
        current: 0,
        previous: 0,
    });
    if w.index != index {
        let previous = if w.index + 1 == index { w.current } else { 0 };
        *w = Window {
            index,
            current: 0,
            previous,
        };
    }
    w
}

fn fixed_window(
    map: &DashMap<Key, Window>,
    key: &Key,
    cost: u32,
    limit: u32,
    window_ms: u64,
    now_ms: f64,
) -> Decision {
    let now = now_ms as u64;
    let index = now / window_ms;
    let to_end = ms_to_duration(((index + 1) * window_ms) as f64 - now_ms);
    let (cost, limit) = (u64::from(cost), u64::from(limit));
    let mut w = window_at(map, key, index);
    if w.current + cost > limit {
        return Decision {
            allowed: false,
            remaining: limit.saturating_sub(w.current),
            reset: to_end,
            retry_after: (cost <= limit).then_some(to_end),
            ticket: 0,
        };
    }
    w.current += cost;
    Decision {
        allowed: true,
        remaining: limit - w.current,
        reset: to_end,
        retry_after: None,
        ticket: 0,
    }
}

/// The weighted estimate of requests in the sliding window ending now.
pub(crate) fn sliding_estimate(previous: f64, current: f64, elapsed_fraction: f64) -> f64 {
    previous * (1.0 - elapsed_fraction) + current
}

/// Milliseconds until `cost` more fits under `limit` (the same formula as the
/// Redis script).
pub(crate) fn sliding_wait_ms(
    previous: f64,
    current: f64,
    position_ms: f64,
    window_ms: f64,
    cost: f64,
    limit: f64,
) -> f64 {
    if current + cost <= limit {
        // Wait for the previous window's weight to fall far enough.
        if previous <= 0.0 {
            return 0.0;
        }
        (window_ms * (1.0 - (limit - current - cost) / previous) - position_ms).max(0.0)
    } else {
        // Wait for the next window, where `current` becomes the previous one.
        let into_next = if current <= 0.0 {
            0.0
        } else {
            (window_ms * (1.0 - (limit - cost) / current)).max(0.0)
        };
        (window_ms - position_ms) + into_next
    }
}

fn sliding_window(
    map: &DashMap<Key, Window>,
    key: &Key,
    cost: u32,
    limit: u32,
    window_ms: u64,
    now_ms: f64,
) -> Decision {
    let now = now_ms as u64;
    let index = now / window_ms;
    let position = now_ms - (index * window_ms) as f64;
    let window = window_ms as f64;
    let mut w = window_at(map, key, index);
    let (prev, cur) = (w.previous as f64, w.current as f64);
    let estimate = sliding_estimate(prev, cur, position / window);
    let (costf, limitf) = (f64::from(cost), f64::from(limit));
    // Time until the estimate is back to zero: the previous window's weight is
    // gone at the end of this window, the current one's at the end of the next.
    let reset = ms_to_duration((window - position) + if cur > 0.0 { window } else { 0.0 });
    if estimate + costf > limitf {
        return Decision {
            allowed: false,
            remaining: (limitf - estimate).max(0.0) as u64,
            reset,
            retry_after: (cost <= limit).then(|| {
                ms_to_duration(sliding_wait_ms(prev, cur, position, window, costf, limitf))
            }),
            ticket: 0,
        };
    }
    w.current += u64::from(cost);
    Decision {
        allowed: true,
        remaining: (limitf - estimate - costf).max(0.0) as u64,
        reset: ms_to_duration((window - position) + window),
        retry_after: None,
        ticket: 0,
    }
}

fn token_bucket(
    map: &DashMap<Key, Bucket>,
    key: &Key,
    cost: u32,
    capacity: u32,
    refill: u32,
    period_ms: u64,
    now_ms: f64,
) -> Decision {
    let rate = f64::from(refill) / period_ms as f64; // tokens per ms
    let (cap, costf) = (f64::from(capacity), f64::from(cost));
    let mut b = map.entry(key.clone()).or_insert(Bucket {
        tokens: cap,
        at_ms: now_ms,
    });
    b.tokens = (b.tokens + (now_ms - b.at_ms).max(0.0) * rate).min(cap);
    b.at_ms = now_ms;
    if b.tokens < costf {
        return Decision {
            allowed: false,
            remaining: b.tokens.floor() as u64,
            reset: ms_to_duration((cap - b.tokens) / rate),
            retry_after: (cost <= capacity).then(|| ms_to_duration((costf - b.tokens) / rate)),
            ticket: 0,
        };
    }
    b.tokens -= costf;
    Decision {
        allowed: true,
        remaining: b.tokens.floor() as u64,
        reset: ms_to_duration((cap - b.tokens) / rate),
        retry_after: None,
        ticket: 0,
    }
}

/// How long a client refused by a concurrency limit is told to wait: slots
/// free when responses finish, which no store can predict.
pub(crate) const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

fn in_flight(map: &DashMap<Key, u32>, key: &Key, cost: u32, max: u32) -> Decision {
    let mut n = map.entry(key.clone()).or_insert(0);
    if n.saturating_add(cost) > max {
        let remaining = max.saturating_sub(*n);
        drop(n);
        map.remove_if(key, |_, n| *n == 0);
        return Decision {
            allowed: false,
            remaining: remaining.into(),
            reset: Duration::ZERO,
            retry_after: (cost <= max).then_some(CONCURRENCY_RETRY),
            ticket: 0,
        };
    }
    *n += cost;
    Decision {
        allowed: true,
        remaining: (max - *n).into(),
        reset: Duration::ZERO,
        retry_after: None,
        ticket: 0,
    }
}
