//! The admin API and the board (feature `axum`): an axum `Router` to mount
//! where operators reach it.

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

/// The admin API and the board over `queues` (in Redis or in memory), as an
/// axum `Router` to mount where operators reach it:
///
/// | | |
/// |---|---|
/// | `GET /` | the board: queues, counts per state, jobs per state, failed jobs with their error, retry / remove / promote buttons |
/// | `GET /api/queues` | every queue with its counts |
/// | `GET /api/queues/{queue}` | one queue's counts |
/// | `GET /api/queues/{queue}/jobs?state=failed&offset=0&limit=50` | jobs in a state (limit ≤ 500) |
/// | `GET /api/queues/{queue}/jobs/{id}` | one job |
/// | `POST /api/queues/{queue}/jobs/{id}/retry`, `…/promote` | |
/// | `DELETE /api/queues/{queue}/jobs/{id}` | |
/// | `POST /api/queues/{queue}/pause`, `…/resume` | |
///
/// Every error is an RFC 9457 problem. The router has no authentication of
/// its own: put it behind the service's admin auth.
///
/// ```no_run
/// # async fn demo(emails: ee_queue::Queue, invoices: ee_queue::Queue) {
/// let app: axum::Router = axum::Router::new().nest("/admin/queues", ee_queue::admin_router([emails, invoices]));
/// # }
/// ```
pub fn admin_router(queues: impl IntoIterator<Item = Queue>) -> Router {
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

fn problem(status: StatusCode, kind: &str, detail: impl Into<String>) -> Problem {
    Problem::ee(status, "queue", kind).with_detail(detail.into())
}

/// The 404 of a queue this router does not serve.
fn no_queue(name: &str) -> Problem {
    problem(
        StatusCode::NOT_FOUND,
        "queue-not-found",
        format!("no queue `{name}` here"),
    )
}

fn bad_query(detail: String) -> Problem {
    problem(StatusCode::BAD_REQUEST, "bad-query", detail)
}

async fn not_found() -> Problem {
    problem(StatusCode::NOT_FOUND, "not-found", "no such admin endpoint")
}

async fn list(State(queues): Queues) -> Result<Response, Problem> {
    let mut names: Vec<&String> = queues.keys().collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let counts = queues[name].counts().await?;
        out.push(serde_json::json!({ "name": name, "counts": counts }));
    }
    Ok(axum::Json(out).into_response())
}

async fn one(State(queues): Queues, Path(name): Path<String>) -> Result<Response, Problem> {
    let counts = queues
        .get(&name)
        .ok_or_else(|| no_queue(&name))?
        .counts()
        .await?;
    Ok(axum::Json(serde_json::json!({ "name": name, "counts": counts })).into_response())
}

async fn jobs(
    State(queues): Queues,
    Path(name): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, Problem> {
    let queue = queues.get(&name).ok_or_else(|| no_queue(&name))?;
    let Ok(Query(query)) = query else {
        return Err(bad_query("the query string is malformed".into()));
    };
    let state = match query.get("state").map(String::as_str) {
        None => JobState::Waiting,
        Some(s) => JobState::parse(s).ok_or_else(|| {
            let known: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
            bad_query(format!("state {s:?} is not one of {}", known.join(", ")))
        })?,
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
    let offset = number("offset", 0, u64::from(u32::MAX)).map_err(bad_query)?;
    let limit = number("limit", 50, 500).map_err(bad_query)?;
    Ok(axum::Json(queue.jobs(state, offset, limit).await?).into_response())
}

async fn job(
    State(queues): Queues,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    match queues
        .get(&name)
        .ok_or_else(|| no_queue(&name))?
        .job(&id)
        .await?
    {
        Some(job) => Ok(axum::Json(job).into_response()),
        None => Err(QueueError::NotFound(id).into()),
    }
}

async fn remove(
    State(queues): Queues,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    queues
        .get(&name)
        .ok_or_else(|| no_queue(&name))?
        .remove(&id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn act(
    State(queues): Queues,
    Path((name, id, action)): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    let queue = queues.get(&name).ok_or_else(|| no_queue(&name))?;
    match action.as_str() {
        "retry" => queue.retry(&id).await?,
        "promote" => queue.promote(&id).await?,
        _ => return Err(not_found().await),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn pause_resume(
    State(queues): Queues,
    Path((name, action)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let queue = queues.get(&name).ok_or_else(|| no_queue(&name))?;
    match action.as_str() {
        "pause" => queue.pause().await?,
        "resume" => queue.resume().await?,
        _ => return Err(not_found().await),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn board() -> Html<&'static str> {
    Html(BOARD)
}

/// The board: one static page over the API (no build step, no external
/// assets).
const BOARD: &str = include_str!("board.html");
