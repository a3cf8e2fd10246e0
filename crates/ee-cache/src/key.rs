//! How a key of yours becomes part of a full cache key.

use std::fmt::Write as _;
use std::sync::Arc;

/// A cache key: writes itself into the full key (after the cache's name,
/// version and tenant). Text is escaped so that user data never forms a Redis
/// Cluster hash tag: `%`, `{` and `}` become `%25`, `%7B`, `%7D`.
///
/// Implemented for `str`, `String`, every integer type, pairs and triples
/// (parts joined by `:`; inside a part `%` and `:` are escaped again), and
/// references and smart pointers to those. For another type, implement it, or
/// wrap a `Display` value in [`Shown`].
///
/// ```
/// use ee_cache::{Cache, MemoryStore, Shown};
/// let per_tenant_user: Cache<(u32, String), String> = Cache::builder("c").build(MemoryStore::new()).unwrap();
/// assert!(per_tenant_user.full_key(&(7, "ann:b".into())).unwrap().ends_with(":7:ann%3Ab"));
/// let by_user: Cache<Shown<std::net::Ipv4Addr>, u64> =
///     Cache::builder("visits").build(MemoryStore::new()).unwrap();
/// assert!(by_user.full_key(&Shown("10.0.0.1".parse().unwrap())).unwrap().ends_with(":10.0.0.1"));
/// ```
pub trait CacheKey {
    /// Appends this key to `out`.
    fn write_key(&self, out: &mut KeyWriter<'_>);
}

/// Where a [`CacheKey`] writes itself: after the cache's prefix, append-only
/// (a key can add to the full key but never change the prefix before it).
///
/// ```
/// use ee_cache::{Cache, CacheKey, KeyWriter, MemoryStore};
/// struct Sku { vendor: u32, code: String }
/// impl CacheKey for Sku {
///     fn write_key(&self, out: &mut KeyWriter<'_>) {
///         self.vendor.write_key(out);
///         out.push_str("/");
///         out.push_text(&self.code); // user data: escaped
///     }
/// }
/// let cache: Cache<Sku, u64> = Cache::builder("stock").build(MemoryStore::new()).unwrap();
/// let key = cache.full_key(&Sku { vendor: 7, code: "a{b}".into() }).unwrap();
/// assert!(key.ends_with(":7/a%7Bb%7D"));
/// ```
#[derive(Debug)]
pub struct KeyWriter<'a> {
    out: &'a mut String,
}

impl<'a> KeyWriter<'a> {
    /// A writer appending to `out`.
    pub(crate) fn new(out: &'a mut String) -> Self {
        Self { out }
    }

    /// Appends `s` as it is. Only for text you control: user data may hold
    /// `{...}`, which Redis Cluster reads as a hash tag; write it with
    /// [`KeyWriter::push_text`].
    #[inline]
    pub fn push_str(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// Appends `s` with `%`, `{` and `}` escaped (what `str` keys do).
    #[inline]
    pub fn push_text(&mut self, s: &str) {
        push_escaped(self.out, s);
    }

    /// How long the full key is so far, prefix included.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing is written yet (never, after a cache's prefix).
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }
}

impl std::fmt::Write for KeyWriter<'_> {
    /// Appends `s` as it is (as [`KeyWriter::push_str`]).
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.out.push_str(s);
        Ok(())
    }
}

/// Appends `s` with `%`, `{` and `}` escaped.
pub(crate) fn push_escaped(out: &mut String, s: &str) {
    // The common case, nothing to escape, found by memchr's vectorised scan.
    if memchr::memchr3(b'%', b'{', b'}', s.as_bytes()).is_none() {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
}

impl CacheKey for str {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.push_text(self);
    }
}

impl CacheKey for String {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        out.push_text(self);
    }
}

impl<T: CacheKey + ?Sized> CacheKey for &T {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: CacheKey + ?Sized> CacheKey for Box<T> {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

impl<T: CacheKey + ?Sized> CacheKey for Arc<T> {
    #[inline]
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        (**self).write_key(out);
    }
}

macro_rules! integer_keys {
    ($($t:ty),*) => {$(
        impl CacheKey for $t {
            #[inline]
            fn write_key(&self, out: &mut KeyWriter<'_>) {
                out.push_str(itoa::Buffer::new().format(*self));
            }
        }
    )*};
}

integer_keys!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

/// One part of a composite key, with `%` and `:` escaped again, so that
/// nested composites cannot collide either.
fn write_part<T: CacheKey + ?Sized>(part: &T, out: &mut KeyWriter<'_>) {
    let mut tmp = String::new();
    part.write_key(&mut KeyWriter::new(&mut tmp));
    if tmp.contains([':', '%']) {
        out.push_str(&tmp.replace('%', "%25").replace(':', "%3A"));
    } else {
        out.push_str(&tmp);
    }
}

impl<A: CacheKey, B: CacheKey + ?Sized> CacheKey for (A, B) {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        write_part(&self.0, out);
        out.push_str(":");
        write_part(&self.1, out);
    }
}

impl<A: CacheKey, B: CacheKey, C: CacheKey + ?Sized> CacheKey for (A, B, C) {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        write_part(&self.0, out);
        out.push_str(":");
        write_part(&self.1, out);
        out.push_str(":");
        write_part(&self.2, out);
    }
}

/// A key written through its `Display` (escaped like text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shown<T>(pub T);

impl<T: std::fmt::Display> CacheKey for Shown<T> {
    fn write_key(&self, out: &mut KeyWriter<'_>) {
        let mut tmp = String::new();
        let _ = write!(tmp, "{}", self.0);
        out.push_text(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<K: CacheKey + ?Sized>(k: &K) -> String {
        let mut out = String::new();
        k.write_key(&mut KeyWriter::new(&mut out));
        out
    }

    #[test]
    fn keys_are_written_escaped_and_parts_never_collide() {
        assert_eq!(key(&42u64), "42");
        assert_eq!(key(&-7i32), "-7");
        assert_eq!(key("a{b}%c:d"), "a%7Bb%7D%25c:d");
        assert_eq!(key(&("a:b".to_owned(), 1u8)), "a%3Ab:1");
        assert_ne!(
            key(&("a:b".to_owned(), "c".to_owned())),
            key(&("a".to_owned(), "b:c".to_owned()))
        );
        assert_eq!(key(&(1u32, 2u32, "x".to_owned())), "1:2:x");
        let nested = |a: &str, b: &str| key(&((a.to_owned(), b.to_owned()), "c".to_owned()));
        assert_ne!(nested("a:x", "b"), nested("a", "x:b"));
        assert_eq!(key(&Shown(std::net::Ipv6Addr::LOCALHOST)), "::1");
        assert_eq!(key(&Arc::<str>::from("s")), "s");
    }
}
