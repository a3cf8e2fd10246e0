//! The first example of `crates/ee-db/README.md`, built with exactly the features its `cargo add`
//! line names (`../build.rs` checks them), and run.
#![cfg(test)]

#[allow(dead_code)] // `main` is the user's: the tests run `example()` and check its result
mod readme {
    include!(concat!(env!("OUT_DIR"), "/readme.rs"));

    mod tests {
        /// The row written comes back, decoded with serde, on the embedded SQLite of the default build.
        #[tokio::test]
        async fn writes_and_reads_a_product_on_sqlite() {
            let product = super::example().await.unwrap();
            assert_eq!((product.sku.as_str(), product.price_minor), ("A-1", 1999));
        }
    }
}
