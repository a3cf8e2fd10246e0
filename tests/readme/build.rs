//! The build script of every `tests/readme/ee-*` package (each says `build = "../build.rs"`).
//!
//! Package `readme-ee-foo` tests the first example of `crates/ee-foo/README.md`. This script
//! 1. reads the README's first `cargo add` line, which must come before its first ```rust
//!    block, and fails the build unless the ee crates it names, with the features it names
//!    (`-F`/`--features`, `--no-default-features`), are exactly the ee crates of the package's
//!    own Cargo.toml with exactly the features enabled there: the test then builds what a user
//!    who follows the README gets, so a feature the example needs but the README does not name
//!    fails the test (issue 25: `cargo add ee-ratelimit` without `-F axum` answered every
//!    request with 500 `no-peer-address`);
//! 2. writes the README's first ```rust block to `$OUT_DIR/readme.rs` as rustdoc compiles it
//!    (lines hidden with `# ` shown), for the package's test to `include!`.
//!
//! The block is a whole program: items only (`fn app() -> axum::Router` or `fn example()`,
//! and the `main` a user copies), since it is included at module level.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::{env, fs};

/// An ee crate as a user adds it: its features, and whether its default features are on.
#[derive(Debug, PartialEq, Eq)]
struct Added {
    features: BTreeSet<String>,
    default_features: bool,
}

impl std::fmt::Display for Added {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let features: Vec<&str> = self.features.iter().map(String::as_str).collect();
        write!(f, "features [{}]", features.join(", "))?;
        if !self.default_features {
            write!(f, " without default features")?;
        }
        Ok(())
    }
}

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let package = env::var("CARGO_PKG_NAME").expect("cargo sets CARGO_PKG_NAME");
    let krate = package.strip_prefix("readme-").unwrap_or_else(|| {
        panic!("tests/readme/build.rs: package `{package}` must be named `readme-<crate>`")
    });
    let readme_path = dir.join("../../../crates").join(krate).join("README.md");
    let manifest_path = dir.join("Cargo.toml");
    println!("cargo::rerun-if-changed={}", readme_path.display());
    println!("cargo::rerun-if-changed={}", manifest_path.display());
    let readme = format!("crates/{krate}/README.md");
    let manifest = format!("tests/readme/{krate}/Cargo.toml");

    let text = read(&readme_path);
    let (add_line, code) = first_example(&text).unwrap_or_else(|e| panic!("{readme}: {e}"));
    let said = parse_cargo_add(&add_line).unwrap_or_else(|e| panic!("{readme}: `{add_line}`: {e}"));
    if !said.contains_key(krate) {
        panic!("{readme}: its first `cargo add` line (`{add_line}`) does not add {krate}");
    }
    let built =
        ee_dependencies(&read(&manifest_path)).unwrap_or_else(|e| panic!("{manifest}: {e}"));

    let names: BTreeSet<&String> = said.keys().chain(built.keys()).collect();
    let mut wrong = Vec::new();
    for name in names {
        match (said.get(name), built.get(name)) {
            (Some(s), Some(b)) if s == b => {}
            (Some(s), Some(b)) => {
                wrong.push(format!("{name}: the README says {s}, the test builds {b}"))
            }
            (Some(_), None) => wrong.push(format!(
                "{name}: the README adds it, the test does not depend on it"
            )),
            (None, Some(_)) => wrong.push(format!(
                "{name}: the test depends on it, the README's line does not add it"
            )),
            (None, None) => unreachable!(),
        }
    }
    if !wrong.is_empty() {
        panic!(
            "\n{readme}'s first `cargo add` line and {manifest} disagree:\n  `{add_line}`\n  - {}\n\
             The test must build the README's example with exactly the features the README tells \
             a user to add: name every feature the example needs in the README's `cargo add` line \
             (`-F axum`), and give the test's dependency exactly those.\n",
            wrong.join("\n  - ")
        );
    }

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("readme.rs");
    let code = format!("// The first example of {readme}, as rustdoc compiles it.\n{code}");
    fs::write(&out, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The first `cargo add` line and the first ```rust block after it.
fn first_example(readme: &str) -> Result<(String, String), String> {
    let mut add_line = None;
    let mut in_other_block = false; // a ```sh (toml, text…) block: its lines are read too
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if add_line.is_none() && trimmed.starts_with("cargo add ") {
            add_line = Some(trimmed.to_owned());
            continue;
        }
        let Some(info) = trimmed.strip_prefix("```") else {
            continue;
        };
        if in_other_block {
            in_other_block = false; // its closing fence
            continue;
        }
        let mut attrs = info.split(',').map(str::trim);
        if attrs.next() != Some("rust") {
            in_other_block = true;
            continue;
        }
        let Some(add_line) = add_line else {
            return Err(
                "the first ```rust block comes before any `cargo add` line: open the README \
                        with `cargo add <crate> -F <the features the example needs>`"
                    .into(),
            );
        };
        if let Some(bad) = attrs.find(|a| matches!(*a, "ignore" | "compile_fail" | "should_panic"))
        {
            return Err(format!(
                "the first example is marked `{bad}`: it must compile and run"
            ));
        }
        let mut code = String::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                return Ok((add_line, code));
            }
            code.push_str(&shown(line));
            code.push('\n');
        }
        return Err("the first ```rust block is not closed".into());
    }
    Err("no ```rust block".into())
}

