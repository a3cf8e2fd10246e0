//! A real SIGHUP reloads the configuration even when the file's
//! modification time did not change (this binary has this one test).

use std::time::Duration;

use ee_config::Loader;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct App {
    port: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads() {
    let dir = std::env::temp_dir().join(format!("ee-config-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ee.toml");
    std::fs::write(&file, "port = 1\n").unwrap();
    let loader = Loader::new(App { port: 0 })
        .file(&file)
        .env(Vec::<(String, String)>::new());
    // Polling once an hour: only the signal can trigger this reload.
    let mut rx = ee_config::watch(loader, Duration::from_secs(3600)).unwrap();
    assert_eq!(rx.borrow().port, 1);
    // Same length, same second: a change the poll could miss.
    std::fs::write(&file, "port = 2\n").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // the handler is installed
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rx.borrow().port, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
