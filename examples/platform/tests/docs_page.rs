//! The gateway's API docs page, rendered in a real headless Chromium.

use std::time::Duration;

use ee_platform::{Platform, PlatformConfig};
use ee_testing::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_lists_every_operation_from_the_openapi_document() {
    let dir = std::env::temp_dir().join(format!("ee-platform-docs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let platform = Platform::start(
        PlatformConfig {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.clone(),
            ..PlatformConfig::default()
        },
        None,
    )
    .await
    .unwrap();
    let browser = Browser::start().await;
    browser.goto(&format!("{}/docs", platform.gateway)).await;
    let text = browser
        .wait_text("#ops", |t| t.contains("/v1/orders/{id}"))
        .await;
    for op in [
        "POST /v1/users",
        "GET /v1/users/{id}",
        "GET /v1/products",
        "GET /v1/products/{sku}",
        "POST /v1/orders",
        "GET /v1/orders/{id}",
        "GET /v1/notifications",
        "POST /v1/auth/token",
        "POST /v1/auth/refresh",
        "POST /v1/auth/logout",
        "GET /v1/users/me",
        "PATCH /v1/products/{sku}",
    ] {
        let (method, path) = op.split_once(' ').unwrap();
        assert!(
            text.to_uppercase()
                .contains(&format!("{method} {}", path.to_uppercase())),
            "{op} missing from the page: {text}"
        );
    }
    let headings = browser
        .eval("return document.querySelectorAll('#ops h2').length")
        .await;
    assert_eq!(headings, 13);
    drop(browser);
    platform.shutdown(Duration::from_secs(2)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
