//! The first example of `crates/ee-ratelimit/README.md`, built with exactly the features its `cargo
//! add` line names, served as its `main` serves it, and sent requests.
#![cfg(test)]

#[path = "../../client.rs"]
mod client;

#[allow(dead_code)] // `main` is the user's: the tests serve `app()` as `main` does
mod readme {
    include!(concat!(env!("OUT_DIR"), "/readme.rs"));

    mod tests {
        use crate::client;
        use std::net::SocketAddr;

        /// Serves `app()` on a free port as the README's `main` does.
        async fn serve() -> SocketAddr {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = super::app().into_make_service_with_connect_info::<SocketAddr>();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            addr
        }

        /// With `-F axum` the peer address is read from `ConnectInfo`: 200 with the draft's
        /// headers, then 429 once the burst of 20 is spent. Issue 25's trap is what this catches:
        /// with `-F axum` dropped from the README's line and from this package (both, or
        /// ../build.rs refuses), the first request answers 500 `no-peer-address` ("… AND enable
        /// the `axum` feature (`cargo add ee-ratelimit -F axum` …)") and this test fails there.
        #[tokio::test]
        async fn counts_by_peer_address_and_answers_429_after_the_burst() {
            let addr = serve().await;

            let first = client::get(addr, "/", "").await;
            assert_eq!(first.status, 200, "{first:?}");
            assert_eq!(first.text(), "hi");
            assert_eq!(
                first.header("ratelimit-policy"),
                Some(r#""burst";q=20;w=2, "hourly";q=1000;w=3600"#)
            );
            let remaining = first.header("ratelimit").unwrap();
            assert!(remaining.starts_with(r#""burst";r=19;"#), "{remaining}");

            let mut limited = None;
            for _ in 0..40 {
                let response = client::get(addr, "/", "").await;
                if response.status == 429 {
                    limited = Some(response);
                    break;
                }
                assert_eq!(response.status, 200, "{response:?}");
            }
            let limited = limited.expect("a 429 once the burst of 20 is spent");
            assert_eq!(
                limited.header("content-type"),
                Some("application/problem+json")
            );
            assert!(limited.header("retry-after").is_some(), "{limited:?}");
            let body = limited.text();
            assert!(
                body.contains(r#""type":"https://ee.rs/problems/ratelimit/too-many-requests""#),
                "{body}"
            );
            assert!(body.contains(r#""policy":"burst""#), "{body}");
        }
    }
}
