//! JWT verification: raw `jsonwebtoken::decode` (aws-lc-rs backend, the
//! only one compiled in) beside `AuthLayer` on the same tokens and keys.
//!
//! - `first_sight`: a token the layer has not seen (fresh tokens, each
//!   verified once, cache insert included), RS256 / ES256 / EdDSA. Target
//!   ≤ 1.1× raw decode.
//! - `cached`: one token repeated through the layer (verified-token cache).
//!   Target ≤ 1 µs.
//!
//! The layer is called directly and its (ready) future polled once, so the
//! figure is the layer's, not a runtime's; requests are built outside the
//! timing. After criterion, one interleaved pass prints medians and ratios.
//!
//! `cargo bench -p ee-auth --bench jwt -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ee_auth::{Algorithm, Auth, AuthLayer, JwtVerifier, VerifyingKey};
use http::{Request, Response};
use http_body_util::Full;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use tower::{Layer, Service};

const ISS: &str = "https://id.example.com";
const AUD: &str = "orders";
const RSA_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/jwt_rsa_2048.pem");
/// Fresh tokens per layer (a new layer, so an empty cache, per chunk).
const CHUNK: usize = 500;

struct Case {
    name: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl Case {
    fn new(name: &'static str, alg: Algorithm) -> Self {
        let rng = SystemRandom::new();
        let encoding = match alg {
            Algorithm::EdDSA => {
                EncodingKey::from_ed_der(Ed25519KeyPair::generate_pkcs8v1(&rng).unwrap().as_ref())
            }
            Algorithm::ES256 => EncodingKey::from_ec_der(
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .unwrap()
                    .as_ref(),
            ),
            _ => EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some("k1".into());
        let jwk = serde_json::to_value(jwk).unwrap();
        Self {
            name,
            alg,
            encoding,
            jwk,
        }
    }

    fn token(&self, n: usize) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some("k1".into());
        let now = ee_core::unix_ms() / 1000;
        let claims = json!({
            "iss": ISS, "aud": AUD, "sub": format!("user:{n}"), "exp": now + 3600, "iat": now,
            "jti": format!("t-{n}"), "roles": ["clerk"], "scope": "orders:read orders:write",
            "tenant": "acme", "email": "anne@example.com"
        });
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }

    fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_jwk(&serde_json::from_value(self.jwk.clone()).unwrap()).unwrap()
    }

    fn validation(&self) -> Validation {
        let mut v = Validation::new(self.alg);
        v.set_issuer(&[ISS]);
        v.set_audience(&[AUD]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v
    }

    fn layer(&self, cache_capacity: u64) -> AuthLayer {
        let keys = json!({ "keys": [self.jwk] }).to_string();
        let verifier = JwtVerifier::builder()
            .issuer(ISS)
            .audience(AUD)
            .keys(VerifyingKey::from_jwk_set(&keys).unwrap())
            .cache_capacity(cache_capacity)
            .build()
            .unwrap();
        AuthLayer::builder().jwt(verifier).build().unwrap()
    }
}

type Inner = tower::util::ServiceFn<
    fn(Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
>;

fn ok(_: Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::new()))))
}

fn service(layer: &AuthLayer) -> Auth<Inner> {
    let inner: Inner = tower::service_fn(ok as fn(_) -> _);
    layer.layer(inner)
}

fn request(token: &str) -> Request<()> {
    Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

/// Calls the layer and polls its future once: it is ready (verified in `call`).
#[inline]
fn through(svc: &mut Auth<Inner>, req: Request<()>) -> Response<Full<Bytes>> {
    let mut cx = Context::from_waker(Waker::noop());
    let future = pin!(svc.call(req));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(response)) => {
            assert_eq!(response.status(), 200);
            response
        }
        _ => panic!("the layer waited on a token verified in place"),
    }
}

