#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// House rule: modules are private and every public item is re-exported here,
// once, so each has one path (`ee_core::ClientIp`, `ee_core::RedisConn`).
mod backend;
mod backoff;
mod clock;
mod hop;
mod key;
mod keyspace;
mod problem;
mod redact;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "axum")]
mod rejection;
mod secret;
mod throttle;

pub use backend::OnBackendError;
pub use backoff::Backoff;
pub use clock::{Clock, ObjectClock, SharedClock, SystemClock, unix_ms};
pub use hop::{HOP_BY_HOP, connection_named, is_hop_by_hop, remove_hop_by_hop};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use key::RouteKey;
pub use key::{
    ClientIp, ClientIpConfig, ForwardedHeader, HeaderKey, Key, KeyError, KeyExtractor, KeyFn,
    PeerAddr, PeerIp, RequestHead, Subject, SubjectKey, key_fn,
};
pub use keyspace::KeySpace;
pub use problem::{ABOUT_BLANK, PROBLEM_JSON, Problem, TYPE_BASE};
pub use redact::redact_url;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisConfig, RedisConn, RedisError, Script, ScriptCall};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use rejection::WithProblem;
pub use secret::{Secret, with_secrets_exposed};
pub use throttle::LogThrottle;
