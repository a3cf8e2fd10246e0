//! Request logs over real TCP: JSON lines with the request's fields, request
//! ids and W3C trace context accepted, replaced or propagated, secrets never
//! written.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use ee_logging::{LogConfig, LogFormat, PropagateLayer, RequestLogLayer, TraceContext};
use ee_testing::{exchange, raw_request, serve};
use serde_json::Value;
use tower::{Layer, ServiceExt};

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Every line, parsed as JSON (panics on a line that is not).
    fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    fn finished(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["message"] == "request finished")
            .collect()
    }
}

fn capture(filter: &str) -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let config = LogConfig {
        format: LogFormat::Json,
        filter: filter.into(),
        ..LogConfig::default()
    };
    let subscriber = config.subscriber(move || writer.clone()).unwrap();
    let guard = tracing::subscriber::set_default(subscriber);
    (captured, guard)
}

fn orders() -> Router {
    Router::new().route("/orders/{id}", get(|| async { "an order" }))
}

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn json_lines_carry_the_request_fields_and_never_a_secret() {
    let (logs, _guard) = capture("info");
    let app = orders().layer(
        RequestLogLayer::new()
            .log_headers(true)
            .redact(["x-secret"]),
    );
    let addr = serve(app).await;
    let res = exchange(
        addr,
        &raw_request(
            "GET",
            "/orders/42",
            &[
                ("authorization", b"Bearer SECRET-TOKEN"),
                ("cookie", b"session=SECRET-COOKIE"),
                ("x-secret", b"SECRET-X"),
                ("x-request-id", b"req-123"),
                ("user-agent", b"ee-test"),
            ],
            b"",
        ),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-request-id"), Some("req-123"));
    let finished = logs.finished();
    assert_eq!(finished.len(), 1, "{}", logs.text());
    let line = &finished[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["status"], 200);
    assert!(line["latency_ms"].as_f64().unwrap() >= 0.0);
    let span = &line["span"];
    assert_eq!(span["name"], "request");
    assert_eq!(span["request_id"], "req-123");
    assert_eq!(span["method"], "GET");
    assert_eq!(span["route"], "/orders/{id}");
    assert_eq!(span["path"], "/orders/42");
    assert_eq!(span["trace_id"].as_str().unwrap().len(), 32);
    assert!(
        span["headers"]
            .as_str()
            .unwrap()
            .contains("user-agent: ee-test")
    );
    let text = logs.text();
    for secret in ["SECRET-TOKEN", "SECRET-COOKIE", "SECRET-X"] {
        assert!(!text.contains(secret), "{secret} was logged: {text}");
    }
    assert!(text.contains("authorization: [redacted]"));
    assert!(text.contains("x-secret: [redacted]"));
}

#[tokio::test]
async fn a_bad_request_id_is_replaced() {
    let (logs, _guard) = capture("info");
    let addr = serve(orders().layer(RequestLogLayer::new())).await;
    let res = exchange(
        addr,
        &raw_request(
            "GET",
            "/orders/1",
            &[("x-request-id", b"has \"quotes\" and spaces")],
            b"",
        ),
    )
    .await;
    let id = res.header("x-request-id").unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(logs.finished()[0]["span"]["request_id"], id.as_str());
}

#[tokio::test]
async fn a_valid_traceparent_is_continued_and_an_invalid_one_replaced() {
    let (logs, _guard) = capture("info");
    let addr = serve(orders().layer(RequestLogLayer::new())).await;
    let res = exchange(
        addr,
        &raw_request(
            "GET",
            "/orders/1",
            &[
                ("traceparent", INCOMING.as_bytes()),
                ("tracestate", b"congo=t61rcWkgMzE"),
            ],
            b"",
        ),
    )
    .await;
    let ours = TraceContext::parse(res.header("traceparent").unwrap(), None).unwrap();
    assert_eq!(ours.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(ours.span_id(), "00f067aa0ba902b7");
    let span = &logs.finished()[0]["span"];
    assert_eq!(span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span["parent_id"], "00f067aa0ba902b7");
    assert_eq!(span["span_id"], ours.span_id().as_str());

    let bad = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let res = exchange(
        addr,
        &raw_request("GET", "/orders/1", &[("traceparent", bad.as_bytes())], b""),
    )
    .await;
    let replaced = TraceContext::parse(res.header("traceparent").unwrap(), None).unwrap();
    assert_ne!(replaced.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(logs.finished()[1]["span"]["parent_id"].is_null());
}

#[tokio::test]
async fn an_edge_that_refuses_incoming_traces_starts_its_own_and_passes_none_on() {
    let (logs, _guard) = capture("info");
    // The handler reports the trace headers it was handed.
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(|headers: http::HeaderMap| async move {
                format!(
                    "{:?} {:?}",
                    headers.get("traceparent"),
                    headers.get("tracestate")
                )
            }),
        )
        .layer(RequestLogLayer::new().accept_incoming_trace(false));
    let addr = serve(app).await;
    let res = exchange(
        addr,
        &raw_request(
            "GET",
            "/orders/1",
            &[
                ("traceparent", INCOMING.as_bytes()),
                ("tracestate", b"congo=t61rcWkgMzE"),
            ],
            b"",
        ),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.text(),
        "None None",
        "the client's trace reached the handler"
    );
    let ours = TraceContext::parse(res.header("traceparent").unwrap(), None).unwrap();
    assert_ne!(ours.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    let span = &logs.finished()[0]["span"];
    assert_eq!(span["trace_id"], ours.trace_id().as_str());
    assert_eq!(span["span_id"], ours.span_id().as_str());
    assert!(span["parent_id"].is_null(), "{span}");
}

#[tokio::test]
async fn two_services_share_one_trace_and_one_request_id() {
    let (logs, _guard) = capture("info");
    // Service B reports the trace context and request id it was called with.
    let b = Router::new()
        .route(
            "/b",
            get(
                |Extension(ctx): Extension<TraceContext>, headers: http::HeaderMap| async move {
                    format!(
                        "{} {} {}",
                        ctx.trace_id(),
                        ctx.parent_id().unwrap_or_default(),
                        headers["x-request-id"].to_str().unwrap()
                    )
                },
            ),
        )
        .layer(RequestLogLayer::new());
    // Service A calls B through the client layer.
    let a = Router::new()
        .route(
            "/a",
            get(move || {
                let client = PropagateLayer.layer(b.clone());
                async move {
                    let req = http::Request::get("/b")
                        .body(axum::body::Body::empty())
                        .unwrap();
                    let res = client.oneshot(req).await.unwrap();
                    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
                    let a_span = TraceContext::current().unwrap().span_id();
                    format!("{} {a_span}", String::from_utf8(body.to_vec()).unwrap())
                }
            }),
        )
        .layer(RequestLogLayer::new());
    let addr = serve(a).await;
    let res = exchange(
        addr,
        &raw_request(
            "GET",
            "/a",
            &[
                ("traceparent", INCOMING.as_bytes()),
                ("x-request-id", b"order-7"),
            ],
            b"",
        ),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let parts: Vec<&str> = res.text().split(' ').collect();
    let [b_trace, b_parent, b_request_id, a_span] = parts[..] else {
        panic!("{}", res.text())
    };
    assert_eq!(
        b_trace, "4bf92f3577b34da6a3ce929d0e0e4736",
        "one trace id across both services"
    );
    assert_eq!(b_request_id, "order-7");
    // B's parent is the client span A created under its own request span.
    assert_ne!(b_parent, a_span);
    assert_eq!(b_parent.len(), 16);
    let traces: Vec<String> = logs
        .finished()
        .iter()
        .map(|l| l["span"]["trace_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(traces, vec!["4bf92f3577b34da6a3ce929d0e0e4736"; 2]);
}

#[tokio::test]
async fn filtered_off_nothing_is_written_and_5xx_are_warnings() {
    let (logs, _guard) = capture("warn");
    let app = Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/boom",
            get(|| async { http::StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .layer(RequestLogLayer::new());
    let addr = serve(app).await;
    exchange(addr, &raw_request("GET", "/ok", &[], b"")).await;
    exchange(addr, &raw_request("GET", "/boom", &[], b"")).await;
    let finished = logs.finished();
    assert_eq!(finished.len(), 1, "{}", logs.text());
    assert_eq!(finished[0]["level"], "WARN");
    assert_eq!(finished[0]["status"], 500);
}

#[tokio::test]
async fn redacted_fields_never_reach_a_line() {
    let (logs, _guard) = capture("info");
    let span = tracing::info_span!("login", user = "ada", api_key = "SECRET-SPAN-KEY");
    let _entered = span.enter();
    tracing::info!(
        password = "SECRET-PASSWORD",
        Token = "SECRET-TOKEN",
        attempts = 3,
        "signing in"
    );
    let text = logs.text();
    for secret in ["SECRET-SPAN-KEY", "SECRET-PASSWORD", "SECRET-TOKEN"] {
        assert!(!text.contains(secret), "{secret} was logged: {text}");
    }
    let line = &logs.lines()[0];
    assert_eq!(line["password"], "[redacted]");
    assert_eq!(line["Token"], "[redacted]");
    assert_eq!(line["attempts"], 3);
    assert_eq!(line["span"]["api_key"], "[redacted]");
    assert_eq!(line["span"]["user"], "ada");
}

#[test]
fn a_bad_filter_is_a_clear_error() {
    let config = LogConfig {
        filter: "info,[=bad".into(),
        ..LogConfig::default()
    };
    let err = config.subscriber(std::io::sink).err().unwrap().to_string();
    assert!(err.contains("bad log filter"), "{err}");
}
