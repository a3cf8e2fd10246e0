//! The first example of `crates/ee-cache/README.md`, built with exactly the features its `cargo
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

        /// A product is loaded, then answered from the cache.
        #[tokio::test]
        async fn answers_a_product_through_the_cache() {
            let addr = serve().await;
            for _ in 0..2 {
                let response = client::get(addr, "/products/42", "").await;
                assert_eq!(response.status, 200, "{response:?}");
                assert_eq!(response.text(), "product 42");
            }
            let response = client::get(addr, "/products/forty-two", "").await;
            assert_eq!(response.status, 400, "{response:?}");
        }
    }
}
