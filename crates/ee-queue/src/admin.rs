//! The admin API and the board (feature `axum`): an axum `Router` to mount
//! where operators reach it.
//!
//! | | |
//! |---|---|
//! | `GET /` | the board: queues, counts per state, jobs per state, failed jobs with their error, retry / remove / promote buttons |
//! | `GET /api/queues` | every queue with its counts |
//! | `GET /api/queues/{queue}` | one queue's counts |
//! | `GET /api/queues/{queue}/jobs?state=failed&offset=0&limit=50` | jobs in a state (limit ≤ 500) |
//! | `GET /api/queues/{queue}/jobs/{id}` | one job |
//! | `POST /api/queues/{queue}/jobs/{id}/retry`, `…/promote` | |
//! | `DELETE /api/queues/{queue}/jobs/{id}` | |
//! | `POST /api/queues/{queue}/pause`, `…/resume` | |
//!
//! Every error is an RFC 9457 problem. The router has no authentication of
//! its own: put it behind the service's admin auth.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ee_core::Problem;
use http::StatusCode;

use crate::{JobState, Queue, QueueError};

/// The admin API and board over `queues`.
///
/// ```no_run
/// # async fn demo(emails: ee_queue::Queue, invoices: ee_queue::Queue) {
/// let app: axum::Router = axum::Router::new().nest("/admin/queues", ee_queue::admin::router([emails, invoices]));
/// # }
/// ```
pub fn router(queues: impl IntoIterator<Item = Queue>) -> Router {
    let queues: Arc<HashMap<String, Queue>> = Arc::new(
        queues
            .into_iter()
            .map(|q| (q.name().to_owned(), q))
            .collect(),
    );
    Router::new()
        .route("/", get(board))
        .route("/api/queues", get(list))
        .route("/api/queues/{queue}", get(one))
        .route("/api/queues/{queue}/jobs", get(jobs))
        .route("/api/queues/{queue}/jobs/{id}", get(job).delete(remove))
        .route("/api/queues/{queue}/jobs/{id}/{action}", post(act))
        .route("/api/queues/{queue}/{action}", post(pause_resume))
        .fallback(not_found)
        .with_state(queues)
}

type Queues = State<Arc<HashMap<String, Queue>>>;

fn problem(status: StatusCode, kind: &str, detail: impl Into<String>) -> Response {
    Problem::ee(status, "queue", kind)
        .with_detail(detail.into())
        .into_response()
}

fn fail(e: &QueueError) -> Response {
    e.to_problem().into_response()
}

fn find<'a>(queues: &'a HashMap<String, Queue>, name: &str) -> Result<&'a Queue, Box<Response>> {
    queues.get(name).ok_or_else(|| {
        Box::new(problem(
            StatusCode::NOT_FOUND,
            "queue-not-found",
            format!("no queue `{name}` here"),
        ))
    })
}

async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "not-found", "no such admin endpoint")
}

async fn list(State(queues): Queues) -> Response {
    let mut names: Vec<&String> = queues.keys().collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match queues[name].counts().await {
            Ok(counts) => out.push(serde_json::json!({ "name": name, "counts": counts })),
            Err(e) => return fail(&e),
        }
    }
    axum::Json(out).into_response()
}

async fn one(State(queues): Queues, Path(name): Path<String>) -> Response {
    let queue = match find(&queues, &name) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    match queue.counts().await {
        Ok(counts) => {
            axum::Json(serde_json::json!({ "name": name, "counts": counts })).into_response()
        }
        Err(e) => fail(&e),
    }
}

async fn jobs(
    State(queues): Queues,
    Path(name): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let queue = match find(&queues, &name) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let Ok(Query(query)) = query else {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad-query",
            "the query string is malformed",
        );
    };
    let state = match query.get("state").map(String::as_str) {
        None => JobState::Waiting,
        Some(s) => match JobState::parse(s) {
            Some(state) => state,
            None => {
                let known: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
                return problem(
                    StatusCode::BAD_REQUEST,
                    "bad-query",
                    format!("state {s:?} is not one of {}", known.join(", ")),
                );
            }
        },
    };
    let number = |key: &str, default: u64, max: u64| -> Result<u64, String> {
        match query.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{key} {v:?} is not a whole number from 0 to {max}")),
        }
    };
    let (offset, limit) = match (
        number("offset", 0, u64::from(u32::MAX)),
        number("limit", 50, 500),
    ) {
        (Ok(o), Ok(l)) => (o, l),
        (Err(detail), _) | (_, Err(detail)) => {
            return problem(StatusCode::BAD_REQUEST, "bad-query", detail);
        }
    };
    match queue.jobs(state, offset, limit).await {
        Ok(jobs) => axum::Json(jobs).into_response(),
        Err(e) => fail(&e),
    }
}

async fn job(State(queues): Queues, Path((name, id)): Path<(String, String)>) -> Response {
    let queue = match find(&queues, &name) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    match queue.job(&id).await {
        Ok(Some(job)) => axum::Json(job).into_response(),
        Ok(None) => fail(&QueueError::NotFound(id)),
        Err(e) => fail(&e),
    }
}

async fn remove(State(queues): Queues, Path((name, id)): Path<(String, String)>) -> Response {
    let queue = match find(&queues, &name) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    match queue.remove(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => fail(&e),
    }
}

async fn act(
    State(queues): Queues,
    Path((name, id, action)): Path<(String, String, String)>,
) -> Response {
    let queue = match find(&queues, &name) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let done = match action.as_str() {
        "retry" => queue.retry(&id).await,
        "promote" => queue.promote(&id).await,
        _ => return not_found().await,
    };
    match done {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => fail(&e),
    }
}

async fn pause_resume(
    State(queues): Queues,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let queue = match find(&queues, &name) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let done = match action.as_str() {
        "pause" => queue.pause().await,
        "resume" => queue.resume().await,
        _ => return not_found().await,
    };
    match done {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => fail(&e),
    }
}

async fn board() -> Html<&'static str> {
    Html(BOARD)
}

/// The board: one static page over the API (no build step, no external
/// assets).
const BOARD: &str = include_str!("board.html");
