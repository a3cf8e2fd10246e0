//! `RebacConfig`: the model and the engine's bounds, from configuration.

use std::path::PathBuf;

use serde::Deserialize;

use crate::AuthError;

/// ReBAC settings (`[auth.rebac]` in `ee.toml`, through ee-config).
///
/// ```toml
/// model_file = "authz/model.fga"   # or `model = """..."""` inline
/// max_depth = 25                   # nested usersets / computed relations per check
/// max_lookups = 1000               # tuple-store reads per check (or per list walk)
/// max_fanout = 1000                # tuples one read may return
/// max_results = 1000               # answers of list_objects / list_users
/// ```
///
/// Exceeding a bound is [`AuthError::Limit`] (a 500 naming the bound), never
/// a hang.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RebacConfig {
    /// The model, in the OpenFGA modeling language (schema 1.1).
    pub model: Option<String>,
    /// A file holding the model (instead of `model`).
    pub model_file: Option<PathBuf>,
    /// Deepest chain of dispatches (usersets, computed relations,
    /// tuple-to-userset hops) one check follows. Default 25, as OpenFGA.
    pub max_depth: u32,
    /// Most tuple-store lookups one check (or one list walk) makes.
    /// Default 1000.
    pub max_lookups: u32,
    /// Most tuples one read may return (userset tuples, parents, users of a
    /// relation, objects of a user). Default 1000.
    pub max_fanout: usize,
    /// Most answers `list_objects` and `list_users` return (the first in
    /// order). Default 1000, as OpenFGA.
    pub max_results: usize,
}

impl Default for RebacConfig {
    fn default() -> Self {
        RebacConfig {
            model: None,
            model_file: None,
            max_depth: 25,
            max_lookups: 1000,
            max_fanout: 1000,
            max_results: 1000,
        }
    }
}

impl RebacConfig {
    /// Checks the bounds and that at most one model source is given.
    pub(crate) fn validate(&self) -> Result<(), AuthError> {
        let mut bad = Vec::new();
        if self.model.is_some() && self.model_file.is_some() {
            bad.push("set `model` or `model_file`, not both".to_owned());
        }
        for (name, value) in [
            ("max_depth", u64::from(self.max_depth)),
            ("max_lookups", u64::from(self.max_lookups)),
            ("max_fanout", self.max_fanout as u64),
            ("max_results", self.max_results as u64),
        ] {
            if value == 0 {
                bad.push(format!("`{name}` must be at least 1"));
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(AuthError::Config(format!("rebac: {}", bad.join("; "))))
        }
    }

    /// The model text, from `model` or `model_file`, if either is set.
    pub(crate) fn model_text(&self) -> Result<Option<String>, AuthError> {
        match (&self.model, &self.model_file) {
            (Some(text), _) => Ok(Some(text.clone())),
            (None, Some(path)) => std::fs::read_to_string(path).map(Some).map_err(|e| {
                AuthError::Config(format!(
                    "rebac: cannot read model_file `{}`: {e}",
                    path.display()
                ))
            }),
            (None, None) => Ok(None),
        }
    }
}
