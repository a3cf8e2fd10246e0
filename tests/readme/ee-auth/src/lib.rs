//! The first example of `crates/ee-auth/README.md`, built with exactly the features its `cargo
//! add` line names, served as its `main` serves it (against a test issuer), and sent requests.
#![cfg(test)]

#[path = "../../client.rs"]
mod client;
#[path = "../../serve.rs"]
mod serve;

#[allow(dead_code)] // `main` is the user's: the tests serve `app(issuer)` as `main` does
mod readme {
    include!(concat!(env!("OUT_DIR"), "/readme.rs"));

    mod tests {
        use crate::{client, serve::serve};
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        use serde_json::json;

        /// An issuer: an Ed25519 key, its JWKS served over HTTP, and tokens signed with it.
        struct Issuer {
            url: String,
            key: EncodingKey,
        }

        impl Issuer {
            async fn start() -> Self {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
                let jwks = json!({ "keys": [{
                    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "k1",
                    "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                }]});
                let router = axum::Router::new().route(
                    "/.well-known/jwks.json",
                    axum::routing::get(move || async move { axum::Json(jwks) }),
                );
                let addr = serve(router).await;
                Issuer {
                    url: format!("http://{addr}"),
                    key: EncodingKey::from_ed_der(pkcs8.as_ref()),
                }
            }

            fn token(&self, sub: &str, roles: &[&str]) -> String {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let claims = json!({
                    "iss": self.url, "aud": "orders", "sub": sub, "roles": roles,
                    "iat": now, "exp": now + 300,
                });
                let mut header = Header::new(Algorithm::EdDSA);
                header.kid = Some("k1".into());
                jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
            }
        }

        fn bearer(token: &str) -> String {
            format!("authorization: Bearer {token}\r\n")
        }

        /// As the README says: `/me` greets the token's subject, `/orders` admits the `admin`
        /// role only (403 problem otherwise), no token is a 401 with `WWW-Authenticate: Bearer`
        /// and a bad token a 401 `invalid_token`.
        #[tokio::test]
        async fn answers_as_the_readme_says() {
            let issuer = Issuer::start().await;
            let addr = serve(super::app(&issuer.url).await.unwrap()).await;
            let anne = issuer.token("user:anne", &[]);
            let root = issuer.token("user:root", &["admin"]);

            let r = client::get(addr, "/me", &bearer(&anne)).await;
            assert_eq!(
                (r.status, r.text()),
                (200, "hello user:anne".to_owned()),
                "{r:?}"
            );

            let r = client::get(addr, "/orders", &bearer(&root)).await;
            assert_eq!(
                (r.status, r.text()),
                (200, "all orders".to_owned()),
                "{r:?}"
            );

            let r = client::get(addr, "/orders", &bearer(&anne)).await;
            assert_eq!(r.status, 403, "{r:?}");
            assert_eq!(r.header("content-type"), Some("application/problem+json"));

            for path in ["/me", "/orders"] {
                let r = client::get(addr, path, "").await;
                assert_eq!(r.status, 401, "{r:?}");
                assert_eq!(r.header("www-authenticate"), Some("Bearer"));
                assert_eq!(r.header("content-type"), Some("application/problem+json"));
            }

            let mut forged = anne.clone();
            forged.truncate(forged.len() - 2);
            let r = client::get(addr, "/me", &bearer(&forged)).await;
            assert_eq!(r.status, 401, "{r:?}");
            let challenge = r.header("www-authenticate").unwrap();
            assert!(
                challenge.starts_with(r#"Bearer error="invalid_token", error_description=""#),
                "{challenge}"
            );
        }
    }
}
