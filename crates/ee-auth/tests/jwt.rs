//! `JwtVerifier` with static keys: algorithms and their confusion attacks,
//! claims, time, revocation, limits, the cache, and bad input.

mod jwt_support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ee_auth::{
    Algorithm, AuthError, JwtConfig, JwtVerifier, JwtVerifierBuilder, Method, RevocationCheck,
    VerifyingKey,
};
use ee_core::Secret;
use ee_testing::ManualClock;
use jsonwebtoken::{EncodingKey, Header};
use jwt_support::{AUD, ISS, RSA_PUBLIC, Signer, b64, claims, now};
use proptest::prelude::*;
use serde_json::{Value, json};

fn builder() -> JwtVerifierBuilder {
    JwtVerifier::builder().issuer(ISS).audience(AUD)
}

fn verifier_for(signers: &[&Signer]) -> JwtVerifier {
    builder()
        .keys(signers.iter().map(|s| s.verifying_key()))
        .build()
        .unwrap()
}

fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn refusal(verifier: &JwtVerifier, token: &str) -> String {
    match block(verifier.verify(token)) {
        Ok(id) => panic!("accepted {id:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_asymmetric_algorithm_verifies() {
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let signer = Signer::new("k", alg);
        let verifier = verifier_for(&[&signer]);
        let id = block(verifier.verify(&signer.sign(&claims("user:anne"))))
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(id.id(), "user:anne", "{alg:?}");
        assert_eq!(id.method(), Method::Jwt);
    }
}

#[test]
fn pem_keys_verify_with_their_algorithm() {
    let rs = Signer::new("rsa", Algorithm::RS256);
    let verifier = builder()
        .key(
            VerifyingKey::from_pem(Algorithm::RS256, RSA_PUBLIC)
                .unwrap()
                .with_kid("rsa"),
        )
        .build()
        .unwrap();
    assert!(block(verifier.verify(&rs.sign(&claims("u")))).is_ok());
    // The same RSA key signing PS256: the key is for RS256 only.
    let ps = Signer::new("rsa", Algorithm::PS256);
    assert!(refusal(&verifier, &ps.sign(&claims("u"))).contains("does not match its key"));
    // A PEM key for a family it is not.
    assert!(VerifyingKey::from_pem(Algorithm::ES256, RSA_PUBLIC).is_err());
    assert!(VerifyingKey::from_pem(Algorithm::HS256, RSA_PUBLIC).is_err());
}

#[test]
fn alg_none_is_refused() {
    let signer = Signer::new("k", Algorithm::ES256);
    let verifier = verifier_for(&[&signer]);
    let header = b64(&json!({ "alg": "none", "kid": "k" }));
    let body = b64(&claims("user:mallory"));
    for token in [
        format!("{header}.{body}."),
        format!("{header}.{body}.AAAA"),
        format!("{}.{body}.AAAA", b64(&json!({ "alg": "None", "kid": "k" }))),
    ] {
        let why = refusal(&verifier, &token);
        assert!(
            why.contains("malformed") || why.contains("not accepted"),
            "{why}"
        );
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic RS/HS confusion: the attacker signs HS256 with the bytes
    // of the (public) RSA key, hoping the verifier uses them as a secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims("user:mallory"),
        &EncodingKey::from_secret(RSA_PUBLIC).unwrap(),
    )
    .unwrap();
    let rsa_key = || {
        VerifyingKey::from_pem(Algorithm::RS256, RSA_PUBLIC)
            .unwrap()
            .with_kid("rsa")
    };
    let strict = builder().key(rsa_key()).build().unwrap();
    assert!(refusal(&strict, &forged).contains("algorithm is not accepted"));
    // Even with HMAC allowed, the RSA key verifies RS256 only.
    let lenient = builder().allow_hmac().key(rsa_key()).build().unwrap();
    assert!(refusal(&lenient, &forged).contains("does not match its key"));
}

#[test]
fn hmac_needs_an_explicit_opt_in() {
    let secret = Secret::new(vec![7u8; 32]);
    let key = VerifyingKey::hmac(Algorithm::HS256, &secret)
        .unwrap()
        .with_kid("k");
    let err = builder().key(key.clone()).build().unwrap_err().to_string();
    assert!(err.contains("allow_hmac"), "{err}");
    let err = builder()
        .algorithms([Algorithm::HS256])
        .key(key.clone())
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("allow_hmac"), "{err}");
    let verifier = builder().allow_hmac().key(key).build().unwrap();
    let signer = Signer::new("k", Algorithm::HS256);
    assert!(block(verifier.verify(&signer.sign(&claims("u")))).is_ok());
    // Short secrets and non-HMAC algorithms are refused; the secret never shows.
    assert!(VerifyingKey::hmac(Algorithm::HS256, &Secret::new(vec![1; 8])).is_err());
    assert!(VerifyingKey::hmac(Algorithm::RS256, &secret).is_err());
    assert!(!format!("{:?}", VerifyingKey::hmac(Algorithm::HS256, &secret)).contains("7, 7"));
}

