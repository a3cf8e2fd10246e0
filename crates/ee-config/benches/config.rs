//! Loading a 200-key configuration (50 sections of 4 keys, from a TOML file
//! and 4 environment variables) with `Loader` against raw figment on the
//! same file (`cargo bench -p ee-config`).

#![allow(missing_docs)]

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Section {
    size: u64,
    name: String,
    enabled: bool,
    ratio: f64,
}

type Config = BTreeMap<String, Section>;

fn load(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("ee-config-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ee.toml");
    let mut toml = String::new();
    for i in 0..50 {
        toml.push_str(&format!(
            "[s{i:02}]\nsize = {}\nname = \"section {i}\"\nenabled = {}\nratio = 0.{i}\n",
            i * 10,
            i % 2 == 0
        ));
    }
    std::fs::write(&file, toml).unwrap();
    let env: Vec<(String, String)> = (0..4)
        .map(|i| (format!("EE_S{i:02}__SIZE"), "7".to_owned()))
        .collect();
    let mut group = c.benchmark_group("config_load_200_keys");
    group.bench_function("raw_figment_toml", |b| {
        b.iter(|| {
            Figment::from(Toml::file(&file))
                .extract::<Config>()
                .unwrap()
        })
    });
    group.bench_function("ee_loader", |b| {
        b.iter(|| {
            ee_config::Loader::new(Config::new())
                .file(&file)
                .env(env.clone())
                .load()
                .unwrap()
        })
    });
    group.finish();
    std::fs::remove_dir_all(&dir).unwrap();
}

criterion_group!(benches, load);
criterion_main!(benches);
