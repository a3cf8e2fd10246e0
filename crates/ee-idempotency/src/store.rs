//! The backend seam, and the record kept per key.

// The records' byte layout is used by stores that keep bytes (Redis).
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// SHA-256 of the request's method, path and query, and body.
pub type Fingerprint = [u8; 32];

/// A response kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its headers, without hop-by-hop fields and `Content-Length`.
    pub headers: HeaderMap,
    /// Its whole body.
    pub body: Bytes,
}

/// What is known about a key when a request takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The key was free: this request holds it for the lease.
    Acquired,
    /// Another request holds the key and has not finished.
    InFlight {
        /// The fingerprint of that request.
        fingerprint: Fingerprint,
    },
    /// A request with this key finished; its response is stored.
    Completed {
        /// The fingerprint of that request.
        fingerprint: Fingerprint,
        /// Its response.
        response: StoredResponse,
    },
}

/// Why a store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time.
    #[error("idempotency backend unavailable: {0}")]
    Unavailable(String),
    /// The backend holds or answered something this crate cannot read.
    #[error("idempotency record unreadable: {0}")]
    Corrupt(String),
}

/// Where records live. Implemented by [`MemoryStore`](crate::MemoryStore)
/// and, with feature `redis`, `RedisStore`.
///
/// Every operation is atomic per key: of N requests that `begin` on a free key
/// at once, exactly one gets [`Begin::Acquired`].
pub trait IdempotencyStore: Clone + Send + Sync + 'static {
    /// Takes `key` for `lease` (first writer wins), or says who has it.
    /// `token` identifies this holder for `complete` and `release`.
    fn begin(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: u64,
        lease: Duration,
    ) -> impl Future<Output = Result<Begin, StoreError>> + Send;

    /// Stores the response for `ttl`, if `token` still holds the key; false
    /// when it no longer does (its lease ran out), and nothing was stored.
    fn complete(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: u64,
        response: &StoredResponse,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Renews the lease of a request still running, if `token` still holds
    /// the key; false when it no longer does.
    fn extend(
        &self,
        key: &str,
        token: u64,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Frees the key if `token` still holds it (the request will not be stored).
    fn release(&self, key: &str, token: u64)
    -> impl Future<Output = Result<(), StoreError>> + Send;
}

const VERSION: u8 = 1;
const IN_FLIGHT: u8 = 1;
const COMPLETED: u8 = 2;

/// A record as stored: in flight (fingerprint, holder) or completed
/// (fingerprint, response). A compact binary layout, so bodies are not inflated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    InFlight {
        fingerprint: Fingerprint,
        token: u64,
    },
    Completed {
        fingerprint: Fingerprint,
        response: StoredResponse,
    },
}

impl Record {
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(VERSION);
        match self {
            Record::InFlight { fingerprint, token } => {
                out.put_u8(IN_FLIGHT);
                out.put_slice(fingerprint);
                out.put_u64(*token);
            }
            Record::Completed {
                fingerprint,
                response,
            } => {
                out.put_u8(COMPLETED);
                out.put_slice(fingerprint);
                out.put_u16(response.status.as_u16());
                out.put_u32(u32::try_from(response.headers.len()).unwrap_or(u32::MAX));
                for (name, value) in &response.headers {
                    put_field(&mut out, name.as_str().as_bytes());
                    put_field(&mut out, value.as_bytes());
                }
                out.put_slice(&response.body);
            }
        }
        out.freeze()
    }

    pub(crate) fn decode(mut data: Bytes) -> Result<Record, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(what.to_owned());
        if data.remaining() < 2 + 32 || data.get_u8() != VERSION {
            return Err(corrupt("unknown record version"));
        }
        let state = data.get_u8();
        let mut fingerprint = [0; 32];
        data.copy_to_slice(&mut fingerprint);
        match state {
            IN_FLIGHT if data.remaining() == 8 => Ok(Record::InFlight {
                fingerprint,
                token: data.get_u64(),
            }),
            COMPLETED if data.remaining() >= 6 => {
                let status = StatusCode::from_u16(data.get_u16()).map_err(|_| corrupt("status"))?;
                let count = data.get_u32();
                let mut headers = HeaderMap::new();
                for _ in 0..count {
                    let name = get_field(&mut data).ok_or_else(|| corrupt("header name"))?;
                    let value = get_field(&mut data).ok_or_else(|| corrupt("header value"))?;
                    headers.append(
                        HeaderName::from_bytes(&name).map_err(|_| corrupt("header name"))?,
                        HeaderValue::from_maybe_shared(value)
                            .map_err(|_| corrupt("header value"))?,
                    );
                }
                Ok(Record::Completed {
                    fingerprint,
                    response: StoredResponse {
                        status,
                        headers,
                        body: data,
                    },
                })
            }
            _ => Err(corrupt("unknown record state")),
        }
    }
}

impl From<Record> for Begin {
    /// What an existing record means to a request that finds it.
    fn from(record: Record) -> Self {
        match record {
            Record::InFlight { fingerprint, .. } => Begin::InFlight { fingerprint },
            Record::Completed {
                fingerprint,
                response,
            } => Begin::Completed {
                fingerprint,
                response,
            },
        }
    }
}

fn put_field(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    out.put_slice(bytes);
}

fn get_field(data: &mut Bytes) -> Option<Bytes> {
    if data.remaining() < 4 {
        return None;
    }
    let len = usize::try_from(data.get_u32()).ok()?;
    (data.remaining() >= len).then(|| data.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        for record in [
            Record::InFlight {
                fingerprint: [7; 32],
                token: 42,
            },
            Record::Completed {
                fingerprint: [9; 32],
                response: StoredResponse {
                    status: StatusCode::CREATED,
                    headers,
                    body: Bytes::from_static(b"{\"id\":1}\x00\xff"),
                },
            },
        ] {
            assert_eq!(Record::decode(record.encode()).unwrap(), record);
        }
        for garbage in [&b""[..], b"\x02", b"\x01\x01short", &[1u8; 50]] {
            assert!(Record::decode(Bytes::copy_from_slice(garbage)).is_err());
        }
    }
}
