//! The global writer never blocks a request: with a writer that cannot keep
//! up, lines are dropped and counted.

use std::time::Duration;

use ee_logging::{LogConfig, LogFormat};

/// A destination that takes 5 ms per write.
struct Slow;

impl std::io::Write for Slow {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(5));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_buffer_drops_and_counts_lines() {
    let config = LogConfig {
        format: LogFormat::Json,
        filter: "info".into(),
        buffer_lines: 8,
        ..LogConfig::default()
    };
    let guard = config.init_with(Slow).unwrap();
    for i in 0..2_000 {
        tracing::info!(i, "a line the slow writer cannot keep up with");
    }
    let dropped = guard.dropped_lines();
    assert!(dropped > 1_000, "only {dropped} of 2000 lines were dropped");
    // A second global subscriber is refused with a clear error.
    let err = LogConfig::default()
        .init_with(std::io::sink())
        .unwrap_err()
        .to_string();
    assert!(err.contains("already installed"), "{err}");
}
