//! The first example of `crates/ee-testing/README.md`, built with exactly the features its `cargo
//! add` line names (`../build.rs` checks them). The example is a `#[tokio::test]`: it runs here as
//! written, against real Redis and PostgreSQL (`EE_DATABASE_URL`).
#![cfg(test)]

mod readme {
    include!(concat!(env!("OUT_DIR"), "/readme.rs"));
}
