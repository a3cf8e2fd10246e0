//! What a store keeps per key, and its byte encoding for Redis.

// The byte encoding is used by the Redis store only.
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

use ee_serialize::ZstdCodec;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CacheError;

/// One cached entry: a value (or a remembered absence) and its lifetimes.
///
/// Times are Unix milliseconds, so that every instance reading an entry from
/// Redis agrees on them (within clock skew).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<V> {
    /// The value; `None` for a negative entry ("the loader found nothing").
    pub value: Option<V>,
    /// Until when the entry is fresh.
    pub fresh_until: u64,
    /// Until when the entry may still be served stale while it is refreshed
    /// (equal to `fresh_until` without stale-while-revalidate).
    pub stale_until: u64,
}

/// How usable an entry is at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within its TTL.
    Fresh,
    /// Past its TTL, within the stale-while-revalidate window.
    Stale,
    /// Past both: treat as absent.
    Expired,
}

impl<V> Entry<V> {
    /// How usable the entry is at `now_ms`.
    #[inline]
    pub fn freshness(&self, now_ms: u64) -> Freshness {
        if now_ms < self.fresh_until {
            Freshness::Fresh
        } else if now_ms < self.stale_until {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }

    /// Milliseconds until the entry can be dropped (0 when it already can).
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.stale_until.saturating_sub(now_ms)
    }
}

const FORMAT: u8 = 1;
const FLAG_ZSTD: u8 = 1;
const FLAG_NEGATIVE: u8 = 2;
const HEADER: usize = 18;

/// Encodes an entry: a version byte, a flags byte, `fresh_until` and
/// `stale_until` (u64 little-endian), the tags (a u16 count, then each as a
/// u16 length and UTF-8), then the value as JSON, compressed with zstd when
/// `codec` compresses it (above its size threshold, with its dictionary).
pub(crate) fn encode<V: Serialize>(
    entry: &Entry<V>,
    tags: &[String],
    codec: &ZstdCodec,
    max_bytes: usize,
) -> Result<Vec<u8>, CacheError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[FORMAT, 0]);
    out.extend_from_slice(&entry.fresh_until.to_le_bytes());
    out.extend_from_slice(&entry.stale_until.to_le_bytes());
    let too_many = || CacheError::Encode("more than 65535 tags, or a tag over 65535 bytes".into());
    out.extend_from_slice(
        &u16::try_from(tags.len())
            .map_err(|_| too_many())?
            .to_le_bytes(),
    );
    for tag in tags {
        out.extend_from_slice(
            &u16::try_from(tag.len())
                .map_err(|_| too_many())?
                .to_le_bytes(),
        );
        out.extend_from_slice(tag.as_bytes());
    }
    match &entry.value {
        None => out[1] = FLAG_NEGATIVE,
        Some(value) => {
            let json = serde_json::to_vec(value).map_err(|e| CacheError::Encode(e.to_string()))?;
            // The reader inflates at most `max_bytes`: a value whose JSON is
            // larger could be written compressed but never read back.
            if json.len() > max_bytes {
                return Err(CacheError::ValueTooLarge {
                    size: json.len(),
                    max: max_bytes,
                });
            }
            if codec
                .compress_into(&json, &mut out)
                .map_err(|e| CacheError::Encode(e.to_string()))?
            {
                out[1] = FLAG_ZSTD;
            }
        }
    }
    if out.len() > max_bytes {
        return Err(CacheError::ValueTooLarge {
            size: out.len(),
            max: max_bytes,
        });
    }
    Ok(out)
}

