//! Limits shared by every instance through Redis or Redis Cluster (feature `redis`).
//!
//! One Lua script per rule, run by SHA through `ee_core::RedisConn`:
//! one round trip per decision, the time taken from Redis (`TIME`) so that
//! instances with skewed clocks agree, and every key written with a TTL.
//! Keys: `ee:ratelimit:{<policy>:<rule id>:<key>}[:<suffix>]`; the hash tag keeps the
//! keys of one decision in one Cluster slot while clients spread over the Cluster.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use ee_core::Key;
use ee_core::{KeySpace, RedisConn, RedisError, Script};

use crate::Rule;
use crate::store::{Decision, Limiter, RateLimitStore, StoreError};

const NOW: &str = "local t = redis.call('TIME') \
                   local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 ";

// Every script returns {allowed, remaining, reset_ms, retry_after_ms (-1: never), ticket}.

static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}
        local emission, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
        local tau = emission * burst
        local tat = tonumber(redis.call('GET', KEYS[1]))
        if not tat or tat < now then tat = now end
        if cost > burst then return {{0, 0, math.ceil(tat - now), -1, 0}} end
        local new_tat = tat + emission * cost
        local allow_at = new_tat - tau
        if allow_at > now then
          local remaining = math.max(math.floor((tau - (tat - now)) / emission), 0)
          return {{0, remaining, math.ceil(tat - now), math.ceil(allow_at - now), 0}}
        end
        redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1)
        return {{1, math.max(math.floor((tau - (new_tat - now)) / emission), 0), math.ceil(new_tat - now), 0, 0}}"
    ))
});

static FIXED_WINDOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}
        local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
        local index = math.floor(now / window)
        local to_end = math.ceil((index + 1) * window - now)
        local s = redis.call('HMGET', KEYS[1], 'w', 'n')
        local n = 0
        if tonumber(s[1]) == index then n = tonumber(s[2]) end
        if n + cost > limit then
          local retry = -1
          if cost <= limit then retry = to_end end
          return {{0, math.max(limit - n, 0), to_end, retry, 0}}
        end
        n = n + cost
        redis.call('HSET', KEYS[1], 'w', index, 'n', n)
        redis.call('PEXPIRE', KEYS[1], to_end + 1)
        return {{1, limit - n, to_end, 0, 0}}"
    ))
});

static SLIDING_WINDOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}
        local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
        local index = math.floor(now / window)
        local pos = now - index * window
        local s = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
        local w, cur, prev = tonumber(s[1]), tonumber(s[2]) or 0, tonumber(s[3]) or 0
        if w ~= index then
          if w == index - 1 then prev = cur else prev = 0 end
          cur = 0
        end
        local est = prev * (1 - pos / window) + cur
        local reset = window - pos
        if cur > 0 then reset = reset + window end
        if est + cost > limit then
          local retry = -1
          if cost <= limit then
            if cur + cost <= limit then
              retry = 0
              if prev > 0 then retry = math.max(window * (1 - (limit - cur - cost) / prev) - pos, 0) end
            else
              local into = 0
              if cur > 0 then into = math.max(window * (1 - (limit - cost) / cur), 0) end
              retry = (window - pos) + into
            end
            retry = math.ceil(retry)
          end
          return {{0, math.max(math.floor(limit - est), 0), math.ceil(reset), retry, 0}}
        end
        cur = cur + cost
        redis.call('HSET', KEYS[1], 'w', index, 'c', cur, 'p', prev)
        redis.call('PEXPIRE', KEYS[1], math.ceil(2 * window - pos) + 1)
        return {{1, math.max(math.floor(limit - est - cost), 0), math.ceil(2 * window - pos), 0, 0}}"
    ))
});

static TOKEN_BUCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}
        local cap, refill, period, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
        local rate = refill / period
        local s = redis.call('HMGET', KEYS[1], 't', 'ts')
        local tokens, ts = tonumber(s[1]), tonumber(s[2])
        if not tokens then tokens = cap; ts = now end
        tokens = math.min(cap, tokens + math.max(now - ts, 0) * rate)
        if tokens < cost then
          local retry = -1
          if cost <= cap then retry = math.ceil((cost - tokens) / rate) end
          return {{0, math.floor(tokens), math.ceil((cap - tokens) / rate), retry, 0}}
        end
        tokens = tokens - cost
        local reset = math.ceil((cap - tokens) / rate)
        redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 'ts', string.format('%.3f', now))
        redis.call('PEXPIRE', KEYS[1], reset + 1)
        return {{1, math.floor(tokens), reset, 0, 0}}"
    ))
});

static CONCURRENCY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}
        local max, lease, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
        local used = redis.call('ZCARD', KEYS[1])
        if used + cost > max then
          local retry = -1
          if cost <= max then retry = 1000 end
          return {{0, math.max(max - used, 0), 0, retry, 0}}
        end
        local ticket = redis.call('INCR', KEYS[2])
        for i = 1, cost do redis.call('ZADD', KEYS[1], now + lease, ticket .. ':' .. i) end
        redis.call('PEXPIRE', KEYS[1], lease + 1000)
        redis.call('PEXPIRE', KEYS[2], lease + 1000)
        return {{1, max - used - cost, 0, 0, ticket}}"
    ))
});

