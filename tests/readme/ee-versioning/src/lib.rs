//! The first example of `crates/ee-versioning/README.md`, built with exactly the features its
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

        /// The default version answers unprefixed routes; version 1 is reached by URI or header and
        /// carries its lifecycle headers; an unknown version is a 400 problem.
        #[tokio::test]
        async fn routes_by_version_with_lifecycle_headers() {
            let addr = serve().await;
            let default = client::get(addr, "/orders", "").await;
            assert_eq!(
                (default.status, default.text().as_str()),
                (200, "v2"),
                "{default:?}"
            );
            assert_eq!(default.header("deprecation"), None);

            for (path, header) in [("/v1/orders", ""), ("/orders", "api-version: 1\r\n")] {
                let v1 = client::get(addr, path, header).await;
                assert_eq!(
                    (v1.status, v1.text().as_str()),
                    (200, "v1"),
                    "{path} {header}: {v1:?}"
                );
                assert!(
                    v1.header("deprecation").is_some_and(|d| d.starts_with('@')),
                    "{v1:?}"
                );
                assert!(
                    v1.header("link")
                        .is_some_and(|l| l.contains("</v2/orders>")),
                    "{v1:?}"
                );
            }

            let unknown = client::get(addr, "/orders", "api-version: 9\r\n").await;
            assert_eq!(unknown.status, 400, "{unknown:?}");
            assert_eq!(
                unknown.header("content-type"),
                Some("application/problem+json")
            );
        }
    }
}
