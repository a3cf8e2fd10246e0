//! The first example of `crates/ee-serialize/README.md`, built with exactly the features its `cargo
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

        /// An order goes back as JSON; the README's table of rejections holds for two of them.
        #[tokio::test]
        async fn echoes_an_order_and_answers_problems() {
            let addr = serve().await;
            let order = r#"{"sku":"A-1","quantity":2}"#;
            let response = client::post_json(addr, "/orders", "", order).await;
            assert_eq!(response.status, 200, "{response:?}");
            assert_eq!(response.header("content-type"), Some("application/json"));
            assert_eq!(response.text(), order);

            let wrong_shape = client::post_json(addr, "/orders", "", r#"{"sku":"A-1"}"#).await;
            assert_eq!(wrong_shape.status, 422, "{wrong_shape:?}");
            assert!(
                wrong_shape
                    .text()
                    .contains("https://ee.rs/problems/serialize/invalid-json"),
                "{wrong_shape:?}"
            );

            let head = "POST /orders HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
                        content-type: text/plain\r\ncontent-length: 2\r\n\r\n";
            let not_json = client::send(addr, head, b"hi").await;
            assert_eq!(not_json.status, 415, "{not_json:?}");
            assert_eq!(
                not_json.header("content-type"),
                Some("application/problem+json")
            );
        }
    }
}
