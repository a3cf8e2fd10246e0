//! ee-core's hot paths beside the hand-rolled code they replace.
//!
//! - `problem_response`: a 429 problem+json response, from `Problem` vs a
//!   `#[derive(Serialize)]` struct through `serde_json::to_vec` and a hand-built
//!   `http::Response` (the least a hand-written error type costs).
//! - `client_ip`: `ClientIp` walking a 3-hop `X-Forwarded-For` through trusted
//!   proxies vs the naive "parse the last hop" many services use (which trusts
//!   any client; faster because it checks nothing).
//! - `redis_key`: `KeySpace::tagged` vs `format!` of the same key.
//!
//! Run: `cargo bench -p ee-core --bench core`.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use ee_core::KeySpace;
use ee_core::{ClientIp, KeyExtractor, PeerIp};
use ee_core::{PeerAddr, Problem};
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde::Serialize;

#[derive(Serialize)]
struct HandRolled<'a> {
    r#type: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    policy: &'a str,
}

fn problem_response(c: &mut Criterion) {
    let mut group = c.benchmark_group("problem_response");
    group.bench_function("serde_json struct + http::Response (anchor)", |b| {
        b.iter(|| {
            let body = serde_json::to_vec(&HandRolled {
                r#type: "https://ee.rs/problems/ratelimit/too-many-requests",
                title: "Too Many Requests",
                status: 429,
                detail: black_box("policy `api` allows 10 requests per second"),
                policy: "api",
            })
            .unwrap();
            let mut res = Response::new(Bytes::from(body));
            *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            res
        })
    });
    group.bench_function("ee Problem", |b| {
        b.iter(|| {
            Problem::ee(
                StatusCode::TOO_MANY_REQUESTS,
                "ratelimit",
                "too-many-requests",
            )
            .with_detail(black_box("policy `api` allows 10 requests per second"))
            .with_extension("policy", "api")
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            .into_response::<Bytes>()
        })
    });
    group.finish();
}

fn client_ip(c: &mut Criterion) {
    let mut req = Request::get("/")
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.1.1")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(PeerAddr("10.0.0.2:443".parse::<SocketAddr>().unwrap()));
    let extractor = ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]);
    assert_eq!(
        extractor.extract_from(&req).unwrap().to_string(),
        "203.0.113.7"
    );

    let mut group = c.benchmark_group("client_ip");
    group.bench_function("naive last hop, no trust check (anchor)", |b| {
        b.iter(|| {
            black_box(&req)
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
        })
    });
    group.bench_function("ee ClientIp (2 trusted hops)", |b| {
        b.iter(|| extractor.extract_from(black_box(&req)))
    });
    group.bench_function("ee PeerIp", |b| {
        b.iter(|| PeerIp.extract_from(black_box(&req)))
    });
    group.finish();
}

fn redis_key(c: &mut Criterion) {
    let keys = KeySpace::new("ratelimit");
    let mut group = c.benchmark_group("redis_key");
    group.bench_function("format! (anchor)", |b| {
        b.iter(|| {
            format!(
                "ee:ratelimit:{{{}:{}}}:tat",
                black_box("api"),
                black_box("203.0.113.7")
            )
        })
    });
    group.bench_function("ee KeySpace::tagged", |b| {
        b.iter(|| keys.tagged(&[black_box("api"), black_box("203.0.113.7")], &["tat"]))
    });
    group.finish();
}

criterion_group!(benches, problem_response, client_ip, redis_key);
criterion_main!(benches);
