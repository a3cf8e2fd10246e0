//! The first example of `crates/ee-config/README.md`, built with exactly the features its `cargo
//! add` line names (`../build.rs` checks them), and run.
#![cfg(test)]

#[allow(dead_code)] // `main` is the user's: the tests run `example()` and check its result
mod readme {
    include!(concat!(env!("OUT_DIR"), "/readme.rs"));

    mod tests {
        /// The defaults load (no `ee.toml` here, no `APP_` variables), and the secret never shows.
        #[test]
        fn loads_the_defaults_and_redacts_the_secret() {
            let app = super::example().unwrap();
            let expected_port = std::env::var("APP_PORT").map_or(8080, |p| p.parse().unwrap());
            assert_eq!(app.port, expected_port);
            assert_eq!(app.database_password.expose(), "dev");
            let shown = format!("{app:?}");
            assert!(shown.contains("database_password: [redacted]"), "{shown}");
            assert!(!shown.contains("dev"), "{shown}");
        }
    }
}
