//! Exponential backoff with jitter: how long to wait before attempt N again.

use std::time::Duration;

/// `base · 2^(attempt − 1)`, at most `max`, with up to `jitter` of it taken
/// off at random so that many clients that failed together do not retry
/// together. The one backoff of the ee crates (transaction retries, a
/// worker's reconnects, job retries).
///
/// ```
/// use ee_core::Backoff;
/// use std::time::Duration;
///
/// let backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1)).with_jitter(0.5);
/// // Deterministic with a given random number in 0.0..=1.0:
/// assert_eq!(backoff.delay_with(1, 0.0), Duration::from_millis(10));
/// assert_eq!(backoff.delay_with(3, 0.0), Duration::from_millis(40));
/// assert_eq!(backoff.delay_with(3, 1.0), Duration::from_millis(20)); // half taken off
/// assert_eq!(backoff.delay_with(30, 0.0), Duration::from_secs(1)); // capped
/// let d = backoff.delay(2); // a random one
/// assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    /// Doubling from `base` up to `max`, without jitter.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            jitter: 0.0,
        }
    }

    /// The same delay every time.
    pub const fn fixed(delay: Duration) -> Self {
        Self::new(delay, delay)
    }

    /// Takes up to `fraction` (clamped to 0.0-1.0; NaN is 0) of each delay
    /// off at random.
    #[must_use]
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// The first delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The jitter fraction.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The delay before attempt `attempt` again (1 for the first retry),
    /// jittered at random.
    pub fn delay(&self, attempt: u32) -> Duration {
        let random = if self.jitter > 0.0 {
            rand::random::<f64>()
        } else {
            0.0
        };
        self.delay_with(attempt, random)
    }

    /// [`Backoff::delay`] with the random number (0.0-1.0) given, for
    /// deterministic tests and for callers that draw their own.
    pub fn delay_with(&self, attempt: u32, random: f64) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(31);
        let delay = self.base.saturating_mul(factor).min(self.max);
        let random = if random.is_nan() {
            0.0
        } else {
            random.clamp(0.0, 1.0)
        };
        delay.mul_f64(1.0 - self.jitter * random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubling_and_is_capped() {
        let b = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let delays: Vec<u128> = (0..9).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, [50, 50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).with_jitter(0.3);
        for _ in 0..1000 {
            let d = b.delay(1);
            assert!(
                d >= Duration::from_millis(70) && d <= Duration::from_millis(100),
                "{d:?}"
            );
        }
        assert_eq!(b.with_jitter(f64::NAN).jitter(), 0.0);
        assert_eq!(b.with_jitter(7.0).jitter(), 1.0);
    }
}
