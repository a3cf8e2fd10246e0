//! Loading: defaults → files → environment (and `_FILE` secrets) →
//! overrides, one profile, every bad key reported with where it came from.

use std::path::PathBuf;

use figment::providers::{Format, Json, Serialized, Toml, Yaml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One bad key of a configuration (named so that it is not taken for
/// `ee_core::Problem`, the HTTP problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The key path (`database.pool.max_size`).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
    /// Where its value came from: a file path, an environment variable, …
    pub source: String,
}

impl ConfigIssue {
    /// `  - key: reason (from source)`; an issue of no key (a file that does
    /// not parse) without the `key:`.
    fn line(&self) -> String {
        if self.key.is_empty() {
            format!("  - {} (from {})", self.reason, self.source)
        } else {
            format!("  - {}: {} (from {})", self.key, self.reason, self.source)
        }
    }
}

/// One `Loader::set`, named so in reports.
struct Override {
    key: String,
    value: serde_json::Value,
}

impl Provider for Override {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("Loader::set(\"{}\", …)", self.key))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::global(&self.key, &self.value).data()
    }
}

/// Every bad key of a configuration, reported at once.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the configuration is invalid:\n{}", .issues.iter().map(ConfigIssue::line).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// The bad keys.
    pub issues: Vec<ConfigIssue>,
}

/// Where a configuration comes from, lowest precedence first.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct App { port: u16, database_url: String }
///
/// let defaults = App { port: 8080, database_url: "sqlite://data.db".into() };
/// let app: App = ee_config::Loader::new(defaults)
///     .file("ee.toml")          // skipped when absent
///     .env_prefix("APP_")       // APP_PORT=9090, APP_DATABASE_URL=…
///     .load()
///     .unwrap();
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Loader<T> {
    defaults: T,
    files: Vec<PathBuf>,
    env_prefix: String,
    overrides: Vec<(String, serde_json::Value)>,
    profile: Option<String>,
    /// The environment, when not the process's (tests, embedding).
    env: Option<Vec<(String, String)>>,
}

impl<T: Serialize + DeserializeOwned> Loader<T> {
    /// Starts from `defaults` (every key a service can run with).
    pub fn new(defaults: T) -> Self {
        Self {
            defaults,
            files: Vec::new(),
            env_prefix: "EE_".into(),
            overrides: Vec::new(),
            profile: None,
            env: None,
        }
    }

