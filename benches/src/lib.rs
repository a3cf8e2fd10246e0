//! Benchmarks that compare ee against other crates live in `benches/`; this
//! library is empty on purpose (a package needs a target). Run them with
//! `cargo bench -p ee-benches`.
