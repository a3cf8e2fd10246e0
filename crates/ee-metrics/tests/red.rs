//! RED metrics over real TCP, read back from `/metrics` and parsed as the
//! Prometheus text exposition format.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use ee_metrics::{MetricsLayer, Prometheus};
use ee_testing::{exchange, raw_request, serve};
use tower::ServiceExt;

fn prometheus() -> &'static Prometheus {
    static P: OnceLock<Prometheus> = OnceLock::new();
    P.get_or_init(|| {
        Prometheus::builder()
            .global_label("service", "red-test")
            .buckets("ee_http_request_duration_seconds", &[0.01, 0.1, 1.0])
            .install()
            .expect("the only recorder of this test binary")
    })
}

/// One sample: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (0.0.4), panicking on anything that is
/// not: comment lines `# HELP`/`# TYPE`, samples `name{l="v",…} value`; and
/// on a metric without help text (what `promtool check metrics` reports).
fn parse(text: &str) -> Vec<Sample> {
    let is_name = |s: &str| {
        !s.is_empty()
            && s.chars().enumerate().all(|(i, c)| {
                c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut types = BTreeMap::new();
    let mut helps = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap();
            assert!(is_name(name), "bad metric name in {line:?}");
            match kind {
                "TYPE" => {
                    let t = parts.next().unwrap();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "bad type in {line:?}"
                    );
                    assert!(
                        types.insert(name.to_owned(), t.to_owned()).is_none(),
                        "TYPE twice: {line:?}"
                    );
                }
                "HELP" => {
                    let help = parts.next().unwrap_or_default();
                    assert!(!help.trim().is_empty(), "empty help in {line:?}");
                    helps.insert(name.to_owned());
                }
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert!(is_name(&key), "bad label name {key:?} in {line:?}");
                    assert_eq!(chars.next(), Some('"'), "unquoted label value in {line:?}");
                    let mut value = String::new();
                    loop {
                        match chars.next() {
                            Some('\\') => match chars.next() {
                                Some('n') => value.push('\n'),
                                Some(c @ ('\\' | '"')) => value.push(c),
                                other => panic!("bad escape {other:?} in {line:?}"),
                            },
                            Some('"') => break,
                            Some(c) => value.push(c),
                            None => panic!("unterminated label value in {line:?}"),
                        }
                    }
                    labels.insert(key, value);
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (name, labels)
            }
        };
        assert!(is_name(name), "bad metric name in {line:?}");
        let base = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| types.contains_key(*b)))
            .unwrap_or(name);
        assert!(
            types.contains_key(base) || types.contains_key(name),
            "sample before its TYPE: {line:?}"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for name in types.keys() {
        assert!(helps.contains(name), "{name} has no HELP");
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[tokio::test]
async fn red_numbers_are_exact_after_known_requests() {
    let prometheus = prometheus();
    let app = Router::new()
        .route("/red/orders/{id}", get(|| async { "an order" }))
        .route(
            "/red/orders",
            post(|body: String| async move { (StatusCode::CREATED, body) }),
        )
        .route(
            "/red/fail",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .layer(MetricsLayer::new())
        .merge(prometheus.router());
    let addr = serve(app).await;
    for i in 0..7 {
        let res = exchange(
            addr,
            &raw_request("GET", &format!("/red/orders/{i}"), &[], b""),
        )
        .await;
        assert_eq!(res.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(
            exchange(addr, &raw_request("GET", "/red/fail", &[], b""))
                .await
                .status,
            500
        );
    }
    for body in [&b"{\"a\":1}"[..], &[b'x'; 3000]] {
        assert_eq!(
            exchange(addr, &raw_request("POST", "/red/orders", &[], body))
                .await
                .status,
            201
        );
    }
    let scrape = exchange(addr, &raw_request("GET", "/metrics", &[], b"")).await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let samples = parse(scrape.text());

    let get_ok = [
        ("method", "GET"),
        ("route", "/red/orders/{id}"),
        ("status_class", "2xx"),
        ("service", "red-test"),
    ];
    assert_eq!(
        value(&samples, "ee_http_requests_total", &get_ok),
        Some(7.0)
    );
    assert_eq!(
        value(&samples, "ee_http_request_duration_seconds_count", &get_ok),
        Some(7.0)
    );
    assert_eq!(
        value(
            &samples,
            "ee_http_request_duration_seconds_bucket",
            &[get_ok[0], get_ok[1], get_ok[2], ("le", "+Inf")]
        ),
        Some(7.0)
    );
    let fail = [
        ("method", "GET"),
        ("route", "/red/fail"),
        ("status_class", "5xx"),
    ];
    assert_eq!(value(&samples, "ee_http_requests_total", &fail), Some(3.0));
    let created = [
        ("method", "POST"),
        ("route", "/red/orders"),
        ("status_class", "2xx"),
    ];
    assert_eq!(
        value(&samples, "ee_http_requests_total", &created),
        Some(2.0)
    );
    // Request sizes from Content-Length: 7 + 3000 bytes.
    let posted = [("method", "POST"), ("route", "/red/orders")];
    assert_eq!(
        value(&samples, "ee_http_request_size_bytes_count", &posted),
        Some(2.0)
    );
    assert_eq!(
        value(&samples, "ee_http_request_size_bytes_sum", &posted),
        Some(3007.0)
    );
    // Response sizes: the echoed bodies.
    assert_eq!(
        value(&samples, "ee_http_response_size_bytes_sum", &created),
        Some(3007.0)
    );
    // Nothing left in flight (the scrape itself is not behind the layer).
    assert_eq!(
        value(
            &samples,
            "ee_http_requests_in_flight",
            &[("route", "/red/orders/{id}")]
        ),
        Some(0.0)
    );
    // The buckets set for the duration metric, not the default latency ones.
    let les: Vec<&str> = samples
        .iter()
        .filter(|s| {
            s.name == "ee_http_request_duration_seconds_bucket"
                && s.labels.get("route").map(String::as_str) == Some("/red/orders/{id}")
                && s.labels.get("status_class").map(String::as_str) == Some("2xx")
        })
        .map(|s| s.labels["le"].as_str())
        .collect();
    assert_eq!(les, ["0.01", "0.1", "1", "+Inf"]);
    // Process and runtime metrics are there.
    assert!(value(&samples, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(value(&samples, "process_open_fds", &[]).unwrap() > 0.0);
    assert!(value(&samples, "ee_tokio_workers", &[]).unwrap() >= 1.0);
}

#[tokio::test]
async fn ten_thousand_raw_paths_make_a_bounded_label_set() {
    let prometheus = prometheus();
    let app = Router::new()
        .route("/card/items/{id}", get(|| async { "item" }))
        .layer(MetricsLayer::new());
    for i in 0..10_000 {
        // Half match the template with distinct ids, half match nothing.
        let path = if i % 2 == 0 {
            format!("/card/items/{i}")
        } else {
            format!("/card/nothing/{i}")
        };
        let req = http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let _ = app.clone().oneshot(req).await.unwrap();
    }
    // A method outside the standard nine is `other`.
    let req = http::Request::builder()
        .method("PURGE")
        .uri("/card/items/1")
        .body(axum::body::Body::empty())
        .unwrap();
    let _ = app.clone().oneshot(req).await.unwrap();
    let samples = parse(&prometheus.render());
    let ours: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "ee_http_requests_total")
        .filter(|s| s.labels["route"].starts_with("/card") || s.labels["route"] == "unmatched")
        .collect();
    let routes: std::collections::BTreeSet<&str> =
        ours.iter().map(|s| s.labels["route"].as_str()).collect();
    assert_eq!(
        routes,
        ["/card/items/{id}", "unmatched"].into_iter().collect()
    );
    assert_eq!(
        value(
            &samples,
            "ee_http_requests_total",
            &[
                ("route", "/card/items/{id}"),
                ("method", "GET"),
                ("status_class", "2xx")
            ]
        ),
        Some(5000.0)
    );
    // Only this test sends unmatched requests.
    assert_eq!(
        value(
            &samples,
            "ee_http_requests_total",
            &[
                ("route", "unmatched"),
                ("method", "GET"),
                ("status_class", "4xx")
            ]
        ),
        Some(5000.0)
    );
    assert_eq!(
        value(
            &samples,
            "ee_http_requests_total",
            // axum answers 405 to a method the route does not serve.
            &[
                ("route", "/card/items/{id}"),
                ("method", "other"),
                ("status_class", "4xx")
            ]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_dropped_request_is_counted_as_cancelled_and_leaves_flight() {
    let prometheus = prometheus();
    let app = Router::new()
        .route(
            "/slow/{id}",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                "late"
            }),
        )
        .layer(MetricsLayer::new());
    let req = http::Request::get("/slow/1")
        .body(axum::body::Body::empty())
        .unwrap();
    let pending =
        tokio::time::timeout(std::time::Duration::from_millis(50), app.oneshot(req)).await;
    assert!(pending.is_err(), "the handler is still sleeping");
    let samples = parse(&prometheus.render());
    assert_eq!(
        value(
            &samples,
            "ee_http_requests_total",
            &[("route", "/slow/{id}"), ("status_class", "cancelled")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "ee_http_requests_in_flight",
            &[("route", "/slow/{id}")]
        ),
        Some(0.0)
    );
}

#[test]
fn bare_tower_routes_come_from_route_fn_and_overflow_is_bounded() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prometheus = prometheus();
    let layer = MetricsLayer::new()
        .route_fn(|_, uri| {
            uri.path()
                .strip_prefix("/bare/")
                .map(|p| format!("/bare/{}", p.split('/').next().unwrap_or("")))
        })
        .max_routes(3);
    let svc =
        tower::ServiceBuilder::new()
            .layer(layer)
            .service_fn(|_req: http::Request<String>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
            });
    rt.block_on(async {
        for path in [
            "/bare/a/1",
            "/bare/a/2",
            "/bare/b/1",
            "/bare/c/1",
            "/bare/d/1",
            "/bare/e/1",
        ] {
            svc.clone()
                .oneshot(http::Request::get(path).body(String::new()).unwrap())
                .await
                .unwrap();
        }
    });
    let samples = parse(&prometheus.render());
    let count = |route: &str| {
        value(
            &samples,
            "ee_http_requests_total",
            &[("route", route), ("status_class", "2xx")],
        )
    };
    assert_eq!(count("/bare/a"), Some(2.0));
    assert_eq!(count("/bare/b"), Some(1.0));
    assert_eq!(count("/bare/c"), Some(1.0));
    // Past 3 series, new routes share `other`.
    assert_eq!(count("other"), Some(2.0));
    assert_eq!(count("/bare/d"), None);
}

#[tokio::test]
async fn the_standalone_listener_serves_metrics() {
    let prometheus = prometheus().clone();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = admin.local_addr().unwrap();
    tokio::spawn(prometheus.serve(admin));
    let res = exchange(addr, &raw_request("GET", "/metrics", &[], b"")).await;
    assert_eq!(res.status, 200);
    assert!(!parse(res.text()).is_empty());
}
