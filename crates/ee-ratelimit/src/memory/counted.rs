//! The rules counted in our own maps: fixed and sliding windows, the token
//! bucket and concurrency slots.

use std::time::Duration;

use ee_core::Key;

use super::keys::{Full, KeyMap};
use crate::store::Decision;

#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) index: u64,
    current: u64,
    previous: u64,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    pub(super) tokens: f64,
    pub(super) at_ms: f64,
}

fn ms_to_duration(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

/// The key's counts in window `index`: a later window starts empty, keeping
/// the last window's count as `previous` when it is the one just before.
fn window_at<'m>(
    map: &'m KeyMap<Window>,
    key: &Key,
    index: u64,
) -> Result<dashmap::mapref::one::RefMut<'m, Key, Window>, Full> {
    let mut w = map.entry(key, || Window {
        index,
        current: 0,
        previous: 0,
    })?;
    if w.index != index {
        let previous = if w.index + 1 == index { w.current } else { 0 };
        *w = Window {
            index,
            current: 0,
            previous,
        };
    }
    Ok(w)
}

pub(super) fn fixed_window(
    map: &KeyMap<Window>,
    key: &Key,
    cost: u32,
    limit: u32,
    window_ms: u64,
    now_ms: f64,
) -> Result<Decision, Full> {
    let now = now_ms as u64;
    let index = now / window_ms;
    let to_end = ms_to_duration(((index + 1) * window_ms) as f64 - now_ms);
    let (cost, limit) = (u64::from(cost), u64::from(limit));
    let mut w = window_at(map, key, index)?;
    if w.current + cost > limit {
        return Ok(Decision {
            allowed: false,
            remaining: limit.saturating_sub(w.current),
            reset: to_end,
            retry_after: (cost <= limit).then_some(to_end),
            ticket: 0,
        });
    }
    w.current += cost;
    Ok(Decision {
        allowed: true,
        remaining: limit - w.current,
        reset: to_end,
        retry_after: None,
        ticket: 0,
    })
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

pub(super) fn sliding_window(
    map: &KeyMap<Window>,
    key: &Key,
    cost: u32,
    limit: u32,
    window_ms: u64,
    now_ms: f64,
) -> Result<Decision, Full> {
    let now = now_ms as u64;
    let index = now / window_ms;
    let position = now_ms - (index * window_ms) as f64;
    let window = window_ms as f64;
    let mut w = window_at(map, key, index)?;
    let (prev, cur) = (w.previous as f64, w.current as f64);
    let estimate = sliding_estimate(prev, cur, position / window);
    let (costf, limitf) = (f64::from(cost), f64::from(limit));
    // Time until the estimate is back to zero: the previous window's weight is
    // gone at the end of this window, the current one's at the end of the next.
    let reset = ms_to_duration((window - position) + if cur > 0.0 { window } else { 0.0 });
    if estimate + costf > limitf {
        return Ok(Decision {
            allowed: false,
            remaining: (limitf - estimate).max(0.0) as u64,
            reset,
            retry_after: (cost <= limit).then(|| {
                ms_to_duration(sliding_wait_ms(prev, cur, position, window, costf, limitf))
            }),
            ticket: 0,
        });
    }
    w.current += u64::from(cost);
    Ok(Decision {
        allowed: true,
        remaining: (limitf - estimate - costf).max(0.0) as u64,
        reset: ms_to_duration((window - position) + window),
        retry_after: None,
        ticket: 0,
    })
}

pub(super) fn token_bucket(
    map: &KeyMap<Bucket>,
    key: &Key,
    cost: u32,
    capacity: u32,
    refill: u32,
    period_ms: u64,
    now_ms: f64,
) -> Result<Decision, Full> {
    let rate = f64::from(refill) / period_ms as f64; // tokens per ms
    let (cap, costf) = (f64::from(capacity), f64::from(cost));
    let mut b = map.entry(key, || Bucket {
        tokens: cap,
        at_ms: now_ms,
    })?;
    b.tokens = (b.tokens + (now_ms - b.at_ms).max(0.0) * rate).min(cap);
    b.at_ms = now_ms;
    if b.tokens < costf {
        return Ok(Decision {
            allowed: false,
            remaining: b.tokens.floor() as u64,
            reset: ms_to_duration((cap - b.tokens) / rate),
            retry_after: (cost <= capacity).then(|| ms_to_duration((costf - b.tokens) / rate)),
            ticket: 0,
        });
    }
    b.tokens -= costf;
    Ok(Decision {
        allowed: true,
        remaining: b.tokens.floor() as u64,
        reset: ms_to_duration((cap - b.tokens) / rate),
        retry_after: None,
        ticket: 0,
    })
}

/// How long a client refused by a concurrency limit is told to wait: slots
/// free when responses finish, which no store can predict.
pub(crate) const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

pub(super) fn in_flight(
    map: &KeyMap<u32>,
    key: &Key,
    cost: u32,
    max: u32,
) -> Result<Decision, Full> {
    let mut n = map.entry(key, || 0)?;
    if n.saturating_add(cost) > max {
        let remaining = max.saturating_sub(*n);
        drop(n);
        map.remove_if(key, |_, n| *n == 0);
        return Ok(Decision {
            allowed: false,
            remaining: remaining.into(),
            reset: Duration::ZERO,
            retry_after: (cost <= max).then_some(CONCURRENCY_RETRY),
            ticket: 0,
        });
    }
    *n += cost;
    Ok(Decision {
        allowed: true,
        remaining: (max - *n).into(),
        reset: Duration::ZERO,
        retry_after: None,
        ticket: 0,
    })
}
