//! Criterion benchmarks of ee-ratelimit (being written).
fn main() {}
