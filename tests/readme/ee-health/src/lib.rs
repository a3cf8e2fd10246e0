//! The first example of `crates/ee-health/README.md`, built with exactly the features its `cargo
//! add` line names (`../build.rs` checks them), served as its `main` serves it, and sent requests.
#![cfg(test)]

#[path = "../../client.rs"]
mod client;

#[allow(dead_code)] // `main` is the user's: the tests serve `health()` as `main` does
mod readme {
    include!(concat!(env!("OUT_DIR"), "/readme.rs"));

    mod tests {
        use crate::client;
        use std::net::SocketAddr;
        use std::time::Duration;

        /// Serves `health()` on a free port as the README's `main` does.
        async fn serve() -> SocketAddr {
            let health = super::health();
            let app = axum::Router::new().merge(health.router());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                health
                    .serve(listener, app, Duration::from_secs(20))
                    .await
                    .unwrap()
            });
            addr
        }

        /// Liveness and readiness answer 200 with `application/health+json`: the critical check
        /// passes, the disk check is not critical.
        #[tokio::test]
        async fn answers_liveness_and_readiness() {
            let addr = serve().await;
            for path in ["/livez", "/readyz"] {
                let response = client::get(addr, path, "").await;
                assert_eq!(response.status, 200, "{path}: {response:?}");
                assert_eq!(
                    response.header("content-type"),
                    Some("application/health+json"),
                    "{path}"
                );
            }
            let ready = client::get(addr, "/readyz", "").await.text();
            assert!(ready.contains("orders-db"), "{ready}");
        }
    }
}
