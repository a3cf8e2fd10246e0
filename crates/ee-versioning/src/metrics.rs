//! The crate's metric: `ee_versioning_deprecated_requests_total{version,client}`,
//! requests to a deprecated version by client key, so its owners know who
//! still calls it.
//!
//! The router describes it and registers each deprecated version's
//! `client="unknown"` and `client="other"` handles when it is built; a
//! named client's handle is registered on its first request and kept, so no
//! `counter!` lookup runs per request.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ee_core::KeyExtractor;
use http::Request;
use metrics::{Counter, Unit, counter, describe_counter};

use crate::version::Version;

/// `ee_versioning_deprecated_requests_total{version,client}`: requests to a
/// deprecated version, by client key (`unknown` without one, `other` past
/// the bound on distinct clients).
pub const METRIC_DEPRECATED_REQUESTS_TOTAL: &str = "ee_versioning_deprecated_requests_total";

/// Describes this crate's metric (help text and unit in `/metrics`); the
/// router calls it when it is built.
pub fn describe_metrics() {
    describe_counter!(
        METRIC_DEPRECATED_REQUESTS_TOTAL,
        Unit::Count,
        "Requests to a deprecated API version, by version and client"
    );
}

/// Who calls deprecated versions: the client key and the bound on distinct
/// clients, shared by every version of a router.
pub(crate) struct Meter {
    client_key: Option<Arc<dyn KeyExtractor>>,
    max_clients: usize,
    /// The clients named in labels so far (across versions).
    clients: Mutex<HashSet<String>>,
}

impl Meter {
    pub(crate) fn new(client_key: Option<Arc<dyn KeyExtractor>>, max_clients: usize) -> Self {
        describe_metrics();
        Self {
            client_key,
            max_clients,
            clients: Mutex::new(HashSet::new()),
        }
    }

    /// Whether `client` has (or may now have) a label of its own.
    fn admits(&self, client: &str) -> bool {
        let mut seen = self.clients.lock().expect("not poisoned");
        if seen.contains(client) {
            return true;
        }
        if seen.len() >= self.max_clients {
            return false;
        }
        seen.insert(client.to_owned());
        true
    }
}

/// One deprecated version's counters.
pub(crate) struct VersionMeter {
    meter: Arc<Meter>,
    version: String,
    /// Requests without a client key.
    unknown: Counter,
    /// Clients past the bound.
    other: Counter,
    /// Each named client's counter.
    named: Mutex<HashMap<String, Counter>>,
}

impl VersionMeter {
    /// Registers `version`'s fixed handles.
    pub(crate) fn new(meter: Arc<Meter>, version: Version) -> Self {
        let version = version.to_string();
        let fixed = |client: &'static str| counter!(METRIC_DEPRECATED_REQUESTS_TOTAL, "version" => version.clone(), "client" => client);
        Self {
            unknown: fixed("unknown"),
            other: fixed("other"),
            meter,
            version,
            named: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request (by its client key; `unknown` without one, `other`
    /// past the bound).
    pub(crate) fn count<B>(&self, req: &Request<B>) {
        let key = self
            .meter
            .client_key
            .as_ref()
            .and_then(|k| k.extract_from(req).ok());
        let Some(key) = key else {
            self.unknown.increment(1);
            return;
        };
        let key = key.to_string();
        let mut named = self.named.lock().expect("not poisoned");
        if let Some(counter) = named.get(&key) {
            counter.increment(1);
            return;
        }
        if !self.meter.admits(&key) {
            self.other.increment(1);
            return;
        }
        let counter = counter!(
            METRIC_DEPRECATED_REQUESTS_TOTAL,
            "version" => self.version.clone(),
            "client" => key.clone()
        );
        counter.increment(1);
        named.insert(key, counter);
    }
}
