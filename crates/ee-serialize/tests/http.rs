//! FastJson, DecompressionLayer and the compression preset over real TCP:
//! every error path answers problem+json with the right status.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::{get, post};
use ee_serialize::{DecompressionLayer, FastJson, compression};
use ee_testing::{TestResponse, exchange, raw_request};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

#[path = "../benches/support/mod.rs"]
mod support;
use support::{Order, order};

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Strict {
    sku: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Quantity {
    quantity: u8,
}

const MAX_DECODED: usize = 1 << 20;

async fn serve() -> SocketAddr {
    let listing = serde_json::to_string(
        &(0..100)
            .map(|i| order(1).items[0].clone().tap(i))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let app = Router::new()
        .route(
            "/orders",
            post(|FastJson(o): FastJson<Order>| async move { FastJson(o) }),
        )
        .route(
            "/strict",
            post(|FastJson(s): FastJson<Strict>| async move { FastJson(s) }),
        )
        .route(
            "/quantity",
            post(|FastJson(q): FastJson<Quantity>| async move { FastJson(q) }),
        )
        .route(
            "/value",
            post(|FastJson(v): FastJson<Value>| async move { FastJson(v) }),
        )
        .route(
            "/listing",
            get(move || {
                let listing = listing.clone();
                async move { ([("content-type", "application/json")], listing) }
            }),
        )
        .route("/tiny", get(|| async { FastJson(json!({"ok": true})) }))
        .layer(DecompressionLayer::new().max_decoded(MAX_DECODED))
        .layer(compression());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

trait Tap {
    fn tap(self, i: usize) -> Self;
}

impl Tap for support::Item {
    fn tap(mut self, i: usize) -> Self {
        self.sku = format!("SKU-{i:06}");
        self
    }
}

async fn post_json(
    addr: SocketAddr,
    path: &str,
    extra: &[(&str, &[u8])],
    body: &[u8],
) -> TestResponse {
    let mut headers: Vec<(&str, &[u8])> = vec![("content-type", b"application/json")];
    headers.extend_from_slice(extra);
    exchange(addr, &raw_request("POST", path, &headers, body)).await
}

fn assert_problem(res: &TestResponse, status: u16, kind: &str) -> ee_core::Problem {
    assert_eq!(res.status, status, "{}", res.text());
    let problem = res.problem();
    assert_eq!(
        problem.type_uri(),
        format!("https://ee.rs/problems/serialize/{kind}")
    );
    problem
}

#[tokio::test]
async fn a_valid_order_round_trips_at_every_size() {
    let addr = serve().await;
    for items in [1, 14, 1500] {
        let sent = order(items);
        let res = post_json(addr, "/orders", &[], &serde_json::to_vec(&sent).unwrap()).await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(res.header("content-type"), Some("application/json"));
        // No Accept-Encoding was sent: the response is not compressed.
        assert_eq!(res.header("content-encoding"), None);
        assert_eq!(res.json::<Order>(), sent);
    }
}

#[tokio::test]
async fn wrong_or_missing_content_type_is_415() {
    let addr = serve().await;
    let body = br#"{"sku":"a"}"#;
    let res = exchange(
        addr,
        &raw_request("POST", "/strict", &[("content-type", b"text/plain")], body),
    )
    .await;
    let problem = assert_problem(&res, 415, "unsupported-media-type");
    assert!(problem.detail().unwrap().contains("text/plain"));
    let res = exchange(addr, &raw_request("POST", "/strict", &[], body)).await;
    assert_problem(&res, 415, "unsupported-media-type");
    // `application/*+json` is JSON.
    let res = exchange(
        addr,
        &raw_request(
            "POST",
            "/strict",
            &[("content-type", b"application/vnd.ee.v1+json")],
            body,
        ),
    )
    .await;
    assert_eq!(res.status, 200);
}

#[tokio::test]
async fn truncated_json_invalid_utf8_and_deep_nesting_are_400() {
    let addr = serve().await;
    let res = post_json(addr, "/orders", &[], br#"{"id": "ord_1", "status": "#).await;
    let problem = assert_problem(&res, 400, "malformed-json");
    assert_eq!(problem.extension("line"), Some(&json!(1)));

    // Invalid UTF-8 inside a string, in a small body and a larger one.
    let mut bad = br#"{"sku": "caf"#.to_vec();
    bad.extend_from_slice(&[0xC3, 0x28]);
    bad.extend_from_slice(br#""}"#);
    assert_problem(
        &post_json(addr, "/strict", &[], &bad).await,
        400,
        "malformed-json",
    );
    let mut big = serde_json::to_vec(&order(14)).unwrap();
    let at = big.windows(3).position(|w| w == b"Ada").unwrap();
    big[at] = 0xFF;
    assert_problem(
        &post_json(addr, "/orders", &[], &big).await,
        400,
        "malformed-json",
    );

    // 1,000-deep nesting is refused by the parser's depth limit, not the stack.
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let res = post_json(addr, "/value", &[], deep.as_bytes()).await;
    let problem = assert_problem(&res, 400, "malformed-json");
    assert!(
        problem.detail().unwrap().contains("recursion"),
        "{:?}",
        problem.detail()
    );
    // Twice over, past 1 KiB, the same.
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000)).repeat(2);
    let res = post_json(addr, "/value", &[], deep.as_bytes()).await;
    assert_problem(&res, 400, "malformed-json");

    // An empty body.
    assert_problem(
        &post_json(addr, "/strict", &[], b"").await,
        400,
        "malformed-json",
    );
}

#[tokio::test]
async fn wrong_shapes_are_422() {
    let addr = serve().await;
    // A number out of range for the field's type.
    let res = post_json(addr, "/quantity", &[], br#"{"quantity": 300}"#).await;
    let problem = assert_problem(&res, 422, "invalid-json");
    assert!(
        problem.detail().unwrap().contains("300"),
        "{:?}",
        problem.detail()
    );
    // A number out of range for any float is not JSON we can read: 400.
    let res = post_json(addr, "/quantity", &[], br#"{"quantity": 1e400}"#).await;
    assert_problem(&res, 400, "malformed-json");
    // Unknown fields: refused when the type denies them, ignored otherwise.
    let res = post_json(addr, "/strict", &[], br#"{"sku": "a", "price": 1}"#).await;
    let problem = assert_problem(&res, 422, "invalid-json");
    assert!(problem.detail().unwrap().contains("price"));
    let res = post_json(addr, "/quantity", &[], br#"{"quantity": 3, "note": "x"}"#).await;
    assert_eq!(res.status, 200);
    // A missing field.
    let res = post_json(addr, "/strict", &[], br#"{}"#).await;
    assert_problem(&res, 422, "invalid-json");
}

#[tokio::test]
async fn compressed_bodies_are_decoded_in_every_supported_coding() {
    let addr = serve().await;
    let sent = order(14);
    let json = serde_json::to_vec(&sent).unwrap();
    for (coding, body) in [
        ("zstd", zstd::bulk::compress(&json, 3).unwrap()),
        ("gzip", encode_gzip(&json).await),
        ("br", encode_br(&json).await),
        ("deflate", encode_deflate(&json).await),
    ] {
        let res = post_json(
            addr,
            "/orders",
            &[("content-encoding", coding.as_bytes())],
            &body,
        )
        .await;
        assert_eq!(res.status, 200, "{coding}: {}", res.text());
        assert_eq!(res.json::<Order>(), sent, "{coding}");
    }
}

#[tokio::test]
async fn a_10_mb_zstd_bomb_is_413_and_corrupt_data_is_400() {
    let addr = serve().await;
    let zeros = vec![b' '; 10 << 20];
    let bomb = zstd::bulk::compress(&zeros, 19).unwrap();
    assert!(bomb.len() < 4096, "the bomb is {} bytes", bomb.len());
    let res = post_json(addr, "/value", &[("content-encoding", b"zstd")], &bomb).await;
    let problem = assert_problem(&res, 413, "body-too-large");
    assert_eq!(problem.extension("limit"), Some(&json!(MAX_DECODED)));
    assert_eq!(problem.extension("decoded"), Some(&json!(true)));

    let res = post_json(
        addr,
        "/value",
        &[("content-encoding", b"zstd")],
        b"definitely not zstd",
    )
    .await;
    let problem = assert_problem(&res, 400, "malformed-encoding");
    assert_eq!(problem.extension("encoding"), Some(&json!("zstd")));
    let res = post_json(
        addr,
        "/value",
        &[("content-encoding", b"gzip")],
        b"\x1f\x8b not gzip",
    )
    .await;
    assert_problem(&res, 400, "malformed-encoding");
}

#[tokio::test]
async fn zstd_frames_with_huge_windows_concatenated_frames_and_trailing_garbage() {
    let addr = serve().await;
    // A frame that asks for a 128 MiB window (no content size in the
    // header): refused as malformed before any such window is allocated.
    let zeros = vec![b' '; 200 << 10];
    let mut huge_window = Vec::new();
    let mut enc = zstd::stream::write::Encoder::new(&mut huge_window, 19).unwrap();
    enc.include_contentsize(false).unwrap();
    enc.window_log(27).unwrap();
    enc.long_distance_matching(true).unwrap();
    std::io::Write::write_all(&mut enc, b"[").unwrap();
    std::io::Write::write_all(&mut enc, &zeros).unwrap();
    std::io::Write::write_all(&mut enc, b"]").unwrap();
    enc.finish().unwrap();
    let res = post_json(
        addr,
        "/value",
        &[("content-encoding", b"zstd")],
        &huge_window,
    )
    .await;
    assert_problem(&res, 400, "malformed-encoding");

    // Two frames: both are decoded (the JSON spans them).
    let mut two = zstd::bulk::compress(br#"{"a": [1, 2"#, 3).unwrap();
    two.extend(zstd::bulk::compress(br#", 3]}"#, 3).unwrap());
    let res = post_json(addr, "/value", &[("content-encoding", b"zstd")], &two).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json::<Value>(), json!({"a": [1, 2, 3]}));

    // A frame followed by garbage: an error, not silently truncated.
    let mut trailing = zstd::bulk::compress(br#"{"a": 1}"#, 3).unwrap();
    trailing.extend_from_slice(b"garbage after the frame");
    let res = post_json(addr, "/value", &[("content-encoding", b"zstd")], &trailing).await;
    assert_problem(&res, 400, "malformed-encoding");
}

#[tokio::test]
async fn unsupported_content_encodings_are_415_with_accept_encoding() {
    let addr = serve().await;
    for coding in [&b"compress"[..], b"lz4", b"gzip, zstd", b"caf\xc3\xa9"] {
        let res = post_json(addr, "/value", &[("content-encoding", coding)], b"{}").await;
        assert_problem(&res, 415, "unsupported-content-encoding");
        assert_eq!(
            res.header("accept-encoding"),
            Some("zstd, br, gzip, deflate")
        );
    }
    let res = post_json(addr, "/value", &[("content-encoding", b"identity")], b"{}").await;
    assert_eq!(res.status, 200);
}

async fn get_listing(addr: SocketAddr, path: &str, accept: &[u8]) -> TestResponse {
    exchange(
        addr,
        &raw_request("GET", path, &[("accept-encoding", accept)], b""),
    )
    .await
}

#[tokio::test]
async fn accept_encoding_q_values_pick_the_coding() {
    let addr = serve().await;
    let plain = get_listing(addr, "/listing", b"identity").await;
    assert_eq!(plain.header("content-encoding"), None);
    assert!(plain.body.len() > 10_000);

    // Equal weights: zstd is preferred.
    let res = get_listing(addr, "/listing", b"gzip, br, zstd").await;
    assert_eq!(res.header("content-encoding"), Some("zstd"));
    assert_eq!(zstd::stream::decode_all(&res.body[..]).unwrap(), plain.body);
    assert!(res.body.len() * 5 < plain.body.len());
    assert_eq!(res.header("vary"), Some("accept-encoding"));

    // q-values decide; `identity;q=0` with an acceptable coding is fine.
    let res = get_listing(addr, "/listing", b"zstd;q=0.1, gzip;q=0.9, identity;q=0").await;
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    assert_eq!(decode_gzip(&res.body).await, plain.body);
    let res = get_listing(addr, "/listing", b"br;q=1.0, zstd;q=0.5").await;
    assert_eq!(res.header("content-encoding"), Some("br"));
    // q=0 refuses a coding; nothing acceptable left means identity.
    let res = get_listing(addr, "/listing", b"zstd;q=0").await;
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(res.body, plain.body);

    // Small responses are not compressed.
    let res = get_listing(addr, "/tiny", b"zstd").await;
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(res.json::<Value>(), json!({"ok": true}));
}

async fn decode_gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    async_compression::tokio::bufread::GzipDecoder::new(bytes)
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

async fn encode_with<R: tokio::io::AsyncRead + Unpin>(mut encoder: R) -> Vec<u8> {
    let mut out = Vec::new();
    encoder.read_to_end(&mut out).await.unwrap();
    out
}

async fn encode_gzip(bytes: &[u8]) -> Vec<u8> {
    encode_with(async_compression::tokio::bufread::GzipEncoder::new(bytes)).await
}

async fn encode_br(bytes: &[u8]) -> Vec<u8> {
    encode_with(async_compression::tokio::bufread::BrotliEncoder::new(bytes)).await
}

async fn encode_deflate(bytes: &[u8]) -> Vec<u8> {
    encode_with(async_compression::tokio::bufread::DeflateEncoder::new(
        bytes,
    ))
    .await
}
