//! End to end through the gateway, distributed mode: `ee-platform serve`
//! processes (two instances of each service and a gateway) on a throwaway
//! Redis and the machine's PostgreSQL (a schema of this test's own, reached
//! through a proxy the test can cut).

mod common;

use common::{Answer, HttpClient, Shop as _, send};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ee_testing::{Postgres, RedisServer, TcpProxy};
use serde_json::{Value, json};

const SERVICES: [&str; 5] = ["user", "product", "payment", "notification", "order"];

struct Proc {
    name: String,
    url: String,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    procs: Vec<Proc>,
    config: std::path::PathBuf,
    gateway: String,
    client: HttpClient,
    proxy: TcpProxy,
    redis_url: String,
    _pg: Postgres,
    _redis: RedisServer,
    dir: std::path::PathBuf,
    /// An admin's access token: what `get` reads with.
    admin: String,
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

impl Cluster {
    async fn start() -> Self {
        let redis = RedisServer::start();
        let pg = Postgres::connect().await;
        let pg_config = pg.config();
        let host = match &pg_config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            other => panic!("the test needs PostgreSQL over TCP, not {other:?}"),
        };
        let port = pg_config.get_ports().first().copied().unwrap_or(5432);
        let target = tokio::net::lookup_host((host.as_str(), port))
            .await
            .unwrap()
            .next()
            .unwrap();
        let proxy = TcpProxy::start(target).await;
        let db_url = pg
            .url()
            .replacen(&format!("{host}:{port}"), &proxy.addr().to_string(), 1);
        assert_ne!(db_url, pg.url(), "the URL names {host}:{port}");

        let mut addrs: Vec<(String, String)> = Vec::new();
        for name in SERVICES {
            for _ in 0..2 {
                addrs.push((name.to_owned(), free_addr()));
            }
        }
        let gateway_addr = free_addr();
        let mut toml = format!(
            "database_url = {db_url:?}\nredis_url = {:?}\nupstream_timeout_ms = 3000\n\n[payment]\nlatency_ms = 100\n\n[rate_limit]\nper_second = 100000\nburst = 100000\n\n[logging]\nfilter = \"warn\"\n\n[upstreams]\n",
            redis.url()
        );
        for name in SERVICES {
            let urls: Vec<String> = addrs
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, a)| format!("\"http://{a}\""))
                .collect();
            toml.push_str(&format!("{name} = [{}]\n", urls.join(", ")));
        }
        toml.push_str(&format!(
            "\n[auth]\nadmins = [{:?}]\n\n[[auth.issuer.keys]]\nkid = \"test-1\"\nalg = \"EdDSA\"\nprivate_key_pem = \"\"\"\n{}\"\"\"\n",
            common::ADMIN_EMAIL,
            common::TEST_SIGNING_KEY
        ));
        let dir = std::env::temp_dir().join(format!("ee-platform-dist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("platform.toml");
        std::fs::write(&config, toml).unwrap();

        let mut procs: Vec<Proc> = addrs.iter().map(|(n, a)| spawn(n, a, &config)).collect();
        procs.push(spawn("gateway", &gateway_addr, &config));
        let mut cluster = Self {
            procs,
            config,
            gateway: format!("http://{gateway_addr}"),
            client: common::client(),
            proxy,
            redis_url: redis.url(),
            _pg: pg,
            _redis: redis,
            dir,
            admin: String::new(),
        };
        for p in &cluster.procs {
            cluster.live(p).await;
        }
        let _ = send(
            &cluster.client,
            Method::POST,
            &format!("{}/v1/users", cluster.gateway),
            &[],
            Some(json!({"email": common::ADMIN_EMAIL, "name": "Admin", "password": common::PASSWORD})),
        )
        .await;
        cluster.admin =
            common::log_in(&cluster.client, &cluster.gateway, common::ADMIN_EMAIL).await;
        cluster
    }

    /// Waits for `p` to answer `/livez`.
    async fn live(&self, p: &Proc) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = self
                .client
                .get(format!("{}/livez", p.url).parse().unwrap())
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} at {} did not start",
                p.name,
                p.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Calls here take whole URLs (the gateway's or an instance's).
    fn url(&self, url: &str) -> String {
        url.to_owned()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        send(&self.client, method, &self.url(path), headers, body).await
    }

    /// `GET path` through the gateway, as the admin.
    async fn get(&self, path: &str) -> Answer {
        let auth = common::bearer(&self.admin);
        self.send(
            Method::GET,
            &format!("{}{path}", self.gateway),
            &[("authorization", auth.as_str())],
            None,
        )
        .await
    }

    /// The order once its payment is settled (no longer `pending`).
    async fn settled(&self, id: &str, within: Duration) -> Value {
        common::settled(&self.client, &self.gateway, &self.admin, id, within).await
    }

    /// The stock, once every instance's cache agrees (invalidation crosses
    /// instances through Redis pub/sub within milliseconds).
    async fn stock_becomes(&self, sku: &str, want: i64) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let got = self.get(&format!("/v1/products/{sku}")).await.body["stock"].as_i64();
            if got == Some(want) {
                // Both instances (round robin) say so.
                let again = self.get(&format!("/v1/products/{sku}")).await.body["stock"].as_i64();
                if again == Some(want) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{sku}: stock {got:?}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs a live instance of `name`; returns its address.
    fn kill(&mut self, name: &str) -> String {
        let i = self
            .procs
            .iter()
            .position(|p| p.name == name)
            .expect("a live instance");
        let mut p = self.procs.remove(i);
        p.child.kill().unwrap(); // SIGKILL
        let _ = p.child.wait();
        p.url.trim_start_matches("http://").to_owned()
    }

    /// Starts `name` again at `addr` and waits for it.
    async fn restart(&mut self, name: &str, addr: &str) {
        let p = spawn(name, addr, &self.config);
        self.live(&p).await;
        self.procs.push(p);
    }
}

