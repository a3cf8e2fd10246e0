//! `AuthLayer` around a plain tower service and an axum router: credentials,
//! refusals (status, problem type, `WWW-Authenticate`), API key routing,
//! anonymous mode, extensions, metrics and the extractors.

mod jwt_support;

use std::convert::Infallible;

use bytes::Bytes;
use ee_auth::{
    Algorithm, ApiKeyVerifier, AuthError, AuthLayer, Authenticated, BoxFuture, Identity,
    JwtVerifier, Method, PROBLEM_INSUFFICIENT_SCOPE, PROBLEM_INVALID_REQUEST,
    PROBLEM_INVALID_TOKEN, PROBLEM_UNAUTHENTICATED, PROBLEM_UNAVAILABLE, VerifyingKey,
};
use ee_core::{KeyExtractor, RequestHead, SubjectKey};
use ee_testing::{TestResponse, send};
use http::{Request, Response};
use http_body_util::Full;
use jsonwebtoken::{EncodingKey, Header};
use jwt_support::{AUD, ISS, RSA_PUBLIC, Signer, b64, claims, now};
use metrics_util::debugging::DebuggingRecorder;
use serde_json::json;
use tower::{Layer, service_fn};

/// A test double of the API key seam: keys start with `eek_`.
struct TestKeys;

impl ApiKeyVerifier for TestKeys {
    fn recognizes(&self, credential: &str) -> bool {
        credential.starts_with("eek_")
    }

    fn verify_key<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async move {
            match key {
                "eek_good" => {
                    Ok(Identity::new("client:acme", Method::ApiKey).with_scopes(["orders:read"]))
                }
                "eek_down" => Err(AuthError::Unavailable {
                    what: "api key store".into(),
                    source: None,
                }),
                _ => Err(AuthError::invalid_token("unknown API key")),
            }
        })
    }
}

fn rsa() -> Signer {
    Signer::new("rsa", Algorithm::RS256)
}

fn verifier() -> JwtVerifier {
    JwtVerifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .key(
            VerifyingKey::from_pem(Algorithm::RS256, RSA_PUBLIC)
                .unwrap()
                .with_kid("rsa"),
        )
        .build()
        .unwrap()
}

/// Answers `<subject from SubjectKey>|<identity method>` or `anonymous`.
async fn echo(req: Request<String>) -> Result<Response<Full<Bytes>>, Infallible> {
    let head = RequestHead::from(&req);
    let body = match (
        SubjectKey.extract(&head),
        req.extensions().get::<Identity>(),
    ) {
        (Ok(subject), Some(identity)) => format!("{subject}|{}", identity.method().as_str()),
        (Err(_), None) => "anonymous".to_owned(),
        _ => "inconsistent".to_owned(),
    };
    Ok(Response::new(Full::new(Bytes::from(body))))
}

async fn call(layer: &AuthLayer, headers: &[(&str, &str)]) -> TestResponse {
    let mut req = Request::builder().uri("/orders");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(
        layer.layer(service_fn(echo)),
        req.body(String::new()).unwrap(),
    )
    .await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn assert_refused(r: &TestResponse, status: u16, problem_type: &str, challenge: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text());
    assert_eq!(r.problem().type_uri(), problem_type);
    let www = r.header("www-authenticate").unwrap_or_default();
    assert!(www.starts_with(challenge), "WWW-Authenticate: {www}");
}

#[tokio::test]
async fn a_valid_token_passes_with_subject_and_identity() {
    let layer = AuthLayer::builder().jwt(verifier()).build().unwrap();
    let token = rsa().sign(&claims("user:anne"));
    let r = call(&layer, &[("authorization", &bearer(&token))]).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "user:anne|jwt"));
    // The scheme in any case; the second time from the cache.
    let r = call(&layer, &[("authorization", &format!("bEARER {token}"))]).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "user:anne|jwt"));
}

