//! Runs N L1 hits of `Cache::get` (or raw moka: `raw` with the same string
//! keys, `raw-u64` with u64 keys), for instruction
//! counts under callgrind:
//!
//! ```sh
//! cargo build --release -p ee-cache --example l1_profile
//! valgrind --tool=callgrind target/release/examples/l1_profile ee 100000
//! ```

use std::sync::Arc;

use ee_cache::{Cache, MemoryStore};
use futures_util::FutureExt;

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "ee".into());
    let n: u64 = args.next().map_or(100_000, |s| s.parse().expect("a count"));
    let cache: Cache<u64, Arc<String>> = Cache::builder("products")
        .build(MemoryStore::builder().max_entries(10_000).build())
        .unwrap();
    let raw: moka::sync::Cache<String, Arc<String>> = moka::sync::Cache::new(10_000);
    let raw_u64: moka::sync::Cache<u64, Arc<String>> = moka::sync::Cache::new(10_000);
    let full: Vec<String> = (0..1000).map(|i| cache.full_key(&i).unwrap()).collect();
    for i in 0..1000u64 {
        let v = Arc::new(format!("value {i}"));
        raw.insert(full[i as usize].clone(), v.clone());
        raw_u64.insert(i, v.clone());
        cache.set(&i, v).now_or_never().unwrap().unwrap();
    }
    let mut found = 0usize;
    for j in 0..n {
        let i = j % 1000;
        let hit = match variant.as_str() {
            "raw" => raw.get(full[i as usize].as_str()).is_some(),
            "raw-u64" => raw_u64.get(&i).is_some(),
            _ => cache.get(&i).now_or_never().unwrap().is_some(),
        };
        found += usize::from(hit);
    }
    assert_eq!(found as u64, n);
}
