//! What the example's producer and worker share: the job, the queue name,
//! and where the worker records what it "sent".

use std::time::Duration;

use ee_core::RedisConfig;
use serde::{Deserialize, Serialize};

/// The queue both binaries use.
pub const QUEUE: &str = "confirmations";

/// The Redis list the worker appends each order id to when it "sends" the
/// confirmation (a stand-in for an e-mail provider).
pub const SENT: &str = "ee-example:queue:sent";

/// Send the customer a confirmation of their order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Confirmation {
    /// The order.
    pub order_id: u64,
    /// Where to send it.
    pub email: String,
}

/// `EE_REDIS_URL`, or the local default.
pub fn redis_config() -> RedisConfig {
    let url = std::env::var("EE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    RedisConfig::standalone(url).with_timeout(Duration::from_secs(2))
}

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
