//! The first example of `crates/ee-core/README.md`, built with exactly the features its `cargo add`
//! line names (`../build.rs` checks them), and run.
#![cfg(test)]

#[allow(dead_code)] // `main` is the user's: the tests run `example()` and check its result
mod readme {
    include!(concat!(env!("OUT_DIR"), "/readme.rs"));

    mod tests {
        /// The client is the first untrusted hop; the problem is RFC 9457 JSON.
        #[test]
        fn takes_the_client_ip_through_the_trusted_proxy_and_answers_a_problem() {
            let response = super::example();
            assert_eq!(response.status(), 403);
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let body = std::str::from_utf8(response.body()).unwrap();
            assert!(
                body.contains(r#""type":"https://ee.rs/problems/demo/blocked""#),
                "{body}"
            );
            assert!(
                body.contains(r#""detail":"203.0.113.7 is blocked""#),
                "{body}"
            );
        }
    }
}