/// The shared backend: decisions in Redis, one round trip each.
///
/// Decisions are bounded by the connection's per-call timeout
/// ([`RedisStore::with_timeout`] to set one for rate limiting alone); a
/// failure goes to the layer's [`OnBackendError`](ee_core::OnBackendError) policy.
#[derive(Debug, Clone)]
pub struct RedisStore {
    conn: RedisConn,
    keys: KeySpace,
}

impl RedisStore {
    /// A store on `conn` (standalone or Cluster).
    pub fn new(conn: RedisConn) -> Self {
        Self {
            conn,
            keys: KeySpace::new("ratelimit"),
        }
    }

    /// Bounds every decision by `timeout` (default: the connection's).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.conn = self.conn.with_timeout(timeout);
        self
    }
}

impl RateLimitStore for RedisStore {
    type Limiter = RedisLimiter;

    fn limiter(&self, name: &str, rule: &Rule) -> RedisLimiter {
        let (script, args): (&'static Script, Vec<String>) = match *rule {
            Rule::Gcra {
                limit,
                period_ms,
                burst,
            } => (
                &GCRA,
                vec![
                    (period_ms as f64 / f64::from(limit.max(1))).to_string(),
                    burst.to_string(),
                ],
            ),
            Rule::FixedWindow { limit, window_ms } => (
                &FIXED_WINDOW,
                vec![limit.to_string(), window_ms.to_string()],
            ),
            Rule::SlidingWindow { limit, window_ms } => (
                &SLIDING_WINDOW,
                vec![limit.to_string(), window_ms.to_string()],
            ),
            Rule::TokenBucket {
                capacity,
                refill,
                period_ms,
            } => (
                &TOKEN_BUCKET,
                vec![
                    capacity.to_string(),
                    refill.to_string(),
                    period_ms.to_string(),
                ],
            ),
            Rule::Concurrency { max, lease_ms } => {
                (&CONCURRENCY, vec![max.to_string(), lease_ms.to_string()])
            }
        };
        RedisLimiter {
            conn: self.conn.clone(),
            keys: self.keys.clone(),
            policy: name.to_owned(),
            rule_id: rule.id(),
            concurrency: matches!(rule, Rule::Concurrency { .. }),
            script,
            args,
            latency: metrics::histogram!(
                crate::metrics::METRIC_BACKEND_DURATION_SECONDS,
                "policy" => name.to_owned()
            ),
        }
    }
}

/// One policy's decisions on Redis.
pub struct RedisLimiter {
    conn: RedisConn,
    keys: KeySpace,
    policy: String,
    rule_id: String,
    concurrency: bool,
    script: &'static Script,
    args: Vec<String>,
    latency: metrics::Histogram,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("policy", &self.policy)
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// The Lua script this policy runs (for inspection and benchmarks).
    pub fn script(&self) -> &'static Script {
        self.script
    }

    /// The script's arguments before the cost (`ARGV[1..]`).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The Redis key of `key` (and of its ticket counter, for concurrency).
    pub fn redis_key(&self, key: &Key, suffix: Option<&str>) -> String {
        let key = key.to_string();
        match suffix {
            Some(s) => self.keys.tagged(&[&self.policy, &self.rule_id, &key], &[s]),
            None => self.keys.tagged(&[&self.policy, &self.rule_id, &key], &[]),
        }
    }
}

fn store_error(e: RedisError) -> StoreError {
    if e.is_unavailable() {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Protocol(e.to_string())
    }
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

impl Limiter for RedisLimiter {
    async fn check(&self, key: &Key, cost: u32) -> Result<Decision, StoreError> {
        let cost = cost.max(1);
        let mut invocation = self.script.key(self.redis_key(key, None));
        if self.concurrency {
            invocation.key(self.redis_key(key, Some("seq")));
        }
        for arg in &self.args {
            invocation.arg(arg);
        }
        invocation.arg(cost);
        let started = Instant::now();
        let reply: Result<Vec<i64>, _> = self.conn.invoke(&invocation).await;
        self.latency.record(started.elapsed().as_secs_f64());
        let reply = reply.map_err(store_error)?;
        let [allowed, remaining, reset_ms, retry_ms, ticket] = reply[..] else {
            return Err(StoreError::Protocol(format!("script answered {reply:?}")));
        };
        Ok(Decision {
            allowed: allowed == 1,
            remaining: u64::try_from(remaining).unwrap_or(0),
            reset: ms(reset_ms),
            retry_after: (allowed != 1 && retry_ms >= 0).then(|| ms(retry_ms)),
            ticket: u64::try_from(ticket).unwrap_or(0),
        })
    }

    fn release(&self, key: &Key, cost: u32, ticket: u64) {
        if !self.concurrency || ticket == 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // the lease frees the slot
        };
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(self.redis_key(key, None));
        for i in 1..=cost.max(1) {
            cmd.arg(format!("{ticket}:{i}"));
        }
        let conn = self.conn.clone();
        let policy = self.policy.clone();
        runtime.spawn(async move {
            if let Err(e) = conn.query::<i64>(&cmd).await {
                tracing::debug!(policy, error = %e, "concurrency slot not released; its lease will free it");
            }
        });
    }
}
