//! The admin API and the board (feature `axum`): an axum `Router` to mount
//! where operators reach it, behind the application's own authentication.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ee_core::Problem;
use http::StatusCode;
use http::header::CACHE_CONTROL;
use serde::{Deserialize, Serialize};

use crate::{JobInfo, JobState, Queue, QueueError};

/// Whether the admin API shows what jobs carry: their `data`, `return_value`
/// and `progress` (JSON the application wrote, which can hold personal data:
/// emails, addresses, card tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShowData {
    /// Hidden unless a request asks with `?data=true` (the default).
    #[default]
    OnRequest,
    /// Shown unless a request asks with `?data=false` (for development).
    ByDefault,
}

/// Settings of the admin API ([`AdminRouter::config`]), loadable with serde
/// (ee-config). `Default` hides job payloads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Whether job listings and details show `data`, `return_value` and
    /// `progress` (default [`ShowData::OnRequest`]: hidden unless asked).
    pub show_data: ShowData,
}

/// The admin API and the board over some queues (in Redis or in memory),
/// built into an axum `Router` to mount where operators reach it.
/// [`admin_router`] is `AdminRouter::new(queues).into_router()`.
///
/// # No authentication of its own
///
/// **Whoever can send a request to this router can list every job, read its
/// error, retry, promote and remove jobs, and pause the queues.** It checks
/// nothing: mount it only behind the application's own authentication and
/// authorization. The router is a plain axum `Router`, so a
/// [`route_layer`](axum::Router::route_layer) (or
/// [`layer`](axum::Router::layer)) on it puts every endpoint, the board
/// included, behind your check:
///
/// ```no_run
/// use axum::extract::Request;
/// use axum::middleware::{self, Next};
/// use axum::response::Response;
/// use ee_core::Problem;
/// use http::StatusCode;
///
/// # fn is_operator(_request: &Request) -> bool { false }
/// /// Lets operators through; everyone else gets a 403 problem.
/// async fn operators_only(request: Request, next: Next) -> Result<Response, Problem> {
///     // Your check: ee-auth's verified claims, a session, a client certificate…
///     if !is_operator(&request) {
///         return Err(Problem::new(StatusCode::FORBIDDEN));
///     }
///     Ok(next.run(request).await)
/// }
///
/// # async fn demo(emails: ee_queue::Queue) {
/// let admin = ee_queue::AdminRouter::new([emails])
///     .into_router()
///     .route_layer(middleware::from_fn(operators_only));
/// let app: axum::Router = axum::Router::new().nest("/admin/queues", admin);
/// # }
/// ```
///
/// # Endpoints
///
/// | | |
/// |---|---|
/// | `GET /` | the board: queues, counts per state, jobs per state, failed jobs with their error, retry / remove / promote buttons, a "show" button per job for its hidden data |
/// | `GET /api/queues` | every queue with its counts |
/// | `GET /api/queues/{queue}` | one queue's counts |
/// | `GET /api/queues/{queue}/jobs?state=failed&offset=0&limit=50&data=true` | jobs in a state (limit ≤ 500) |
/// | `GET /api/queues/{queue}/jobs/{id}?data=true` | one job |
/// | `POST /api/queues/{queue}/jobs/{id}/retry`, `…/promote` | |
/// | `DELETE /api/queues/{queue}/jobs/{id}` | |
/// | `POST /api/queues/{queue}/pause`, `…/resume` | |
///
/// Every error is an RFC 9457 problem.
///
/// # Job payloads are hidden unless asked
///
/// A job is a [`JobInfo`] plus a `data_hidden` field. By default
/// ([`ShowData::OnRequest`]) the job endpoints answer `"data": null,
/// "return_value": null, "progress": null, "data_hidden": true`: what the
/// application put in a job or got back from it stays out of the answer.
/// `?data=true` shows them (`"data_hidden": false`); `?data=false` hides
/// them whatever the setting; any other value is a 400 problem. The rest of
/// the job (id, name, state, attempts, timestamps, `failed_reason`) is
/// always shown, so operators see why a job failed. Job answers carry
/// `Cache-Control: no-store`.
///
/// ```no_run
/// # async fn demo(emails: ee_queue::Queue) -> Result<(), ee_queue::QueueError> {
/// // Development: payloads shown unless a request says `?data=false`.
/// let config = ee_queue::AdminConfig { show_data: ee_queue::ShowData::ByDefault };
/// let admin: axum::Router = ee_queue::AdminRouter::new([emails]).config(&config)?.into_router();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AdminRouter {
    queues: Vec<Queue>,
    config: AdminConfig,
}

impl AdminRouter {
    /// The admin API over `queues`, payloads hidden unless asked.
    pub fn new(queues: impl IntoIterator<Item = Queue>) -> Self {
        Self {
            queues: queues.into_iter().collect(),
            config: AdminConfig::default(),
        }
    }

    /// Replaces every setting with `config`.
    ///
    /// # Errors
    /// None today; the `Result` is the one shape every ee builder applies
    /// its configuration with.
    pub fn config(mut self, config: &AdminConfig) -> Result<Self, QueueError> {
        self.config = config.clone();
        Ok(self)
    }

    /// Whether job payloads are shown when a request does not say.
    #[must_use]
    pub fn show_data(mut self, show: ShowData) -> Self {
        self.config.show_data = show;
        self
    }