#[tokio::test]
async fn missing_foreign_and_duplicate_credentials() {
    let layer = AuthLayer::builder().jwt(verifier()).build().unwrap();
    let r = call(&layer, &[]).await;
    assert_refused(&r, 401, PROBLEM_UNAUTHENTICATED, "Bearer");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = call(&layer, &[("authorization", "Basic dXNlcjpwYXNz")]).await;
    assert_refused(&r, 401, PROBLEM_UNAUTHENTICATED, "Bearer");
    let token = rsa().sign(&claims("u"));
    let twice = [
        ("authorization", bearer(&token)),
        ("authorization", bearer(&token)),
    ];
    let twice: Vec<_> = twice.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let r = call(&layer, &twice).await;
    assert_refused(
        &r,
        400,
        PROBLEM_INVALID_REQUEST,
        "Bearer error=\"invalid_request\"",
    );
    let r = call(&layer, &[("authorization", "Bearer")]).await;
    assert_refused(
        &r,
        400,
        PROBLEM_INVALID_REQUEST,
        "Bearer error=\"invalid_request\"",
    );
}

#[tokio::test]
async fn bad_tokens_answer_invalid_token() {
    let layer = AuthLayer::builder().jwt(verifier()).build().unwrap();
    let signer = rsa();
    let with = |patch: serde_json::Value| {
        let mut c = claims("u");
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        signer.sign(&c)
    };
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("rsa".into());
    let hs_with_rsa_key = jsonwebtoken::encode(
        &hs_header,
        &claims("u"),
        &EncodingKey::from_secret(RSA_PUBLIC).unwrap(),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "rsa"})),
        b64(&claims("u"))
    );
    let good = signer.sign(&claims("u"));
    let mut big = claims("u");
    big["pad"] = json!("x".repeat(9000));
    let cases = [
        ("expired", with(json!({ "exp": now() - 120 })), "expired"),
        (
            "not yet valid",
            with(json!({ "nbf": now() + 120 })),
            "not valid yet",
        ),
        (
            "wrong audience",
            with(json!({ "aud": "billing" })),
            "audience",
        ),
        (
            "wrong issuer",
            with(json!({ "iss": "https://evil" })),
            "issuer",
        ),
        ("alg none", none, "malformed"),
        ("HS256 with the RSA key", hs_with_rsa_key, "algorithm"),
        ("truncated", good[..good.len() - 10].to_owned(), "signature"),
        ("oversized", signer.sign(&big), "too large"),
        ("garbage", "not-a-jwt".to_owned(), "malformed"),
        (
            "unknown kid",
            signer.sign_as("nope", &claims("u")),
            "unknown",
        ),
    ];
    for (case, token, detail) in cases {
        let r = call(&layer, &[("authorization", &bearer(&token))]).await;
        assert_refused(
            &r,
            401,
            PROBLEM_INVALID_TOKEN,
            "Bearer error=\"invalid_token\"",
        );
        let problem = r.problem();
        assert!(
            problem.detail().unwrap_or_default().contains(detail),
            "{case}: {:?}",
            problem.detail()
        );
        let www = r.header("www-authenticate").unwrap();
        assert!(www.contains("error_description=\""), "{case}: {www}");
    }
}