    /// A file layered over the defaults (TOML, YAML or JSON by extension);
    /// a missing file is skipped.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.push(path.into());
        self
    }

    /// The environment prefix (default `EE_`): `EE_DATABASE__URL` sets
    /// `database.url` (`__` nests), and `EE_DATABASE__PASSWORD_FILE=/run/secrets/db`
    /// sets `database.password` to that file's content.
    pub fn env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.env_prefix = prefix.into();
        self
    }

    /// An explicit value, over everything else (a command-line flag).
    pub fn set(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.overrides.push((key.into(), value));
        self
    }

    /// The profile (`dev`, `test`, `prod`): files are then read as
    /// `[default]` plus one section per profile, the profile's winning.
    /// Without this call, `<PREFIX>PROFILE` chooses (files read flat when unset).
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Reads these variables instead of the process environment.
    pub fn env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    fn vars(&self) -> Vec<(String, String)> {
        self.env
            .clone()
            .unwrap_or_else(|| std::env::vars().collect())
    }

    /// The files this loader reads (for reloading on change).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn figment(&self) -> Figment {
        let profile = self.profile.clone().or_else(|| {
            let name = format!("{}PROFILE", self.env_prefix);
            self.vars()
                .into_iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v)
        });
        let mut figment =
            ee_core::with_secrets_exposed(|| Figment::from(Serialized::defaults(&self.defaults)));
        for path in &self.files {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            figment = match (ext, profile.is_some()) {
                ("yaml" | "yml", false) => figment.merge(Yaml::file(path)),
                ("yaml" | "yml", true) => figment.merge(Yaml::file(path).nested()),
                ("json", false) => figment.merge(Json::file(path)),
                ("json", true) => figment.merge(Json::file(path).nested()),
                (_, false) => figment.merge(Toml::file(path)),
                (_, true) => figment.merge(Toml::file(path).nested()),
            };
        }
        figment = figment.merge(Environment {
            prefix: self.env_prefix.clone(),
            vars: self.vars(),
        });
        for (key, value) in &self.overrides {
            figment = figment.merge(Override {
                key: key.clone(),
                value: value.clone(),
            });
        }
        match profile {
            Some(p) => figment.select(p),
            None => figment,
        }
    }

    /// Loads and validates: every bad key is in the error, each with where
    /// its value came from.
    ///
    /// # Errors
    /// [`ConfigError`] listing every issue.
    pub fn load(&self) -> Result<T, ConfigError> {
        self.extract(&self.figment())
    }

    /// Extracts `T` from `original`, or reports every bad key of it.
    fn extract(&self, original: &Figment) -> Result<T, ConfigError> {
        let mut errors = match original.extract::<T>() {
            Ok(value) => return Ok(value),
            Err(errors) => errors,
        };
        let defaults =
            ee_core::with_secrets_exposed(|| Figment::from(Serialized::defaults(&self.defaults)));
        // Secrets serialise as "[redacted]" unless exposed: the keys whose
        // values must not be quoted in a reason.
        let redacted = Figment::from(Serialized::defaults(&self.defaults));
        let issue = |e: &figment::Error, key: &str| {
            let secret =
                matches!(redacted.find_value(key), Ok(Value::String(_, s)) if s == "[redacted]");
            ConfigIssue {
                // Later passes read a repaired copy: the origin is the original's.
                source: source_of(
                    original.find_metadata(key).or(e.metadata.as_ref()),
                    key,
                    &self.env_prefix,
                ),
                reason: if secret {
                    "a secret's value is not valid here (not shown)".to_owned()
                } else {
                    e.kind.to_string()
                },
                key: key.to_owned(),
            }
        };
        // serde stops at the first bad field of each struct: repair it in a
        // plain copy of the merged values (an unknown key removed, a bad
        // value replaced by its default) and try again, until the rest is
        // clean or nothing can be repaired.
        let mut data = match original.extract::<Value>() {
            Ok(data) => data,
            Err(_) => {
                let issues = errors
                    .into_iter()
                    .map(|e| issue(&e, &e.path.join(".")))
                    .collect();
                return Err(ConfigError { issues });
            }
        };
        let mut issues = Vec::new();
        for _ in 0..256 {
            let mut repaired = false;
            for e in errors {
                let key = e.path.join(".");
                // The top-level `tenants` table holds the overlays of
                // `load_for_tenant`, not keys of `T`: a `T` that denies
                // unknown fields need not declare it.
                if matches!(e.kind, figment::error::Kind::UnknownField(..)) && key == TENANTS {
                    repaired |= remove_at(&mut data, &e.path);
                    continue;
                }
                let found = issue(&e, &key);
                if !issues.contains(&found) {
                    issues.push(found);
                }
                repaired |= match e.kind {
                    figment::error::Kind::UnknownField(..) => remove_at(&mut data, &e.path),
                    _ => reset_to_default(&mut data, &defaults, &e.path),
                };
            }
            if !repaired {
                break;
            }
            match Figment::from(Serialized::defaults(&data)).extract::<T>() {
                Ok(value) if issues.is_empty() => return Ok(value),
                Ok(_) => break,
                Err(more) => errors = more,
            }
        }
        Err(ConfigError { issues })
    }

    /// [`load`](Self::load), or, on a bad configuration, print every
    /// issue to standard error and exit with status 2: what a service's
    /// `main` wants (a readable report, not a panic or a `Debug` dump).
    pub fn load_or_exit(&self) -> T {
        match self.load() {
            Ok(config) => config,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
    }

    /// The configuration of `tenant`: the keys under `tenants.<tenant>`
    /// layered over the rest.
    ///
    /// # Errors
    /// [`ConfigError`] when the merged configuration is invalid.
    pub fn load_for_tenant(&self, tenant: &str) -> Result<T, ConfigError> {
        let base = self.figment();
        let overlay = base.focus(&format!("{TENANTS}.{tenant}"));
        self.extract(&base.merge(overlay))
    }
}

