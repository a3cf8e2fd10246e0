//! Criterion benchmarks of ee-idempotency (being written).
fn main() {}