#[tokio::test]
async fn api_keys_by_header_or_recognized_bearer() {
    let layer = AuthLayer::builder()
        .jwt(verifier())
        .api_keys(TestKeys)
        .build()
        .unwrap();
    let r = call(&layer, &[("x-api-key", "eek_good")]).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "client:acme|api_key"));
    let r = call(&layer, &[("authorization", "Bearer eek_good")]).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "client:acme|api_key"));
    let r = call(&layer, &[("x-api-key", "eek_bad")]).await;
    assert_refused(
        &r,
        401,
        PROBLEM_INVALID_TOKEN,
        "Bearer error=\"invalid_token\"",
    );
    let r = call(&layer, &[("authorization", "Bearer eek_down")]).await;
    assert_eq!(r.status.as_u16(), 503);
    assert_eq!(r.problem().type_uri(), PROBLEM_UNAVAILABLE);
    assert!(r.header("retry-after").is_some());
    // A JWT still goes to the JWT verifier.
    let token = rsa().sign(&claims("user:anne"));
    let r = call(&layer, &[("authorization", &bearer(&token))]).await;
    assert_eq!(r.text(), "user:anne|jwt");
    // Both credentials at once are a malformed request.
    let r = call(
        &layer,
        &[
            ("authorization", &bearer(&token)),
            ("x-api-key", "eek_good"),
        ],
    )
    .await;
    assert_refused(
        &r,
        400,
        PROBLEM_INVALID_REQUEST,
        "Bearer error=\"invalid_request\"",
    );
    // Without an API key verifier, an API key is refused.
    let jwt_only = AuthLayer::builder().jwt(verifier()).build().unwrap();
    let r = call(&jwt_only, &[("x-api-key", "eek_good")]).await;
    assert_refused(
        &r,
        401,
        PROBLEM_INVALID_TOKEN,
        "Bearer error=\"invalid_token\"",
    );
    // API keys alone.
    let keys_only = AuthLayer::builder().api_keys(TestKeys).build().unwrap();
    let r = call(&keys_only, &[("authorization", "Bearer eek_good")]).await;
    assert_eq!(r.status.as_u16(), 200);
    assert!(AuthLayer::builder().build().is_err());
}

#[tokio::test]
async fn anonymous_mode_passes_missing_credentials_only() {
    let layer = AuthLayer::builder()
        .jwt(verifier())
        .allow_anonymous()
        .build()
        .unwrap();
    let r = call(&layer, &[]).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "anonymous"));
    let r = call(&layer, &[("authorization", "Bearer garbage")]).await;
    assert_refused(
        &r,
        401,
        PROBLEM_INVALID_TOKEN,
        "Bearer error=\"invalid_token\"",
    );
    let token = rsa().sign(&claims("user:anne"));
    let r = call(&layer, &[("authorization", &bearer(&token))]).await;
    assert_eq!(r.text(), "user:anne|jwt");
}

#[test]
fn every_attempt_is_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        AuthLayer::builder()
            .jwt(verifier())
            .api_keys(TestKeys)
            .build()
            .unwrap()
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let token = rsa().sign(&claims("u"));
        let mut service_claims = claims("service:order");
        service_claims["token_use"] = json!("service");
        let service = rsa().sign(&service_claims);
        for auth in [&token, &token, &service, &"garbage".to_owned()] {
            call(&layer, &[("authorization", &bearer(auth))]).await;
        }
        call(&layer, &[]).await;
        call(&layer, &[("x-api-key", "eek_good")]).await;
        call(&layer, &[("x-api-key", "eek_bad")]).await;
        call(
            &layer,
            &[(
                "authorization",
                &bearer(&rsa().sign(&json!({"iss": ISS, "aud": AUD, "sub": "u", "exp": 1}))),
            )],
        )
        .await;
    });
    let counters = ee_testing::counters(&snapshotter);
    let get = |m: &str, o: &str| {
        counters
            .get(&format!(
                "ee_auth_authentications_total{{method={m},outcome={o}}}"
            ))
            .unwrap_or_else(|| panic!("{m} {o} not registered"))
    };
    assert_eq!(get("jwt", "ok"), 1);
    assert_eq!(get("jwt", "cached"), 1);
    assert_eq!(get("service_token", "ok"), 1);
    assert_eq!(get("jwt", "invalid"), 1);
    assert_eq!(get("jwt", "expired"), 1);
    assert_eq!(get("none", "missing"), 1);
    assert_eq!(get("api_key", "ok"), 1);
    assert_eq!(get("api_key", "invalid"), 1);
    assert_eq!(get("api_key", "unavailable"), 0);
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    email: String,
}

