//! The platform's `/metrics`, after traffic of every kind, passes
//! `promtool check metrics`: every metric has HELP and a type, names and
//! units follow Prometheus' conventions; and the alert rules
//! (`docs/prometheus/ee-alerts.yml`) pass `promtool check rules` and their
//! unit tests (`promtool test rules`). A test binary of its own, since the
//! Prometheus recorder is global to a process.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{Shop as _, send};
use ee_platform::{PaymentSettings, Platform, PlatformConfig};
use serde_json::json;

struct Shop {
    platform: Platform,
    client: common::HttpClient,
}

impl common::Shop for Shop {
    fn http(&self) -> &common::HttpClient {
        &self.client
    }
    fn gateway_url(&self) -> &str {
        &self.platform.gateway
    }
}

/// `promtool`, or a failure that says how to get it (never a skip).
fn promtool() -> Command {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "promtool is not installed: run ./scripts/test (it installs it), or `apt-get install prometheus` (Debian/Ubuntu), `brew install prometheus` (macOS)"
    );
    Command::new("promtool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_traffic_pass_promtool() {
    let prometheus = ee_metrics::Prometheus::builder()
        .global_label("service", "ee-platform")
        .install()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("ee-platform-promtool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = PlatformConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.clone(),
        payment: PaymentSettings {
            latency_ms: 1,
            failure_rate: 0.0,
        },
        ..PlatformConfig::default()
    };
    let shop = Shop {
        platform: Platform::start(config, Some(&prometheus)).await.unwrap(),
        client: common::client(),
    };
    let gw = shop.gateway_url().to_owned();
    let get = |path: &str| {
        let url = format!("{gw}{path}");
        let client = shop.client.clone();
        async move { send(&client, Method::GET, &url, &[], None).await }
    };
    // Traffic of every kind: reads, a registration, an order settled by
    // its job, a validation failure, a bad query, an unknown route.
    assert_eq!(get("/v1/products?per_page=5").await.status, StatusCode::OK);
    assert_eq!(get("/v1/products/SKU-0001").await.status, StatusCode::OK);
    let user = common::sign_up(&shop.client, &gw, "prom@example.com").await;
    let order = shop
        .order_waiting("k-prom", &user, "SKU-0001", 1, "tok_ok")
        .await;
    assert!(order.status.is_success(), "{}", order.body);
    assert_eq!(
        send(
            &shop.client,
            Method::POST,
            &format!("{gw}/v1/users"),
            &[],
            Some(json!({"email": 1}))
        )
        .await
        .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        get("/v1/products?per_page=").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(get("/v1/nowhere").await.status, StatusCode::NOT_FOUND);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let text = prometheus.render();
    for family in [
        "ee_http_requests_total",
        "ee_db_query_duration_seconds",
        "ee_cache_requests_total",
        "ee_queue_jobs_total",
        "ee_validate_rejections_total",
        "ee_idempotency_requests_total",
        "ee_platform_orders_reconciled_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no HELP for {family}"
        );
    }
    let mut check = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics:\n{said}"
    );
    shop.platform.shutdown(Duration::from_secs(2)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/prometheus");
    for args in [
        ["check", "rules", "ee-alerts.yml"],
        ["test", "rules", "ee-alerts.test.yml"],
    ] {
        let out = promtool().args(args).current_dir(dir).output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {}:\n{said}", args.join(" "));
        assert!(
            said.contains("SUCCESS"),
            "promtool {}:\n{said}",
            args.join(" ")
        );
    }
}
