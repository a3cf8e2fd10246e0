//! Hot reload: on a file change (polled) or SIGHUP, load again; publish a
//! valid configuration, keep the old one (and log every reason) otherwise.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch as channel;

use crate::loader::Loader;

fn stamps(files: &[std::path::PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// Loads once, then watches: every `poll` the files' modification times are
/// compared (and on SIGHUP the configuration is reloaded regardless); a
/// valid new configuration is sent to the receivers, an invalid one is
/// logged with every issue and the old one stays.
///
/// # Errors
/// The first load's [`ConfigError`](crate::ConfigError): a service does not
/// start on a bad configuration.
pub fn watch<T>(
    loader: Loader<T>,
    poll: Duration,
) -> Result<channel::Receiver<Arc<T>>, crate::ConfigError>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let first = Arc::new(loader.load()?);
    let (tx, rx) = channel::channel(first);
    tokio::spawn(async move {
        let mut seen = stamps(loader.files());
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let forced = tokio::select! {
                () = tokio::time::sleep(poll) => false,
                () = hangup => true,
            };
            if tx.is_closed() {
                return;
            }
            let now = stamps(loader.files());
            if !forced && now == seen {
                continue;
            }
            seen = now;
            match loader.load() {
                Ok(config) => {
                    tracing::info!("configuration reloaded");
                    tx.send_replace(Arc::new(config));
                }
                Err(e) => {
                    tracing::error!(error = %e, "configuration not reloaded; the previous one stays")
                }
            }
        }
    });
    Ok(rx)
}
