//! `ee-platform-load`: a load test of the platform through its gateway.
//!
//! ```text
//! ee-platform-load [--url http://127.0.0.1:8080] [--duration 20] [--connections 32]
//!                  [--rate N] [--pids 123,456] [--store-pids 789] [--warmup 3] [--wait]
//! ```
//!
//! Each connection is one user: registered, logged in, and every request
//! carries its access token (`Authorization: Bearer`), as a signed-in
//! shopper's do. Scenario mix: log in again 0.2 % (`POST /v1/auth/token`,
//! an Argon2id verification: about as often as a session ends), browse
//! 70 % (`GET /v1/products?page=&per_page=20`), product detail 20 % (`GET
//! /v1/products/{sku}`), place an order 10 % (`POST /v1/orders`, a fresh
//! `Idempotency-Key`, one unit). Without `--rate` each
//! connection sends its next request when the last one is answered (the
//! highest throughput); with `--rate N` requests start on a fixed schedule of
//! N per second in all, and a request that had to wait for its connection's
//! previous answer counts its latency from its scheduled start, so a slow
//! answer is not hidden by the requests it delayed. Any answer other than
//! 2xx is an error (so give the platform enough stock, `EE_SEED_STOCK`, as
//! `scripts/platform-load` does: the demo's 100 units of 50 products last
//! about 5 000 orders, after which orders get 409). With `--pids`, the CPU time of those processes (the
//! platform) and of this one over the run is reported, and with
//! `--store-pids` that of the stores (redis-server, postgres).
//!
//! An order is answered 202 once its stock is reserved, and settled by the
//! order service's charge job. After the run every order accepted in the
//! measured window is looked up (for up to 30 s) and the report says how
//! many were confirmed, declined or still pending, and how long placing to
//! confirming took (the order's `updated_ms - created_ms`). An order still
//! pending then is an error. With `--wait` the orders carry
//! `Prefer: wait=10`: the answer comes after the payment (201), so its
//! latency includes the provider's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Method, Request};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

struct Args {
    url: String,
    duration: Duration,
    warmup: Duration,
    connections: usize,
    rate: Option<f64>,
    pids: Vec<u32>,
    store_pids: Vec<u32>,
    wait: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        url: "http://127.0.0.1:8080".into(),
        duration: Duration::from_secs(20),
        warmup: Duration::from_secs(3),
        connections: 32,
        rate: None,
        pids: Vec::new(),
        store_pids: Vec::new(),
        wait: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value()?,
            "--duration" => {
                a.duration = Duration::from_secs_f64(
                    value()?.parse().map_err(|e| format!("--duration: {e}"))?,
                )
            }
            "--warmup" => {
                a.warmup =
                    Duration::from_secs_f64(value()?.parse().map_err(|e| format!("--warmup: {e}"))?)
            }
            "--connections" => {
                a.connections = value()?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?
            }
            "--rate" => a.rate = Some(value()?.parse().map_err(|e| format!("--rate: {e}"))?),
            "--pids" => a.pids = pid_list(&value()?)?,
            "--store-pids" => a.store_pids = pid_list(&value()?)?,
            "--wait" => a.wait = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    a.connections = a.connections.max(1);
    Ok(a)
}

fn pid_list(s: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim().parse().map_err(|e| format!("pid {p:?}: {e}")))
        .collect()
}

/// utime + stime of a process, in seconds (Linux `/proc`).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    per_kind_us: [Vec<u32>; KINDS.len()],
    errors: u64,
    by_kind: [u64; KINDS.len()],
    first_errors: Vec<String>,
    /// Orders answered 202: to look up after the run.
    accepted: Vec<(String, Arc<str>)>,
}

static KEYS: AtomicU64 = AtomicU64::new(0);

/// The kinds of request in the mix, as reported.
const KINDS: [&str; 4] = ["browse", "detail", "order", "login"];

/// The password every load user registers with.
const PASSWORD: &str = "load-test-password";

/// A signed-in load user.
struct User {
    email: String,
    /// `Bearer …`
    bearer: String,
}

