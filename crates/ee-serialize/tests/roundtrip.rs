//! Property: any value of a type survives `FastJson` out (response) and back
//! in (`from_bytes`), including strings with escapes and non-ASCII text.

use axum::response::IntoResponse;
use ee_serialize::FastJson;
use http_body_util::BodyExt;
use proptest::prelude::*;

#[path = "../benches/support/mod.rs"]
mod support;
use support::{Address, Customer, Item, Order};

fn text() -> impl Strategy<Value = String> {
    // Any Unicode scalar values, quotes, backslashes and control characters.
    proptest::collection::vec(any::<char>(), 0..40).prop_map(|cs| cs.into_iter().collect())
}

fn item() -> impl Strategy<Value = Item> {
    (
        text(),
        text(),
        any::<u32>(),
        any::<u64>(),
        -1_000_000i32..1_000_000,
        proptest::collection::vec(text(), 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(sku, name, quantity, unit_price_cents, d, tags, gift)| Item {
                sku,
                name,
                quantity,
                unit_price_cents,
                // Multiples of 1/1024 print and parse exactly (serde_json's
                // default float parsing is not round-trip exact for every f64).
                discount: f64::from(d) / 1024.0,
                tags,
                gift,
            },
        )
}

fn order() -> impl Strategy<Value = Order> {
    (
        (text(), text(), text(), text()),
        (
            any::<u64>(),
            text(),
            text(),
            (text(), text(), text(), text()),
        ),
        proptest::collection::vec(item(), 0..8),
        any::<u64>(),
        proptest::option::of(text()),
    )
        .prop_map(
            |(
                (id, status, currency, created_at),
                (cid, email, name, (line1, city, postcode, country)),
                items,
                total_cents,
                notes,
            )| Order {
                id,
                status,
                currency,
                created_at,
                customer: Customer {
                    id: cid,
                    email,
                    name,
                    address: Address {
                        line1,
                        city,
                        postcode,
                        country,
                    },
                },
                items,
                total_cents,
                notes,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_order_round_trips(order in order()) {
        let response = FastJson(order.clone()).into_response();
        prop_assert_eq!(response.status(), 200);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let body = rt.block_on(response.into_body().collect()).unwrap().to_bytes();
        let FastJson(back) = FastJson::<Order>::from_bytes(&body).unwrap();
        prop_assert_eq!(back, order);
    }
}
