//! What a test logged: a `tracing` subscriber for the current thread that
//! keeps every event as a line of text, so a test can assert that a warning
//! was written.
//!
//! ```
//! let capture = ee_testing::capture_logs();
//! tracing::warn!(key = "k", "entry dropped");
//! assert!(capture.contains("entry dropped"));
//! let logs = capture.stop(); // later events are not captured
//! tracing::warn!("not seen");
//! assert!(logs.contains("WARN") && !logs.contains("not seen"));
//! ```

use std::io::Write;
use std::sync::{Arc, Mutex};

/// The lines logged since [`capture_logs`] (shared with its subscriber).
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

/// A capture in progress (see [`capture_logs`]): what was logged so far,
/// readable while it runs; capturing stops when it is dropped or
/// [`stop`](Self::stop)ped.
#[must_use = "capturing stops when the capture is dropped"]
#[derive(Debug)]
pub struct LogCapture {
    logs: Logs,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    /// Everything logged so far, as text.
    pub fn text(&self) -> String {
        self.logs.text()
    }

    /// Whether some line logged so far contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.logs.contains(needle)
    }

    /// Stops capturing (the thread's previous subscriber is back) and
    /// returns what was logged.
    pub fn stop(self) -> Logs {
        self.logs
    }
}

/// Captures every event (all levels, no colours) on this thread until the
/// capture is dropped or stopped. On a multi-thread runtime, events from
/// other worker threads are not seen: use a current-thread runtime
/// (`#[tokio::test]`).
pub fn capture_logs() -> LogCapture {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    LogCapture {
        logs,
        _guard: tracing::subscriber::set_default(subscriber),
    }
}