/// A line as rustdoc compiles it: `# hidden` is `hidden`, `#` alone is empty, `##x` is `#x`.
fn shown(line: &str) -> String {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    if trimmed == "#" {
        String::new()
    } else if let Some(rest) = trimmed.strip_prefix("##") {
        format!("{indent}#{rest}")
    } else if let Some(rest) = trimmed.strip_prefix("# ") {
        format!("{indent}{rest}")
    } else {
        line.to_owned()
    }
}

/// The ee crates a `cargo add` line adds, each with what it enables.
fn parse_cargo_add(line: &str) -> Result<BTreeMap<String, Added>, String> {
    let line = line.split(" #").next().unwrap_or(line); // a trailing shell comment
    let mut words = line.split_whitespace().map(|w| w.trim_matches(['"', '\'']));
    if (words.next(), words.next()) != (Some("cargo"), Some("add")) {
        return Err("not a `cargo add` line".into());
    }
    let mut crates = Vec::new();
    let mut features = Vec::new();
    let mut default_features = true;
    while let Some(word) = words.next() {
        match word {
            "-F" | "--features" => {
                let list = words.next().ok_or("`-F` without features")?;
                features.extend(list.split(',').filter(|f| !f.is_empty()).map(str::to_owned));
            }
            "--no-default-features" => default_features = false,
            "--dev" | "--build" => {}
            _ if word.starts_with("--features=") => {
                features.extend(word["--features=".len()..].split(',').map(str::to_owned));
            }
            _ if word.starts_with('-') => {
                return Err(format!("`{word}`: an option this check does not know"));
            }
            _ => crates.push(word.split('@').next().unwrap_or(word).to_owned()),
        }
    }
    let mut added: BTreeMap<String, Added> = crates
        .iter()
        .filter(|c| c.starts_with("ee-"))
        .map(|c| {
            (
                c.clone(),
                Added {
                    features: BTreeSet::new(),
                    default_features,
                },
            )
        })
        .collect();
    for feature in features {
        let (krate, feature) = match feature.split_once('/') {
            Some((krate, feature)) => (krate.to_owned(), feature.to_owned()),
            None if crates.len() == 1 => (crates[0].clone(), feature),
            None => {
                return Err(format!(
                    "feature `{feature}` with several crates: write `<crate>/{feature}`"
                ));
            }
        };
        if let Some(added) = added.get_mut(&krate) {
            added.features.insert(feature);
        }
    }
    Ok(added)
}

/// The package's ee dependencies (one line each: `ee-foo = { path = "…", features = […] }`).
fn ee_dependencies(manifest: &str) -> Result<BTreeMap<String, Added>, String> {
    let mut deps = BTreeMap::new();
    for line in manifest.lines().map(str::trim) {
        let Some((name, spec)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if !name.starts_with("ee-") {
            continue;
        }
        let spec = spec.trim();
        if !spec.starts_with('{') || !spec.ends_with('}') {
            return Err(format!(
                "write the dependency on {name} as one inline table on one line"
            ));
        }
        if spec.contains("workspace") {
            return Err(format!(
                "{name}: use a path dependency (the workspace's has `default-features = false`, \
                 `cargo add` gives the default features)"
            ));
        }
        let default_features = !spec.replace(' ', "").contains("default-features=false");
        // `features = [...]`, not the `features` of `default-features`.
        let key = spec
            .match_indices("features")
            .find(|(i, _)| !spec[..*i].ends_with('-'))
            .map(|(i, _)| &spec[i..]);
        let features = match key {
            Some(key) => {
                let list = key.split_once('[').and_then(|(_, l)| l.split_once(']'));
                let (list, _) = list.ok_or_else(|| format!("{name}: cannot read its features"))?;
                list.split(',')
                    .map(|f| f.trim().trim_matches('"').to_owned())
                    .filter(|f| !f.is_empty())
                    .collect()
            }
            None => BTreeSet::new(),
        };
        deps.insert(
            name.to_owned(),
            Added {
                features,
                default_features,
            },
        );
    }
    Ok(deps)
}