/// Decodes what [`encode`] wrote; anything else is a [`CacheError::Decode`].
/// A compressed value may not inflate past `max_bytes`.
pub(crate) fn decode<V: DeserializeOwned>(
    bytes: &[u8],
    codec: &ZstdCodec,
    max_bytes: usize,
) -> Result<(Entry<V>, Vec<String>), CacheError> {
    let corrupt = |why: &str| CacheError::Decode(why.to_owned());
    if bytes.len() < HEADER || bytes[0] != FORMAT {
        return Err(corrupt("not an ee-cache entry (unknown format)"));
    }
    let flags = bytes[1];
    let fresh_until = u64::from_le_bytes(bytes[2..10].try_into().expect("8 bytes"));
    let stale_until = u64::from_le_bytes(bytes[10..18].try_into().expect("8 bytes"));
    let mut rest = &bytes[HEADER..];
    let take_u16 = |rest: &mut &[u8]| -> Result<usize, CacheError> {
        if rest.len() < 2 {
            return Err(corrupt("truncated tag list"));
        }
        let n = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        *rest = &rest[2..];
        Ok(n)
    };
    let count = take_u16(&mut rest)?;
    let mut tags = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let len = take_u16(&mut rest)?;
        if rest.len() < len {
            return Err(corrupt("truncated tag"));
        }
        let tag = std::str::from_utf8(&rest[..len]).map_err(|_| corrupt("a tag is not UTF-8"))?;
        tags.push(tag.to_owned());
        rest = &rest[len..];
    }
    let body = rest;
    let value = if flags & FLAG_NEGATIVE != 0 {
        None
    } else if flags & FLAG_ZSTD != 0 {
        // Inflate within the value limit: a corrupt or hostile entry cannot
        // make us allocate more.
        let json = codec
            .decompress_within(body, max_bytes)
            .map_err(|e| corrupt(&e.to_string()))?;
        Some(serde_json::from_slice(&json).map_err(|e| corrupt(&e.to_string()))?)
    } else {
        Some(serde_json::from_slice(body).map_err(|e| corrupt(&e.to_string()))?)
    };
    Ok((
        Entry {
            value,
            fresh_until,
            stale_until,
        },
        tags,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_plain_compressed_and_negative() {
        let small = Entry {
            value: Some("hello".to_owned()),
            fresh_until: 10,
            stale_until: 20,
        };
        let tags = vec!["product:42".to_owned(), "shelf".to_owned()];
        let bytes = encode(&small, &tags, &ZstdCodec::new(), 1 << 20).unwrap();
        assert_eq!(bytes[1], 0);
        assert_eq!(
            decode::<String>(&bytes, &ZstdCodec::new(), 1 << 20).unwrap(),
            (small, tags)
        );

        let big = Entry {
            value: Some("x".repeat(10_000)),
            fresh_until: 1,
            stale_until: 2,
        };
        let bytes = encode(&big, &[], &ZstdCodec::new(), 1 << 20).unwrap();
        assert_eq!(bytes[1], FLAG_ZSTD);
        assert!(bytes.len() < 1000, "{}", bytes.len());
        assert_eq!(
            decode::<String>(&bytes, &ZstdCodec::new(), 1 << 20)
                .unwrap()
                .0,
            big
        );

        let negative: Entry<String> = Entry {
            value: None,
            fresh_until: 5,
            stale_until: 5,
        };
        let bytes = encode(&negative, &[], &ZstdCodec::new(), 1 << 20).unwrap();
        assert_eq!(
            decode::<String>(&bytes, &ZstdCodec::new(), 1 << 20)
                .unwrap()
                .0,
            negative
        );
    }

    #[test]
    fn corrupt_bytes_and_bombs_are_decode_errors() {
        for bytes in [&b""[..], b"garbage", &[FORMAT, 0, 0, 0][..], &[9; 40][..]] {
            assert!(matches!(
                decode::<String>(bytes, &ZstdCodec::new(), 1 << 20),
                Err(CacheError::Decode(_))
            ));
        }
        let mut bad_json = vec![FORMAT, 0];
        bad_json.extend_from_slice(&[0; 18]);
        bad_json.extend_from_slice(b"{not json");
        assert!(matches!(
            decode::<String>(&bad_json, &ZstdCodec::new(), 1 << 20),
            Err(CacheError::Decode(_))
        ));
        // 10 MB of zeros compress to a few hundred bytes; the limit stops it.
        let zeros = zstd::bulk::compress(&vec![b'0'; 10 << 20], 3).unwrap();
        let mut bomb = vec![FORMAT, FLAG_ZSTD];
        bomb.extend_from_slice(&[0; 18]);
        bomb.extend_from_slice(&zeros);
        assert!(matches!(
            decode::<u64>(&bomb, &ZstdCodec::new(), 1 << 20),
            Err(CacheError::Decode(_))
        ));
    }

    #[test]
    fn values_over_the_limit_are_refused() {
        let entry = Entry {
            value: Some(vec![7u8; 4096]),
            fresh_until: 0,
            stale_until: 0,
        };
        assert!(matches!(
            encode(&entry, &[], &ZstdCodec::new().min_size(usize::MAX), 1000),
            Err(CacheError::ValueTooLarge { max: 1000, .. })
        ));
        // Compressible JSON over the limit is refused too: it would compress
        // under the limit but could never be inflated back within it.
        let zeros = Entry {
            value: Some("0".repeat(5000)),
            fresh_until: 0,
            stale_until: 0,
        };
        assert!(matches!(
            encode(&zeros, &[], &ZstdCodec::new(), 1000),
            Err(CacheError::ValueTooLarge { max: 1000, .. })
        ));
    }
}
