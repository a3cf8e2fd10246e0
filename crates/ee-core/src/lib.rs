#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
pub mod hop;
pub mod key;
pub mod keyspace;
pub mod problem;
pub mod redact;
#[cfg(feature = "redis")]
pub mod redis;
pub mod throttle;

pub use clock::{Clock, SystemClock};
pub use key::{Key, KeyError, KeyExtractor, PeerAddr, RequestHead, Subject};
pub use keyspace::KeySpace;
pub use problem::Problem;
pub use throttle::LogThrottle;
