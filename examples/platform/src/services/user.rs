//! The user service: accounts, sessions and the platform's signing keys.
//!
//! - `POST /v1/users` `{"email", "name", "password"}` → 201 the user; an
//!   email already registered → 409 problem; a bad body → 422 with a
//!   pointer per violation. The password is kept as an Argon2id hash.
//! - `POST /v1/auth/token` `{"email", "password"}` (login) → an access
//!   token (15 minutes) and a refresh token, as OAuth 2.0 token responses
//!   are (RFC 6749 §5.1, `Cache-Control: no-store`); a wrong email or
//!   password → 401 problem, the same answer for both and in about the same
//!   time.
//! - `POST /v1/auth/refresh` `{"refresh_token"}` → a new pair; the old
//!   refresh token is spent (presenting it again revokes the session).
//! - `POST /v1/auth/logout` (token) `{"refresh_token"?}` → 204: the access
//!   token is revoked on every service, and the session's refresh tokens.
//! - `GET /v1/users/me` (token) → the caller's record.
//! - `GET /v1/users/{id}` (token) → the user, for that user, an admin, or
//!   the order and notification services; anyone else gets the same 404
//!   as for an id that does not exist.
//! - `GET /.well-known/jwks.json` → the public signing keys.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ee_auth::{AuthError, Grant, Identity, Issuer, Logout, Passwords};
use ee_core::{Problem, Secret, WithProblem};
use ee_db::params;
use ee_serialize::FastJson;
use ee_validate::Valid;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::StartError;
use crate::auth::is_service;
use crate::common::{Deps, found, new_id, now_ms, problem};

/// The body of `POST /v1/users`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// Where order confirmations go; the login name.
    #[schemars(email, length(max = 254))]
    pub email: String,
    /// A display name.
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// 8 to 128 characters (OWASP: length, not composition rules).
    /// Checked by the handler, not the schema: a schema violation's
    /// message quotes the value.
    #[schemars(with = "String")]
    pub password: Secret<String>,
}

/// The body of `POST /v1/auth/token`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The email registered.
    #[schemars(length(min = 1, max = 254))]
    pub email: String,
    /// The password.
    #[schemars(with = "String")]
    pub password: Secret<String>,
}

/// The body of `POST /v1/auth/refresh`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    /// The latest refresh token of the session.
    #[schemars(with = "String")]
    pub refresh_token: Secret<String>,
}

/// The body of `POST /v1/auth/logout` (optional).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutBody {
    /// The session's refresh token: its family is revoked too.
    #[schemars(with = "Option<String>")]
    pub refresh_token: Option<Secret<String>>,
}

/// A session's tokens (RFC 6749 §5.1).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct TokenResponse {
    /// The access token: `Authorization: Bearer …`.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Trades for a new pair at `POST /v1/auth/refresh`, once.
    pub refresh_token: String,
}

/// A registered user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct User {
    /// `usr_…`
    pub id: String,
    /// Email address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Registration time, ms since the Unix epoch.
    pub created_ms: i64,
}

/// The shortest password accepted (OWASP ASVS 2.1.1).
pub const MIN_PASSWORD: usize = 8;
/// The longest (Argon2 hashes any length; this bounds the work).
pub const MAX_PASSWORD: usize = 128;

#[derive(Deserialize)]
struct Credentials {
    id: String,
    email: String,
    password_hash: String,
}

#[derive(Clone)]
struct UserState {
    deps: Deps,
    issuer: Issuer,
    passwords: Passwords,
}

/// The service's API (mounted under `/v1`), and its public keys' route.
///
/// # Errors
/// This process does not hold the signing keys.
pub fn api(deps: Deps) -> Result<(Router, Router), StartError> {
    let issuer = deps.auth.issuer()?;
    let passwords = Passwords::new()
        .config(&deps.config.auth.issuer.password)
        .map_err(|e| StartError(format!("auth: passwords: {e}")))?;
    let jwks = deps.auth.jwks().unwrap_or_default();
    let public = Router::new().route(
        crate::gateway::JWKS_PATH,
        get(move || {
            let jwks = jwks.clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, "application/jwk-set+json"),
                        (header::CACHE_CONTROL, "public, max-age=300"),
                    ],
                    jwks,
                )
            }
        }),
    );
    let api = Router::new()
        .route("/users", post(register))
        .route("/users/me", get(me))
        .route("/users/{id}", get(find))
        .route("/auth/token", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .with_state(UserState {
            deps,
            issuer,
            passwords,
        });
    Ok((api, public))
}

async fn register(
    State(s): State<UserState>,
    Valid(body): Valid<Register>,
) -> Result<(StatusCode, FastJson<User>), Problem> {
    let length = body.password.expose().chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length) {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak-password",
            "Password too short or too long",
            format!("a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        )
        .with_extension("pointer", "/password"));
    }
    let user = User {
        id: new_id("usr"),
        email: body.email.to_ascii_lowercase(),
        name: body.name,
        created_ms: now_ms(),
    };
    let hash = s.passwords.hash(&body.password).await?;
    let inserted = s
        .deps
        .db
        .execute(
            "INSERT INTO users (id, email, name, created_ms, password_hash) VALUES ($1, $2, $3, $4, $5)",
            params![
                user.id.clone(),
                user.email.clone(),
                user.name.clone(),
                user.created_ms,
                hash
            ],
        )
        .await;
    match inserted {
        Ok(_) => Ok((StatusCode::CREATED, FastJson(user))),
        Err(e) if e.status() == StatusCode::CONFLICT => Err(problem(
            StatusCode::CONFLICT,
            "email-taken",
            "Email already registered",
            "a user with this email exists",
        )),
        Err(e) => Err(Problem::from(e)),
    }
}

