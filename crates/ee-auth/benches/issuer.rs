//! The issuing side beside the raw libraries it builds on, same inputs:
//!
//! - `access_token`: `TokenIssuer::issue_access` vs `jsonwebtoken::encode`
//!   with the same Ed25519 key and the same claims;
//! - `service_token`: `ServiceTokens::mint` (cached) vs signing per call;
//! - `refresh_rotate`: `RefreshTokens::rotate` on memory, and on Redis (a
//!   throwaway `redis-server`) beside one raw redis-rs round trip;
//! - `password_verify`: `Passwords::verify` (blocking pool, bounded) vs raw
//!   `argon2` verify, both Argon2id with the default (OWASP) parameters.
//!
//! After each group, the two sides run in turns and the ratio is printed.
//! Run: `cargo bench -p ee-auth --bench issuer -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use aws_lc_rs::signature::Ed25519KeyPair;
use criterion::{Criterion, criterion_group, criterion_main};
use ee_auth::{
    Grant, MemoryRefreshStore, Passwords, RedisRefreshStore, RefreshStore, RefreshTokens,
    ServiceTokens, SigningAlgorithm, SigningKey, SigningKeys, TokenIssuer,
};
use ee_core::Secret;
use ee_testing::{bench_runtime, ns_per_op, take_turns};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

const ROUNDS: usize = 15;

fn keys() -> (SigningKeys, EncodingKey) {
    let der = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let ours = SigningKey::from_pkcs8_der(
        "bench",
        SigningAlgorithm::EdDSA,
        &Secret::new(der.as_ref().to_vec()),
    )
    .unwrap();
    (
        SigningKeys::new([ours]).unwrap(),
        EncodingKey::from_ed_der(der.as_ref()),
    )
}

fn grant() -> Grant {
    Grant::new("user:42")
        .with_roles(["admin"])
        .with_scopes(["orders:read", "orders:write"])
        .with_tenant("acme")
}

fn access_token(c: &mut Criterion) {
    let (keys, raw_key) = keys();
    let issuer = TokenIssuer::builder()
        .issuer("https://auth.example.com")
        .audience("api")
        .keys(keys)
        .build()
        .unwrap();
    let grant = grant();
    let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("bench".into());
    let now = ee_core::unix_ms() / 1000;
    let claims = json!({
        "iss": "https://auth.example.com", "sub": "user:42", "aud": "api",
        "iat": now, "nbf": now, "exp": now + 900, "jti": "AAAAAAAAAAAAAAAAAAAAAA",
        "roles": ["admin"], "scope": "orders:read orders:write", "tenant": "acme",
        "token_use": "access",
    });
    let raw = || jsonwebtoken::encode(&header, &claims, &raw_key).unwrap();
    let ours = || issuer.issue_access(&grant).unwrap();

    let mut group = c.benchmark_group("issuer/access_token");
    group.bench_function("jsonwebtoken::encode (anchor)", |b| {
        b.iter(|| black_box(raw()))
    });
    group.bench_function("TokenIssuer::issue_access", |b| {
        b.iter(|| black_box(ours()))
    });
    group.finish();
    take_turns(
        ROUNDS,
        || ns_per_op(500, || (0..500).for_each(|_| drop(black_box(raw())))),
        || ns_per_op(500, || (0..500).for_each(|_| drop(black_box(ours())))),
    )
    .print(
        "jsonwebtoken::encode",
        "TokenIssuer::issue_access",
        "ns per token",
    );

    let tokens = ServiceTokens::new(issuer.clone(), "order").unwrap();
    let mint = || tokens.mint("payment").unwrap();
    let mut group = c.benchmark_group("issuer/service_token");
    group.bench_function("jsonwebtoken::encode per call (anchor)", |b| {
        b.iter(|| black_box(raw()))
    });
    group.bench_function("ServiceTokens::mint (cached)", |b| {
        b.iter(|| black_box(mint()))
    });
    group.finish();
    take_turns(
        ROUNDS,
        || ns_per_op(500, || (0..500).for_each(|_| drop(black_box(raw())))),
        || ns_per_op(5000, || (0..5000).for_each(|_| drop(black_box(mint())))),
    )
    .print(
        "jsonwebtoken::encode",
        "ServiceTokens::mint (cached)",
        "ns per token",
    );
}

/// `iters` rotations in a row of one family's current token.
async fn rotations<S: RefreshStore>(refresh: &RefreshTokens<S>, iters: u64) -> Duration {
    let mut token = refresh.issue("user:bench").await.unwrap().token;
    let start = Instant::now();
    for _ in 0..iters {
        token = refresh.rotate(&token).await.unwrap().token;
    }
    start.elapsed()
}

fn refresh_rotate(c: &mut Criterion) {
    let rt = bench_runtime();
    let memory = RefreshTokens::new(MemoryRefreshStore::new());
    let server = ee_testing::RedisServer::start();
    let pair = rt.block_on(ee_testing::redis_pair(&server.url()));
    let redis = RefreshTokens::new(RedisRefreshStore::new(pair.conn.clone()));
    let issued = rt.block_on(redis.issue("user:anchor")).unwrap();
    let key = format!("ee:auth:{{{}}}:refresh", issued.family);
    let raw_round_trip = || {
        let mut raw = pair.raw.clone();
        let key = key.clone();
        async move {
            let fields: Vec<String> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut raw)
                .await
                .unwrap();
            black_box(fields);
        }
    };
    let raw_batch = |n: u64| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                raw_round_trip().await;
            }
            start.elapsed()
        })
    };

    let mut group = c.benchmark_group("issuer/refresh_rotate");
    group.bench_function("memory", |b| {
        b.iter_custom(|iters| rt.block_on(rotations(&memory, iters)))
    });
    group.bench_function("redis: raw HGETALL round trip (anchor)", |b| {
        b.iter_custom(raw_batch)
    });
    group.bench_function("redis", |b| {
        b.iter_custom(|iters| rt.block_on(rotations(&redis, iters)))
    });
    group.finish();
    take_turns(
        ROUNDS,
        || raw_batch(200).as_nanos() as f64 / 200.0,
        || rt.block_on(rotations(&redis, 200)).as_nanos() as f64 / 200.0,
    )
    .print(
        "raw HGETALL round trip",
        "RefreshTokens::rotate (Redis)",
        "ns per rotation",
    );
}

fn password_verify(c: &mut Criterion) {
    let rt = bench_runtime();
    let passwords = Passwords::new();
    let password = Secret::new("correct horse battery staple".to_owned());
    let phc = rt.block_on(passwords.hash(&password)).unwrap();
    let raw = || {
        let hash = PasswordHash::new(&phc).unwrap();
        argon2::Argon2::default()
            .verify_password(password.expose().as_bytes(), &hash)
            .unwrap();
    };
    let ours = || rt.block_on(passwords.verify(&password, &phc)).unwrap();

    let mut group = c.benchmark_group("issuer/password_verify");
    group.sample_size(10);
    group.bench_function("argon2 verify (anchor)", |b| b.iter(raw));
    group.bench_function("Passwords::verify", |b| b.iter(|| black_box(ours())));
    group.finish();
    take_turns(
        7,
        || ns_per_op(5, || (0..5).for_each(|_| raw())) / 1e6,
        || {
            ns_per_op(5, || {
                (0..5).for_each(|_| {
                    black_box(ours());
                })
            }) / 1e6
        },
    )
    .print("argon2 verify", "Passwords::verify", "ms per verify");
}

criterion_group!(benches, access_token, refresh_rotate, password_verify);
criterion_main!(benches);