/// One request of the mix: its kind, and on success the id of an order
/// answered 202 (to be settled later).
async fn one(
    client: &Client<HttpConnector, Body>,
    url: &str,
    user: &User,
    rng: &mut u64,
    wait: bool,
) -> (usize, Result<Option<String>, String>) {
    // xorshift: cheap and good enough to pick a scenario and a product.
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let roll = *rng % 100;
    let sku = format!("SKU-{:04}", (*rng >> 8) % 50 + 1);
    let (kind, req) = if (*rng >> 24).is_multiple_of(500) {
        let body = serde_json::json!({"email": user.email, "password": PASSWORD}).to_string();
        (
            3,
            Request::post(format!("{url}/v1/auth/token"))
                .header("content-type", "application/json")
                .body(Body::from(body)),
        )
    } else if roll < 70 {
        let page = (*rng >> 16) % 3 + 1;
        (
            0,
            Request::get(format!("{url}/v1/products?page={page}&per_page=20")).body(Body::empty()),
        )
    } else if roll < 90 {
        (
            1,
            Request::get(format!("{url}/v1/products/{sku}")).body(Body::empty()),
        )
    } else {
        let key = KEYS.fetch_add(1, Ordering::Relaxed);
        let body =
            format!(r#"{{"lines":[{{"sku":"{sku}","quantity":1}}],"payment_token":"tok_visa"}}"#);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("{url}/v1/orders"))
            .header("content-type", "application/json")
            .header(
                "idempotency-key",
                format!("\"load-{}-{key}\"", std::process::id()),
            );
        if wait {
            req = req.header("prefer", "wait=10");
        }
        (2, req.body(Body::from(body)))
    };
    let mut req = req.expect("a valid request");
    req.headers_mut().insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&user.bearer).expect("a token is a header value"),
    );
    let result = match client.request(req).await {
        Ok(resp) => {
            let status = resp.status();
            let body = resp.into_body().collect().await.map(|b| b.to_bytes());
            match body {
                Ok(b) if status == http::StatusCode::ACCEPTED => {
                    Ok(serde_json::from_slice::<serde_json::Value>(&b)
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_owned)))
                }
                Ok(_) if status.is_success() => Ok(None),
                Ok(b) => Err(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&b)
                        .chars()
                        .take(200)
                        .collect::<String>()
                )),
                Err(e) => Err(format!("{status}, body: {e}")),
            }
        }
        Err(e) => Err(format!("request failed: {e}")),
    };
    (kind, result)
}

/// `POST {url}{path}` with a JSON body: the JSON answer, or why not.
async fn post_json(
    client: &Client<HttpConnector, Body>,
    url: &str,
    path: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let req = Request::post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("POST {path}: {status} {v}"));
    }
    Ok(v)
}

/// Registers load user `n` and logs them in.
async fn register(
    client: &Client<HttpConnector, Body>,
    url: &str,
    n: usize,
) -> Result<User, String> {
    let email = format!("load-{}-{n}@example.com", std::process::id());
    post_json(
        client,
        url,
        "/v1/users",
        serde_json::json!({"email": email, "name": format!("Load {n}"), "password": PASSWORD}),
    )
    .await?;
    let tokens = post_json(
        client,
        url,
        "/v1/auth/token",
        serde_json::json!({"email": email, "password": PASSWORD}),
    )
    .await?;
    let token = tokens["access_token"]
        .as_str()
        .ok_or_else(|| format!("no access_token in {tokens}"))?;
    Ok(User {
        email,
        bearer: format!("Bearer {token}"),
    })
}

#[derive(Default)]
struct Settled {
    /// Per confirmed order: `updated_ms - created_ms`.
    took_ms: Vec<i64>,
    declined: u64,
    pending: u64,
}

/// Looks the orders up until each has left `pending` (or 30 s have passed).
async fn settle(
    client: &Client<HttpConnector, Body>,
    url: &str,
    ids: &[(String, Arc<str>)],
) -> Settled {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Settled::default();
    let mut left: Vec<&(String, Arc<str>)> = ids.iter().collect();
    while !left.is_empty() {
        let mut still = Vec::new();
        for order_of in left {
            let (id, bearer) = order_of;
            let order = async {
                let req = Request::get(format!("{url}/v1/orders/{id}"))
                    .header(http::header::AUTHORIZATION, &**bearer)
                    .body(Body::empty())
                    .ok()?;
                let resp = client.request(req).await.ok()?;
                let bytes = resp.into_body().collect().await.ok()?.to_bytes();
                serde_json::from_slice::<serde_json::Value>(&bytes).ok()
            }
            .await;
            match order.as_ref().and_then(|o| o["status"].as_str()) {
                Some("confirmed") => {
                    let o = order.as_ref().expect("an order");
                    let ms = |f: &str| o[f].as_i64().unwrap_or(0);
                    out.took_ms.push(ms("updated_ms") - ms("created_ms"));
                }
                // Declined, or failed: settled all the same.
                Some(s) if s != "pending" => out.declined += 1,
                _ => still.push(order_of),
            }
        }
        if still.is_empty() || Instant::now() > deadline {
            out.pending = still.len() as u64;
            break;
        }
        left = still;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out
}

/// When a run starts, measures and ends, and how often each connection sends.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    /// Open loop: one request per connection per interval; `None`: closed loop.
    per_conn_interval: Option<Duration>,
}