#[test]
fn an_algorithm_off_the_allowlist_is_refused() {
    let es = Signer::new("k", Algorithm::ES256);
    let err = builder()
        .algorithms([Algorithm::EdDSA])
        .key(es.verifying_key())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("not an accepted algorithm"));
    let ed = Signer::new("e", Algorithm::EdDSA);
    let verifier = builder()
        .algorithms([Algorithm::EdDSA])
        .key(ed.verifying_key())
        .build()
        .unwrap();
    // A token asking for ES256 is refused before any key lookup.
    assert!(refusal(&verifier, &es.sign(&claims("u"))).contains("algorithm is not accepted"));
}

#[test]
fn jwk_algorithms_are_declared_or_inferred_and_checked() {
    let rsa = Signer::new("r", Algorithm::RS256).jwk();
    let mut no_alg = rsa.clone();
    no_alg.as_object_mut().unwrap().remove("alg");
    let mut ps = rsa.clone();
    ps["alg"] = json!("PS384");
    let mut enc = rsa.clone();
    enc["use"] = json!("enc");
    let set = json!({ "keys": [no_alg, ps, enc] }).to_string();
    let keys = VerifyingKey::from_jwk_set(&set).unwrap();
    let algs: Vec<_> = keys.iter().map(|k| k.algorithm()).collect();
    assert_eq!(algs, [Algorithm::RS256, Algorithm::PS384]);
    // An EC key whose `alg` contradicts its curve, an RSA key claiming ES256.
    let mut es = Signer::new("e", Algorithm::ES256).jwk();
    es["alg"] = json!("ES384");
    assert!(VerifyingKey::from_jwk_set(&json!({ "keys": [es] }).to_string()).is_err());
    let mut wrong = rsa.clone();
    wrong["alg"] = json!("ES256");
    assert!(VerifyingKey::from_jwk_set(&json!({ "keys": [wrong] }).to_string()).is_err());
    assert!(VerifyingKey::from_jwk_set("{\"keys\": 1}").is_err());
}

