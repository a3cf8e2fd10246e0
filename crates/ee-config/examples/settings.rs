//! A service's settings: defaults in code, then `settings.toml` when there
//! is one, then `APP_*` environment variables; a bad value is reported with
//! where it came from, every one at once.
//!
//! ```sh
//! cargo run -p ee-config --example settings                    # the defaults
//! APP_PORT=9090 APP_DATABASE__POOL=32 cargo run -p ee-config --example settings
//! APP_PORT=eighty APP_DATABASE__POOL=lots cargo run -p ee-config --example settings  # both reported
//! ```

use ee_config::{Loader, Secret};
use serde::{Deserialize, Serialize};

/// The service's settings.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    port: u16,
    database: Database,
}

/// Where the data lives.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Database {
    url: String,
    password: Secret<String>,
    pool: u32,
}

fn main() {
    let defaults = Settings {
        port: 8080,
        database: Database {
            url: "postgres://localhost/shop".into(),
            password: Secret::new("change me".into()),
            pool: 16,
        },
    };
    let settings = Loader::new(defaults)
        .file("settings.toml")
        .env_prefix("APP_")
        .load_or_exit();
    // The password prints as `[redacted]`.
    println!("{settings:#?}");
}
