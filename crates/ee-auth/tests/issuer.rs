//! Issuing: passwords, signing keys and the JWKS, access and service tokens,
//! the `RequireServiceLayer`, configuration.

use std::convert::Infallible;
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine;
use bytes::Bytes;
use ee_auth::{
    AuthError, Grant, Identity, IssuerConfig, KeyConfig, KeyStatus, Method, PROBLEM_FORBIDDEN,
    PROBLEM_UNAUTHENTICATED, PasswordConfig, Passwords, RequireServiceLayer, ServiceTokens,
    SigningAlgorithm, SigningKey, SigningKeys, TokenIssuer,
};
use ee_core::Secret;
use ee_testing::ManualClock;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tower::Layer;

fn secret(s: &str) -> Secret<String> {
    Secret::new(s.to_owned())
}

/// Small parameters: the tests exercise the logic, not the cost.
fn fast(m_cost_kib: u32) -> PasswordConfig {
    let mut cfg = PasswordConfig::default();
    cfg.m_cost_kib = m_cost_kib;
    cfg.t_cost = 1;
    cfg
}

// ---------------------------------------------------------------- passwords

#[tokio::test]
async fn hash_then_verify_and_reject_a_wrong_password() {
    let passwords = Passwords::new().config(&fast(64)).unwrap();
    let phc = passwords.hash(&secret("correct horse")).await.unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
    assert!(!phc.contains("correct horse"));
    let check = passwords
        .verify(&secret("correct horse"), &phc)
        .await
        .unwrap();
    assert!(!check.needs_rehash);
    assert!(matches!(
        passwords.verify(&secret("correct hors"), &phc).await,
        Err(AuthError::InvalidCredentials)
    ));
    // Two hashes of one password differ (random salt) and both verify.
    let other = passwords.hash(&secret("correct horse")).await.unwrap();
    assert_ne!(phc, other);
    passwords
        .verify(&secret("correct horse"), &other)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_default_parameters_are_owasps() {
    let passwords = Passwords::new();
    let phc = passwords.hash(&secret("pw")).await.unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert!(
        !passwords
            .verify(&secret("pw"), &phc)
            .await
            .unwrap()
            .needs_rehash
    );
}

#[tokio::test]
async fn a_parameter_change_asks_for_a_rehash() {
    let old = Passwords::new().config(&fast(64)).unwrap();
    let phc = old.hash(&secret("pw")).await.unwrap();
    let new = Passwords::new().config(&fast(128)).unwrap();
    let check = new.verify(&secret("pw"), &phc).await.unwrap();
    assert!(check.needs_rehash, "m_cost changed");
    let rehashed = new.hash(&secret("pw")).await.unwrap();
    assert!(
        !new.verify(&secret("pw"), &rehashed)
            .await
            .unwrap()
            .needs_rehash
    );

    // Another Argon2 variant verifies, and asks for a rehash too.
    use argon2::password_hash::{PasswordHasher, SaltString};
    let argon2i = argon2::Argon2::new(
        argon2::Algorithm::Argon2i,
        argon2::Version::V0x13,
        argon2::Params::new(128, 1, 1, None).unwrap(),
    );
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let phc_i = argon2i.hash_password(b"pw", &salt).unwrap().to_string();
    assert!(
        new.verify(&secret("pw"), &phc_i)
            .await
            .unwrap()
            .needs_rehash
    );
}

#[tokio::test]
async fn too_long_passwords_are_refused_before_hashing() {
    let mut cfg = fast(64);
    cfg.max_password_bytes = 16;
    let passwords = Passwords::new().config(&cfg).unwrap();
    let long = secret(&"x".repeat(17));
    assert!(matches!(
        passwords.hash(&long).await,
        Err(AuthError::InvalidRequest(_))
    ));
    let phc = passwords.hash(&secret(&"x".repeat(16))).await.unwrap();
    assert!(matches!(
        passwords.verify(&long, &phc).await,
        Err(AuthError::InvalidCredentials)
    ));
    // The default bound is 1024 bytes.
    let default = Passwords::new();
    assert!(default.hash(&secret(&"x".repeat(1025))).await.is_err());
}

#[tokio::test]
async fn unknown_users_fail_like_wrong_passwords_and_bad_hashes_are_errors() {
    let passwords = Passwords::new().config(&fast(64)).unwrap();
    assert!(matches!(
        passwords.verify_unknown_user(&secret("anything")).await,
        AuthError::InvalidCredentials
    ));
    assert!(matches!(
        passwords.verify(&secret("pw"), "not a hash").await,
        Err(AuthError::Config(_))
    ));
    assert!(matches!(
        passwords
            .verify(
                &secret("pw"),
                "$2b$12$abcdefghijklmnopqrstuuSNPRKs4aMsCmRRHtYkuKyfGVd9qvqW"
            )
            .await,
        Err(AuthError::Config(_))
    ));
    // Secrets stay out of Debug.
    assert_eq!(format!("{:?}", secret("hunter2")), "[redacted]");
    assert!(!format!("{passwords:?}").contains("argon2id$"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hashing_is_bounded_and_all_complete() {
    let mut cfg = fast(64);
    cfg.max_concurrent_hashes = 1;
    let passwords = Passwords::new().config(&cfg).unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let passwords = passwords.clone();
            tokio::spawn(async move {
                let pw = secret(&format!("pw{i}"));
                let phc = passwords.hash(&pw).await.unwrap();
                passwords.verify(&pw, &phc).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut zero = PasswordConfig::default();
    zero.t_cost = 0;
    assert!(Passwords::new().config(&zero).is_err());
}

// ------------------------------------------------------------ keys and JWKS

fn issuer_with(keys: SigningKeys) -> TokenIssuer {
    TokenIssuer::builder()
        .issuer("https://auth.example.com")
        .audience("api")
        .keys(keys)
        .build()
        .unwrap()
}

/// Verifies `token` the way any relying party would: `kid` → JWK → decode.
fn verify(token: &str, jwks: &Value, audience: &str) -> Result<Value, jsonwebtoken::errors::Error> {
    let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.expect("tokens name their key");
    let jwk = set
        .find(&kid)
        .ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&["https://auth.example.com"]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
    Ok(jsonwebtoken::decode::<Value>(token, &key, &validation)?.claims)
}

#[test]
fn access_tokens_verify_with_plain_jsonwebtoken_for_every_algorithm() {
    for (alg, jose) in [
        (SigningAlgorithm::EdDSA, Algorithm::EdDSA),
        (SigningAlgorithm::ES256, Algorithm::ES256),
        (SigningAlgorithm::RS256, Algorithm::RS256),
    ] {
        let issuer = issuer_with(SigningKeys::generate(alg).unwrap());
        let grant = Grant::new("user:42")
            .with_roles(["admin", "user"])
            .with_scopes(["orders:read", "orders:write"])
            .with_tenant("acme")
            .with_claim("email", "anne@example.com");
        let issued = issuer.issue_access(&grant).unwrap();
        let token = issued.token.expose();
        assert_eq!(jsonwebtoken::decode_header(token).unwrap().alg, jose);
        let claims = verify(token, &issuer.jwks(), "api").unwrap();
        assert_eq!(claims["iss"], "https://auth.example.com");
        assert_eq!(claims["sub"], "user:42");
        assert_eq!(claims["aud"], "api");
        assert_eq!(claims["roles"], serde_json::json!(["admin", "user"]));
        assert_eq!(claims["scope"], "orders:read orders:write");
        assert_eq!(claims["tenant"], "acme");
        assert_eq!(claims["email"], "anne@example.com");
        assert_eq!(claims["token_use"], "access");
        assert_eq!(claims["jti"], issued.jti.as_str());
        assert_eq!(claims["exp"], issued.expires_at);
        assert_eq!(claims["iat"], issued.issued_at);
        assert_eq!(claims["nbf"], issued.issued_at);
        assert_eq!(
            issued.expires_at - issued.issued_at,
            900,
            "15 minutes by default"
        );
        // Another audience does not accept it.
        assert!(verify(token, &issuer.jwks(), "billing").is_err());
    }
}

#[test]
fn jwks_lists_public_keys_only_with_kid_alg_and_use() {
    let keys = SigningKeys::new([
        SigningKey::generate("a", SigningAlgorithm::EdDSA).unwrap(),
        SigningKey::generate("b", SigningAlgorithm::ES256)
            .unwrap()
            .with_status(KeyStatus::Next),
    ])
    .unwrap();
    let jwks = keys.jwks();
    let list = jwks["keys"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["kid"], "a");
    assert_eq!(list[0]["alg"], "EdDSA");
    assert_eq!(list[0]["kty"], "OKP");
    assert_eq!(list[0]["crv"], "Ed25519");
    assert_eq!(list[1]["kid"], "b");
    assert_eq!(list[1]["alg"], "ES256");
    assert_eq!(list[1]["crv"], "P-256");
    for jwk in list {
        assert_eq!(jwk["use"], "sig");
        assert!(jwk.get("d").is_none(), "no private part: {jwk}");
    }
    assert_eq!(
        serde_json::from_slice::<Value>(&keys.jwks_bytes()).unwrap(),
        *jwks
    );
    assert_eq!(keys.active().kid(), "a");
    // Debug names keys, never their material.
    let debug = format!("{keys:?}");
    assert!(debug.contains("\"a\"") && !debug.contains(list[0]["x"].as_str().unwrap()));
}

#[test]
fn key_sets_need_exactly_one_active_key_and_unique_kids() {
    let key = |kid: &str, status| {
        SigningKey::generate(kid, SigningAlgorithm::EdDSA)
            .unwrap()
            .with_status(status)
    };
    assert!(SigningKeys::new([key("a", KeyStatus::Next)]).is_err());
    assert!(SigningKeys::new([key("a", KeyStatus::Active), key("b", KeyStatus::Active)]).is_err());
    assert!(SigningKeys::new([key("a", KeyStatus::Active), key("a", KeyStatus::Next)]).is_err());
    assert!(SigningKey::generate("", SigningAlgorithm::EdDSA).is_err());
}

#[test]
fn rotation_by_configuration_keeps_old_tokens_verifying() {
    let key_a = || pem_key("a", SigningAlgorithm::EdDSA);
    let (pem_a, key_b) = (key_a(), pem_key("b", SigningAlgorithm::EdDSA));
    // Step 0: A signs.
    let issuer = issuer_with(SigningKeys::from_config(std::slice::from_ref(&pem_a)).unwrap());
    let before = issuer.issue_access(&Grant::new("u")).unwrap();
    // Step 1: B is published as `next`; A still signs.
    issuer.set_keys(
        SigningKeys::from_config(&[pem_a.clone(), key_b.clone().with_status(KeyStatus::Next)])
            .unwrap(),
    );
    let during = issuer.issue_access(&Grant::new("u")).unwrap();
    assert_eq!(kid(&during.token), "a");
    let jwks = issuer.jwks();
    assert!(verify(before.token.expose(), &jwks, "api").is_ok());
    // Step 2: B signs, A is retired but still published.
    issuer.set_keys(
        SigningKeys::from_config(&[pem_a.clone().with_status(KeyStatus::Retired), key_b.clone()])
            .unwrap(),
    );
    let after = issuer.issue_access(&Grant::new("u")).unwrap();
    assert_eq!(kid(&after.token), "b");
    let jwks = issuer.jwks();
    for token in [&before, &during, &after] {
        assert!(verify(token.token.expose(), &jwks, "api").is_ok());
    }
    // Step 3: A is removed; its tokens no longer verify.
    issuer.set_keys(SigningKeys::from_config(&[key_b]).unwrap());
    assert!(verify(before.token.expose(), &issuer.jwks(), "api").is_err());
    assert!(verify(after.token.expose(), &issuer.jwks(), "api").is_ok());
}

fn kid(token: &Secret<String>) -> String {
    jsonwebtoken::decode_header(token.expose())
        .unwrap()
        .kid
        .unwrap()
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A PKCS#8 PEM key in configuration, as an operator would write it.
fn pem_key(kid: &str, alg: SigningAlgorithm) -> KeyConfig {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let der = match alg {
        SigningAlgorithm::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap()
        }
        _ => Ed25519KeyPair::generate_pkcs8(&rng).unwrap(),
    };
    KeyConfig::pem(kid, alg, Secret::new(to_pem("PRIVATE KEY", der.as_ref())))
}

#[test]
fn keys_load_from_pem_inline_and_from_files() {
    let inline = pem_key("inline", SigningAlgorithm::ES256);
    let pem = inline.private_key_pem.clone().unwrap();
    let path = std::env::temp_dir().join(format!("ee-auth-key-{}.pem", std::process::id()));
    std::fs::write(&path, pem.expose()).unwrap();
    let from_file = KeyConfig::file("file", SigningAlgorithm::ES256, &path);
    let keys = SigningKeys::from_config(&[inline, from_file.with_status(KeyStatus::Next)]).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(keys.active().kid(), "inline");
    assert_eq!(
        keys.get("file").unwrap().public_jwk()["x"],
        keys.get("inline").unwrap().public_jwk()["x"],
        "the same key, read from the file"
    );
    // Errors name the key and never echo its material.
    let wrong_alg = KeyConfig::pem("x", SigningAlgorithm::EdDSA, pem.clone());
    let err = SigningKey::from_config(&wrong_alg).unwrap_err().to_string();
    assert!(
        err.contains("`x`") && !err.contains(&pem.expose()[30..60]),
        "{err}"
    );
    assert!(
        SigningKey::from_config(&KeyConfig::pem(
            "x",
            SigningAlgorithm::EdDSA,
            secret("junk")
        ))
        .is_err()
    );
    assert!(
        SigningKey::from_config(&KeyConfig::file(
            "x",
            SigningAlgorithm::EdDSA,
            "/nonexistent.pem"
        ))
        .is_err()
    );
    // A key config's Debug does not show the PEM.
    assert!(!format!("{wrong_alg:?}").contains("BEGIN"));
}

#[test]
fn grants_cannot_override_registered_claims() {
    let issuer = issuer_with(SigningKeys::generate(SigningAlgorithm::EdDSA).unwrap());
    for name in ["sub", "exp", "iss", "aud", "token_use", "roles"] {
        let grant = Grant::new("u").with_claim(name, "x");
        assert!(
            matches!(issuer.issue_access(&grant), Err(AuthError::Config(_))),
            "{name}"
        );
    }
    // Several audiences are sent as an array.
    let multi = TokenIssuer::builder()
        .issuer("https://auth.example.com")
        .audience("api")
        .audience("billing")
        .keys(SigningKeys::generate(SigningAlgorithm::EdDSA).unwrap())
        .build()
        .unwrap();
    let token = multi.issue_access(&Grant::new("u")).unwrap();
    let claims = verify(token.token.expose(), &multi.jwks(), "billing").unwrap();
    assert_eq!(claims["aud"], serde_json::json!(["api", "billing"]));
    assert!(claims.get("roles").is_none() && claims.get("scope").is_none());
}

#[test]
fn config_builds_an_issuer_and_refuses_unsafe_or_unknown_settings() {
    let toml_like = serde_json::json!({
        "issuer": "https://auth.example.com",
        "audiences": ["api"],
        "access_ttl_secs": 300,
        "ephemeral_key": true,
        "password": {"m_cost_kib": 64, "t_cost": 1},
        "refresh": {"idle_ttl_secs": 3600},
        "revocation": {"namespace": "tests"}
    });
    let cfg: IssuerConfig = serde_json::from_value(toml_like).unwrap();
    let issuer = TokenIssuer::builder()
        .config(&cfg)
        .unwrap()
        .build()
        .unwrap();
    let token = issuer.issue_access(&Grant::new("u")).unwrap();
    assert_eq!(token.expires_at - token.issued_at, 300);
    assert!(Passwords::new().config(&cfg.password).is_ok());

    assert!(serde_json::from_value::<IssuerConfig>(serde_json::json!({"isuer": "x"})).is_err());
    assert!(
        serde_json::from_value::<IssuerConfig>(
            serde_json::json!({"keys": [{"kid": "a", "pem": "x"}]})
        )
        .is_err()
    );
    // The default names no issuer, audience or key: it does not build.
    let default = IssuerConfig::default();
    let err = TokenIssuer::builder()
        .config(&default)
        .unwrap()
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("issuer"), "{err}");
    let mut no_keys = default.clone();
    no_keys.issuer = "i".into();
    no_keys.audiences = vec!["api".into()];
    let err = TokenIssuer::builder()
        .config(&no_keys)
        .unwrap()
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("keys"), "{err}");
}

// ------------------------------------------------------------ service tokens

#[test]
fn service_tokens_name_the_service_and_are_cached_for_80_percent_of_their_life() {
    let clock = ManualClock::new();
    let issuer = TokenIssuer::builder()
        .issuer("https://auth.example.com")
        .audience("api")
        .keys(SigningKeys::generate(SigningAlgorithm::EdDSA).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let tokens = ServiceTokens::new(issuer.clone(), "order").unwrap();
    let first = tokens.mint("payment").unwrap();
    let claims = verify(first.token().expose(), &issuer.jwks(), "payment").unwrap();
    assert_eq!(claims["sub"], "service:order");
    assert_eq!(claims["aud"], "payment");
    assert_eq!(claims["token_use"], "service");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );
    assert_eq!(first.expires_at(), claims["exp"].as_u64().unwrap());
    let header = first.header_value();
    assert!(header.is_sensitive());
    assert_eq!(
        header.to_str().unwrap(),
        format!("Bearer {}", first.token().expose())
    );

    clock.advance(Duration::from_secs(47));
    assert_eq!(
        tokens.mint("payment").unwrap().token().expose(),
        first.token().expose()
    );
    // Another audience gets its own token.
    let other = tokens.mint("stock").unwrap();
    assert_ne!(other.token().expose(), first.token().expose());
    clock.advance(Duration::from_secs(2)); // 49 s > 80 % of 60 s
    let renewed = tokens.mint("payment").unwrap();
    assert_ne!(renewed.token().expose(), first.token().expose());
    assert!(renewed.expires_at() > first.expires_at());
    assert!(!format!("{renewed:?}").contains(renewed.token().expose().as_ref()));

    assert!(ServiceTokens::new(issuer.clone(), "").is_err());
    assert!(ServiceTokens::new(issuer, "has space").is_err());
    assert!(tokens.mint("").is_err());
}

#[test]
fn the_service_token_cache_is_bounded() {
    let clock = ManualClock::new();
    let issuer = TokenIssuer::builder()
        .issuer("i")
        .audience("api")
        .keys(SigningKeys::generate(SigningAlgorithm::EdDSA).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let tokens = ServiceTokens::new(issuer, "order").unwrap();
    let first = tokens.mint("callee-0").unwrap();
    // Far more audiences than the cache holds: it never grows past its bound
    // (1024), and every mint still answers.
    for i in 1..3000 {
        tokens.mint(&format!("callee-{i}")).unwrap();
    }
    // The first audience's token was dropped when the cache filled.
    assert_ne!(
        tokens.mint("callee-0").unwrap().token().expose(),
        first.token().expose()
    );
}

// ------------------------------------------------------- RequireServiceLayer

async fn call(identity: Option<Identity>) -> ee_testing::TestResponse {
    let ok = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let service = RequireServiceLayer::new(["order", "payment"]).layer(ok);
    let mut request = Request::new(());
    if let Some(identity) = identity {
        request.extensions_mut().insert(identity);
    }
    ee_testing::send(service, request).await
}

#[tokio::test]
async fn require_service_answers_401_403_or_lets_listed_services_through() {
    let none = call(None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.problem().type_uri(), PROBLEM_UNAUTHENTICATED);
    assert!(none.header("www-authenticate").is_some());

    let user = call(Some(Identity::new("user:42", Method::Jwt))).await;
    assert_eq!(user.status, StatusCode::FORBIDDEN);
    assert_eq!(user.problem().type_uri(), PROBLEM_FORBIDDEN);
    // A user whose subject merely looks like a service is still a user.
    let impostor = call(Some(Identity::new("service:order", Method::Jwt))).await;
    assert_eq!(impostor.status, StatusCode::FORBIDDEN);

    let unlisted = call(Some(Identity::new("service:stock", Method::ServiceToken))).await;
    assert_eq!(unlisted.status, StatusCode::FORBIDDEN);
    assert_eq!(unlisted.problem().type_uri(), PROBLEM_FORBIDDEN);

    let listed = call(Some(Identity::new("service:payment", Method::ServiceToken))).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.text(), "ok");
}
