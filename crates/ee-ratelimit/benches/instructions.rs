//! Runs one layer variant N times, for instruction counts under callgrind (a
//! shared 2-core machine makes wall-clock ratios noisy; instruction counts
//! are repeatable). A profiling harness, not a usage example: see
//! `examples/` for those.
//!
//! ```sh
//! BIN=$(cargo bench -p ee-ratelimit --features redis,axum --bench instructions --no-run 2>&1 \
//!   | sed -n 's/.*Executable .*(\(.*\))/\1/p')
//! for v in none governor governor-headers ee ee-legacy ee-headers; do
//!   valgrind --tool=callgrind --toggle-collect='instructions::run*' \
//!     --callgrind-out-file=/tmp/cg.$v $BIN $v 50000
//! done
//! ```
//!
//! `interleaved N` times the same two layers (tower_governor and ours, no
//! headers) in turns of N requests, 400 rounds, for a wall-clock ratio that
//! the machine's drift affects equally (run it without valgrind:
//! `cargo bench -p ee-ratelimit --features redis,axum --bench instructions -- interleaved 2000`).
//!
//! `redis-interleaved N` does the same for Redis decisions (50 tasks, turns of
//! N decisions, 60 rounds) on a throwaway `redis-server`.
//!
//! `none` is the no-op service alone (the baseline to subtract); divide the
//! difference by the request count. Services are built outside `run`, so
//! the counts are the requests' alone (governor's clock calibration, which
//! varies from run to run, is left out).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use ee_ratelimit::{HeaderConfig, Rule};
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};

mod support;
use support::{BURST, noop, request};

/// Sends `n` requests through `svc`; the one function the profile counts.
#[inline(never)]
fn run<S>(rt: &tokio::runtime::Runtime, (svc, n): (S, usize))
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    rt.block_on(drive(svc, n))
}

async fn drive<S>(svc: S, n: usize)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    for i in 0..n {
        let res = svc
            .clone()
            .ready()
            .await
            .unwrap()
            .call(request(i))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
}

/// Wall-clock time on a noisy shared machine: rounds of `batch` requests,
/// tower_governor and ours taking turns, so both see the same drift; prints
/// the median and the fastest round of each (ns per request) and the ratios.
fn interleaved(rt: &tokio::runtime::Runtime, batch: usize) {
    let config = support::governor_builder().finish().unwrap();
    let governor = tower_governor::GovernorLayer::new(config).layer(noop());
    let ours = support::ours(HeaderConfig {
        draft: false,
        legacy: false,
    });
    let turns = ee_testing::take_turns(
        400,
        || ee_testing::ns_per_op(batch, || rt.block_on(drive(governor.clone(), batch))),
        || ee_testing::ns_per_op(batch, || rt.block_on(drive(ours.clone(), batch))),
    );
    turns.print("tower_governor", "ee, no headers", "ns per request");
}

/// Redis GCRA decisions with 50 concurrent tasks on a throwaway
/// `redis-server`: raw redis-rs `EVALSHA` of the same script and our
/// `RedisLimiter::check` in turns of `batch` decisions, 60 rounds; prints the
/// median time per decision of each (the tasks' wall clock over the decisions) and the ratios.
fn redis_interleaved(batch: u64) {
    use std::sync::Arc;

    use ee_core::Key;
    use ee_ratelimit::{Limiter, RateLimitStore, RedisStore};

    let server = ee_testing::RedisServer::start();
    let rt = ee_testing::bench_runtime();
    let ee_testing::RedisPair { conn, raw } = rt.block_on(ee_testing::redis_pair(&server.url()));
    let limiter = Arc::new(
        RedisStore::new(conn).limiter("api", &Rule::gcra(BURST, Duration::from_secs(1), BURST)),
    );
    let script = Arc::new(redis::Script::new(limiter.script().code()));
    let args: Arc<Vec<String>> = Arc::new(limiter.args().to_vec());
    let keys: Arc<Vec<(Key, String)>> = Arc::new(
        (0..support::KEYS)
            .map(|i| {
                let key = Key::Ip(support::ip(i));
                let redis_key = limiter.redis_key(&key, None);
                (key, redis_key)
            })
            .collect(),
    );
    let raw_round = || {
        let (raw, script, args, keys) = (raw.clone(), script.clone(), args.clone(), keys.clone());
        ee_testing::spread_over_tasks(rt, 50, batch, move |n| {
            let (mut raw, script, args, keys) =
                (raw.clone(), script.clone(), args.clone(), keys.clone());
            async move {
                let mut inv = script.key(&keys[n as usize % support::KEYS].1);
                for a in args.iter() {
                    inv.arg(a);
                }
                inv.arg(1);
                let v: Vec<i64> = inv.invoke_async(&mut raw).await.unwrap();
                assert_eq!(v[0], 1);
            }
        })
    };
    let ee_round = || {
        let (limiter, keys) = (limiter.clone(), keys.clone());
        ee_testing::spread_over_tasks(rt, 50, batch, move |n| {
            let (limiter, keys) = (limiter.clone(), keys.clone());
            async move {
                let key = &keys[n as usize % support::KEYS].0;
                assert!(limiter.check(key, 1).await.unwrap().allowed);
            }
        })
    };
    let per_decision = |d: Duration| d.as_nanos() as f64 / batch as f64;
    let turns = ee_testing::take_turns(
        60,
        || per_decision(raw_round()),
        || per_decision(ee_round()),
    );
    turns.print("raw EVALSHA", "ee RedisLimiter::check", "ns per decision");
}

fn main() {
    // `cargo bench` passes `--bench`: only the words after it are ours.
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let variant = args.next().unwrap_or_else(|| "ee".into());
    let n: usize = args.next().map_or(100_000, |s| s.parse().expect("a count"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Services are built before `run`, so that a profile restricted to
    // it (`--toggle-collect='instructions::run*'`) counts the requests alone, not
    // the clock calibration or the runtime's start.
    match variant.as_str() {
        "none" => run(&rt, (noop(), n)),
        "governor" => {
            let config = support::governor_builder().finish().unwrap();
            let svc = tower_governor::GovernorLayer::new(config).layer(noop());
            run(&rt, (svc, n))
        }
        "governor-headers" => {
            let config = support::governor_builder().use_headers().finish().unwrap();
            let svc = tower_governor::GovernorLayer::new(config).layer(noop());
            run(&rt, (svc, n))
        }
        "ee-legacy" => {
            let svc = support::ours(HeaderConfig {
                draft: false,
                legacy: true,
            });
            run(&rt, (svc, n))
        }
        "ee" => {
            let svc = support::ours(HeaderConfig {
                draft: false,
                legacy: false,
            });
            run(&rt, (svc, n))
        }
        "interleaved" => interleaved(&rt, n),
        "redis-interleaved" => redis_interleaved(n as u64),
        "ee-headers" => run(&rt, (support::ours(HeaderConfig::default()), n)),
        // Not ours: a criterion filter given to `cargo bench -p ee-ratelimit -- <filter>`.
        other => eprintln!(
            "instructions: no variant {other:?} (none, governor, governor-headers, ee, \
             ee-legacy, ee-headers, interleaved, redis-interleaved); skipped"
        ),
    }
}
