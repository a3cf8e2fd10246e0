//! `Secret<T>`: a value that never shows itself.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value (password, token, key, configuration secret) that is redacted in `Debug`, `Display`, serde
/// output (and so in logs and config dumps): only [`expose`](Self::expose)
/// gives it. Load it from a file with `<NAME>_FILE` (Docker and Kubernetes
/// secrets).
///
/// ```
/// let password: ee_core::Secret<String> = serde_json::from_str("\"hunter2\"").unwrap();
/// assert_eq!(format!("{password:?} {password}"), "[redacted] [redacted]");
/// assert_eq!(serde_json::to_string(&password).unwrap(), "\"[redacted]\"");
/// assert_eq!(password.expose(), "hunter2");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> std::fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

thread_local! {
    /// Set while the loader turns the defaults into its first layer: the one
    /// serialisation that must carry the real value.
    static EXPOSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with [`Secret`]s serialised as themselves instead of
/// `[redacted]`, on this thread: for a configuration loader turning its
/// defaults into a layer, the one serialisation that must carry the real
/// value. Never use it around logging.
pub fn with_secrets_exposed<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            EXPOSE.with(|e| e.set(self.0));
        }
    }
    let _reset = Reset(EXPOSE.with(|e| e.replace(true)));
    f()
}

impl<T: Serialize> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if EXPOSE.with(std::cell::Cell::get) {
            self.0.serialize(s)
        } else {
            s.serialize_str("[redacted]")
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Secret)
    }
}
