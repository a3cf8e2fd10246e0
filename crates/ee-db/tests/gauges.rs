//! The pool gauges, published once a second, through a process-wide
//! recorder (this test binary holds only this test).

use std::time::Duration;

use ee_db::{Database, DbConfig};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

fn gauge(snapshotter: &Snapshotter, state: &str) -> Option<f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| {
            let key = key.key();
            let matches = key.name() == "ee_db_pool_connections"
                && key
                    .labels()
                    .any(|l| l.key() == "pool" && l.value() == "gauges")
                && key
                    .labels()
                    .any(|l| l.key() == "state" && l.value() == state);
            match value {
                DebugValue::Gauge(v) if matches => Some(v.into_inner()),
                _ => None,
            }
        })
}

/// Waits (up to 5 s: the gauges are published every second) for `want`.
async fn until(snapshotter: &Snapshotter, state: &str, want: f64) {
    for _ in 0..50 {
        if gauge(snapshotter, state) == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{state} never reached {want}: {:?}",
        gauge(snapshotter, state)
    );
}

#[tokio::test]
async fn idle_and_in_use_connections_are_published() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).unwrap();

    let db = Database::connect(DbConfig {
        name: "gauges".into(),
        max_size: 3,
        min_idle: Some(2),
        ..DbConfig::new("sqlite::memory:")
    })
    .await
    .unwrap();
    until(&snapshotter, "idle", 2.0).await;
    until(&snapshotter, "in_use", 0.0).await;
    let tx = db.begin().await.unwrap();
    until(&snapshotter, "in_use", 1.0).await;
    until(&snapshotter, "idle", 1.0).await;
    tx.rollback().await.unwrap();
    until(&snapshotter, "in_use", 0.0).await;
}