/// The top-level table of per-tenant overlays.
const TENANTS: &str = "tenants";

/// The value at `path` in `data` (dictionary keys, array indices).
fn value_at<'v>(data: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    let mut at = data;
    for part in path {
        at = match at {
            Value::Dict(_, dict) => dict.get_mut(part)?,
            Value::Array(_, items) => items.get_mut(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// Removes the key at `path` (an unknown key); whether there was one.
fn remove_at(data: &mut Value, path: &[String]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    match value_at(data, parent) {
        Some(Value::Dict(_, dict)) => dict.remove(last).is_some(),
        _ => false,
    }
}

/// Replaces the value at `path`, or the nearest enclosing one that has a
/// default, by that default; whether one was found. An item of an array
/// without defaults of its own (item 3 of a list the defaults leave empty)
/// is replaced by the item before it instead, which deserialised (serde
/// reads items in order and stops at the first bad one), so the items after
/// it are still checked; the first item's array is reset as a whole.
fn reset_to_default(data: &mut Value, defaults: &Figment, path: &[String]) -> bool {
    for len in (1..=path.len()).rev() {
        if defaults.find_value(&path[..len].join(".")).is_ok() {
            break;
        }
        let (last, parent) = path[..len].split_last().expect("len >= 1");
        if let Ok(i) = last.parse::<usize>()
            && let Some(Value::Array(_, items)) = value_at(data, parent)
        {
            if i > 0 && i < items.len() {
                items[i] = items[i - 1].clone();
                return true;
            }
            break;
        }
    }
    for len in (1..=path.len()).rev() {
        let Ok(default) = defaults.find_value(&path[..len].join(".")) else {
            continue;
        };
        let (last, parent) = path[..len].split_last().expect("len >= 1");
        match value_at(data, parent) {
            Some(Value::Dict(_, dict)) => {
                dict.insert(last.clone(), default);
                return true;
            }
            Some(Value::Array(_, items)) => {
                if let Some(slot) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                    *slot = default;
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// A readable origin of a value.
fn source_of(metadata: Option<&Metadata>, key: &str, prefix: &str) -> String {
    let Some(m) = metadata else {
        return "no source: the key is required".into();
    };
    match &m.source {
        Some(figment::Source::File(path)) => format!("file {}", path.display()),
        _ if m.name.contains("environment variable") => {
            format!(
                "environment variable {prefix}{}",
                key.to_uppercase().replace('.', "__")
            )
        }
        _ => m.name.to_string(),
    }
}

/// The environment: `<PREFIX>A__B=v` sets `a.b` (values parsed as TOML-ish
/// scalars: `8080` is a number, `true` a boolean), and
/// `<PREFIX>A__B_FILE=/path` sets `a.b` to that file's content (trimmed).
struct Environment {
    prefix: String,
    vars: Vec<(String, String)>,
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("`{}` environment variable(s)", self.prefix))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (name, raw) in &self.vars {
            let Some(rest) = name.strip_prefix(&self.prefix) else {
                continue;
            };
            if rest.is_empty() || rest == "PROFILE" {
                continue;
            }
            let (key, value) = match rest.strip_suffix("_FILE") {
                Some(key) => {
                    let content = std::fs::read_to_string(raw)
                        .map_err(|e| figment::Error::from(format!("{name}={raw}: {e}")))?;
                    (
                        key,
                        Value::from(content.trim_end_matches(['\n', '\r']).to_owned()),
                    )
                }
                None => (
                    rest,
                    raw.parse::<Value>()
                        .unwrap_or_else(|_| Value::from(raw.clone())),
                ),
            };
            let parts: Vec<String> = key.split("__").map(str::to_lowercase).collect();
            insert(&mut dict, &parts, value);
        }
        Ok(Profile::Global.collect(dict))
    }
}

fn insert(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}
