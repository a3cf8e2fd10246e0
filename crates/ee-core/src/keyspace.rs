//! Key names shared by every store of every crate (Redis keys, in-memory map
//! keys): `ee:<crate>:<part>:…`, escaped so that different part lists never
//! collide and user data never forms a Redis Cluster hash tag.

use std::sync::Arc;

/// Key names of one crate: `ee:<crate>:<part>:<part>…`.
///
/// Parts are escaped so that no two different part lists give the same key and
/// user data can never form a Cluster hash tag: `%`, `{`, `}` and `:` become
/// `%25`, `%7B`, `%7D`, `%3A`, and an empty part becomes `%`.
///
/// ```
/// use ee_core::KeySpace;
///
/// let keys = KeySpace::new("ratelimit");
/// assert_eq!(keys.key(&["api", "203.0.113.7"]), "ee:ratelimit:api:203.0.113.7");
/// // Every key of one client's decision shares the hash slot of `{api:user%3A42}`.
/// assert_eq!(keys.tagged(&["api", "user:42"], &["tat"]), "ee:ratelimit:{api:user%3A42}:tat");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    prefix: Arc<str>,
}

impl KeySpace {
    /// The key space of `crate_name` (`ratelimit`, `idempotency`, …). The name
    /// is escaped like any part.
    pub fn new(crate_name: &str) -> Self {
        let mut prefix = String::from("ee:");
        push_escaped(&mut prefix, crate_name);
        prefix.push(':');
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix every key of this space starts with (`ee:<crate>:`), for
    /// `SCAN MATCH` and ACLs.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A key of single-key operations: `ee:<crate>:<parts…>`.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = self.with_capacity(parts, &[]);
        push_parts(&mut key, parts);
        key
    }

    /// A key whose hash slot is set by `tag`: `ee:<crate>:{<tag…>}:<rest…>`.
    /// Every key built with the same `tag` lands in the same Cluster slot, so one
    /// script may touch them all; different tags spread over the Cluster.
    pub fn tagged(&self, tag: &[&str], rest: &[&str]) -> String {
        let mut key = self.with_capacity(tag, rest);
        key.push('{');
        if tag.is_empty() {
            // `{}` is no hash tag at all: write the escaped empty part instead.
            key.push('%');
        }
        push_parts(&mut key, tag);
        key.push('}');
        if !rest.is_empty() {
            key.push(':');
            push_parts(&mut key, rest);
        }
        key
    }

    fn with_capacity(&self, a: &[&str], b: &[&str]) -> String {
        let len: usize = a.iter().chain(b).map(|p| p.len() + 1).sum();
        let mut key = String::with_capacity(self.prefix.len() + len + 2);
        key.push_str(&self.prefix);
        key
    }
}

fn push_parts(key: &mut String, parts: &[&str]) {
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(':');
        }
        push_escaped(key, part);
    }
}

fn push_escaped(key: &mut String, part: &str) {
    if part.is_empty() {
        key.push('%');
        return;
    }
    if !part.bytes().any(|b| matches!(b, b'%' | b'{' | b'}' | b':')) {
        key.push_str(part);
        return;
    }
    for c in part.chars() {
        match c {
            '%' => key.push_str("%25"),
            '{' => key.push_str("%7B"),
            '}' => key.push_str("%7D"),
            ':' => key.push_str("%3A"),
            c => key.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_escaped_so_keys_never_collide() {
        let ks = KeySpace::new("t");
        assert_ne!(ks.key(&["a:b", "c"]), ks.key(&["a", "b:c"]));
        assert_ne!(ks.key(&["", "x"]), ks.key(&["%", "x"]));
        assert_eq!(ks.key(&["", "x"]), "ee:t:%:x");
        assert_eq!(ks.key(&["{evil}"]), "ee:t:%7Bevil%7D");
        assert_eq!(ks.tagged(&[""], &[]), "ee:t:{%}");
        assert_eq!(ks.tagged(&["a}"], &["b"]), "ee:t:{a%7D}:b");
        assert_eq!(ks.tagged(&[], &["b"]), "ee:t:{%}:b");
    }
}