fn spawn(name: &str, addr: &str, config: &std::path::Path) -> Proc {
    Proc {
        name: name.to_owned(),
        url: format!("http://{addr}"),
        child: Command::new(env!("CARGO_BIN_EXE_ee-platform"))
            .args(["serve", name, "--config"])
            .arg(config)
            .env("EE_LISTEN", addr)
            .env_remove("EE_DATABASE_URL")
            .env_remove("EE_REDIS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ee-platform runs"),
    }
}

impl common::Shop for Cluster {
    fn http(&self) -> &HttpClient {
        &self.client
    }

    fn gateway_url(&self) -> &str {
        &self.gateway
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_mode_on_redis_and_postgres() {
    let mut c = Cluster::start().await;

    // The happy path, the confirmation through the Redis queue.
    let email = "ada@example.com".to_owned();
    let user = common::sign_up(&c.client, &c.gateway, &email).await;
    c.stock_becomes("SKU-0001", 100).await;
    let placed = c.order("d-happy", &user, "SKU-0001", 3, "tok_visa").await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
    assert_eq!(placed.body["status"], "pending");
    let id = placed.body["id"].as_str().unwrap().to_owned();
    c.stock_becomes("SKU-0001", 97).await;
    // The charge job (on Redis, run by either order instance) settles it.
    let settled = c.settled(&id, Duration::from_secs(10)).await;
    assert_eq!(settled["status"], "confirmed", "{settled}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sent = c.get(&format!("/v1/notifications?order_id={id}")).await;
        if sent.body.as_array().is_some_and(|a| a.len() == 1) {
            assert_eq!(sent.body[0]["recipient"], email.as_str());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no confirmation sent: {}",
            sent.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The same key twice (the two attempts may reach different order
    // instances: the record is in Redis): one order, one charge.
    let again = c.order("d-happy", &user, "SKU-0001", 3, "tok_visa").await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["id"], placed.body["id"]);
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    c.stock_becomes("SKU-0001", 97).await;

    // A declined payment puts the stock back: settled by the job, or in
    // the request when the client waits for the outcome.
    let declined = c
        .order("d-declined", &user, "SKU-0001", 5, "tok_declined")
        .await;
    assert_eq!(declined.status, StatusCode::ACCEPTED, "{}", declined.body);
    let failed = c
        .settled(
            declined.body["id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(failed["status"], "payment_failed");
    c.stock_becomes("SKU-0001", 97).await;
    let declined = c
        .order_waiting("d-declined-wait", &user, "SKU-0001", 5, "tok_declined")
        .await;
    assert_eq!(
        declined.status,
        StatusCode::PAYMENT_REQUIRED,
        "{}",
        declined.body
    );
    assert_eq!(declined.headers["preference-applied"], "wait=10");
    c.stock_becomes("SKU-0001", 97).await;

    // A reservation repeated for one order (as a resumed order does) takes
    // the stock once; an unknown product is a 422 problem and takes nothing.
    let product = c
        .procs
        .iter()
        .find(|p| p.name == "product")
        .unwrap()
        .url
        .clone();
    let reserve =
        |order: &str, sku: &str| json!({"order_id": order, "lines": [{"sku": sku, "quantity": 2}]});
    // Called directly, as the order service calls it: with its service
    // token (minted here with the test key). Without one, or with a
    // user's, the internal route refuses.
    let order_service = ee_auth::ServiceTokens::new(
        ee_auth::TokenIssuer::builder()
            .config(&common::auth_settings().issuer)
            .unwrap()
            .build()
            .unwrap(),
        "order",
    )
    .unwrap();
    let as_order = order_service
        .mint("product")
        .unwrap()
        .header_value()
        .to_str()
        .unwrap()
        .to_owned();
    let as_order = [("authorization", as_order.as_str())];
    let user_auth = common::bearer(&user);
    for (headers, want) in [
        (vec![], StatusCode::UNAUTHORIZED),
        (
            vec![("authorization", user_auth.as_str())],
            StatusCode::FORBIDDEN,
        ),
    ] {
        let refused = c
            .send(
                Method::POST,
                &format!("{product}/v1/reservations"),
                &headers,
                Some(reserve("ord_repeat", "SKU-0003")),
            )
            .await;
        assert_eq!(refused.status, want, "{}", refused.body);
        assert!(refused.is_problem());
    }
    let first = c
        .send(
            Method::POST,
            &format!("{product}/v1/reservations"),
            &as_order,
            Some(reserve("ord_repeat", "SKU-0003")),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let again = c
        .send(
            Method::POST,
            &format!("{product}/v1/reservations"),
            &as_order,
            Some(reserve("ord_repeat", "SKU-0003")),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["lines"], first.body["lines"]);
    c.stock_becomes("SKU-0003", 98).await;
    // Released, it stays released: reserving for that order again (a late
    // retry of a declined order) takes nothing.
    let released = c
        .send(
            Method::DELETE,
            &format!("{product}/v1/reservations/ord_repeat"),
            &as_order,
            None,
        )
        .await;
    assert_eq!(released.status, StatusCode::NO_CONTENT, "{}", released.body);
    c.stock_becomes("SKU-0003", 100).await;
    let late = c
        .send(
            Method::POST,
            &format!("{product}/v1/reservations"),
            &as_order,
            Some(reserve("ord_repeat", "SKU-0003")),
        )
        .await;
    assert_eq!(late.status, StatusCode::GONE, "{}", late.body);
    assert!(late.is_problem());
    c.stock_becomes("SKU-0003", 100).await;
    let unknown = c
        .order("d-unknown-sku", &user, "SKU-9999", 1, "tok_visa")
        .await;
    assert_eq!(
        unknown.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unknown.body
    );
    assert_eq!(
        unknown.body["type"],
        "https://ee.rs/problems/platform/unknown-product"
    );

    // No payment instance left: the order is accepted (the stock is
    // reserved) and its job retries until payment is back.
    let payment_a = c.kill("payment");
    let payment_b = c.kill("payment");
    let held = c.order("d-outage", &user, "SKU-0001", 2, "tok_visa").await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{}", held.body);
    let held = held.body["id"].as_str().unwrap().to_owned();
    c.stock_becomes("SKU-0001", 95).await;
    c.restart("payment", &payment_a).await;
    c.restart("payment", &payment_b).await;
    let settled = c.settled(&held, Duration::from_secs(30)).await;
    assert_eq!(settled["status"], "confirmed", "{settled}");
    // Settled by a retry of its job, on Redis.
    let orders = ee_queue::Queue::connect(
        ee_core::RedisConfig::standalone(c.redis_url.clone()),
        "orders",
    )
    .await
    .unwrap();
    let job = orders
        .job(&format!("charge-{held}"))
        .await
        .unwrap()
        .expect("the charge job");
    assert!(job.attempts_made >= 2, "{job:?}");
    c.stock_becomes("SKU-0001", 95).await;

    // 100 concurrent orders for the last 10 items, across both order and
    // product instances: exactly 10 sell.
    let bulk = c
        .order_waiting("d-bulk", &user, "SKU-0002", 90, "tok_visa")
        .await;
    assert_eq!(bulk.status, StatusCode::CREATED, "{}", bulk.body);
    let c = Arc::new(c);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let c = c.clone();
            let user = user.clone();
            tokio::spawn(async move {
                c.order(&format!("d-race-{i}"), &user, "SKU-0002", 1, "tok_visa")
                    .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let (by_status, accepted) = common::tally(answers);
    assert_eq!(accepted.len(), 10, "{by_status:?}");
    assert_eq!(by_status.get(&409), Some(&90), "{by_status:?}");
    for id in &accepted {
        assert_eq!(
            c.settled(id, Duration::from_secs(10)).await["status"],
            "confirmed"
        );
    }
    c.stock_becomes("SKU-0002", 0).await;
    let mut c = Arc::into_inner(c).expect("the tasks are done");

    // /readyz goes red when PostgreSQL is unreachable, and green again.
    let user_instance = c
        .procs
        .iter()
        .find(|p| p.name == "user")
        .unwrap()
        .url
        .clone();
    let ready = |c: &Cluster| {
        let url = format!("{user_instance}/readyz");
        let client = c.client.clone();
        async move { client.get(url.parse().unwrap()).await.unwrap().status() }
    };
    assert_eq!(ready(&c).await, StatusCode::OK);
    c.proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&c).await != StatusCode::SERVICE_UNAVAILABLE {
        assert!(
            Instant::now() < deadline,
            "readyz stayed green without PostgreSQL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&c).await != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "readyz stayed red after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A killed product instance: the gateway uses the other one.
    let _ = c.kill("product");
    for _ in 0..10 {
        let a = c.get("/v1/products/SKU-0003").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    // None left: 502 problem+json.
    let _ = c.kill("product");
    let a = c.get("/v1/products/SKU-0003").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.body);
    assert_eq!(a.headers["content-type"], "application/problem+json");
    assert_eq!(
        a.body["type"],
        "https://ee.rs/problems/gateway/upstream-unavailable"
    );
}