/// The anchor: decode and validate into the claims' JSON, as a handler would.
fn raw(key: &DecodingKey, validation: &Validation, token: &str) {
    let data = jsonwebtoken::decode::<Value>(token, key, validation).unwrap();
    std::hint::black_box(data);
}

/// `iters` first sights: a new layer (empty cache) per chunk of fresh tokens.
fn first_sight(case: &Case, tokens: &[String], iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let n = left.min(tokens.len());
        let mut svc = service(&case.layer(10_000));
        let requests: Vec<_> = tokens[..n].iter().map(|t| request(t)).collect();
        let start = Instant::now();
        let responses: Vec<_> = requests.into_iter().map(|r| through(&mut svc, r)).collect();
        total += start.elapsed();
        drop(responses);
        left -= n;
    }
    total
}

fn bench(c: &mut Criterion) {
    let cases = [
        Case::new("RS256", Algorithm::RS256),
        Case::new("ES256", Algorithm::ES256),
        Case::new("EdDSA", Algorithm::EdDSA),
    ];
    let mut report = Vec::new();
    for case in &cases {
        let tokens: Vec<String> = (0..CHUNK).map(|n| case.token(n)).collect();
        let (key, validation) = (case.decoding_key(), case.validation());
        let mut group = c.benchmark_group(format!("jwt/{}", case.name));
        group.bench_function("raw jsonwebtoken::decode", |b| {
            b.iter(|| raw(&key, &validation, &tokens[0]))
        });
        group.bench_function("AuthLayer first sight", |b| {
            b.iter_custom(|iters| first_sight(case, &tokens, iters))
        });
        let mut cached = service(&case.layer(10_000));
        through(&mut cached, request(&tokens[0]));
        group.bench_function("AuthLayer cached", |b| {
            b.iter_batched(
                || request(&tokens[0]),
                |req| through(&mut cached, req),
                BatchSize::SmallInput,
            )
        });
        group.finish();
        // `--profile-time` (a profiler run) skips the ratio pass.
        if !std::env::args().any(|a| a == "--profile-time") {
            report.push(measure(case, &tokens));
        }
    }
    if report.is_empty() {
        return;
    }
    println!("\nmedians of 15 interleaved rounds (ns per token):");
    println!("alg    raw decode   layer first sight  ratio   layer cached  raw/cached");
    for (name, raw_ns, first_ns, cached_ns) in report {
        println!(
            "{name:6} {raw_ns:>10.0} {first_ns:>18.0} {:>7.3}x {cached_ns:>12.0} {:>10.1}x",
            first_ns / raw_ns,
            raw_ns / cached_ns
        );
    }
}

/// Interleaved rounds of raw, first sight and cached: the medians (ns).
fn measure(case: &Case, tokens: &[String]) -> (&'static str, f64, f64, f64) {
    let (key, validation) = (case.decoding_key(), case.validation());
    let n = 200;
    let mut raws = Vec::new();
    let mut firsts = Vec::new();
    let mut hits = Vec::new();
    let mut cached = service(&case.layer(10_000));
    through(&mut cached, request(&tokens[0]));
    for _ in 0..15 {
        let start = Instant::now();
        for t in &tokens[..n] {
            raw(&key, &validation, t);
        }
        raws.push(start.elapsed().as_nanos() as f64 / n as f64);
        firsts.push(first_sight(case, &tokens[..n], n as u64).as_nanos() as f64 / n as f64);
        let requests: Vec<_> = (0..10_000).map(|_| request(&tokens[0])).collect();
        let start = Instant::now();
        let responses: Vec<_> = requests
            .into_iter()
            .map(|r| through(&mut cached, r))
            .collect();
        hits.push(start.elapsed().as_nanos() as f64 / 10_000.0);
        drop(responses);
    }
    (
        case.name,
        ee_testing::median(&raws),
        ee_testing::median(&firsts),
        ee_testing::median(&hits),
    )
}

criterion_group!(benches, bench);
criterion_main!(benches);
