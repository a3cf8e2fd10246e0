//! A documents service secured with ee-auth: JWT access tokens (verified by `AuthLayer`), RBAC
//! for the admin operation (delete), and ReBAC (an OpenFGA model) for who may read which
//! document: its owner, its viewers, members of a team it is shared with, and viewers of the
//! folder it is in.
//!
//! ```sh
//! cargo run -p ee-auth --example documents --features issuer,axum
//! ```
//!
//! It signs with a key it generates at start and prints tokens for `anne` (an engineer) and for
//! `root` (an admin); then, with `ANNE=...` and `ROOT=...` exported:
//!
//! ```sh
//! curl -H "authorization: Bearer $ANNE" localhost:3000/documents/roadmap    # 200: via team eng
//! curl -H "authorization: Bearer $ANNE" localhost:3000/documents/salaries   # 404: not hers
//! curl -X DELETE -H "authorization: Bearer $ANNE" localhost:3000/documents/roadmap  # 403
//! curl -X DELETE -H "authorization: Bearer $ROOT" localhost:3000/documents/roadmap  # 204
//! curl localhost:3000/documents/roadmap                                     # 401
//! ```

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use ee_auth::{
    AuthError, AuthLayer, Grant, Identity, JwtVerifier, MemoryTuples, ObjectRef, Rbac, Rebac,
    RebacModel, RelationTuple, RoleConfig, SigningAlgorithm, SigningKeys, TokenIssuer, TupleUser,
    VerifyingKey, require,
};
use ee_core::Problem;

/// Who may read a document, as an OpenFGA model (schema 1.1).
const MODEL: &str = r#"
model
  schema 1.1

type user

type team
  relations
    define member: [user]

type folder
  relations
    define viewer: [user, team#member]

type document
  relations
    define parent: [folder]
    define owner: [user]
    define viewer: [user, team#member] or owner or viewer from parent
"#;

/// The relationships of the demo data.
const TUPLES: &[&str] = &[
    "team:eng#member@user:anne",
    "folder:plans#viewer@team:eng#member",
    "document:roadmap#parent@folder:plans",
    "document:salaries#owner@user:root",
];

/// The service's state: documents and the relationship engine.
#[derive(Clone)]
pub struct Docs {
    rebac: Rebac<MemoryTuples>,
    docs: Arc<RwLock<HashMap<String, String>>>,
}

/// The service: every route needs a valid access token; reading a document needs the
/// `viewer` relation on it (ReBAC), deleting needs the `documents:delete` permission (RBAC).
pub async fn app(jwt: JwtVerifier) -> Result<Router, AuthError> {
    let rebac = Rebac::new(RebacModel::parse(MODEL)?, MemoryTuples::new());
    let tuples = TUPLES
        .iter()
        .map(|t| t.parse::<RelationTuple>())
        .collect::<Result<Vec<_>, _>>()?;
    rebac.write(&tuples).await?;
    let docs = HashMap::from([
        ("roadmap".to_owned(), "Q1: ship ee-auth".to_owned()),
        ("salaries".to_owned(), "confidential".to_owned()),
    ]);
    let rbac = Rbac::builder()
        .role("admin", RoleConfig::new().permissions(["documents:*"]))
        .build()?;
    let state = Docs {
        rebac,
        docs: Arc::new(RwLock::new(docs)),
    };
    Ok(Router::new()
        .route("/me", get(me))
        .route(
            "/documents/{id}",
            get(read).merge(delete(remove).route_layer(require(rbac, "documents:delete"))),
        )
        .with_state(state)
        .layer(AuthLayer::builder().jwt(jwt).build()?))
}

async fn me(who: Identity) -> String {
    format!("you are {}", who.id())
}

/// A document the caller may not view answers 404, as one that does not exist: ids do not leak.
async fn read(
    State(state): State<Docs>,
    who: Identity,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let object = ObjectRef::new("document", id.as_str())?;
    let user: TupleUser = who.id().parse()?;
    if !state.rebac.check(&object, "viewer", &user).await?.allowed {
        return Err(AuthError::NotFound.into());
    }
    let docs = state.docs.read().unwrap_or_else(|e| e.into_inner());
    let body = docs.get(&id).ok_or(AuthError::NotFound)?;
    Ok(Json(serde_json::json!({ "id": id, "body": body })))
}

/// Only reached when RBAC granted `documents:delete` (the route layer).
async fn remove(State(state): State<Docs>, Path(id): Path<String>) -> StatusCode {
    let mut docs = state.docs.write().unwrap_or_else(|e| e.into_inner());
    match docs.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

/// A development issuer (a key generated at start) and a verifier that trusts its JWKS.
pub fn dev_issuer() -> Result<(TokenIssuer, JwtVerifier), AuthError> {
    let issuer = TokenIssuer::builder()
        .issuer("http://localhost:3000")
        .audience("documents")
        .keys(SigningKeys::generate(SigningAlgorithm::EdDSA)?)
        .build()?;
    let jwt = JwtVerifier::builder()
        .issuer("http://localhost:3000")
        .audience("documents")
        .keys(VerifyingKey::from_jwk_set(&issuer.jwks().to_string())?)
        .build()?;
    Ok((issuer, jwt))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (issuer, jwt) = dev_issuer()?;
    let anne = issuer.issue_access(&Grant::new("user:anne"))?;
    let root = issuer.issue_access(&Grant::new("user:root").with_roles(["admin"]))?;
    println!("export ANNE={}", anne.token.expose());
    println!("export ROOT={}", root.token.expose());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app(jwt).await?).await?;
    Ok(())
}