fn router(layer: Option<AuthLayer>) -> axum::Router {
    use axum::routing::get;
    let router = axum::Router::new()
        .route("/me", get(|id: Identity| async move { id.id().to_owned() }))
        .route(
            "/claims",
            get(|Authenticated(c): Authenticated<Claims>| async move {
                format!("{} {}", c.sub, c.email)
            }),
        )
        .route(
            "/maybe",
            get(|id: Option<Identity>| async move {
                id.map_or("nobody".to_owned(), |id| id.id().to_owned())
            }),
        )
        .route(
            "/maybe-claims",
            get(|c: Option<Authenticated<Claims>>| async move {
                c.map_or("nobody".to_owned(), |c| c.email.clone())
            }),
        )
        .route(
            "/write",
            get(|id: Identity| async move {
                id.require_scope("orders:write")?;
                Ok::<_, ee_core::Problem>("written")
            }),
        );
    match layer {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

async fn get(router: &axum::Router, path: &str, auth: Option<&str>) -> TestResponse {
    let mut req = Request::builder().uri(path);
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    send(router.clone(), req.body(axum::body::Body::empty()).unwrap()).await
}

#[tokio::test]
async fn extractors_read_the_identity() {
    let layer = AuthLayer::builder()
        .jwt(verifier())
        .api_keys(TestKeys)
        .allow_anonymous()
        .build()
        .unwrap();
    let app = router(Some(layer));
    let mut c = claims("user:anne");
    c["email"] = json!("anne@example.com");
    c["scope"] = json!("orders:read");
    let anne = bearer(&rsa().sign(&c));
    let plain = bearer(&rsa().sign(&claims("user:bob")));
    let ok = |r: TestResponse| (r.status.as_u16(), r.text().to_owned());
    assert_eq!(
        ok(get(&app, "/me", Some(&anne)).await),
        (200, "user:anne".into())
    );
    assert_eq!(
        ok(get(&app, "/claims", Some(&anne)).await),
        (200, "user:anne anne@example.com".into())
    );
    assert_eq!(ok(get(&app, "/maybe", None).await), (200, "nobody".into()));
    assert_eq!(
        ok(get(&app, "/maybe", Some(&anne)).await),
        (200, "user:anne".into())
    );
    assert_eq!(
        ok(get(&app, "/maybe-claims", None).await),
        (200, "nobody".into())
    );
    assert_eq!(
        ok(get(&app, "/maybe-claims", Some(&anne)).await),
        (200, "anne@example.com".into())
    );
    // Anonymous at a route that needs an identity: 401.
    let r = get(&app, "/me", None).await;
    assert_refused(&r, 401, PROBLEM_UNAUTHENTICATED, "Bearer");
    let r = get(&app, "/claims", None).await;
    assert_refused(&r, 401, PROBLEM_UNAUTHENTICATED, "Bearer");
    // Claims that do not fit: 401 invalid_token (an API key has no claims).
    for auth in [plain.as_str(), "Bearer eek_good"] {
        let r = get(&app, "/claims", Some(auth)).await;
        assert_refused(
            &r,
            401,
            PROBLEM_INVALID_TOKEN,
            "Bearer error=\"invalid_token\"",
        );
        let r = get(&app, "/maybe-claims", Some(auth)).await;
        assert_eq!(r.status.as_u16(), 401);
    }
    // A missing scope: 403 with an insufficient_scope challenge.
    let r = get(&app, "/write", Some(&anne)).await;
    assert_refused(
        &r,
        403,
        PROBLEM_INSUFFICIENT_SCOPE,
        "Bearer error=\"insufficient_scope\", scope=\"orders:write\"",
    );
}

#[tokio::test]
async fn extractors_without_the_layer_are_a_server_error() {
    let app = router(None);
    let token = bearer(&rsa().sign(&claims("user:anne")));
    for path in ["/me", "/claims", "/maybe", "/maybe-claims"] {
        let r = get(&app, path, Some(&token)).await;
        assert_eq!(r.status.as_u16(), 500, "{path}");
        assert!(
            r.problem().detail().unwrap().contains("no AuthLayer"),
            "{path}"
        );
    }
}