#[test]
fn issuers_and_audiences_one_of_several() {
    let signer = Signer::new("k", Algorithm::EdDSA);
    let verifier = JwtVerifier::builder()
        .issuer("https://a")
        .issuer("https://b")
        .audience("x")
        .audience("y")
        .key(signer.verifying_key())
        .build()
        .unwrap();
    let token = |iss: &str, aud: Value| {
        signer.sign(&json!({ "iss": iss, "aud": aud, "sub": "u", "exp": now() + 60 }))
    };
    assert!(block(verifier.verify(&token("https://b", json!("y")))).is_ok());
    assert!(block(verifier.verify(&token("https://a", json!(["z", "x"])))).is_ok());
    assert!(refusal(&verifier, &token("https://c", json!("x"))).contains("issuer"));
    assert!(refusal(&verifier, &token("https://a", json!("z"))).contains("audience"));
    assert!(refusal(&verifier, &token("https://a", json!([]))).contains("audience"));
    // Without iss, aud, sub or exp.
    for missing in ["iss", "aud", "sub", "exp"] {
        let mut c = json!({ "iss": "https://a", "aud": "x", "sub": "u", "exp": now() + 60 });
        c.as_object_mut().unwrap().remove(missing);
        let why = refusal(&verifier, &signer.sign(&c));
        assert!(!why.is_empty(), "{missing}");
    }
    // A verifier without issuer or audience does not build.
    assert!(
        JwtVerifier::builder()
            .audience("x")
            .key(signer.verifying_key())
            .build()
            .is_err()
    );
    assert!(
        JwtVerifier::builder()
            .issuer("x")
            .key(signer.verifying_key())
            .build()
            .is_err()
    );
    assert!(
        JwtVerifier::builder()
            .issuer("x")
            .audience("y")
            .build()
            .is_err()
    );
}

#[test]
fn exp_and_nbf_with_leeway_against_the_clock() {
    let signer = Signer::new("k", Algorithm::EdDSA);
    let clock = ManualClock::new();
    let verifier = builder()
        .key(signer.verifying_key())
        .leeway(Duration::from_secs(30))
        .cache_capacity(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    let t0 = clock_secs(&clock);
    let token =
        signer.sign(&json!({ "iss": ISS, "aud": AUD, "sub": "u", "exp": t0 + 60, "nbf": t0 + 40 }));
    // Not valid yet: 40 s ahead is beyond the 30 s leeway…
    assert!(refusal(&verifier, &token).contains("not valid yet"));
    // …15 s later it is within it.
    clock.advance(Duration::from_secs(15));
    assert!(block(verifier.verify(&token)).is_ok());
    // Expired 30 s after exp is still accepted; a second later it is not.
    clock.advance(Duration::from_secs(60 - 15 + 30));
    assert!(block(verifier.verify(&token)).is_ok());
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        block(verifier.verify(&token)),
        Err(AuthError::Expired)
    ));
}

fn clock_secs(clock: &ManualClock) -> u64 {
    ee_core::Clock::unix_ms(clock) / 1000
}

#[test]
fn a_cached_token_still_expires_with_the_clock() {
    let signer = Signer::new("k", Algorithm::ES256);
    let clock = ManualClock::new();
    let verifier = builder()
        .key(signer.verifying_key())
        .leeway(Duration::ZERO)
        .clock(clock.clone())
        .build()
        .unwrap();
    let t0 = clock_secs(&clock);
    let token = signer.sign(&json!({ "iss": ISS, "aud": AUD, "sub": "u", "exp": t0 + 10 }));
    assert!(block(verifier.verify(&token)).is_ok());
    assert_eq!(verifier.cached_tokens(), 1);
    clock.advance(Duration::from_secs(11));
    assert!(matches!(
        block(verifier.verify(&token)),
        Err(AuthError::Expired)
    ));
    assert_eq!(verifier.cached_tokens(), 0, "the expired entry is dropped");
}

