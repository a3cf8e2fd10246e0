//! A stored response and the `Vary` variants of one URL, with their Redis
//! encoding (headers as text pairs, the body as base64).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use ee_core::unix_ms;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Headers never stored besides the hop-by-hop ones (ee-core's list, with
/// the proxy credentials, and those `Connection` names): ours, which are set
/// per answer, and cookies.
const NOT_STORED: [&str; 3] = ["age", "x-cache", "set-cookie"];

/// What a stored response takes in memory besides its body and its header
/// bytes: the struct, its header map's table and the `Vary` list (an
/// estimate; see the memory store's `ENTRY_OVERHEAD` for how it was checked).
const RESPONSE_OVERHEAD: usize = 384;
/// What one header (or `Vary` field) takes besides its name and value bytes:
/// its bucket in the map and the value's handle.
const FIELD_OVERHEAD: usize = 48;

/// One stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The status.
    pub status: StatusCode,
    /// The end-to-end headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// When it was stored (Unix ms).
    pub stored_at_ms: u64,
    /// How long it is fresh.
    pub fresh_ms: u64,
    /// How long after that it may be served stale while refreshed.
    pub stale_ms: u64,
    /// The request headers its `Vary` names, with the values they had.
    pub vary: Vec<VaryField>,
}

/// A request header a response's `Vary` names, and the value it had in the
/// request that response answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaryField {
    /// The header.
    pub name: HeaderName,
    /// Its value in that request (`None`: the request did not send it).
    pub value: Option<HeaderValue>,
}

