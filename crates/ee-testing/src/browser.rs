//! A real headless Chromium for tests of pages, driven over WebDriver
//! through `chromedriver` (feature `browser`).
//!
//! ```no_run
//! # async fn demo() {
//! let browser = ee_testing::Browser::start().await;
//! browser.goto("http://127.0.0.1:3000/admin/").await;
//! browser.click("button.retry").await;
//! assert_eq!(browser.text("#status").await, "done");
//! # }
//! ```
//!
//! Needs `chromium` and `chromedriver` on the `PATH` (Debian: `apt-get
//! install chromium chromium-driver`; `./scripts/test` installs them).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const HOW_TO_GET_CHROMIUM: &str = "Install Chromium and its WebDriver: Debian/Ubuntu `sudo apt-get install chromium chromium-driver` (./scripts/test does this), or put `chromium` and `chromedriver` on the PATH (CHROMEDRIVER and CHROMIUM override the paths).";

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session; the browser and its driver stop on drop.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    /// Starts `chromedriver` on a free port and opens a headless session.
    /// Panics, saying how to install them, when Chromium or its driver is
    /// missing.
    pub async fn start() -> Self {
        let driver_path = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| {
            [
                "/usr/bin/chromium",
                "/usr/bin/chromium-browser",
                "/usr/bin/google-chrome",
            ]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("chromium")
            .to_owned()
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {driver_path} ({e}). {HOW_TO_GET_CHROMIUM}"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut browser = Self {
            driver,
            addr,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 20 s. {HOW_TO_GET_CHROMIUM}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
            }
        }}});
        let reply = browser.call("POST", "/session", Some(caps)).await;
        browser.session = reply
            .get("sessionId")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no WebDriver session: {reply}. {HOW_TO_GET_CHROMIUM}"))
            .to_owned();
        browser
    }

    /// One WebDriver call; the reply's `value`, or a panic with its error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let exchange = http_call(self.addr, method, path, &body);
        let (status, text) = tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .map_err(|_| "no answer from chromedriver within 60 s".to_owned())??;
        let reply: Value =
            serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}"))?;
        let value = reply.get("value").cloned().unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(value.get("error").and_then(Value::as_str).map_or_else(
                || value.to_string(),
                |e| format!("{e}: {}", value["message"]),
            ))
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.call("POST", &self.path("/url"), Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `return` a value) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.path("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    async fn find(&self, css: &str) -> Result<String, String> {
        let v = self
            .try_call(
                "POST",
                &self.path("/element"),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        v.get(ELEMENT)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("no element reference in {v}"))
    }

    /// Retries `f` on the element `css` for up to 10 s (the page may not
    /// have drawn it yet, or may redraw it meanwhile).
    async fn with_element<T>(
        &self,
        css: &str,
        what: &str,
        f: impl AsyncFn(&str) -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let attempt = match self.find(css).await {
                Ok(id) => f(&id).await,
                Err(e) => Err(e),
            };
            match attempt {
                Ok(v) => return v,
                Err(e) if Instant::now() > deadline => {
                    panic!("{what} `{css}` failed for 10 s: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Clicks the first element matching `css`, waiting up to 10 s for it.
    pub async fn click(&self, css: &str) {
        self.with_element(css, "click", async |id| {
            self.try_call(
                "POST",
                &self.path(&format!("/element/{id}/click")),
                Some(json!({})),
            )
            .await
            .map(drop)
        })
        .await;
    }

    /// The visible text of the first element matching `css`, waiting up to
    /// 10 s for it.
    pub async fn text(&self, css: &str) -> String {
        self.with_element(css, "text of", async |id| {
            self.try_call("GET", &self.path(&format!("/element/{id}/text")), None)
                .await
                .map(|v| v.as_str().unwrap_or_default().to_owned())
        })
        .await
    }

    /// Waits up to 10 s until the text of `css` satisfies `check`; returns it.
    pub async fn wait_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.text(css).await;
            if check(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "`{css}` still reads {text:?} after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether an element matches `css` now.
    pub async fn exists(&self, css: &str) -> bool {
        self.find(css).await.is_ok()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session ends Chromium; then the driver goes.
        if !self.session.is_empty() {
            use std::io::{Read, Write};
            if let Ok(mut s) =
                std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = write!(
                    s,
                    "DELETE /session/{} HTTP/1.1\r\nhost: {}\r\ncontent-length: 0\r\n\r\n",
                    self.session, self.addr
                );
                // The driver answers once the browser has quit (it may keep
                // the connection open: read the status line only).
                let _ = s.read(&mut [0u8; 64]);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One HTTP/1.1 exchange with chromedriver: its `Host` must be a loopback
/// address, and it may keep the connection open, so the body is read by
/// its `Content-Length`.
async fn http_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let io = |e: std::io::Error| format!("chromedriver connection: {e}");
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body.as_bytes()).await.map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.map_err(io)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {line:?}"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).await.map_err(io)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value
                .trim()
                .parse()
                .map_err(|_| format!("bad {header:?}"))?;
        }
    }
    let mut bytes = vec![0; length];
    reader.read_exact(&mut bytes).await.map_err(io)?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
