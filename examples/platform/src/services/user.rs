//! The user service: register users and look them up.
//!
//! - `POST /v1/users` `{"email", "name"}` → 201 the user; an email already
//!   registered → 409 problem; a bad body → 422 with a pointer per violation.
//! - `GET /v1/users/{id}` → the user, or 404 problem.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use ee_core::WithProblem;
use ee_db::params;
use ee_serialize::FastJson;
use ee_validate::Valid;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Deps, found, new_id, now_ms, problem};

/// The body of `POST /v1/users`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// Where order confirmations go.
    #[schemars(email, length(max = 254))]
    pub email: String,
    /// A display name.
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
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

/// The service's API (mounted under `/v1`).
pub fn api(deps: Deps) -> Router {
    Router::new()
        .route("/users", post(register))
        .route("/users/{id}", get(find))
        .with_state(deps)
}

async fn register(
    State(deps): State<Deps>,
    Valid(body): Valid<Register>,
) -> Result<(StatusCode, FastJson<User>), ee_core::Problem> {
    let user = User {
        id: new_id("usr"),
        email: body.email.to_ascii_lowercase(),
        name: body.name,
        created_ms: now_ms(),
    };
    let inserted = deps
        .db
        .execute(
            "INSERT INTO users (id, email, name, created_ms) VALUES ($1, $2, $3, $4)",
            params![
                user.id.clone(),
                user.email.clone(),
                user.name.clone(),
                user.created_ms
            ],
        )
        .await;
    match inserted {
        Ok(_) => Ok((StatusCode::CREATED, FastJson(user))),
        Err(e) if e.status() == StatusCode::CONFLICT => Err(problem(
            StatusCode::CONFLICT,
            "email-taken",
            "Email already registered",
            format!("a user with email {} exists", user.email),
        )),
        Err(e) => Err(ee_core::Problem::from(e)),
    }
}

async fn find(
    State(deps): State<Deps>,
    WithProblem(Path(id)): WithProblem<Path<String>>,
) -> Result<FastJson<User>, ee_core::Problem> {
    let user = deps
        .db
        .query_one_as::<User>(
            "SELECT id, email, name, created_ms FROM users WHERE id = $1",
            params![id.clone()],
        )
        .await;
    found(user, "user-not-found", "No such user", || {
        format!("there is no user {id}")
    })
    .map(FastJson)
}
