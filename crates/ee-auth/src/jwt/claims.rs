//! A verified token's claims: the time, issuer, audience and required-claim
//! checks, and the mapping to an [`Identity`].

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::{AuthError, Identity, Method};

/// What the claims must satisfy and where roles and tenant live.
pub(crate) struct ClaimRules {
    pub(crate) issuers: Vec<Box<str>>,
    pub(crate) audiences: Vec<Box<str>>,
    pub(crate) leeway_secs: u64,
    pub(crate) required: Vec<Box<str>>,
    /// The roles claim as a path into nested objects.
    pub(crate) roles_path: Vec<Box<str>>,
    /// The tenant claim as a path into nested objects.
    pub(crate) tenant_path: Vec<Box<str>>,
}

/// A claim path from a dotted name (`realm_access.roles`).
pub(crate) fn claim_path(name: &str) -> Result<Vec<Box<str>>, AuthError> {
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return Err(AuthError::Config(format!(
            "claim name `{name}` must be a name or a dotted path of names"
        )));
    }
    Ok(name.split('.').map(Box::from).collect())
}

fn lookup<'a>(claims: &'a Map<String, Value>, path: &[Box<str>]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(&**first)?;
    for name in rest {
        value = value.as_object()?.get(&**name)?;
    }
    Some(value)
}

/// A NumericDate (seconds since the epoch; fractions rounded down).
fn numeric_date(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

fn strings(value: Option<&Value>) -> Vec<Arc<str>> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(Arc::from)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(Arc::from).collect(),
        _ => Vec::new(),
    }
}

impl ClaimRules {
    /// Checks the claims at `now_secs`: `exp`, `nbf`, `iss`, `aud`, `sub`
    /// and the required claims. Answers `exp`.
    pub(crate) fn check(
        &self,
        claims: &Map<String, Value>,
        now_secs: u64,
    ) -> Result<u64, AuthError> {
        let exp = match claims.get("exp") {
            None => return Err(AuthError::invalid_token("the token has no `exp`")),
            Some(v) => numeric_date(v)
                .ok_or_else(|| AuthError::invalid_token("the token's `exp` is not a date"))?,
        };
        if now_secs > exp.saturating_add(self.leeway_secs) {
            return Err(AuthError::Expired);
        }
        if let Some(v) = claims.get("nbf") {
            let nbf = numeric_date(v)
                .ok_or_else(|| AuthError::invalid_token("the token's `nbf` is not a date"))?;
            if nbf > now_secs.saturating_add(self.leeway_secs) {
                return Err(AuthError::invalid_token("the token is not valid yet"));
            }
        }
        let iss_ok = claims
            .get("iss")
            .and_then(Value::as_str)
            .is_some_and(|iss| self.issuers.iter().any(|i| &**i == iss));
        if !iss_ok {
            return Err(AuthError::invalid_token(
                "the token's issuer is not accepted",
            ));
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(aud)) => self.audiences.iter().any(|a| **a == **aud),
            Some(Value::Array(auds)) => auds
                .iter()
                .filter_map(Value::as_str)
                .any(|aud| self.audiences.iter().any(|a| &**a == aud)),
            _ => false,
        };
        if !aud_ok {
            return Err(AuthError::invalid_token(
                "the token's audience is not accepted",
            ));
        }
        if claims
            .get("sub")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(AuthError::invalid_token("the token has no subject"));
        }
        for name in &self.required {
            if claims.get(&**name).is_none_or(Value::is_null) {
                return Err(AuthError::InvalidToken(
                    format!("the token lacks the claim `{name}`").into(),
                ));
            }
        }
        Ok(exp)
    }

    /// The identity of checked claims (`sub` is known to be a string).
    pub(crate) fn identity(&self, claims: Map<String, Value>, exp: u64) -> Identity {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let is_service = sub.starts_with("service:")
            && claims.get("token_use").and_then(Value::as_str) == Some("service");
        let method = if is_service {
            Method::ServiceToken
        } else {
            Method::Jwt
        };
        let mut identity = Identity::new(sub, method)
            .with_roles(strings(lookup(&claims, &self.roles_path)))
            .with_scopes(strings(claims.get("scope").or_else(|| claims.get("scp"))))
            .with_expires_at(exp);
        if let Some(tenant) = lookup(&claims, &self.tenant_path).and_then(Value::as_str) {
            identity = identity.with_tenant(tenant);
        }
        if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
            identity = identity.with_token_id(jti);
        }
        identity.with_claims(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuers: vec!["iss".into()],
            audiences: vec!["a".into(), "b".into()],
            leeway_secs: 30,
            required: vec!["email".into()],
            roles_path: claim_path("realm.roles").unwrap(),
            tenant_path: claim_path("tenant").unwrap(),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn checks_each_claim() {
        let r = rules();
        let ok = json!({"iss": "iss", "aud": ["x", "b"], "sub": "u", "exp": 100, "email": "e"});
        assert_eq!(r.check(&claims(ok.clone()), 130).unwrap(), 100);
        assert!(matches!(
            r.check(&claims(ok.clone()), 131),
            Err(AuthError::Expired)
        ));
        let mut fractional = claims(ok.clone());
        fractional.insert("exp".into(), json!(100.5));
        assert_eq!(r.check(&fractional, 100).unwrap(), 100);
        let cases = [
            (json!({"nbf": 200}), "not valid yet"),
            (json!({"exp": "soon"}), "`exp` is not a date"),
            (json!({"iss": "other"}), "issuer"),
            (json!({"aud": "c"}), "audience"),
            (json!({"aud": 1}), "audience"),
            (json!({"sub": ""}), "subject"),
            (json!({"email": null}), "`email`"),
        ];
        for (patch, expect) in cases {
            let mut c = claims(ok.clone());
            for (k, v) in patch.as_object().unwrap() {
                c.insert(k.clone(), v.clone());
            }
            let err = r.check(&c, 100).unwrap_err().to_string();
            assert!(err.contains(expect), "{patch}: {err}");
        }
    }

    #[test]
    fn maps_identity() {
        let r = rules();
        let c = json!({"sub": "service:order", "token_use": "service", "realm": {"roles": ["admin", 3]},
                       "scope": "a b", "tenant": "acme", "jti": "j1"});
        let id = r.identity(claims(c), 5);
        assert_eq!(id.method(), Method::ServiceToken);
        assert_eq!(id.roles().collect::<Vec<_>>(), ["admin"]);
        assert_eq!(id.scopes().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!((id.tenant(), id.token_id()), (Some("acme"), Some("j1")));
        assert_eq!(id.expires_at(), Some(5));
        let user = r.identity(claims(json!({"sub": "service:x", "scp": ["s"]})), 5);
        assert_eq!(user.method(), Method::Jwt);
        assert_eq!(user.scopes().collect::<Vec<_>>(), ["s"]);
        assert!(claim_path("a..b").is_err());
    }
}
