//! `ee-platform`: the reference shop.
//!
//! - `ee-platform` (or `ee-platform embedded`): all five services and the
//!   gateway in this process, SQLite in `./data`, nothing to install.
//! - `ee-platform serve <service> [--config FILE]`: one service
//!   (`user`, `product`, `order`, `payment`, `notification`, `gateway`) per
//!   process, on Redis and PostgreSQL (`EE_REDIS_URL`, `EE_DATABASE_URL`).
//!
//! Configuration: `platform.toml` (or `--config FILE`), then `EE_*`
//! variables (`EE_LISTEN=0.0.0.0:8080`, `EE_PAYMENT__FAILURE_RATE=0.1`).

use std::process::ExitCode;
use std::time::Duration;

use ee_platform::{Platform, PlatformConfig};

const USAGE: &str = "usage: ee-platform [embedded] [--config FILE]
       ee-platform serve <user|product|order|payment|notification|gateway> [--config FILE]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut file = "platform.toml".to_owned();
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => match it.next() {
                Some(f) => file.clone_from(f),
                None => return usage("--config needs a file"),
            },
            "-h" | "--help" | "help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => words.push(other.to_owned()),
        }
    }
    let config = ee_config::Loader::new(PlatformConfig::default())
        .file(&file)
        .load_or_exit();
    let _logs = match config.logging.init() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("ee-platform: logging: {e}");
            return ExitCode::FAILURE;
        }
    };
    let prometheus = ee_metrics::Prometheus::builder()
        .global_label("service", "ee-platform")
        .install()
        .map_err(|e| eprintln!("ee-platform: metrics off: {e}"))
        .ok();
    let result = match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["embedded"] => embedded(config, prometheus.as_ref()).await,
        ["serve", service] => ee_platform::serve(service, config, prometheus.as_ref()).await,
        _ => return usage("unexpected arguments"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ee-platform: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("ee-platform: {why}\n{USAGE}");
    ExitCode::from(2)
}

async fn embedded(
    config: PlatformConfig,
    prometheus: Option<&ee_metrics::Prometheus>,
) -> Result<(), ee_platform::StartError> {
    let drain = Duration::from_millis(config.drain_ms);
    let data = if config.database_url.is_empty() {
        format!("SQLite in {}/platform.db", config.data_dir.display())
    } else {
        // Printed: without its password.
        ee_core::redact_url(&config.database_url).into_owned()
    };
    let platform = Platform::start(config, prometheus).await?;
    let g = &platform.gateway;
    eprintln!(
        "\nee reference shop is running (embedded mode: {data}).\n\n  gateway  {g}/v1/products\n  docs     {g}/docs   (OpenAPI: {g}/openapi.json)\n  metrics  {g}/metrics   (admin token)\n  health   {g}/readyz   (details: {g}/healthz, admin token)\n\ntry:\n  curl -s {g}/v1/products?per_page=3\n  curl -s -X POST {g}/v1/users -H 'content-type: application/json' -d '{{\"email\":\"ada@example.com\",\"name\":\"Ada\",\"password\":\"correct horse\"}}'\n  curl -s -X POST {g}/v1/auth/token -H 'content-type: application/json' -d '{{\"email\":\"ada@example.com\",\"password\":\"correct horse\"}}'\n  (then: -H 'authorization: Bearer <access_token>' on /v1/orders, /v1/users/me)\n\nCtrl-C stops it.\n"
    );
    ee_platform::shutdown_signal().await;
    eprintln!(
        "stopping (in-flight requests may finish for {} ms)",
        drain.as_millis()
    );
    platform.shutdown(drain).await;
    Ok(())
}