/// A session's tokens as the answer: 200, never cached.
fn tokens(access: &ee_auth::IssuedToken, refresh: &Secret<String>, now_secs: u64) -> Response {
    let body = TokenResponse {
        access_token: access.token.expose().clone(),
        token_type: "Bearer".to_owned(),
        expires_in: access.expires_at.saturating_sub(now_secs),
        refresh_token: refresh.expose().clone(),
    };
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        FastJson(body),
    )
        .into_response()
}

fn now_secs() -> u64 {
    ee_core::unix_ms() / 1000
}

async fn login(State(s): State<UserState>, Valid(body): Valid<Login>) -> Result<Response, Problem> {
    let email = body.email.to_ascii_lowercase();
    let found = s
        .deps
        .db
        .query_one_as::<Credentials>(
            "SELECT id, email, password_hash FROM users WHERE email = $1",
            params![email],
        )
        .await;
    let user = match found {
        Ok(c) if !c.password_hash.is_empty() => c,
        // No such user (or one without a password): the same answer, after
        // the same work, so the time does not tell which.
        Ok(_) | Err(ee_db::DbError::NotFound) => {
            return Err(s.passwords.verify_unknown_user(&body.password).await.into());
        }
        Err(e) => return Err(e.into()),
    };
    let check = s
        .passwords
        .verify(&body.password, &user.password_hash)
        .await?;
    if check.needs_rehash {
        // Stronger parameters since it was stored: rehash now that we have
        // the password (best effort; the login goes on either way).
        if let Ok(hash) = s.passwords.hash(&body.password).await
            && let Err(e) = s
                .deps
                .db
                .execute(
                    "UPDATE users SET password_hash = $2 WHERE id = $1",
                    params![user.id.clone(), hash],
                )
                .await
        {
            tracing::warn!(user = %user.id, error = %e, "password rehash not stored");
        }
    }
    let grant = Grant::new(user.id).with_roles(s.deps.auth.roles_of(&user.email));
    let session = s.issuer.issue_session(&grant).await?;
    Ok(tokens(&session.access, &session.refresh.token, now_secs()))
}

async fn refresh(
    State(s): State<UserState>,
    Valid(body): Valid<Refresh>,
) -> Result<Response, Problem> {
    let rotated = s.issuer.refresh().rotate(&body.refresh_token).await?;
    // Roles as they are now (an admin removed from the list loses the role
    // at the next refresh).
    let email = s
        .deps
        .db
        .query_one_as::<(String,)>(
            "SELECT email FROM users WHERE id = $1",
            params![rotated.subject.clone()],
        )
        .await;
    let email = match email {
        Ok((email,)) => email,
        Err(ee_db::DbError::NotFound) => {
            return Err(AuthError::invalid_token("the user no longer exists").into());
        }
        Err(e) => return Err(e.into()),
    };
    let grant = Grant::new(rotated.subject.clone()).with_roles(s.deps.auth.roles_of(&email));
    let access = s.issuer.tokens().issue_access(&grant)?;
    Ok(tokens(&access, &rotated.token, now_secs()))
}

async fn logout(
    State(s): State<UserState>,
    identity: Identity,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<StatusCode, Problem> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !body.is_empty() && !json {
        return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .with_detail("a logout body is application/json"));
    }
    if identity.is_service() {
        return Err(AuthError::Forbidden("a service token has no session".into()).into());
    }
    let (Some(jti), Some(exp)) = (identity.token_id(), identity.expires_at()) else {
        return Err(AuthError::invalid_token("the token has no jti or exp").into());
    };
    let mut end = Logout::access(jti, exp);
    let body: LogoutBody = if body.is_empty() {
        LogoutBody::default()
    } else {
        // The parser's message could quote the token: not echoed.
        serde_json::from_slice(&body).map_err(|_| {
            problem(
                StatusCode::BAD_REQUEST,
                "malformed-logout",
                "Malformed logout body",
                "expected {\"refresh_token\": \"…\"} or no body",
            )
        })?
    };
    if let Some(refresh) = body.refresh_token {
        // `<family>.<secret>`: the family ends with the session.
        if let Some((family, _)) = refresh.expose().split_once('.') {
            end = end.with_refresh_family(family);
        }
    }
    s.issuer.logout(&end).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(s): State<UserState>, identity: Identity) -> Result<FastJson<User>, Problem> {
    user(&s.deps, identity.id()).await.map(FastJson)
}

async fn find(
    State(s): State<UserState>,
    identity: Identity,
    WithProblem(Path(id)): WithProblem<Path<String>>,
) -> Result<FastJson<User>, Problem> {
    let may = identity.id() == id
        || s.deps.auth.may(&identity, "user:read")
        || is_service(&identity, &["order", "notification"]);
    if !may {
        // As for an id that does not exist: ids do not leak.
        return Err(no_user(&id));
    }
    user(&s.deps, &id).await.map(FastJson)
}

fn no_user(id: &str) -> Problem {
    problem(
        StatusCode::NOT_FOUND,
        "user-not-found",
        "No such user",
        format!("there is no user {id}"),
    )
}

async fn user(deps: &Deps, id: &str) -> Result<User, Problem> {
    let user = deps
        .db
        .query_one_as::<User>(
            "SELECT id, email, name, created_ms FROM users WHERE id = $1",
            params![id.to_owned()],
        )
        .await;
    found(user, "user-not-found", "No such user", || {
        format!("there is no user {id}")
    })
}
