//! The first example of `crates/ee-logging/README.md`, built with exactly the features its `cargo
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

        /// What `LogConfig::init` writes to stdout, kept for the test (`init_with`).
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        /// A request id and a `traceparent` go back; the JSON line names the route template (the
        /// default features' `axum`).
        #[tokio::test]
        async fn answers_with_a_request_id_and_logs_the_route_template() {
            let lines = Lines::default();
            let _guard = ee_logging::LogConfig::default()
                .init_with(lines.clone())
                .unwrap(); // as `main` does, kept
            let addr = serve().await;
            let response =
                client::get(addr, "/orders/42", "authorization: Bearer s3cret\r\n").await;
            assert_eq!(response.status, 200, "{response:?}");
            assert_eq!(response.text(), "an order");
            assert!(
                response
                    .header("x-request-id")
                    .is_some_and(|id| !id.is_empty()),
                "{response:?}"
            );
            assert!(response.header("traceparent").is_some(), "{response:?}");

            let mut log = String::new();
            for _ in 0..100 {
                log = String::from_utf8_lossy(&lines.0.lock().unwrap()).into_owned();
                if log.contains("request finished") {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let line = log
                .lines()
                .find(|l| l.contains("request finished"))
                .unwrap_or_else(|| panic!("{log}"));
            assert!(line.contains(r#""route":"/orders/{id}""#), "{line}");
            assert!(line.contains(r#""status":200"#), "{line}");
            assert!(!log.contains("s3cret"), "{log}");
        }
    }
}