/// One connection's loop: requests of the mix until the end, tallied once
/// the warm-up is over.
async fn connection(
    i: usize,
    client: Client<HttpConnector, Body>,
    args: Arc<Args>,
    user: User,
    at: Schedule,
) -> Tally {
    let bearer: Arc<str> = user.bearer.as_str().into();
    let mut tally = Tally::default();
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64 ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
    // Spread the connections' schedules over one interval.
    let mut next = at.start
        + at.per_conn_interval.map_or(Duration::ZERO, |d| {
            d.mul_f64(i as f64 / args.connections as f64)
        });
    loop {
        // Latency counts from the scheduled start when the connection was
        // still busy with the previous request (so queueing is not hidden),
        // and from the wake-up otherwise (the timer's own lateness is not the
        // platform's).
        let mut began = next;
        if at.per_conn_interval.is_some() {
            if Instant::now() < next {
                tokio::time::sleep_until(next.into()).await;
                began = Instant::now();
            }
        } else {
            next = Instant::now();
            began = next;
        }
        if next >= at.end {
            break;
        }
        let (kind, result) = one(&client, &args.url, &user, &mut rng, args.wait).await;
        let took = began.elapsed();
        if next >= at.measure_from {
            tally.record(
                kind,
                took,
                result.map(|id| id.map(|id| (id, bearer.clone()))),
            );
        }
        if let Some(d) = at.per_conn_interval {
            next += d;
        }
    }
    tally
}

impl Tally {
    fn record(
        &mut self,
        kind: usize,
        took: Duration,
        result: Result<Option<(String, Arc<str>)>, String>,
    ) {
        self.by_kind[kind] += 1;
        let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        self.latencies_us.push(us);
        self.per_kind_us[kind].push(us);
        match result {
            Ok(Some(id)) => self.accepted.push(id),
            Ok(None) => {}
            Err(e) => {
                self.errors += 1;
                if self.first_errors.len() < 3 {
                    self.first_errors.push(e);
                }
            }
        }
    }

    /// Adds another connection's tally to this one.
    fn merge(&mut self, t: Tally) {
        self.latencies_us.extend(t.latencies_us);
        self.errors += t.errors;
        self.accepted.extend(t.accepted);
        for (k, v) in t.per_kind_us.into_iter().enumerate() {
            self.by_kind[k] += t.by_kind[k];
            self.per_kind_us[k].extend(v);
        }
        for e in t.first_errors {
            if self.first_errors.len() < 5 {
                self.first_errors.push(e);
            }
        }
    }
}

/// CPU seconds used so far: (the platform's processes, this process, the
/// stores' processes).
#[derive(Clone, Copy)]
struct CpuSample {
    platform: f64,
    me: f64,
    stores: f64,
}

fn cpu_sample(platform_pids: &[String], store_pids: &[String]) -> CpuSample {
    let sum = |pids: &[String]| pids.iter().filter_map(|p| cpu_seconds(p)).sum::<f64>();
    CpuSample {
        platform: sum(platform_pids),
        me: cpu_seconds("self").unwrap_or(0.0),
        stores: sum(store_pids),
    }
}

/// The value at percentile `p` of sorted microseconds, in milliseconds.
fn percentile_ms(v: &[u32], p: f64) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        f64::from(v[((v.len() as f64 * p) as usize).min(v.len() - 1)]) / 1000.0
    }
}

