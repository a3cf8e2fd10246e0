//! Shared by the JWT, JWKS and layer tests: signing keys generated with
//! aws-lc-rs (RSA from a committed fixture), tokens, and a real JWKS server
//! whose key set a test can change, slow down or stop.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ee_auth::{Algorithm, VerifyingKey};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

pub const ISS: &str = "https://id.test";
pub const AUD: &str = "orders";
pub const RSA_PRIVATE: &[u8] = include_bytes!("../fixtures/jwt_rsa_2048.pem");
pub const RSA_PUBLIC: &[u8] = include_bytes!("../fixtures/jwt_rsa_2048.pub.pem");

/// A private key that signs tokens, with its public JWK.
#[derive(Clone)]
pub struct Signer {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
}

impl Signer {
    pub fn new(kid: &str, alg: Algorithm) -> Self {
        let rng = SystemRandom::new();
        let key = match alg {
            Algorithm::EdDSA => {
                EncodingKey::from_ed_der(Ed25519KeyPair::generate_pkcs8v1(&rng).unwrap().as_ref())
            }
            Algorithm::ES256 => EncodingKey::from_ec_der(
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .unwrap()
                    .as_ref(),
            ),
            Algorithm::ES384 => EncodingKey::from_ec_der(
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
                    .unwrap()
                    .as_ref(),
            ),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                EncodingKey::from_secret(&[7u8; 32]).unwrap()
            }
            // Every RSA algorithm signs with the fixture key.
            _ => EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        };
        Self {
            kid: kid.into(),
            alg,
            key,
        }
    }

    /// The public JWK, with `kid` and `alg`.
    pub fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(jwk).unwrap()
    }

    /// A one-key set for a verifier.
    pub fn verifying_key(&self) -> VerifyingKey {
        let set = json!({ "keys": [self.jwk()] }).to_string();
        VerifyingKey::from_jwk_set(&set).unwrap().remove(0)
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// Signs with no `kid` in the header.
    pub fn sign_without_kid(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.key).unwrap()
    }

    /// Signs with another `kid` in the header (an unknown key, as far as the
    /// verifier knows).
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

pub fn jwks(signers: &[&Signer]) -> Value {
    json!({ "keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>() })
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    ee_core::unix_ms() / 1000
}

/// Valid claims for `sub`, expiring in 5 minutes.
pub fn claims(sub: &str) -> Value {
    json!({ "iss": ISS, "aud": AUD, "sub": sub, "exp": now() + 300, "iat": now() })
}

pub fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A JWKS issuer over real HTTP: `/jwks` (counted), OIDC discovery, and a
/// key set, latency and availability the test controls.
pub struct JwksServer {
    pub addr: SocketAddr,
    keys: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl JwksServer {
    pub async fn start(keys: Value) -> Self {
        Self::start_on("127.0.0.1:0", keys).await
    }

    /// On a given address (to restart an issuer where it was).
    pub async fn start_on(addr: &str, keys: Value) -> Self {
        use axum::routing::get;
        let keys = Arc::new(Mutex::new(keys));
        let hits = Arc::new(AtomicUsize::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let app = axum::Router::new()
            .route(
                "/jwks",
                get({
                    let (keys, hits, delay_ms) = (keys.clone(), hits.clone(), delay_ms.clone());
                    move || async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let delay = delay_ms.load(Ordering::SeqCst);
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        axum::Json(keys.lock().unwrap().clone())
                    }
                }),
            )
            .route("/huge", get(|| async { "x".repeat(2 * 1024 * 1024) }))
            .route(
                "/.well-known/openid-configuration",
                get({
                    let base = base.clone();
                    move || async move {
                        axum::Json(json!({ "issuer": base, "jwks_uri": format!("{base}/jwks") }))
                    }
                }),
            );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            keys,
            hits,
            delay_ms,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    pub fn set_keys(&self, keys: Value) {
        *self.keys.lock().unwrap() = keys;
    }

    /// Fetches of `/jwks` so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Each fetch of `/jwks` waits this long before answering.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Stops the server: the port refuses connections afterwards.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}
