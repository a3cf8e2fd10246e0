//! zstd for stored payloads (cache entries, queued jobs): compression above a
//! size threshold, an optional trained dictionary for many small documents,
//! and decompression bounded by a decoded-size limit.

use std::io::Read;
use std::sync::Arc;

use ee_core::Problem;
use http::StatusCode;
use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// What can go wrong compressing or inflating a stored payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// zstd refused the input or the parameters.
    #[error("zstd: {0}")]
    Zstd(#[from] std::io::Error),
    /// The payload inflates past the decoded-size limit.
    #[error("the payload inflates past {limit} bytes")]
    TooLarge {
        /// The limit that was hit.
        limit: usize,
    },
    /// The payload was compressed with a dictionary this codec does not hold.
    #[error("the payload needs zstd dictionary {needed}, this codec has {held}")]
    WrongDictionary {
        /// The dictionary id recorded in the frame.
        needed: u32,
        /// The id of this codec's dictionary (0: none).
        held: u32,
    },
    /// Training a dictionary failed (too few or too uniform samples).
    #[error("training a zstd dictionary failed: {0}")]
    Training(String),
}

/// A stored payload that cannot be read is the server's fault, never the
/// client's: a 500 that names what went wrong (no payload bytes).
impl From<CodecError> for Problem {
    fn from(e: CodecError) -> Self {
        Problem::ee(StatusCode::INTERNAL_SERVER_ERROR, "serialize", "codec")
            .with_title("A stored payload could not be read or written")
            .with_detail(e.to_string())
    }
}

