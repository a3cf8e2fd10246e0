//! The probe endpoints.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use crate::check::Status;
use crate::health::{HEALTH_JSON, Health};

fn answer(status: Status, body: Bytes) -> Response {
    let code = if status == Status::Fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, [(CONTENT_TYPE, HEALTH_JSON)], body).into_response()
}

fn simple(status: Status, output: Option<&str>) -> Response {
    let mut body = serde_json::json!({"status": status});
    if let Some(output) = output {
        body["output"] = serde_json::Value::String(output.to_owned());
    }
    answer(status, Bytes::from(body.to_string()))
}

async fn livez() -> Response {
    simple(Status::Pass, None)
}

async fn readyz(State(health): State<Health>) -> Response {
    if health.is_shutting_down() {
        return simple(Status::Fail, Some("shutting down"));
    }
    let report = health.report().await;
    answer(report.ready, report.ready_body.clone())
}

/// `/readyz` without the checks: the status alone, for a port that anyone
/// can reach.
async fn readyz_terse(State(health): State<Health>) -> Response {
    if health.is_shutting_down() {
        return simple(Status::Fail, None);
    }
    let report = health.report().await;
    simple(report.ready, None)
}

async fn healthz(State(health): State<Health>) -> Response {
    let report = health.report().await;
    answer(report.status, report.health_body.clone())
}

async fn startupz(State(health): State<Health>) -> Response {
    if health.is_started() {
        simple(Status::Pass, None)
    } else {
        simple(Status::Fail, Some("starting"))
    }
}

impl Health {
    /// `/livez` (the process answers), `/readyz` (critical checks; fails
    /// at once when the shutdown begins), `/healthz` (every check, with
    /// details), `/startupz`: `application/health+json`, 200 for `pass` and
    /// `warn`, 503 for `fail`.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .route("/healthz", get(healthz))
            .route("/startupz", get(startupz))
            .with_state(self.clone())
    }

    /// The probes that say nothing about dependencies, for a listener that
    /// anyone can reach: `/livez`, `/readyz` and `/startupz` answer with
    /// their status alone (`{"status":"fail"}` and 503 when not ready, no
    /// check names, outputs or latencies). Pair it with
    /// [`details_router`](Self::details_router) behind authentication or on
    /// an internal listener.
    pub fn probes_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/livez", get(livez))
            .route("/readyz", get(readyz_terse))
            .route("/startupz", get(startupz))
            .with_state(self.clone())
    }

    /// `/healthz`: every check with its output and latency (what
    /// [`router`](Self::router) serves there), for operators only.
    pub fn details_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/healthz", get(healthz))
            .with_state(self.clone())
    }
}
