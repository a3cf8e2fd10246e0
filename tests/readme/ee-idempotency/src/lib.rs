//! The first example of `crates/ee-idempotency/README.md`, built with exactly the features its
//! `cargo add` line names (`../build.rs` checks them), served as its `main` serves it, and sent
//! requests.
#![cfg(test)]

#[path = "../../client.rs"]
mod client;
#[path = "../../serve.rs"]
mod serve;

#[allow(dead_code)] // `main` is the user's: the tests serve `app()` as `main` does
mod readme {
    include!(concat!(env!("OUT_DIR"), "/readme.rs"));

    mod tests {
        use crate::client;
        use std::net::SocketAddr;

        /// Serves `app()` on a free port as the README's `main` does.
        async fn serve() -> SocketAddr {
            crate::serve::serve(super::app()).await
        }

        /// The first request runs, its retry is replayed, a request without a key gets 400.
        #[tokio::test]
        async fn a_retry_is_replayed_and_a_keyless_request_refused() {
            let addr = serve().await;
            let key = "idempotency-key: \"order-8e03978e\"\r\n";
            let first = client::post_json(addr, "/orders", key, r#"{"sku":"A-1"}"#).await;
            assert_eq!(first.status, 201, "{first:?}");
            assert_eq!(first.text(), r#"order placed: {"sku":"A-1"}"#);
            assert_eq!(first.header("idempotent-replayed"), None);

            let retry = client::post_json(addr, "/orders", key, r#"{"sku":"A-1"}"#).await;
            assert_eq!(retry.status, 201, "{retry:?}");
            assert_eq!(retry.header("idempotent-replayed"), Some("true"));
            assert_eq!(retry.text(), first.text());

            let keyless = client::post_json(addr, "/orders", "", r#"{"sku":"A-1"}"#).await;
            assert_eq!(keyless.status, 400, "{keyless:?}");
            assert_eq!(
                keyless.header("content-type"),
                Some("application/problem+json")
            );
            assert!(keyless.text().contains("missing-key"), "{keyless:?}");
        }
    }
}
