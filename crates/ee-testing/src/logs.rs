//! What a test logged: a `tracing` subscriber for the current thread that
//! keeps every event as a line of text, so a test can assert that a warning
//! was written.
//!
//! ```
//! let (logs, _guard) = ee_testing::logs::capture();
//! tracing::warn!(key = "k", "entry dropped");
//! assert!(logs.contains("entry dropped"));
//! assert!(logs.contains("WARN"));
//! ```

use std::io::Write;
use std::sync::{Arc, Mutex};

/// The lines logged since [`capture`] (shared with its subscriber).
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Everything logged, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }

    /// Whether some line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.text().lines().any(|line| line.contains(needle))
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every event (all levels, no colours) on this thread until the
/// guard is dropped. On a multi-thread runtime, events from other worker
/// threads are not seen: use a current-thread runtime (`#[tokio::test]`).
pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}
