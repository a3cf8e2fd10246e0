//! Sources in order, profiles, every bad key with its source, secrets from
//! files and never shown, tenants and flags, reload that keeps a good
//! configuration over a bad file.

use std::path::PathBuf;
use std::time::Duration;

use ee_config::{Features, Loader, Secret};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pool {
    max_size: u32,
    timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct App {
    port: u16,
    name: String,
    pool: Pool,
    password: Secret<String>,
    #[serde(default)]
    features: Features,
}

fn defaults() -> App {
    App {
        port: 8080,
        name: "orders".into(),
        pool: Pool {
            max_size: 10,
            timeout_ms: 500,
        },
        password: Secret::new("dev-password".into()),
        features: Features::default(),
    }
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ee-config-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn each_source_wins_over_the_one_before() {
    let dir = Dir::new("order");
    let toml = dir.write(
        "ee.toml",
        "port = 9000\nname = \"from-file\"\n[pool]\nmax_size = 20\n",
    );
    let yaml = dir.write("ee.yaml", "pool:\n  timeout_ms: 900\n");
    let loader = || {
        Loader::new(defaults())
            .file(&toml)
            .file(&yaml)
            .file(dir.0.join("absent.json"))
    };
    let app = loader().env([("XX_IGNORED", "1")]).load().unwrap();
    assert_eq!(
        (
            app.port,
            app.name.as_str(),
            app.pool.max_size,
            app.pool.timeout_ms
        ),
        (9000, "from-file", 20, 900)
    );
    let app = loader()
        .env([("EE_PORT", "9100"), ("EE_POOL__MAX_SIZE", "30")])
        .load()
        .unwrap();
    assert_eq!((app.port, app.pool.max_size), (9100, 30));
    let app = loader()
        .env([("EE_PORT", "9100")])
        .set("port", 9200)
        .load()
        .unwrap();
    assert_eq!(app.port, 9200);
    // Untouched keys keep their defaults.
    assert_eq!(app.password.expose(), "dev-password");
}

#[test]
fn json_files_syntax_errors_ranges_and_overrides_are_reported_with_their_source() {
    let dir = Dir::new("kinds");
    // A JSON file's content is read (and wins over the TOML before it).
    let toml = dir.write("ee.toml", "port = 9000\n");
    let json = dir.write("ee.json", r#"{ "port": 9300, "pool": { "max_size": 7 } }"#);
    let app = Loader::new(defaults())
        .file(&toml)
        .file(&json)
        .env(Vec::<(String, String)>::new())
        .load()
        .unwrap();
    assert_eq!((app.port, app.pool.max_size), (9300, 7));

    // A file that does not parse names the file.
    let broken = dir.write("broken.toml", "port = = 1\n");
    let err = Loader::new(defaults())
        .file(&broken)
        .env(Vec::<(String, String)>::new())
        .load()
        .unwrap_err();
    assert!(err.to_string().contains("broken.toml"), "{err}");
    assert!(!err.to_string().contains("  - : "), "{err}");

    // Out of range for the type, from a file; a bad override names itself.
    let range = dir.write("range.toml", "port = 70000\n");
    let err = Loader::new(defaults())
        .file(&range)
        .env(Vec::<(String, String)>::new())
        .set("pool.max_size", "many")
        .load()
        .unwrap_err();
    let port = err.issues.iter().find(|p| p.key == "port").expect("port");
    assert!(port.source.contains("range.toml"), "{port:?}");
    assert!(port.reason.contains("70000"), "{port:?}");
    let size = err
        .issues
        .iter()
        .find(|p| p.key == "pool.max_size")
        .expect("max_size");
    assert_eq!(size.source, "Loader::set(\"pool.max_size\", …)", "{size:?}");
}

/// `load_or_exit` in a child process of this test binary: a readable report
/// on standard error and exit status 2, not a panic.
#[test]
fn load_or_exit_prints_the_report_and_exits_2() {
    if std::env::var_os("EE_CONFIG_CHILD").is_some() {
        let _: App = Loader::new(defaults())
            .env([("EE_PORT", "eighty")])
            .load_or_exit();
        unreachable!("load_or_exit returned on a bad configuration");
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "load_or_exit_prints_the_report_and_exits_2",
            "--nocapture",
        ])
        .env("EE_CONFIG_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the configuration is invalid"), "{stderr}");
    assert!(stderr.contains("EE_PORT"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn profiles_select_a_section() {
    let dir = Dir::new("profiles");
    let toml = dir.write(
        "ee.toml",
        "[default]\nport = 1000\n[prod]\nport = 2000\n[prod.pool]\nmax_size = 50\n",
    );
    let dev = Loader::new(defaults())
        .file(&toml)
        .profile("dev")
        .env(Vec::<(String, String)>::new())
        .load()
        .unwrap();
    assert_eq!(dev.port, 1000);
    let prod = Loader::new(defaults())
        .file(&toml)
        .env([("EE_PROFILE", "prod")])
        .load()
        .unwrap();
    assert_eq!((prod.port, prod.pool.max_size), (2000, 50));
    // The environment still wins over the profile's file values.
    let prod = Loader::new(defaults())
        .file(&toml)
        .env([("EE_PROFILE", "prod"), ("EE_PORT", "3000")])
        .load()
        .unwrap();
    assert_eq!(prod.port, 3000);
}

#[test]
fn every_bad_key_is_reported_with_its_source() {
    let dir = Dir::new("bad");
    let toml = dir.write("ee.toml", "port = \"eighty\"\nname = 12\n");
    let err = Loader::new(defaults())
        .file(&toml)
        .env([("EE_POOL__MAX_SIZE", "lots"), ("EE_POOL__TIMEOUT_MS", "-5")])
        .load()
        .unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|p| p.key.as_str()).collect();
    for key in ["port", "name", "pool.max_size", "pool.timeout_ms"] {
        assert!(keys.contains(&key), "{key} missing from {err}");
    }
    let port = err.issues.iter().find(|p| p.key == "port").unwrap();
    assert!(port.source.contains("ee.toml"), "{port:?}");
    let pool = err
        .issues
        .iter()
        .find(|p| p.key == "pool.max_size")
        .unwrap();
    assert_eq!(pool.source, "environment variable EE_POOL__MAX_SIZE");
    let text = err.to_string();
    assert!(text.contains("the configuration is invalid"), "{text}");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Strict {
    port: u16,
    name: String,
    pool: StrictPool,
    hosts: Vec<Host>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictPool {
    max_size: u32,
    timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Host {
    name: String,
    port: u16,
}

#[test]
fn unknown_keys_and_bad_array_items_do_not_hide_the_other_bad_keys() {
    let strict = Strict {
        port: 8080,
        name: "orders".into(),
        pool: StrictPool {
            max_size: 10,
            timeout_ms: 500,
        },
        hosts: vec![],
    };
    let dir = Dir::new("strict");
    // A typo first (`prot`), then bad values after it, in a section and in
    // an array, and one from the environment.
    let toml = dir.write(
        "ee.toml",
        "prot = 8081\nport = \"eighty\"\nname = 12\n\n[pool]\nmax_sise = 3\ntimeout_ms = \"soon\"\n\n\
         [[hosts]]\nname = \"a\"\nport = 1\n\n[[hosts]]\nname = \"b\"\nport = \"two\"\n\n\
         [[hosts]]\nname = \"c\"\nport = 3\n\n[[hosts]]\nnmae = \"d\"\nport = 4\n",
    );
    // A `tenants` table is the overlays' place: a strict struct need not
    // declare it.
    let with_tenants = dir.write(
        "tenants.toml",
        "port = 9100\nname = \"x\"\n[pool]\nmax_size = 1\ntimeout_ms = 2\n[tenants.acme]\nport = 9200\n",
    );
    let loader = Loader::new(strict.clone())
        .file(&with_tenants)
        .env(Vec::<(String, String)>::new());
    assert_eq!(loader.load().unwrap().port, 9100);
    assert_eq!(loader.load_for_tenant("acme").unwrap().port, 9200);

    let err = Loader::new(strict)
        .file(&toml)
        .env([("EE_POOL__MAX_SIZE", "lots")])
        .load()
        .unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "prot",
        "port",
        "name",
        "pool.max_sise",
        "pool.max_size",
        "pool.timeout_ms",
        "hosts.1.port",
        "hosts.3.nmae",
    ] {
        assert!(keys.contains(&key), "{key} missing from {err}");
    }
    let typo = err.issues.iter().find(|p| p.key == "prot").unwrap();
    assert!(typo.source.contains("ee.toml"), "{typo:?}");
    assert!(typo.reason.contains("unknown field"), "{typo:?}");
    let env = err
        .issues
        .iter()
        .find(|p| p.key == "pool.max_size")
        .unwrap();
    assert_eq!(env.source, "environment variable EE_POOL__MAX_SIZE");
    let item = err.issues.iter().find(|p| p.key == "hosts.1.port").unwrap();
    assert!(item.source.contains("ee.toml"), "{item:?}");
}

#[test]
fn secrets_come_from_files_and_never_show() {
    let dir = Dir::new("secret");
    let file = dir.write("db_password", "s3cr3t-from-file\n");
    let app = Loader::new(defaults())
        .env([("EE_PASSWORD_FILE", file.to_str().unwrap())])
        .load()
        .unwrap();
    assert_eq!(app.password.expose(), "s3cr3t-from-file");
    let shown = format!(
        "{app:?} {} {}",
        app.password,
        serde_json::to_string(&app).unwrap()
    );
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains("[redacted]"));
    // A secret file that cannot be read is an error naming the variable.
    let err = Loader::new(defaults())
        .env([("EE_PASSWORD_FILE", "/nonexistent/x")])
        .load()
        .unwrap_err();
    assert!(err.to_string().contains("EE_PASSWORD_FILE"), "{err}");
}

#[test]
fn tenants_and_feature_flags() {
    let dir = Dir::new("tenants");
    let toml = dir.write(
        "ee.toml",
        "[pool]\nmax_size = 10\n[tenants.acme.pool]\nmax_size = 99\n[features.flags]\nnew_checkout = false\n[features.tenants.acme]\nnew_checkout = true\n",
    );
    let loader = Loader::new(defaults())
        .file(&toml)
        .env(Vec::<(String, String)>::new());
    let base = loader.load().unwrap();
    let acme = loader.load_for_tenant("acme").unwrap();
    assert_eq!((base.pool.max_size, acme.pool.max_size), (10, 99));
    assert!(!base.features.is_enabled("new_checkout", None));
    assert!(base.features.is_enabled("new_checkout", Some("acme")));
    assert!(!base.features.is_enabled("new_checkout", Some("globex")));
    assert!(!base.features.is_enabled("unknown", Some("acme")));

    // A tenant's bad keys are all reported, with their file.
    let bad = dir.write(
        "bad.toml",
        "[tenants.acme]\nport = \"x\"\n[tenants.acme.pool]\nmax_size = \"y\"\ntimeout_ms = -1\n",
    );
    let err = Loader::new(defaults())
        .file(&bad)
        .env(Vec::<(String, String)>::new())
        .load_for_tenant("acme")
        .unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|p| p.key.as_str()).collect();
    for key in ["port", "pool.max_size", "pool.timeout_ms"] {
        assert!(keys.contains(&key), "{key} missing from {err}");
    }
    assert!(
        err.issues.iter().all(|p| p.source.contains("bad.toml")),
        "{err}"
    );
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pin {
    pin: Secret<u16>,
}

#[test]
fn a_bad_secret_is_reported_without_its_value() {
    let err = Loader::new(Pin {
        pin: Secret::new(1234),
    })
    .env([("EE_PIN", "s3cret-but-not-a-number")])
    .load()
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("pin") && text.contains("EE_PIN"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
}

#[tokio::test]
async fn reload_publishes_good_files_and_keeps_the_old_one_on_a_bad_file() {
    let dir = Dir::new("reload");
    let toml = dir.write("ee.toml", "port = 9000\n");
    let loader = Loader::new(defaults())
        .file(&toml)
        .env(Vec::<(String, String)>::new());
    // The watcher is a task on this (current-thread) runtime: its logs are
    // this thread's.
    let logs = ee_testing::capture_logs();
    let mut rx = ee_config::watch(loader, Duration::from_millis(20)).unwrap();
    assert_eq!(rx.borrow().port, 9000);
    // A bad file: nothing is published, the old value stays, and the log
    // says why.
    tokio::time::sleep(Duration::from_millis(30)).await;
    dir.write("ee.toml", "port = \"oops\"\n");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!rx.has_changed().unwrap());
    assert_eq!(rx.borrow().port, 9000);
    let text = logs.text();
    assert!(text.contains("configuration not reloaded"), "{text}");
    assert!(text.contains("port") && text.contains("oops"), "{text}");
    // A good one: published.
    dir.write("ee.toml", "port = 9500\n");
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rx.borrow().port, 9500);
}