impl StoredResponse {
    pub(crate) fn new(
        head: &http::response::Parts,
        body: Bytes,
        request: &HeaderMap,
        fresh: Duration,
        stale: Duration,
    ) -> Self {
        let connection_named = ee_core::connection_named(&head.headers);
        let stored = |name: &HeaderName| {
            !NOT_STORED.contains(&name.as_str()) && !ee_core::is_hop_by_hop(name, &connection_named)
        };
        // Usually every field is kept: a copy of the map, without rehashing
        // each name into a new one.
        let headers = if head.headers.keys().all(stored) {
            head.headers.clone()
        } else {
            let mut headers = HeaderMap::with_capacity(head.headers.len());
            for (name, value) in &head.headers {
                if stored(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
            headers
        };
        let vary = head
            .headers
            .get_all(http::header::VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .map(|name| {
                let value = request.get(&name).cloned();
                VaryField { name, value }
            })
            .collect();
        // Time spent upstream counts against freshness: as if stored earlier.
        let age_ms = crate::http::directives::upstream_age(&head.headers).as_millis() as u64;
        Self {
            status: head.status,
            headers,
            body,
            stored_at_ms: unix_ms().saturating_sub(age_ms),
            fresh_ms: u64::try_from(fresh.as_millis()).unwrap_or(u64::MAX),
            stale_ms: u64::try_from(stale.as_millis()).unwrap_or(u64::MAX),
            vary,
        }
    }

    /// About how many bytes it holds in memory: the body, the header names
    /// and values and the `Vary` fields, plus an estimate of the structures
    /// around them. A [`MemoryStore`](crate::MemoryStore) of responses is
    /// bounded by this (see [`MemoryStoreBuilder::max_bytes`](crate::MemoryStoreBuilder::max_bytes)).
    pub fn size_bytes(&self) -> usize {
        let field = |name: &HeaderName, value: Option<&HeaderValue>| {
            FIELD_OVERHEAD + name.as_str().len() + value.map_or(0, HeaderValue::len)
        };
        let headers: usize = self.headers.iter().map(|(n, v)| field(n, Some(v))).sum();
        let vary: usize = self
            .vary
            .iter()
            .map(|f| field(&f.name, f.value.as_ref()))
            .sum();
        RESPONSE_OVERHEAD + self.body.len() + headers + vary
    }

    /// Whether `request` selects this variant (same values of every header
    /// its `Vary` names).
    pub fn matches(&self, request: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|field| request.get(&field.name) == field.value.as_ref())
    }
}

/// The stored variants of one URL (one, unless the response has `Vary`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variants(Arc<Vec<StoredResponse>>);

impl Variants {
    /// The variant `request` selects.
    pub fn matching(&self, request: &HeaderMap) -> Option<&StoredResponse> {
        self.0.iter().find(|v| v.matches(request))
    }

    /// `existing` with `stored` in place of the variant it replaces, newest
    /// first, at most `max` variants.
    pub(crate) fn with(existing: Option<&Variants>, stored: StoredResponse, max: usize) -> Self {
        let kept = existing.map_or(0, |e| e.0.len().min(max.saturating_sub(1)));
        let mut items = Vec::with_capacity(kept + 1);
        if let Some(existing) = existing {
            items.extend(
                existing
                    .0
                    .iter()
                    .filter(|v| v.vary != stored.vary)
                    .take(max.saturating_sub(1))
                    .cloned(),
            );
        }
        items.insert(0, stored);
        Self(Arc::new(items))
    }

    /// The longest lifetime left of any variant.
    pub(crate) fn longest(&self) -> Lifetime {
        let now = unix_ms();
        let fresh = self
            .0
            .iter()
            .map(|v| {
                v.stored_at_ms
                    .saturating_add(v.fresh_ms)
                    .saturating_sub(now)
            })
            .max()
            .unwrap_or(0);
        let stale = self.0.iter().map(|v| v.stale_ms).max().unwrap_or(0);
        Lifetime {
            fresh: Duration::from_millis(fresh.max(1)),
            stale: Duration::from_millis(stale),
        }
    }

    /// About how many bytes the variants hold in memory: the sum of their
    /// [`StoredResponse::size_bytes`].
    pub fn size_bytes(&self) -> usize {
        self.0.iter().map(StoredResponse::size_bytes).sum::<usize>() + 32
    }

    /// How many variants.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How long an entry is fresh, and then servable stale.
pub(crate) struct Lifetime {
    pub(crate) fresh: Duration,
    pub(crate) stale: Duration,
}

#[derive(Serialize, Deserialize)]
struct WireResponse {
    status: u16,
    headers: Vec<(String, WireValue)>,
    body: String,
    stored_at_ms: u64,
    fresh_ms: u64,
    stale_ms: u64,
    vary: Vec<(String, Option<WireValue>)>,
}

/// A header value: text when it is visible ASCII, else its bytes in base64.
#[derive(Serialize, Deserialize)]
enum WireValue {
    #[serde(rename = "t")]
    Text(String),
    #[serde(rename = "b")]
    Bytes(String),
}

impl WireValue {
    fn of(value: &HeaderValue) -> Self {
        match value.to_str() {
            Ok(text) => WireValue::Text(text.to_owned()),
            Err(_) => WireValue::Bytes(BASE64.encode(value.as_bytes())),
        }
    }

    fn value<E: serde::de::Error>(self) -> Result<HeaderValue, E> {
        match self {
            WireValue::Text(t) => HeaderValue::from_str(&t).map_err(E::custom),
            WireValue::Bytes(b) => {
                let bytes = BASE64.decode(b).map_err(E::custom)?;
                HeaderValue::from_bytes(&bytes).map_err(E::custom)
            }
        }
    }
}

impl Serialize for Variants {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        let wire: Vec<WireResponse> = self
            .0
            .iter()
            .map(|r| WireResponse {
                status: r.status.as_u16(),
                headers: r
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), WireValue::of(v)))
                    .collect(),
                body: BASE64.encode(&r.body),
                stored_at_ms: r.stored_at_ms,
                fresh_ms: r.fresh_ms,
                stale_ms: r.stale_ms,
                vary: r
                    .vary
                    .iter()
                    .map(|f| (f.name.to_string(), f.value.as_ref().map(WireValue::of)))
                    .collect(),
            })
            .collect();
        wire.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Variants {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = Vec::<WireResponse>::deserialize(deserializer)?;
        let mut items = Vec::with_capacity(wire.len());
        for w in wire {
            let mut headers = HeaderMap::with_capacity(w.headers.len());
            for (n, v) in w.headers {
                let name = HeaderName::from_bytes(n.as_bytes()).map_err(D::Error::custom)?;
                headers.append(name, v.value()?);
            }
            let mut vary = Vec::with_capacity(w.vary.len());
            for (n, v) in w.vary {
                let name = HeaderName::from_bytes(n.as_bytes()).map_err(D::Error::custom)?;
                let value = v.map(WireValue::value).transpose()?;
                vary.push(VaryField { name, value });
            }
            items.push(StoredResponse {
                status: StatusCode::from_u16(w.status).map_err(D::Error::custom)?,
                headers,
                body: BASE64.decode(w.body).map_err(D::Error::custom)?.into(),
                stored_at_ms: w.stored_at_ms,
                fresh_ms: w.fresh_ms,
                stale_ms: w.stale_ms,
                vary,
            });
        }
        Ok(Self(Arc::new(items)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_round_trip_with_binary_header_values() {
        let mut headers = HeaderMap::new();
        headers.insert("etag", HeaderValue::from_static("\"v1\""));
        headers.insert("x-latin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let stored = StoredResponse {
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(b"\x00\xffbinary"),
            stored_at_ms: 1,
            fresh_ms: 2,
            stale_ms: 3,
            vary: vec![
                VaryField {
                    name: HeaderName::from_static("accept-language"),
                    value: Some(HeaderValue::from_bytes(b"fr\xe9").unwrap()),
                },
                VaryField {
                    name: HeaderName::from_static("cookie"),
                    value: None,
                },
            ],
        };
        let variants = Variants(Arc::new(vec![stored]));
        let json = serde_json::to_string(&variants).unwrap();
        let back: Variants = serde_json::from_str(&json).unwrap();
        assert_eq!(back, variants);
        // A binary Vary value does not turn into "header absent".
        assert!(back.matching(&HeaderMap::new()).is_none());
    }
}