    /// The router: mount it (`nest`) behind your authentication.
    pub fn into_router(self) -> Router {
        let admin = Arc::new(Admin {
            queues: self
                .queues
                .into_iter()
                .map(|q| (q.name().to_owned(), q))
                .collect(),
            show_data: self.config.show_data,
        });
        Router::new()
            .route("/", get(board))
            .route("/api/queues", get(list))
            .route("/api/queues/{queue}", get(one))
            .route("/api/queues/{queue}/jobs", get(jobs))
            .route("/api/queues/{queue}/jobs/{id}", get(job).delete(remove))
            .route("/api/queues/{queue}/jobs/{id}/{action}", post(act))
            .route("/api/queues/{queue}/{action}", post(pause_resume))
            .fallback(not_found)
            .with_state(admin)
    }
}

/// The admin API and the board over `queues`, as an axum `Router`, with job
/// payloads hidden unless a request asks (`?data=true`): the shorthand for
/// `AdminRouter::new(queues).into_router()`; see [`AdminRouter`] for the
/// endpoints and the settings.
///
/// **It has no authentication of its own**: mount it behind the
/// application's (see [`AdminRouter`] for a `route_layer` that does it).
///
/// ```no_run
/// # async fn demo(emails: ee_queue::Queue, invoices: ee_queue::Queue) {
/// let app: axum::Router = axum::Router::new().nest("/admin/queues", ee_queue::admin_router([emails, invoices]));
/// # }
/// ```
pub fn admin_router(queues: impl IntoIterator<Item = Queue>) -> Router {
    AdminRouter::new(queues).into_router()
}

/// What the handlers share.
struct Admin {
    queues: HashMap<String, Queue>,
    show_data: ShowData,
}

/// A request this router refuses before it asks a queue; a [`Problem`]
/// through `?`.
enum Refusal {
    /// A queue this router does not serve.
    NoQueue(String),
    /// A malformed or out-of-range query parameter.
    BadQuery(String),
}

impl From<Refusal> for Problem {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NoQueue(name) => no_queue(&name),
            Refusal::BadQuery(detail) => bad_query(detail),
        }
    }
}

impl Admin {
    fn queue(&self, name: &str) -> Result<&Queue, Refusal> {
        self.queues
            .get(name)
            .ok_or_else(|| Refusal::NoQueue(name.to_owned()))
    }

    /// Whether this request's answer shows payloads: its `data` parameter,
    /// or the setting.
    fn shows_data(&self, query: &HashMap<String, String>) -> Result<bool, Refusal> {
        match query.get("data").map(String::as_str) {
            None => Ok(self.show_data == ShowData::ByDefault),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(Refusal::BadQuery(format!(
                "data {v:?} is not true or false"
            ))),
        }
    }
}

/// A job as the API shows it: payloads withheld unless `shown`.
#[derive(Serialize)]
struct JobView {
    #[serde(flatten)]
    job: JobInfo,
    data_hidden: bool,
}

impl JobView {
    fn new(mut job: JobInfo, shown: bool) -> Self {
        if !shown {
            job.data = serde_json::Value::Null;
            job.return_value = None;
            job.progress = None;
        }
        Self {
            job,
            data_hidden: !shown,
        }
    }
}

/// A JSON answer that holds jobs: never stored by a cache.
fn jobs_answer(body: impl Serialize) -> Response {
    ([(CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// The query string, or a 400 problem if it is malformed.
fn query_of(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, Refusal> {
    query
        .map(|Query(q)| q)
        .map_err(|_| Refusal::BadQuery("the query string is malformed".into()))
}

type Shared = State<Arc<Admin>>;

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

async fn list(State(admin): Shared) -> Result<Response, Problem> {
    let mut names: Vec<&String> = admin.queues.keys().collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let counts = admin.queues[name].counts().await?;
        out.push(serde_json::json!({ "name": name, "counts": counts }));
    }
    Ok(axum::Json(out).into_response())
}

async fn one(State(admin): Shared, Path(name): Path<String>) -> Result<Response, Problem> {
    let counts = admin.queue(&name)?.counts().await?;
    Ok(axum::Json(serde_json::json!({ "name": name, "counts": counts })).into_response())
}

async fn jobs(
    State(admin): Shared,
    Path(name): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, Problem> {
    let queue = admin.queue(&name)?;
    let query = query_of(query)?;
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
    let shown = admin.shows_data(&query)?;
    let jobs: Vec<JobView> = queue
        .jobs(state, offset, limit)
        .await?
        .into_iter()
        .map(|job| JobView::new(job, shown))
        .collect();
    Ok(jobs_answer(jobs))
}

async fn job(
    State(admin): Shared,
    Path((name, id)): Path<(String, String)>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, Problem> {
    let queue = admin.queue(&name)?;
    let shown = admin.shows_data(&query_of(query)?)?;
    match queue.job(&id).await? {
        Some(job) => Ok(jobs_answer(JobView::new(job, shown))),
        None => Err(QueueError::NotFound(id).into()),
    }
}

async fn remove(
    State(admin): Shared,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    admin.queue(&name)?.remove(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn act(
    State(admin): Shared,
    Path((name, id, action)): Path<(String, String, String)>,
) -> Result<Response, Problem> {
    let queue = admin.queue(&name)?;
    match action.as_str() {
        "retry" => queue.retry(&id).await?,
        "promote" => queue.promote(&id).await?,
        _ => return Err(not_found().await),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn pause_resume(
    State(admin): Shared,
    Path((name, action)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let queue = admin.queue(&name)?;
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
