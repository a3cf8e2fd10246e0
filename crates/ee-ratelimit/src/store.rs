//! The backend seam: what a store must do to decide.

use std::time::Duration;

use ee_core::Key;

use crate::Rule;

/// The outcome of one check of one policy for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed (and was counted).
    pub allowed: bool,
    /// Units left for this key after this decision (`r` in `RateLimit`).
    pub remaining: u64,
    /// Time until the full quota is back (`t` in `RateLimit`).
    pub reset: Duration,
    /// When denied, the wait before the same request could be allowed; `None`
    /// when it never could (its cost exceeds the quota).
    pub retry_after: Option<Duration>,
    /// Concurrency limits: the slot to give back (see [`Limiter::release`]).
    pub ticket: u64,
}

/// What [`Limiter::admit_now`] answers.
#[derive(Debug)]
pub enum Admission {
    /// Allowed, and counted.
    Allowed,
    /// The full decision (a refusal; an allowed one is accepted too), or
    /// the store's error.
    Decided(Result<Decision, StoreError>),
}

/// Why a store could not decide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time.
    #[error("rate-limit backend unavailable: {0}")]
    Unavailable(String),
    /// The backend answered something this crate does not understand.
    #[error("rate-limit backend answered unexpectedly: {0}")]
    Protocol(String),
}

/// A backend: makes one [`Limiter`] per policy when a layer is built.
///
/// Implemented by [`MemoryStore`](crate::MemoryStore) and, with feature
/// `redis`, `RedisStore`. Implement it to decide elsewhere.
pub trait RateLimitStore: Send + Sync + 'static {
    /// The per-policy decision maker.
    type Limiter: Limiter;

    /// A limiter for the policy `name` with `rule`. Called once per policy,
    /// when the layer is built; the name is unique within a layer.
    fn limiter(&self, name: &str, rule: &Rule) -> Self::Limiter;
}

/// Decides for one policy.
pub trait Limiter: Send + Sync + 'static {
    /// Counts a request of `cost` units against `key` and says whether it may
    /// proceed. A denied request is not counted.
    fn check(
        &self,
        key: &Key,
        cost: u32,
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send;

    /// Whether [`Limiter::check_now`] always answers: the layer then decides
    /// inside `call`, without boxing a future (the in-memory store does).
    fn decides_now(&self) -> bool {
        false
    }

    /// The decision, made without waiting, by stores that can; `None` otherwise.
    fn check_now(&self, key: &Key, cost: u32) -> Option<Result<Decision, StoreError>> {
        let _ = (key, cost);
        None
    }

    /// [`Limiter::check_now`] for a layer that writes no rate-limit header:
    /// an allowed request is just [`Admission::Allowed`] (counted, no
    /// `remaining` or `reset` to compute); anything else is the full decision
    /// or the store's error. Called only when [`Limiter::decides_now`] is
    /// true. Defaults to `check_now`.
    fn admit_now(&self, key: &Key, cost: u32) -> Admission {
        match self.check_now(key, cost) {
            Some(Ok(decision)) if decision.allowed => Admission::Allowed,
            Some(result) => Admission::Decided(result),
            None => Admission::Decided(Err(StoreError::Protocol(
                "the store says it decides at once but `check_now` gave no decision".into(),
            ))),
        }
    }

    /// Concurrency limits: gives back the slot an allowed [`Limiter::check`]
    /// took, when the response is done (or dropped). Must not block; a store
    /// that needs I/O spawns it. Other rules ignore it.
    fn release(&self, key: &Key, cost: u32, ticket: u64) {
        let _ = (key, cost, ticket);
    }
}
