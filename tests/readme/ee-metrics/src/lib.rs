//! The first example of `crates/ee-metrics/README.md`, built with exactly the features its `cargo
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

        /// A request is counted under its route template, and `/metrics` serves it.
        #[tokio::test]
        async fn counts_a_request_under_its_route_template() {
            let addr = serve().await;
            let response = client::get(addr, "/orders/42", "").await;
            assert_eq!(response.status, 200, "{response:?}");
            let metrics = client::get(addr, "/metrics", "").await;
            assert_eq!(metrics.status, 200, "{metrics:?}");
            let text = metrics.text();
            let counted = text
                .lines()
                .find(|l| {
                    l.starts_with("ee_http_requests_total{") && l.contains(r#"status_class="2xx""#)
                })
                .unwrap_or_else(|| panic!("{text}"));
            for label in [
                r#"route="/orders/{id}""#,
                r#"method="GET""#,
                r#"service="orders""#,
            ] {
                assert!(counted.contains(label), "{label} in {counted}");
            }
            assert!(counted.ends_with(" 1"), "{counted}");
        }
    }
}
