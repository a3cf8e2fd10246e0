//! Runs N L1 hits of `Cache::get` (or raw moka: `raw` with the same string
//! keys, `raw-u64` with u64 keys, `raw-u64-ttl` with u64 keys and the
//! store-wide time to live and hasher `MemoryStore` gives moka), for instruction
//! counts under callgrind:
//!
//! ```sh
//! bin=$(cargo bench -p ee-cache --bench l1_profile --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\))/\1/p')
//! valgrind --tool=callgrind --toggle-collect='l1_profile::run*' "$bin" ee 100000
//! ```
//!
//! Divide by N: only the lookups are counted.
//!
//! `interleaved N` times raw moka (u64 keys, and the same string keys) and
//! `Cache::get` in turns of N lookups, 300 rounds, for wall-clock ratios the
//! machine's drift affects equally (run it without valgrind:
//! `cargo bench -p ee-cache --bench l1_profile -- interleaved 20000`).
//!
//! A profiling harness, not a criterion bench: without arguments (a plain
//! `cargo bench`) it only prints how to run it.

use std::sync::Arc;

use ee_cache::{Cache, MemoryStore};
use futures_util::FutureExt;

const USAGE: &str = "l1_profile <ee|raw|raw-u64|raw-u64-ttl|interleaved> [N]: see the file's docs";

fn main() {
    let Some(args) = ee_testing::profile_args(USAGE) else {
        return;
    };
    let mut args = args.into_iter();
    let variant = args.next().unwrap_or_else(|| "ee".into());
    let n: u64 = args.next().map_or(100_000, |s| s.parse().expect("a count"));
    let cache: Cache<u64, Arc<String>> = Cache::builder("products")
        .build(MemoryStore::builder().max_entries(10_000).build())
        .unwrap();
    let raw: moka::sync::Cache<String, Arc<String>> = moka::sync::Cache::new(10_000);
    let raw_u64: moka::sync::Cache<u64, Arc<String>> = moka::sync::Cache::new(10_000);
    // moka configured as `MemoryStore` is: a store-wide time to live (its
    // default bound on any entry) and foldhash.
    let raw_u64_ttl: moka::sync::Cache<u64, Arc<String>, foldhash::fast::RandomState> =
        moka::sync::Cache::builder()
            .max_capacity(10_000)
            .time_to_live(ee_cache::DEFAULT_MEMORY_MAX_TTL)
            .build_with_hasher(foldhash::fast::RandomState::default());
    let full: Vec<String> = (0..1000).map(|i| cache.full_key(&i).unwrap()).collect();
    for i in 0..1000u64 {
        let v = Arc::new(format!("value {i}"));
        raw.insert(full[i as usize].clone(), v.clone());
        raw_u64.insert(i, v.clone());
        raw_u64_ttl.insert(i, v.clone());
        cache.set(&i, v).now_or_never().unwrap().unwrap();
    }
    if variant == "interleaved" {
        use ee_testing::{ns_per_op, take_turns};
        let batch = n as usize;
        let ours = || {
            ns_per_op(batch, || {
                assert_eq!(
                    run(n, |i| cache.get(&i).now_or_never().unwrap().is_some()),
                    n
                )
            })
        };
        take_turns(
            300,
            || {
                ns_per_op(batch, || {
                    assert_eq!(run(n, |i| raw_u64.get(&i).is_some()), n)
                })
            },
            ours,
        )
        .print("raw moka, u64 keys", "ee Cache::get", "ns per get");
        take_turns(
            300,
            || {
                ns_per_op(batch, || {
                    assert_eq!(run(n, |i| raw.get(full[i as usize].as_str()).is_some()), n)
                })
            },
            ours,
        )
        .print(
            "raw moka, the same string keys",
            "ee Cache::get",
            "ns per get",
        );
        return;
    }
    let found = match variant.as_str() {
        "raw" => run(n, |i| raw.get(full[i as usize].as_str()).is_some()),
        "raw-u64" => run(n, |i| raw_u64.get(&i).is_some()),
        "raw-u64-ttl" => run(n, |i| raw_u64_ttl.get(&i).is_some()),
        _ => run(n, |i| cache.get(&i).now_or_never().unwrap().is_some()),
    };
    assert_eq!(found, n);
}

/// `n` lookups over the 1000 keys, counting hits: the one function the
/// profile counts (`--toggle-collect='l1_profile::run*'`), so set-up (the
/// inserts, clock calibration) is left out.
#[inline(never)]
fn run(n: u64, hit: impl Fn(u64) -> bool) -> u64 {
    (0..n).map(|j| u64::from(hit(j % 1000))).sum()
}