#[test]
fn claims_map_to_the_identity() {
    let signer = Signer::new("k", Algorithm::EdDSA);
    let verifier = builder()
        .key(signer.verifying_key())
        .roles_claim("realm_access.roles")
        .tenant_claim("org")
        .build()
        .unwrap();
    let mut c = claims("user:anne");
    c["realm_access"] = json!({ "roles": ["admin", "clerk"] });
    c["org"] = json!("acme");
    c["scope"] = json!("orders:read orders:write");
    c["jti"] = json!("t-1");
    c["email"] = json!("anne@example.com");
    let id = block(verifier.verify(&signer.sign(&c))).unwrap();
    assert_eq!(id.roles().collect::<Vec<_>>(), ["admin", "clerk"]);
    assert_eq!(id.tenant(), Some("acme"));
    assert_eq!(
        id.scopes().collect::<Vec<_>>(),
        ["orders:read", "orders:write"]
    );
    assert_eq!(id.token_id(), Some("t-1"));
    assert_eq!(id.expires_at(), c["exp"].as_u64());
    assert_eq!(id.claims()["email"], "anne@example.com");
    assert_eq!(id.subject().0.as_ref(), "user:anne");
    // `scp` as an array.
    let mut c = claims("user:bob");
    c["scp"] = json!(["a", "b"]);
    let id = block(verifier.verify(&signer.sign(&c))).unwrap();
    assert_eq!(id.scopes().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn service_tokens_need_both_the_subject_and_token_use() {
    let signer = Signer::new("k", Algorithm::EdDSA);
    let verifier = verifier_for(&[&signer]);
    let mut c = claims("service:order");
    c["token_use"] = json!("service");
    let id = block(verifier.verify(&signer.sign(&c))).unwrap();
    assert_eq!(id.method(), Method::ServiceToken);
    assert_eq!(id.service_name(), Some("order"));
    // A user token whose subject merely looks like a service.
    let id = block(verifier.verify(&signer.sign(&claims("service:order")))).unwrap();
    assert_eq!(id.method(), Method::Jwt);
    let mut c = claims("user:anne");
    c["token_use"] = json!("service");
    let id = block(verifier.verify(&signer.sign(&c))).unwrap();
    assert_eq!(id.method(), Method::Jwt);
}

#[test]
fn required_claims() {
    let signer = Signer::new("k", Algorithm::EdDSA);
    let config: JwtConfig = serde_json::from_value(json!({
        "issuers": [ISS], "audiences": [AUD], "required_claims": ["email"]
    }))
    .unwrap();
    let verifier = JwtVerifier::builder()
        .config(&config)
        .unwrap()
        .key(signer.verifying_key())
        .build()
        .unwrap();
    assert!(refusal(&verifier, &signer.sign(&claims("u"))).contains("`email`"));
    let mut c = claims("u");
    c["email"] = json!("u@example.com");
    assert!(block(verifier.verify(&signer.sign(&c))).is_ok());
}

#[derive(Default)]
struct Revoked(Mutex<HashSet<String>>);

impl RevocationCheck for Revoked {
    fn is_revoked(&self, jti: &str) -> bool {
        self.0.lock().unwrap().contains(jti)
    }
}

#[test]
fn revoked_tokens_are_refused_on_cache_hits_too() {
    let signer = Signer::new("k", Algorithm::ES256);
    let revoked = Arc::new(Revoked::default());
    let verifier = builder()
        .key(signer.verifying_key())
        .revocations(revoked.clone())
        .build()
        .unwrap();
    let mut c = claims("u");
    c["jti"] = json!("jti-1");
    let token = signer.sign(&c);
    assert!(block(verifier.verify(&token)).is_ok());
    assert_eq!(verifier.cached_tokens(), 1);
    revoked.0.lock().unwrap().insert("jti-1".into());
    assert_eq!(
        refusal(&verifier, &token),
        "invalid token: the token was revoked"
    );
    // A fresh token with a revoked jti: refused on first sight.
    c["iat"] = json!(1);
    assert!(refusal(&verifier, &signer.sign(&c)).contains("revoked"));
}

#[test]
fn oversized_truncated_and_tampered_tokens() {
    let signer = Signer::new("k", Algorithm::RS256);
    let verifier = builder()
        .key(signer.verifying_key())
        .max_token_bytes(2048)
        .build()
        .unwrap();
    let token = signer.sign(&claims("u"));
    let mut big = claims("u");
    big["pad"] = json!("x".repeat(4096));
    assert!(refusal(&verifier, &signer.sign(&big)).contains("too large"));
    for cut in [1, 10, token.len() / 2, token.len() - 1] {
        assert!(
            block(verifier.verify(&token[..cut])).is_err(),
            "cut at {cut}"
        );
    }
    // A changed payload keeps the signature: refused, though the genuine
    // token (same signature) is in the cache.
    assert!(block(verifier.verify(&token)).is_ok());
    let (head, rest) = token.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let forged = format!("{head}.{}.{sig}", b64(&claims("user:admin")));
    assert!(refusal(&verifier, &forged).contains("signature is invalid"));
    // An unknown kid, with static keys only.
    assert!(refusal(&verifier, &signer.sign_as("other", &claims("u"))).contains("unknown"));
    // Extensions we do not support.
    let crit = format!(
        "{}.{}.{sig}",
        b64(&json!({"alg": "RS256", "kid": "k", "crit": ["b64"], "b64": false})),
        b64(&claims("u"))
    );
    assert!(refusal(&verifier, &crit).contains("unsupported extension"));
}

#[test]
fn a_token_without_kid_takes_the_only_key_of_its_algorithm() {
    let a = Signer::new("a", Algorithm::EdDSA);
    let b = Signer::new("b", Algorithm::EdDSA);
    let token = a.sign_without_kid(&claims("u"));
    assert!(block(verifier_for(&[&a]).verify(&token)).is_ok());
    let two = verifier_for(&[&a, &b]);
    assert!(refusal(&two, &token).contains("no single key"));
}

#[test]
fn the_cache_is_bounded_under_a_flood() {
    let signer = Signer::new("k", Algorithm::EdDSA);
    let verifier = builder()
        .key(signer.verifying_key())
        .cache_capacity(50)
        .build()
        .unwrap();
    for i in 0..400 {
        assert!(block(verifier.verify(&signer.sign(&claims(&format!("user:{i}"))))).is_ok());
    }
    let held = verifier.cached_tokens();
    assert!(held <= 50, "{held} entries held with a capacity of 50");
    let off = builder()
        .key(signer.verifying_key())
        .cache_capacity(0)
        .build()
        .unwrap();
    let token = signer.sign(&claims("u"));
    assert!(block(off.verify(&token)).is_ok() && block(off.verify(&token)).is_ok());
    assert_eq!(off.cached_tokens(), 0);
}

#[test]
fn config_is_strict_and_validated() {
    assert!(serde_json::from_value::<JwtConfig>(json!({ "issuer": "x" })).is_err());
    let bad_claim: JwtConfig = serde_json::from_value(
        json!({ "issuers": ["i"], "audiences": ["a"], "roles_claim": "a..b" }),
    )
    .unwrap();
    assert!(JwtVerifier::builder().config(&bad_claim).is_err());
    let url: JwtConfig = serde_json::from_value(
        json!({ "issuers": ["i"], "audiences": ["a"], "jwks_url": "http://127.0.0.1:1/jwks" }),
    )
    .unwrap();
    let err = JwtVerifier::builder()
        .config(&url)
        .unwrap()
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("build_async"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any input is refused with InvalidToken, never a panic.
    #[test]
    fn garbage_never_panics(input in "[A-Za-z0-9_.=+/ -]{0,600}") {
        let verifier = GARBAGE_VERIFIER.with(|v| v.clone());
        let result = block(verifier.verify(&input));
        prop_assert!(matches!(result, Err(AuthError::InvalidToken(_))), "{:?}", result);
    }

    /// Three base64url segments of random bytes: refused, never a panic.
    #[test]
    fn random_segments_never_panic(
        h in proptest::collection::vec(any::<u8>(), 0..64),
        p in proptest::collection::vec(any::<u8>(), 0..64),
        s in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!("{}.{}.{}", e.encode(h), e.encode(p), e.encode(s));
        let verifier = GARBAGE_VERIFIER.with(|v| v.clone());
        prop_assert!(block(verifier.verify(&token)).is_err());
    }
}

thread_local! {
    static GARBAGE_VERIFIER: JwtVerifier = verifier_for(&[&Signer::new("k", Algorithm::ES256)]);
}
