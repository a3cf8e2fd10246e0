//! Keys from a real JWKS server: start, rotation mid-traffic, unknown-`kid`
//! floods, issuer outages, background refresh, OIDC discovery, limits.

mod jwt_support;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ee_auth::{Algorithm, AuthError, AuthLayer, JwksSource, JwtConfig, JwtVerifier};
use ee_testing::ManualClock;
use jwt_support::{AUD, ISS, JwksServer, Signer, claims, jwks};
use metrics_util::debugging::DebuggingRecorder;
use serde_json::json;

async fn verifier(source: JwksSource) -> JwtVerifier {
    JwtVerifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .jwks(source)
        .cache_capacity(0)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_at_start_then_verifies() {
    let a = Signer::new("a", Algorithm::RS256);
    let server = JwksServer::start(jwks(&[&a])).await;
    let source = JwksSource::fetch(server.url()).await.unwrap();
    assert_eq!(source.kids(), ["a"]);
    let v = verifier(source).await;
    assert_eq!(v.verify(&a.sign(&claims("u"))).await.unwrap().id(), "u");
    assert_eq!(server.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_keys_at_start_is_an_error_that_says_why() {
    // Nothing listens there.
    let mut server = JwksServer::start(json!({ "keys": [] })).await;
    let err = JwksSource::fetch(server.url()).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable { .. }), "{err}");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("no usable signature key"), "{source}");
    server.stop().await;
    let err = JwksSource::fetch(server.url()).await.unwrap_err();
    assert!(
        err.to_string().contains("the JWKS at http://127.0.0.1"),
        "{err}"
    );
    // Through a config, the same error from build_async.
    let config: JwtConfig = serde_json::from_value(
        json!({ "issuers": [ISS], "audiences": [AUD], "jwks_url": server.url() }),
    )
    .unwrap();
    let built = JwtVerifier::builder()
        .config(&config)
        .unwrap()
        .build_async()
        .await;
    assert!(matches!(built, Err(AuthError::Unavailable { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_async_fetches_the_configured_url() {
    let a = Signer::new("a", Algorithm::ES256);
    let server = JwksServer::start(jwks(&[&a])).await;
    let config: JwtConfig = serde_json::from_value(
        json!({ "issuers": [ISS], "audiences": [AUD], "jwks_url": server.url() }),
    )
    .unwrap();
    let v = JwtVerifier::builder()
        .config(&config)
        .unwrap()
        .build_async()
        .await
        .unwrap();
    assert!(v.verify(&a.sign(&claims("u"))).await.is_ok());
}

/// The issuer publishes key B beside A, then signs with B, while 8 clients
/// send requests through the layer over HTTP: not one is refused, and the
/// new kid costs one fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_mid_traffic_refuses_nothing() {
    let a = Signer::new("a", Algorithm::ES256);
    let b = Signer::new("b", Algorithm::ES256);
    let issuer = JwksServer::start(jwks(&[&a])).await;
    let source = JwksSource::fetch(issuer.url()).await.unwrap();
    let auth = AuthLayer::builder()
        .jwt(verifier(source).await)
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route(
            "/me",
            axum::routing::get(|id: ee_auth::Identity| async move { id.id().to_owned() }),
        )
        .layer(auth);
    let addr = ee_testing::serve(app).await;
    // A slow issuer: the requests that meet the new kid pile up on one fetch.
    issuer.set_delay(Duration::from_millis(100));
    let current = Arc::new(RwLock::new(a.clone()));
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (current, client) = (current.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..40 {
                let token = current
                    .read()
                    .unwrap()
                    .sign(&claims(&format!("user:{t}-{i}")));
                let response = client
                    .get(format!("http://{addr}/me"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                statuses.push(response.status().as_u16());
                tokio::task::yield_now().await;
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    issuer.set_keys(jwks(&[&a, &b]));
    *current.write().unwrap() = b.clone();
    let mut refused = 0;
    let mut total = 0;
    for task in tasks {
        for status in task.await.unwrap() {
            total += 1;
            if status != 200 {
                refused += 1;
            }
        }
    }
    assert_eq!(
        (refused, total),
        (0, 320),
        "requests refused during rotation"
    );
    assert_eq!(
        issuer.hits(),
        2,
        "the start, then one fetch for the new kid"
    );
}

/// Random kids from many clients at once: one fetch, then throttled until
/// the interval passes.
#[test]
fn an_unknown_kid_flood_costs_one_fetch() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let a = Signer::new("a", Algorithm::EdDSA);
            let issuer = JwksServer::start(jwks(&[&a])).await;
            issuer.set_delay(Duration::from_millis(100));
            let clock = ManualClock::new();
            let source = JwksSource::builder(issuer.url())
                .unknown_kid_min_interval(Duration::from_secs(10))
                .clock(clock.clone())
                .fetch()
                .await
                .unwrap();
            let v = verifier(source).await;
            let flood = |n: usize| {
                let tasks: Vec<_> = (0..n)
                    .map(|_| {
                        let kid = format!("kid-{}", rand::random::<u64>());
                        let (v, token) = (v.clone(), a.sign_as(&kid, &claims("u")));
                        tokio::spawn(async move { v.verify(&token).await })
                    })
                    .collect();
                async move {
                    let mut results = Vec::new();
                    for t in tasks {
                        results.push(t.await.unwrap());
                    }
                    results
                }
            };
            // 200 at once: one waits on the fetch, the others wait for it.
            for r in flood(200).await {
                assert!(matches!(r, Err(AuthError::InvalidToken(_))), "{r:?}");
            }
            assert_eq!(issuer.hits(), 2, "start + one unknown-kid fetch");
            // 100 more inside the interval: refused without a fetch.
            for r in flood(100).await {
                assert!(matches!(r, Err(AuthError::InvalidToken(_))), "{r:?}");
            }
            assert_eq!(issuer.hits(), 2);
            let counters = ee_testing::counters(&snapshotter);
            assert_eq!(
                counters.get("ee_auth_jwks_refreshes_total{outcome=throttled}"),
                Some(100)
            );
            assert_eq!(
                counters.get("ee_auth_jwks_refreshes_total{outcome=ok}"),
                Some(2)
            );
            // Once the interval has passed, an unknown kid may fetch again.
            clock.advance(Duration::from_secs(11));
            let _ = flood(1).await;
            assert_eq!(issuer.hits(), 3);
            // Known-kid tokens were never affected.
            assert!(v.verify(&a.sign(&claims("u"))).await.is_ok());
        })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_down_keeps_the_last_good_keys() {
    let a = Signer::new("a", Algorithm::RS256);
    let b = Signer::new("b", Algorithm::RS384);
    let mut issuer = JwksServer::start(jwks(&[&a])).await;
    let addr = issuer.addr.to_string();
    let clock = ManualClock::new();
    let source = JwksSource::builder(issuer.url())
        .clock(clock.clone())
        .timeout(Duration::from_secs(2))
        .fetch()
        .await
        .unwrap();
    let v = verifier(source.clone()).await;
    issuer.stop().await;
    // Fresh tokens (no cache) still verify with the kept key.
    for i in 0..3 {
        let token = a.sign(&claims(&format!("user:{i}")));
        assert!(v.verify(&token).await.is_ok());
    }
    // A new kid sends the verifier to the issuer, which is down: 503.
    let err = v.verify(&b.sign(&claims("u"))).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable { .. }), "{err}");
    assert_eq!(ee_core::Problem::from(err).status(), 503);
    // Within the interval, the next unknown kid is refused without trying.
    let err = v.verify(&b.sign(&claims("u"))).await.unwrap_err();
    assert!(matches!(err, AuthError::InvalidToken(_)), "{err}");
    assert_eq!(source.kids(), ["a"]);
    // The issuer comes back with B; after the interval, B verifies.
    let issuer = JwksServer::start_on(&addr, jwks(&[&a, &b])).await;
    clock.advance(Duration::from_secs(11));
    assert!(v.verify(&b.sign(&claims("u"))).await.is_ok());
    assert_eq!(issuer.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_refresh_brings_new_keys() {
    let a = Signer::new("a", Algorithm::EdDSA);
    let b = Signer::new("b", Algorithm::EdDSA);
    let issuer = JwksServer::start(jwks(&[&a])).await;
    let source = JwksSource::builder(issuer.url())
        .refresh_interval(Duration::from_secs(1))
        .fetch()
        .await
        .unwrap();
    issuer.set_keys(jwks(&[&b]));
    let mut waited = 0;
    while source.kids() != ["b"] {
        assert!(waited < 100, "no background refresh within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    // A's key was retired by the issuer: its tokens no longer verify.
    let v = verifier(source).await;
    assert!(v.verify(&b.sign(&claims("u"))).await.is_ok());
    assert!(v.verify(&a.sign(&claims("u"))).await.is_err());
}

/// A key the issuer drops (say, after a compromise) stops the tokens it signed at the next
/// refresh, also those the verifier had cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_key_stops_its_cached_tokens() {
    let a = Signer::new("a", Algorithm::EdDSA);
    let b = Signer::new("b", Algorithm::EdDSA);
    let issuer = JwksServer::start(jwks(&[&a, &b])).await;
    let source = JwksSource::builder(issuer.url())
        .refresh_interval(Duration::from_secs(1))
        .fetch()
        .await
        .unwrap();
    let v = JwtVerifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .jwks(source.clone())
        .build()
        .unwrap();
    let (from_a, from_b) = (a.sign(&claims("u")), b.sign(&claims("w")));
    for _ in 0..2 {
        v.verify(&from_a).await.unwrap();
        v.verify(&from_b).await.unwrap();
    }
    issuer.set_keys(jwks(&[&b]));
    let mut waited = 0;
    while source.kids() != ["b"] {
        assert!(waited < 100, "no background refresh within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let err = v.verify(&from_a).await.unwrap_err();
    assert!(matches!(err, AuthError::InvalidToken(_)), "{err}");
    // B's token is verified again with the key that is still there, then cached again.
    assert_eq!(v.verify(&from_b).await.unwrap().id(), "w");
    assert_eq!(v.verify(&from_b).await.unwrap().id(), "w");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_discovery_checks_the_issuer() {
    let a = Signer::new("a", Algorithm::ES256);
    let issuer = JwksServer::start(jwks(&[&a])).await;
    let source = JwksSource::discover(&issuer.base()).await.unwrap();
    assert_eq!(source.kids(), ["a"]);
    assert_eq!(
        JwksSource::discover_uri(&issuer.base()).await.unwrap(),
        issuer.url()
    );
    // The document names `http://host:port`; asking for another spelling fails.
    let err = JwksSource::discover_uri(&format!("{}/", issuer.base()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("names the issuer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_documents_and_published_secrets_are_refused() {
    let a = Signer::new("a", Algorithm::ES256);
    let issuer = JwksServer::start(jwks(&[&a])).await;
    let huge = JwksSource::fetch(format!("{}/huge", issuer.base())).await;
    let err = huge.unwrap_err();
    let why = std::error::Error::source(&err).unwrap().to_string();
    assert!(why.contains("larger than 1048576 bytes"), "{why}");
    let small = JwksSource::builder(issuer.url())
        .max_bytes(64)
        .fetch()
        .await;
    assert!(small.is_err());
    // An HMAC secret in a published set is never used.
    let hs = Signer::new("hs", Algorithm::HS256);
    issuer.set_keys(jwks(&[&hs, &a]));
    let source = JwksSource::fetch(issuer.url()).await.unwrap();
    assert_eq!(source.kids(), ["a"]);
    issuer.set_keys(jwks(&[&hs]));
    assert!(JwksSource::fetch(issuer.url()).await.is_err());
}