/// A zstd dictionary trained on sample payloads: small JSON documents share
/// most of their keys and many values, which a dictionary holds once instead
/// of every document carrying them.
///
/// Train it offline on a few hundred representative documents, ship the bytes
/// ([`as_bytes`](Self::as_bytes)) with the service, and load them with
/// [`from_bytes`](Self::from_bytes): every instance must use the same bytes
/// to read what another wrote (the frame records the dictionary id, and a
/// mismatch is an error, not garbage).
pub struct Dictionary {
    bytes: Vec<u8>,
    id: u32,
    encoder: EncoderDictionary<'static>,
    decoder: DecoderDictionary<'static>,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionary")
            .field("id", &self.id)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Dictionary {
    /// Trains a dictionary of at most `max_size` bytes (16-112 KiB is usual)
    /// on `samples`, prepared for compression at `level`.
    ///
    /// # Errors
    /// [`CodecError::Training`] when zstd cannot train on the samples (too
    /// few, or too small in total: give it at least ~100 samples and ~10x
    /// `max_size` bytes).
    pub fn train<S: AsRef<[u8]>>(
        samples: &[S],
        max_size: usize,
        level: i32,
    ) -> Result<Self, CodecError> {
        let bytes = zstd::dict::from_samples(samples, max_size)
            .map_err(|e| CodecError::Training(e.to_string()))?;
        Self::from_bytes(bytes, level)
    }

    /// Loads a dictionary trained earlier, prepared for compression at
    /// `level`.
    ///
    /// # Errors
    /// [`CodecError::Training`] when the bytes are not a zstd dictionary.
    pub fn from_bytes(bytes: Vec<u8>, level: i32) -> Result<Self, CodecError> {
        let id = zstd::zstd_safe::get_dict_id_from_dict(&bytes)
            .map(|id| id.get())
            .ok_or_else(|| CodecError::Training("not a zstd dictionary".into()))?;
        // `copy` below panics when zstd refuses the bytes (a valid magic with
        // broken tables): ask first, without panicking.
        if zstd::zstd_safe::CDict::try_create(&bytes, level).is_none()
            || zstd::zstd_safe::DDict::try_create(&bytes).is_none()
        {
            return Err(CodecError::Training(
                "zstd cannot load these dictionary bytes".into(),
            ));
        }
        Ok(Self {
            encoder: EncoderDictionary::copy(&bytes, level),
            decoder: DecoderDictionary::copy(&bytes),
            bytes,
            id,
        })
    }

    /// The dictionary's bytes, to store and load with
    /// [`from_bytes`](Self::from_bytes).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The id zstd records in every frame compressed with this dictionary.
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// How stored payloads are compressed: zstd at `level` when the payload is
/// larger than `min_size` and compressing makes it smaller, with an optional
/// [`Dictionary`]; inflating never produces more than `max_decoded` bytes.
///
/// ```
/// use ee_serialize::ZstdCodec;
///
/// let codec = ZstdCodec::default(); // level 3, above 1 KiB, 8 MiB decoded at most
/// let json = serde_json::to_vec(&vec!["a product name"; 200]).unwrap();
/// let mut stored = Vec::new();
/// assert!(codec.compress_into(&json, &mut stored).unwrap());
/// assert_eq!(codec.decompress(&stored).unwrap(), json);
/// ```
#[derive(Debug, Clone)]
pub struct ZstdCodec {
    level: i32,
    min_size: usize,
    max_decoded: usize,
    dictionary: Option<Arc<Dictionary>>,
}

impl Default for ZstdCodec {
    fn default() -> Self {
        Self {
            level: 3,
            min_size: 1024,
            max_decoded: 8 << 20,
            dictionary: None,
        }
    }
}

impl ZstdCodec {
    /// The default codec: level 3, payloads above 1 KiB, 8 MiB decoded at most.
    pub fn new() -> Self {
        Self::default()
    }

    /// The zstd level (1 fastest … 19; negative levels are faster still).
    /// With a [`Dictionary`], the level the dictionary was prepared for
    /// applies instead.
    #[must_use]
    pub fn level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// Payloads of at most this many bytes are stored as they are.
    #[must_use]
    pub fn min_size(mut self, bytes: usize) -> Self {
        self.min_size = bytes;
        self
    }

    /// The most bytes a stored payload may inflate to (a corrupt or hostile
    /// payload cannot make the reader allocate more).
    #[must_use]
    pub fn max_decoded(mut self, bytes: usize) -> Self {
        self.max_decoded = bytes;
        self
    }

    /// Compresses with `dictionary` (and reads frames that name it). With a
    /// dictionary, small payloads compress well: lower
    /// [`min_size`](Self::min_size) to a few dozen bytes.
    #[must_use]
    pub fn dictionary(mut self, dictionary: Arc<Dictionary>) -> Self {
        self.dictionary = Some(dictionary);
        self
    }

    /// The decoded-size limit.
    pub fn max_decoded_bytes(&self) -> usize {
        self.max_decoded
    }

    /// Appends `input` to `out`, compressed when it is larger than the
    /// threshold and compression makes it smaller; returns whether it did.
    ///
    /// # Errors
    /// [`CodecError::Zstd`] when zstd fails (it does not on valid levels).
    pub fn compress_into(&self, input: &[u8], out: &mut Vec<u8>) -> Result<bool, CodecError> {
        if input.len() <= self.min_size {
            out.extend_from_slice(input);
            return Ok(false);
        }
        let compressed = match &self.dictionary {
            Some(dict) => {
                zstd::bulk::Compressor::with_prepared_dictionary(&dict.encoder)?.compress(input)?
            }
            None => zstd::bulk::compress(input, self.level)?,
        };
        if compressed.len() < input.len() {
            out.extend_from_slice(&compressed);
            Ok(true)
        } else {
            out.extend_from_slice(input);
            Ok(false)
        }
    }

    /// Inflates one zstd frame written by [`compress_into`](Self::compress_into),
    /// with at most [`max_decoded`](Self::max_decoded) bytes of output.
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] past the limit, [`CodecError::WrongDictionary`]
    /// when the frame names a dictionary this codec does not hold,
    /// [`CodecError::Zstd`] on corrupt input.
    pub fn decompress(&self, input: &[u8]) -> Result<Vec<u8>, CodecError> {
        self.decompress_within(input, self.max_decoded)
    }

    /// [`decompress`](Self::decompress) with another decoded-size limit
    /// (a store's own value limit).
    ///
    /// # Errors
    /// As [`decompress`](Self::decompress).
    pub fn decompress_within(&self, input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
        let needed = zstd::zstd_safe::get_dict_id_from_frame(input).map_or(0, |id| id.get());
        let held = self.dictionary.as_ref().map_or(0, |d| d.id);
        if needed != 0 && needed != held {
            return Err(CodecError::WrongDictionary { needed, held });
        }
        // The frame header says how large the content is (bulk compression
        // records it): allocate that once, or refuse before allocating.
        if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(input) {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > limit {
                return Err(CodecError::TooLarge { limit });
            }
            let mut out = Vec::with_capacity(size);
            let mut decompressor = match (&self.dictionary, needed) {
                (Some(dict), id) if id != 0 => {
                    zstd::bulk::Decompressor::with_prepared_dictionary(&dict.decoder)?
                }
                _ => zstd::bulk::Decompressor::new()?,
            };
            decompressor.decompress_to_buffer(input, &mut out)?;
            return Ok(out);
        }
        // Unknown size (a streamed frame): read through a bounded reader.
        let mut out = Vec::new();
        let read = match (&self.dictionary, needed) {
            (Some(dict), id) if id != 0 => {
                zstd::stream::read::Decoder::with_prepared_dictionary(input, &dict.decoder)?
                    .take(limit as u64 + 1)
                    .read_to_end(&mut out)
            }
            _ => zstd::stream::read::Decoder::with_buffer(input)?
                .take(limit as u64 + 1)
                .read_to_end(&mut out),
        };
        read?;
        if out.len() > limit {
            return Err(CodecError::TooLarge { limit });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                serde_json::to_vec(&serde_json::json!({
                    "id": i, "sku": format!("SKU-{i:06}"), "name": format!("Water bottle {i}"),
                    "price_cents": 1299 + i, "currency": "EUR", "in_stock": i % 3 != 0,
                    "tags": ["outdoor", "kitchen"]
                }))
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn small_payloads_are_stored_as_they_are() {
        let codec = ZstdCodec::new();
        let mut out = Vec::new();
        assert!(!codec.compress_into(b"{\"a\":1}", &mut out).unwrap());
        assert_eq!(out, b"{\"a\":1}");
    }

    #[test]
    fn incompressible_payloads_are_stored_as_they_are() {
        let codec = ZstdCodec::new().min_size(0);
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut out = Vec::new();
        assert!(!codec.compress_into(&noise, &mut out).unwrap());
        assert_eq!(out, noise);
    }

    #[test]
    fn a_dictionary_round_trips_and_beats_plain_zstd_on_small_documents() {
        let samples = docs(500);
        let dict = Arc::new(Dictionary::train(&samples, 16 * 1024, 3).unwrap());
        let with = ZstdCodec::new().min_size(0).dictionary(dict.clone());
        let without = ZstdCodec::new().min_size(0);
        let doc = &docs(600)[555];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert!(with.compress_into(doc, &mut a).unwrap());
        without.compress_into(doc, &mut b).unwrap();
        assert!(a.len() * 2 < b.len(), "{} vs {}", a.len(), b.len());
        assert_eq!(&with.decompress(&a).unwrap(), doc);
        // A frame that needs the dictionary is refused by a codec without it.
        assert!(matches!(
            without.decompress(&a),
            Err(CodecError::WrongDictionary { needed, held: 0 }) if needed == dict.id()
        ));
        // The dictionary survives a trip through its bytes.
        let reloaded = Dictionary::from_bytes(dict.as_bytes().to_vec(), 3).unwrap();
        assert_eq!(reloaded.id(), dict.id());
    }

    #[test]
    fn a_bomb_is_refused_before_it_is_inflated() {
        let zeros = vec![0u8; 10 << 20];
        let bomb = zstd::bulk::compress(&zeros, 3).unwrap();
        assert!(bomb.len() < 2048);
        let codec = ZstdCodec::new().max_decoded(1 << 20);
        assert!(matches!(
            codec.decompress(&bomb),
            Err(CodecError::TooLarge { limit }) if limit == 1 << 20
        ));
        // Streamed (no content size in the header): the bounded reader stops it.
        let mut streamed = Vec::new();
        let mut encoder = zstd::stream::write::Encoder::new(&mut streamed, 3).unwrap();
        encoder.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut encoder, &zeros).unwrap();
        encoder.finish().unwrap();
        assert!(matches!(
            codec.decompress(&streamed),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert!(ZstdCodec::new().decompress(b"not zstd at all").is_err());
    }

    #[test]
    fn codec_errors_are_server_problems() {
        let problem = Problem::from(CodecError::TooLarge { limit: 5 });
        assert_eq!(problem.status(), 500);
        assert_eq!(problem.type_uri(), "https://ee.rs/problems/serialize/codec");
        assert!(problem.detail().unwrap().contains("inflates past 5 bytes"));
    }
}
