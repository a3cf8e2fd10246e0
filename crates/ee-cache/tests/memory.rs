//! The typed cache on the in-memory store: single-flight, TTL and jitter,
//! stale-while-revalidate, negative caching, tags, tenants, versions, limits,
//! cancellation and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ee_cache::{Cache, CacheConfig, CacheError, MemoryStore};

fn cache(name: &str) -> Cache<str, String> {
    Cache::builder(name).build(MemoryStore::new()).unwrap()
}

type Loading =
    std::pin::Pin<Box<dyn Future<Output = Result<Option<String>, std::io::Error>> + Send>>;

/// A loader that counts its calls and answers `value` after `delay`.
fn counting(
    calls: &Arc<AtomicUsize>,
    delay: Duration,
    value: Option<&str>,
) -> impl FnOnce() -> Loading + Send + 'static {
    let calls = calls.clone();
    let value = value.map(str::to_owned);
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            Ok(value)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_misses_run_the_loader_once() {
    let cache = cache("products");
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let cache = cache.clone();
            let load = counting(&calls, Duration::from_millis(50), Some("teapot"));
            tokio::spawn(async move { cache.get_or_load("42", load).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().as_deref(), Some("teapot"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get("42").await.as_deref(), Some("teapot"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loader_error_reaches_every_waiter_and_is_not_cached() {
    let cache = cache("flaky");
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load("k", move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        Err::<Option<String>, _>(std::io::Error::other("db down"))
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "db down");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one load for 50 waiters");
    // Not cached: the next call loads again, and succeeds.
    let value = cache
        .get_or_load("k", counting(&calls, Duration::ZERO, Some("v")))
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("v"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn absence_is_cached_only_with_a_negative_ttl() {
    let calls = Arc::new(AtomicUsize::new(0));
    let plain = cache("plain");
    for _ in 0..3 {
        let v = plain
            .get_or_load("gone", counting(&calls, Duration::ZERO, None))
            .await
            .unwrap();
        assert_eq!(v, None);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "no negative caching by default"
    );

    let calls = Arc::new(AtomicUsize::new(0));
    let negative: Cache<str, String> = Cache::builder("negative")
        .negative_ttl(Duration::from_millis(200))
        .build(MemoryStore::new())
        .unwrap();
    for _ in 0..3 {
        let v = negative
            .get_or_load("gone", counting(&calls, Duration::ZERO, None))
            .await
            .unwrap();
        assert_eq!(v, None);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the absence is remembered");
    assert_eq!(negative.get("gone").await, None);
    tokio::time::sleep(Duration::from_millis(250)).await;
    negative
        .get_or_load("gone", counting(&calls, Duration::ZERO, None))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "until the negative TTL");
}

#[tokio::test]
async fn entries_expire_after_the_ttl_less_at_most_the_jitter() {
    let cache: Cache<str, String> = Cache::builder("short")
        .ttl(Duration::from_millis(200))
        .build(MemoryStore::new())
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load("k", counting(&calls, Duration::ZERO, Some("v1")))
        .await
        .unwrap();
    // Jitter is at most 10 %: still fresh at 150 ms.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(cache.get("k").await.as_deref(), Some("v1"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(cache.get("k").await, None, "expired at 250 ms");
    let v = cache
        .get_or_load("k", counting(&calls, Duration::ZERO, Some("v2")))
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("v2"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_jitter_spreads_the_expiry_of_entries_written_together() {
    let ttl = Duration::from_secs(100);
    let cache: Cache<u32, String> = Cache::builder("jitter")
        .ttl(ttl)
        .build(MemoryStore::new())
        .unwrap();
    let now = ee_core::unix_ms();
    for i in 0..50 {
        cache.set(&i, "v".into()).await.unwrap();
    }
    let until: Vec<u64> = (0..50)
        .map(|i| {
            let key = cache.full_key(&i).unwrap();
            cache.store().lookup(&key).unwrap().fresh_until - now
        })
        .collect();
    // Within the TTL less at most 10 %, and not all alike.
    for ms in &until {
        assert!((89_000..=100_500).contains(ms), "{ms} ms");
    }
    let (min, max) = (until.iter().min().unwrap(), until.iter().max().unwrap());
    assert!(max - min > 2_000, "spread {min}..{max} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_entry_is_served_at_once_and_refreshed_once_in_the_background() {
    let cache: Cache<str, String> = Cache::builder("swr")
        .ttl(Duration::from_millis(100))
        .stale_while_revalidate(Duration::from_secs(10))
        .build(MemoryStore::new())
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    cache.set("k", "old".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // 20 callers during the refresh: all get the stale value at once; one load.
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let v = cache
            .get_or_load(
                "k",
                counting(&calls, Duration::from_millis(100), Some("new")),
            )
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some("old"));
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "nobody waited for the load"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get("k").await.as_deref(), Some("new"));
}

#[tokio::test]
async fn tags_invalidate_exactly_their_entries() {
    let cache = cache("catalog");
    cache
        .set_tagged("p42", "teapot".into(), &["product:42", "shelf:kitchen"])
        .await
        .unwrap();
    cache
        .set_tagged("p43", "kettle".into(), &["product:43", "shelf:kitchen"])
        .await
        .unwrap();
    cache.set("other", "x".into()).await.unwrap();

    cache.invalidate_tag("product:42").await;
    assert_eq!(cache.get("p42").await, None);
    assert_eq!(cache.get("p43").await.as_deref(), Some("kettle"));

    cache.invalidate_tag("shelf:kitchen").await;
    assert_eq!(cache.get("p43").await, None);
    assert_eq!(cache.get("other").await.as_deref(), Some("x"));
}

/// A key that writes a lot, then a few bytes: the thread's key buffer keeps
/// one view's prefix between lookups and must cut back each key exactly.
struct Long(usize);

impl ee_cache::CacheKey for Long {
    fn write_key(&self, out: &mut ee_cache::KeyWriter<'_>) {
        for _ in 0..self.0 {
            out.push_str("x");
        }
    }
}

#[tokio::test]
async fn lookups_that_alternate_views_and_key_lengths_find_their_own_entries() {
    let store = MemoryStore::new();
    let base: Cache<Long, String> = Cache::builder("views").build(store.clone()).unwrap();
    // Two views of tenant "a": separate prefixes in the buffer, same entries.
    let views = [
        ("base", base.clone()),
        ("a", base.tenant("a")),
        ("b", base.tenant("b")),
        ("a", base.tenant("a")),
    ];
    for (name, view) in &views[..3] {
        for len in [0, 1, 40, 3] {
            view.set(&Long(len), format!("{name} {len}")).await.unwrap();
        }
    }
    for _ in 0..3 {
        for (name, view) in &views {
            for len in [40, 0, 3, 1, 40] {
                let got = view.get(&Long(len)).await;
                assert_eq!(got, Some(format!("{name} {len}")), "{name}, {len} bytes");
            }
        }
    }
    assert_eq!(base.tenant("b").get(&Long(2)).await, None);
}

#[tokio::test]
async fn tenants_and_versions_never_see_each_others_entries() {
    let cache = cache("users");
    let acme = cache.tenant("acme");
    let globex = cache.tenant("globex");
    acme.set("1", "acme's user".into()).await.unwrap();
    globex.set("1", "globex's user".into()).await.unwrap();
    assert_eq!(acme.get("1").await.as_deref(), Some("acme's user"));
    assert_eq!(globex.get("1").await.as_deref(), Some("globex's user"));
    assert_eq!(cache.get("1").await, None);

    // A tag invalidation in one tenant leaves the other alone.
    acme.set_tagged("2", "a".into(), &["team"]).await.unwrap();
    globex.set_tagged("2", "g".into(), &["team"]).await.unwrap();
    acme.invalidate_tag("team").await;
    assert_eq!(acme.get("2").await, None);
    assert_eq!(globex.get("2").await.as_deref(), Some("g"));

    // Version 2 of the code shares the store but not the entries.
    let store = MemoryStore::new();
    let v1: Cache<str, String> = Cache::builder("users").build(store.clone()).unwrap();
    let v2: Cache<str, String> = Cache::builder("users").version(2).build(store).unwrap();
    v1.set("1", "old shape".into()).await.unwrap();
    assert_eq!(v2.get("1").await, None);
    assert_ne!(v1.full_key("1").unwrap(), v2.full_key("1").unwrap());
}

#[tokio::test]
async fn user_keys_cannot_break_out_of_their_namespace() {
    let cache = cache("ns");
    let key = cache.full_key("a{b}%c").unwrap();
    assert!(key.ends_with(":a%7Bb%7D%25c"), "{key}");
    assert!(!key.contains('{'), "no hash tag from user data: {key}");
    assert_ne!(
        cache.tenant("x").full_key("k").unwrap(),
        cache.full_key("x:k").unwrap()
    );
}

#[tokio::test]
async fn keys_over_the_limit_are_refused_but_still_load() {
    let cache = cache("limits");
    let long = "k".repeat(2000);
    assert!(matches!(
        cache.set(&long, "v".into()).await,
        Err(CacheError::KeyTooLong { max: 1024, .. })
    ));
    assert_eq!(cache.get(&long).await, None);
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let v = cache
            .get_or_load(&long, counting(&calls, Duration::ZERO, Some("v")))
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some("v"));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "uncacheable: loaded each time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_loader_hands_over_to_a_waiter() {
    let cache = cache("cancel");
    let calls = Arc::new(AtomicUsize::new(0));
    let leader = {
        let cache = cache.clone();
        let load = counting(&calls, Duration::from_secs(60), Some("never"));
        tokio::spawn(async move { cache.get_or_load("k", load).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let follower = {
        let cache = cache.clone();
        let load = counting(&calls, Duration::from_millis(10), Some("from the follower"));
        tokio::spawn(async move { cache.get_or_load("k", load).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    let v = tokio::time::timeout(Duration::from_secs(2), follower)
        .await
        .expect("the follower did not hang")
        .unwrap()
        .unwrap();
    assert_eq!(v.as_deref(), Some("from the follower"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn get_many_answers_in_order() {
    let cache = cache("many");
    cache.set("a", "1".into()).await.unwrap();
    cache.set("c", "3".into()).await.unwrap();
    let got = cache.get_many(&["a", "b", "c"]).await;
    assert_eq!(got, vec![Some("1".into()), None, Some("3".into())]);
}

#[tokio::test]
async fn a_bounded_store_evicts_and_counts_evictions() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let cache: Cache<u32, String> = metrics::with_local_recorder(&recorder, || {
        let store = MemoryStore::builder()
            .max_entries(100)
            .name("bounded")
            .build();
        Cache::builder("bounded").build(store).unwrap()
    });
    for i in 0..1000 {
        cache.set(&i, format!("value {i}")).await.unwrap();
    }
    let held = cache.store().len();
    assert!(held <= 100, "{held} entries held");
    cache.get(&999).await;
    cache.get(&5_000).await;
    let counters = ee_testing::counters(&snapshotter);
    let get = |name: &str| counters.get(name);
    let evicted = get("ee_cache_evictions_total{cache=bounded,cause=size}").unwrap_or(0);
    assert!(evicted >= 900, "{counters:?}");
    // Two lookups: 5 000 was never set (a miss); 999 may have been evicted.
    let misses = get("ee_cache_requests_total{cache=bounded,level=l1,result=miss}").unwrap_or(0);
    let hits = get("ee_cache_requests_total{cache=bounded,level=l1,result=hit}").unwrap_or(0);
    assert!(misses >= 1 && hits + misses == 2, "{counters:?}");
}

#[tokio::test]
async fn a_weight_bound_evicts_by_weight() {
    // At most 1 000 bytes of values.
    let weighed = || -> Cache<u32, String> {
        let store = MemoryStore::builder()
            .max_weight(1_000, |_key: &str, v: &String| v.len() as u32)
            .build();
        Cache::builder("weighed").build(store).unwrap()
    };
    // Ten of 200 bytes cannot all stay ...
    let big = weighed();
    for i in 0..10 {
        big.set(&i, "x".repeat(200)).await.unwrap();
    }
    let held = big.store().len();
    assert!((1..=5).contains(&held), "{held} entries of 200 bytes held");
    // ... fifty of 10 bytes do: the bound is the weight, not a count.
    let small = weighed();
    for i in 0..50 {
        small.set(&i, "y".repeat(10)).await.unwrap();
    }
    assert_eq!(small.store().len(), 50);
}

#[tokio::test]
async fn an_idle_entry_goes_before_its_ttl_and_a_read_one_stays() {
    let store = MemoryStore::builder()
        .time_to_idle(Duration::from_millis(300))
        .build();
    let cache: Cache<str, String> = Cache::builder("idle")
        .ttl(Duration::from_secs(60))
        .build(store)
        .unwrap();
    cache.set("read", "kept".into()).await.unwrap();
    cache.set("idle", "dropped".into()).await.unwrap();
    // "read" is read every 100 ms for 900 ms; "idle" is not read at all.
    for _ in 0..9 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(cache.get("read").await.as_deref(), Some("kept"));
    }
    assert_eq!(cache.get("idle").await, None, "idle for 900 ms, TTL 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_a_load_wins_over_the_loads_older_result() {
    let cache = cache("race");
    let calls = Arc::new(AtomicUsize::new(0));
    let slow = {
        let cache = cache.clone();
        let load = counting(
            &calls,
            Duration::from_millis(200),
            Some("read before the write"),
        );
        tokio::spawn(async move { cache.get_or_load("k", load).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    cache.delete("k").await.unwrap();
    // A caller after the delete does not wait for the old load: it loads anew.
    let fresh = cache
        .get_or_load(
            "k",
            counting(&calls, Duration::ZERO, Some("read after the write")),
        )
        .await
        .unwrap();
    assert_eq!(fresh.as_deref(), Some("read after the write"));
    // The old load still answers its own caller, but does not overwrite.
    assert_eq!(
        slow.await.unwrap().unwrap().as_deref(),
        Some("read before the write")
    );
    assert_eq!(
        cache.get("k").await.as_deref(),
        Some("read after the write")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tags_still_reach_an_entry_written_again_after_it_expired_or_was_cleared() {
    let store: MemoryStore<String> = MemoryStore::builder()
        .max_ttl(Duration::from_millis(100))
        .build();
    let cache: Cache<str, String> = Cache::builder("retag").build(store.clone()).unwrap();
    cache.set_tagged("k", "v1".into(), &["t"]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(cache.get("k").await, None, "expired");
    cache.set_tagged("k", "v2".into(), &["t"]).await.unwrap();
    store.len(); // let moka run its removal notifications
    cache.invalidate_tag("t").await;
    assert_eq!(
        cache.get("k").await,
        None,
        "the new value is still listed under its tag"
    );

    cache.set_tagged("k", "v3".into(), &["t"]).await.unwrap();
    store.clear();
    cache.set_tagged("k", "v4".into(), &["t"]).await.unwrap();
    store.len();
    cache.invalidate_tag("t").await;
    assert_eq!(cache.get("k").await, None, "listed again after a clear");
}

#[tokio::test]
async fn building_a_cache_describes_every_metric_with_help_text_and_a_unit() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let cache: Cache<u32, String> = metrics::with_local_recorder(&recorder, || {
        let store = MemoryStore::builder().name("described").build();
        Cache::builder("described").build(store).unwrap()
    });
    cache
        .get_or_load(&1, || async {
            Ok::<_, std::io::Error>(Some("v".to_owned()))
        })
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for (key, unit, help, _) in snapshotter.snapshot().into_vec() {
        let name = key.key().name().to_owned();
        assert!(unit.is_some(), "{name} has no unit");
        assert!(
            help.is_some_and(|h| !h.is_empty()),
            "{name} has no help text"
        );
        seen.insert(name);
    }
    let all = [
        ee_cache::METRIC_REQUESTS_TOTAL,
        ee_cache::METRIC_LOADS_TOTAL,
        ee_cache::METRIC_LOAD_DURATION_SECONDS,
        ee_cache::METRIC_DROPPED_WRITES_TOTAL,
        ee_cache::METRIC_EVICTIONS_TOTAL,
    ];
    assert_eq!(seen, all.iter().map(|n| (*n).to_owned()).collect());
}

#[test]
fn a_config_is_checked_when_it_is_applied() {
    let zero_ttl = CacheConfig {
        ttl_ms: 0,
        ..CacheConfig::default()
    };
    let err = Cache::builder("c").config(&zero_ttl).unwrap_err();
    assert!(
        matches!(&err, CacheError::Config(why) if why.contains("ttl_ms")),
        "{err}"
    );
    let jitter = CacheConfig {
        jitter: 2.0,
        ..CacheConfig::default()
    };
    assert!(matches!(
        Cache::builder("c").config(&jitter),
        Err(CacheError::Config(_))
    ));
    let fine = CacheConfig {
        ttl_ms: 1000,
        version: 7,
        ..CacheConfig::default()
    };
    let cache: Cache<u32, String> = Cache::builder("c")
        .config(&fine)
        .unwrap()
        .build(MemoryStore::new())
        .unwrap();
    assert!(cache.full_key(&1).unwrap().contains(":v7:"));
}
