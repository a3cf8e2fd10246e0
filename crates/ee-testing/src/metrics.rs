//! Reading counters recorded by `metrics_util`'s debugging recorder.

use metrics_util::debugging::{DebugValue, Snapshotter};

/// Every counter of a snapshot, keyed `name{label=value,…}` (labels in the
/// order they were registered).
///
/// ```
/// let recorder = metrics_util::debugging::DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// metrics::with_local_recorder(&recorder, || {
///     metrics::counter!("hits_total", "cache" => "products").increment(2);
/// });
/// let counters = ee_testing::counters(&snapshotter);
/// assert_eq!(counters.get("hits_total{cache=products}"), Some(2));
/// assert_eq!(counters.sum("hits_total"), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Counters(Vec<(String, u64)>);

/// The counters recorded so far.
pub fn counters(snapshotter: &Snapshotter) -> Counters {
    Counters(
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Counter(n) => {
                    let labels: Vec<String> = key
                        .key()
                        .labels()
                        .map(|l| format!("{}={}", l.key(), l.value()))
                        .collect();
                    Some((format!("{}{{{}}}", key.key().name(), labels.join(",")), n))
                }
                _ => None,
            })
            .collect(),
    )
}

impl Counters {
    /// The counter `name{label=value,…}`, if recorded.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, n)| *n)
    }

    /// The sum of every counter named `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(_, n)| n)
            .sum()
    }
}