/// Prints the run's figures (the tally's latencies must be sorted).
fn report(args: &Args, all: &Tally, cpu: Option<(CpuSample, CpuSample)>) {
    let n = all.latencies_us.len();
    let pct = |p: f64| percentile_ms(&all.latencies_us, p);
    let secs = args.duration.as_secs_f64();
    println!(
        "target {}  connections {}  {}  {:.0} s measured after {:.0} s warm-up",
        args.url,
        args.connections,
        args.rate
            .map_or("closed loop (as fast as answered)".to_owned(), |r| format!(
                "open loop at {r:.0} req/s"
            )),
        secs,
        args.warmup.as_secs_f64()
    );
    println!(
        "requests {n}  ({:.0} req/s)  browse {} / detail {} / order {} / login {}",
        n as f64 / secs,
        all.by_kind[0],
        all.by_kind[1],
        all.by_kind[2],
        all.by_kind[3]
    );
    println!(
        "latency ms  p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.95),
        pct(0.99),
        pct(1.0)
    );
    for (name, v) in KINDS.iter().zip(&all.per_kind_us) {
        println!(
            "  {name:<7} p50 {:.2}  p95 {:.2}  p99 {:.2}",
            percentile_ms(v, 0.50),
            percentile_ms(v, 0.95),
            percentile_ms(v, 0.99)
        );
    }
    println!(
        "errors {}  ({:.3} %)",
        all.errors,
        100.0 * all.errors as f64 / (n.max(1) as f64)
    );
    for e in &all.first_errors {
        println!("  e.g. {e}");
    }
    if let Some((b, a)) = cpu {
        let stores = if args.store_pids.is_empty() {
            String::new()
        } else {
            format!(
                ", Redis + PostgreSQL {:.0} %",
                100.0 * (a.stores - b.stores) / secs
            )
        };
        println!(
            "cpu over the run (of one core): platform {:.0} %, load generator {:.0} %{stores}",
            100.0 * (a.platform - b.platform) / secs,
            100.0 * (a.me - b.me) / secs
        );
    }
}

/// Looks up every order answered 202 and prints how they ended; returns how
/// many are still pending (errors).
async fn report_orders(
    client: &Client<HttpConnector, Body>,
    url: &str,
    accepted: &[(String, Arc<str>)],
) -> u64 {
    let s = settle(client, url, accepted).await;
    let mut took = s.took_ms;
    took.sort_unstable();
    let at = |p: f64| {
        took.get(((took.len() as f64 * p) as usize).min(took.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "orders accepted (202) {}: confirmed {}, declined or failed {}, still pending {} after the run; placed to confirmed ms p50 {}  p95 {}  p99 {}",
        accepted.len(),
        took.len(),
        s.declined,
        s.pending,
        at(0.50),
        at(0.95),
        at(0.99)
    );
    s.pending
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("ee-platform-load: {e}");
            }
            eprintln!(
                "usage: ee-platform-load [--url URL] [--duration S] [--warmup S] [--connections N] [--rate RPS] [--pids P,Q] [--store-pids R,S] [--wait]"
            );
            return std::process::ExitCode::from(2);
        }
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.connections)
        .build(connector);
    let mut users = Vec::new();
    for n in 0..args.connections {
        match register(&client, &args.url, n).await {
            Ok(u) => users.push(u),
            Err(e) => {
                eprintln!("ee-platform-load: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let args = Arc::new(args);
    let start = Instant::now();
    let at = Schedule {
        start,
        measure_from: start + args.warmup,
        end: start + args.warmup + args.duration,
        per_conn_interval: args
            .rate
            .map(|r| Duration::from_secs_f64(args.connections as f64 / r.max(0.001))),
    };
    let tasks: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(i, user)| tokio::spawn(connection(i, client.clone(), args.clone(), user, at)))
        .collect();
    tokio::time::sleep_until(at.measure_from.into()).await;
    let platform_pids: Vec<String> = args.pids.iter().map(u32::to_string).collect();
    let store_pids: Vec<String> = args.store_pids.iter().map(u32::to_string).collect();
    let cpu_before = (!platform_pids.is_empty()).then(|| cpu_sample(&platform_pids, &store_pids));
    tokio::time::sleep_until(at.end.into()).await;
    let cpu = cpu_before.map(|b| (b, cpu_sample(&platform_pids, &store_pids)));
    let mut all = Tally::default();
    for t in tasks {
        all.merge(t.await.expect("a load task"));
    }
    all.latencies_us.sort_unstable();
    for v in &mut all.per_kind_us {
        v.sort_unstable();
    }
    report(&args, &all, cpu);
    if !all.accepted.is_empty() {
        all.errors += report_orders(&client, &args.url, &all.accepted).await;
    }
    if all.errors > 0 {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
