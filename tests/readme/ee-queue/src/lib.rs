//! The first example of `crates/ee-queue/README.md`, built with exactly the features its `cargo
//! add` line names (`../build.rs` checks them), and run against the Redis on 127.0.0.1:6379
//! (`scripts/test` starts one).
#![cfg(test)]

#[allow(dead_code)] // `main` is the user's: the tests run `example()` and check its result
mod readme {
    include!(concat!(env!("OUT_DIR"), "/readme.rs"));

    mod tests {
        /// The job added reaches the worker's service.
        #[tokio::test]
        async fn a_worker_runs_the_added_job() {
            let sent = tokio::time::timeout(std::time::Duration::from_secs(30), super::example())
                .await
                .expect("the job ran within 30 s")
                .expect("Redis on 127.0.0.1:6379 (./scripts/test --services starts one)");
            assert_eq!(sent.as_deref(), Some("ada@example.com"));
        }
    }
}
