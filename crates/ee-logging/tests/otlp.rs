//! OpenTelemetry export: spans of two services (A calls B through
//! `PropagateLayer`) arrive at an OTLP/HTTP receiver started here, in one
//! trace, with parent/child links, under the configured service name.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use ee_logging::{LogConfig, LogError, OtlpConfig, PropagateLayer, RequestLogLayer};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tower::{Layer, ServiceExt};

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_two_services_arrive_in_one_trace_with_their_links() {
    // The receiver: an OTLP/HTTP endpoint that keeps what it is sent.
    let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let sink = received.clone();
    let receiver = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let config = LogConfig {
        filter: "info".into(),
        otlp: Some(OtlpConfig {
            endpoint: format!("http://{addr}"),
            service_name: "otlp-test".into(),
            ..OtlpConfig::default()
        }),
        ..LogConfig::default()
    };
    let logging = config.build(std::io::sink).unwrap();
    let telemetry = logging.telemetry.clone().unwrap();
    let _guard = tracing::subscriber::set_default(logging.subscriber);

    let b = Router::new()
        .route("/b", get(|| async { "b" }))
        .layer(RequestLogLayer::new());
    let a = Router::new()
        .route(
            "/a",
            get(move || {
                let client = PropagateLayer.layer(b.clone());
                async move {
                    let req = http::Request::get("/b")
                        .body(axum::body::Body::empty())
                        .unwrap();
                    client
                        .oneshot(req)
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                        .to_string()
                }
            }),
        )
        .layer(RequestLogLayer::new());
    // Driven on this thread (the test's default subscriber is thread-local).
    let req = http::Request::get("/a")
        .header("traceparent", INCOMING)
        .body(axum::body::Body::empty())
        .unwrap();
    let res = a.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let ours = res.headers()["traceparent"].to_str().unwrap().to_owned();

    tokio::task::spawn_blocking(move || telemetry.flush())
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans: Vec<Span> = received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|body| {
                let request =
                    ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf");
                request.resource_spans.into_iter().flat_map(|rs| {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.iter())
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    rs.scope_spans
                        .into_iter()
                        .flat_map(|ss| ss.spans)
                        .map(move |s| Span {
                            service: service.clone(),
                            name: s.name,
                            trace_id: hex(&s.trace_id),
                            span_id: hex(&s.span_id),
                            parent: hex(&s.parent_span_id),
                        })
                })
            })
            .collect();
        if spans.len() >= 3 || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let by_parent = |parent: &str| {
        spans
            .iter()
            .find(|s| s.parent == parent)
            .unwrap_or_else(|| panic!("no child of {parent}: {spans:#?}"))
    };
    let a_span = by_parent("00f067aa0ba902b7");
    let client = by_parent(&a_span.span_id);
    let b_span = by_parent(&client.span_id);
    assert_eq!(
        (
            a_span.name.as_str(),
            client.name.as_str(),
            b_span.name.as_str()
        ),
        ("request", "outgoing request", "request")
    );
    for s in &spans {
        assert_eq!(s.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(s.service.contains("otlp-test"), "{s:?}");
    }
    // The traceparent A answered with names A's exported span.
    assert_eq!(
        ours,
        format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", a_span.span_id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_to_a_collector_that_is_down_is_an_otlp_error() {
    // A port nothing listens on: bound, then released.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = LogConfig {
        otlp: Some(OtlpConfig {
            endpoint: format!("http://{addr}"),
            timeout_ms: 1_000,
            ..OtlpConfig::default()
        }),
        ..LogConfig::default()
    };
    let logging = config.build(std::io::sink).unwrap();
    let telemetry = logging.telemetry.clone().unwrap();
    {
        let _guard = tracing::subscriber::set_default(logging.subscriber);
        let app = Router::new()
            .route("/a", get(|| async { "a" }))
            .layer(RequestLogLayer::new());
        let req = http::Request::get("/a")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(app.oneshot(req).await.unwrap().status(), 200);
    }
    let flushed = tokio::task::spawn_blocking(move || telemetry.flush())
        .await
        .unwrap();
    assert!(matches!(flushed, Err(LogError::Otlp(_))), "{flushed:?}");
}
