//! The first example of `crates/ee-validate/README.md`, built with exactly the features its `cargo
//! add` line names (`../build.rs` checks them), served as its `main` serves it, and sent requests.
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

        /// A valid order passes; `{"sku": "", "quantity": 0}` gets one 422 with both violations.
        #[tokio::test]
        async fn passes_a_valid_order_and_lists_every_violation() {
            let addr = serve().await;
            let valid =
                client::post_json(addr, "/orders", "", r#"{"sku":"A-1","quantity":2}"#).await;
            assert_eq!(valid.status, 200, "{valid:?}");
            assert_eq!(valid.text(), "2 x A-1");

            let invalid =
                client::post_json(addr, "/orders", "", r#"{"sku":"","quantity":0}"#).await;
            assert_eq!(invalid.status, 422, "{invalid:?}");
            assert_eq!(
                invalid.header("content-type"),
                Some("application/problem+json")
            );
            let body = invalid.text();
            assert!(
                body.contains("https://ee.rs/problems/validate/invalid-request"),
                "{body}"
            );
            assert!(
                body.contains(r#""pointer":"/quantity""#)
                    && body.contains(r#""keyword":"minimum""#),
                "{body}"
            );
            assert!(
                body.contains(r#""pointer":"/sku""#) && body.contains(r#""keyword":"minLength""#),
                "{body}"
            );
        }
    }
}
