//! Orders settled outside their request, embedded mode: the reconciler
//! settles orders whose charge job is gone or failed for good (and leaves
//! alone those whose job is alive), `Prefer: wait` settling tasks are
//! bounded, and a charge job survives its worker dying more than once.

mod common;

use common::{Answer, HttpClient, Shop as _, send};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use ee_platform::services::reconcile::OrderSettings;
use ee_platform::{PaymentSettings, Platform, PlatformConfig};
use ee_queue::{JobOptions, JobState, Queue};
use serde_json::{Value, json};

/// A platform whose reconciler looks every 200 ms at orders pending for
/// more than a second.
fn config() -> PlatformConfig {
    let dir = common::fresh_dir("reconcile");
    PlatformConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir,
        payment: PaymentSettings {
            latency_ms: 5,
            failure_rate: 0.0,
        },
        orders: OrderSettings {
            reconcile_after_ms: 1_000,
            reconcile_every_ms: 200,
            reconcile_batch: 100,
        },
        auth: common::auth_settings(),
        ..PlatformConfig::default()
    }
}

struct Shop {
    platform: Platform,
    client: HttpClient,
    /// An admin's access token: what `get` reads with.
    admin: String,
    /// The order service's tokens (minted with the test key): what
    /// `internal` calls with, as the order service does.
    as_order: ee_auth::ServiceTokens,
}

impl common::Shop for Shop {
    fn http(&self) -> &HttpClient {
        &self.client
    }

    fn gateway_url(&self) -> &str {
        &self.platform.gateway
    }
}

impl Shop {
    async fn start(config: PlatformConfig) -> Self {
        let platform = Platform::start(config, None).await.unwrap();
        let client = common::client();
        let admin = common::sign_up(&client, &platform.gateway, common::ADMIN_EMAIL).await;
        let issuer = ee_auth::TokenIssuer::builder()
            .config(&common::auth_settings().issuer)
            .unwrap()
            .build()
            .unwrap();
        Self {
            platform,
            client,
            admin,
            as_order: ee_auth::ServiceTokens::new(issuer, "order").unwrap(),
        }
    }

    /// `GET path` through the gateway, as the admin.
    async fn get(&self, path: &str) -> Answer {
        let url = format!("{}{path}", self.platform.gateway);
        let auth = common::bearer(&self.admin);
        send(
            &self.client,
            Method::GET,
            &url,
            &[("authorization", &auth)],
            None,
        )
        .await
    }

    /// `method path` on service `service` itself (internal routes).
    async fn internal(
        &self,
        service: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let url = format!("{}{path}", self.platform.services[service]);
        let token = self.as_order.mint(service).unwrap().header_value();
        let mut headers = headers.to_vec();
        headers.push(("authorization", token.to_str().unwrap()));
        send(&self.client, method, &url, &headers, body).await
    }

    /// Registers `email` and logs in: the user's access token.
    async fn register(&self, email: &str) -> String {
        common::sign_up(&self.client, &self.platform.gateway, email).await
    }

    async fn stock(&self, sku: &str) -> i64 {
        let a = self.get(&format!("/v1/products/{sku}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["stock"].as_i64().unwrap()
    }

    fn charges(&self) -> &Queue {
        self.platform.queue("orders").expect("the in-process queue")
    }

    /// Places an order whose charge job is then removed, as if the process
    /// had stopped with it in memory: the order `pending`, its stock
    /// reserved, nothing to settle it. Returns the placed order.
    async fn strand(&self, key: &str, user: &str, sku: &str, quantity: u32) -> Value {
        let placed = self.place_held(key, user, sku, quantity).await;
        let id = placed["id"].as_str().unwrap();
        self.charges()
            .remove(&format!("charge-{id}"))
            .await
            .unwrap();
        self.charges().resume().await.unwrap();
        placed
    }

    /// Places an order while the charge worker takes nothing: 202, its job
    /// waiting (alive). The queue stays paused.
    async fn place_held(&self, key: &str, user: &str, sku: &str, quantity: u32) -> Value {
        self.charges().pause().await.unwrap();
        let a = self.order(key, user, sku, quantity, "tok_visa").await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
        let id = a.body["id"].as_str().unwrap();
        let job = self.charges().job(&format!("charge-{id}")).await.unwrap();
        assert_eq!(job.map(|j| j.state), Some(JobState::Waiting));
        a.body
    }

    /// Charges `order` at the payment service directly, as its lost job
    /// did before it was lost: the payment.
    async fn pay(&self, order: &Value, token: &str) -> Value {
        let body = json!({
            "order_id": order["id"],
            "amount_minor": order["total_minor"],
            "currency": order["currency"],
            "token": token,
        });
        let key = format!("\"order-{}\"", order["id"].as_str().unwrap());
        let a = self
            .internal(
                "payment",
                Method::POST,
                "/v1/payments",
                &[("idempotency-key", &key)],
                Some(body),
            )
            .await;
        assert!(a.status.is_success(), "{} {}", a.status, a.body);
        a.body
    }

    /// The order once settled, by the reconciler here.
    async fn settled(&self, id: &str) -> Value {
        common::settled(
            &self.client,
            &self.platform.gateway,
            &self.admin,
            id,
            Duration::from_secs(15),
        )
        .await
    }

    async fn stop(self) {
        self.platform.shutdown(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranded_order_paid_at_the_provider_is_confirmed_and_its_confirmation_sent() {
    let shop = Shop::start(config()).await;
    let user = shop.register("rae@example.com").await;
    let before = shop.stock("SKU-0003").await;
    let order = shop.strand("k-paid", &user, "SKU-0003", 2).await;
    let id = order["id"].as_str().unwrap();
    let payment = shop.pay(&order, "tok_visa").await;
    assert_eq!(payment["status"], "captured");

    let settled = shop.settled(id).await;
    assert_eq!(settled["status"], "confirmed", "{settled}");
    assert_eq!(settled["payment_id"], payment["id"]);
    assert_eq!(settled["total_minor"], order["total_minor"]);
    // Paid for: the stock stays taken.
    assert_eq!(shop.stock("SKU-0003").await, before - 2);
    // The confirmation goes through the notification queue, as the job's.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let sent = shop.get(&format!("/v1/notifications?order_id={id}")).await;
        let sent = sent.body.as_array().unwrap().clone();
        if let Some(n) = sent.first() {
            assert_eq!(n["recipient"], "rae@example.com");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no confirmation sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranded_order_declined_at_the_provider_gives_its_stock_back() {
    let shop = Shop::start(config()).await;
    let user = shop.register("sam@example.com").await;
    let before = shop.stock("SKU-0004").await;
    let order = shop.strand("k-declined", &user, "SKU-0004", 3).await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(shop.stock("SKU-0004").await, before - 3);
    let payment = shop.pay(&order, "tok_declined").await;
    assert_eq!(payment["status"], "declined");

    let settled = shop.settled(id).await;
    assert_eq!(settled["status"], "payment_failed", "{settled}");
    assert_eq!(settled["failure"], "card declined (test token)");
    assert_eq!(shop.stock("SKU-0004").await, before);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_job_failed_for_good_and_was_never_paid_is_abandoned() {
    let shop = Shop::start(config()).await;
    let user = shop.register("tao@example.com").await;
    let before = shop.stock("SKU-0005").await;
    let order = shop.place_held("k-dead", &user, "SKU-0005", 4).await;
    let id = order["id"].as_str().unwrap();
    // Its job replaced by one an older version wrote, which this worker
    // cannot read: it fails for good at once (the dead-letter set).
    let job = format!("charge-{id}");
    shop.charges().remove(&job).await.unwrap();
    shop.charges()
        .add(
            "charge",
            &json!({"order_id": id, "token": "tok_visa"}),
            JobOptions::default().job_id(job.clone()),
        )
        .await
        .unwrap();
    shop.charges().resume().await.unwrap();

    let settled = shop.settled(id).await;
    let info = shop.charges().job(&job).await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Failed, "{info:?}");
    assert_eq!(settled["status"], "failed", "{settled}");
    assert_eq!(settled["failure"], "abandoned: not paid within 1 s");
    assert_eq!(shop.stock("SKU-0005").await, before);
    // The payment service keeps a void payment in its place...
    let payments = shop
        .internal(
            "payment",
            Method::GET,
            &format!("/v1/payments?order_id={id}"),
            &[],
            None,
        )
        .await;
    assert_eq!(payments.status, StatusCode::OK, "{}", payments.body);
    assert_eq!(payments.body[0]["status"], "void", "{}", payments.body);
    // ...so a charge that comes late (a revived job) charges nothing.
    let late = shop.pay(&order, "tok_visa").await;
    assert_eq!(late["status"], "void");
    assert_eq!(late["id"], payments.body[0]["id"]);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_order_whose_job_is_alive_is_left_to_its_job() {
    let shop = Shop::start(config()).await;
    let user = shop.register("uma@example.com").await;
    let before = shop.stock("SKU-0006").await;
    // The older order's job waits (the worker is paused), the newer one's
    // is gone: the reconciler looks at both, oldest first.
    let alive = shop.place_held("k-alive", &user, "SKU-0006", 1).await;
    let alive = alive["id"].as_str().unwrap().to_owned();
    let gone = shop.order("k-gone", &user, "SKU-0006", 1, "tok_visa").await;
    assert_eq!(gone.status, StatusCode::ACCEPTED, "{}", gone.body);
    let gone = gone.body["id"].as_str().unwrap().to_owned();
    shop.charges()
        .remove(&format!("charge-{gone}"))
        .await
        .unwrap();

    assert_eq!(shop.settled(&gone).await["status"], "failed");
    // A few more passes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let order = shop.get(&format!("/v1/orders/{alive}")).await;
    assert_eq!(order.body["status"], "pending", "{}", order.body);
    assert_eq!(shop.stock("SKU-0006").await, before - 1);
    let payments = shop
        .internal(
            "payment",
            Method::GET,
            &format!("/v1/payments?order_id={alive}"),
            &[],
            None,
        )
        .await;
    assert_eq!(payments.body, json!([]));
    // Its job settles it once the worker runs.
    shop.charges().resume().await.unwrap();
    assert_eq!(shop.settled(&alive).await["status"], "confirmed");
    assert_eq!(shop.stock("SKU-0006").await, before - 1);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_wait_settling_tasks_are_bounded_by_max_in_flight() {
    // Two settling tasks at most; each outlives its request by 2 s (the
    // client waits 1 s for a 3 s payment). No reconciler: its deadline here
    // (1 s) is shorter than a wait, after which the job is added.
    let shop = std::sync::Arc::new(
        Shop::start(PlatformConfig {
            max_in_flight: 2,
            payment: PaymentSettings {
                latency_ms: 3_000,
                failure_rate: 0.0,
            },
            orders: OrderSettings {
                reconcile_every_ms: 0,
                ..OrderSettings::default()
            },
            ..config()
        })
        .await,
    );
    let user = shop.register("vic@example.com").await;
    let waiting = |i: usize| {
        let shop = shop.clone();
        let user = user.clone();
        tokio::spawn(async move {
            shop.place(
                &[("prefer", "wait=1")],
                &format!("k-wait-{i}"),
                &user,
                "SKU-0007",
                1,
                "tok_visa",
            )
            .await
        })
    };
    let (a, b) = (waiting(0), waiting(1));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    for w in [&a, &b] {
        assert_eq!(w.status, StatusCode::ACCEPTED, "{}", w.body);
        assert_eq!(w.headers["preference-applied"], "wait=1");
    }
    // Both tasks still settle their orders: no permit is left, so this
    // request does not wait (no `Preference-Applied`); its job settles it.
    let c = waiting(2).await.unwrap();
    assert_eq!(c.status, StatusCode::ACCEPTED, "{}", c.body);
    assert!(
        c.headers.get("preference-applied").is_none(),
        "{:?}",
        c.headers
    );
    for o in [&a, &b, &c] {
        let id = o.body["id"].as_str().unwrap();
        assert_eq!(shop.settled(id).await["status"], "confirmed");
    }
    // The tasks ended, their permits are back: a wait is honoured again.
    let d = shop
        .place(
            &[("prefer", "wait=10")],
            "k-wait-3",
            &user,
            "SKU-0007",
            1,
            "tok_visa",
        )
        .await;
    assert_eq!(d.status, StatusCode::CREATED, "{}", d.body);
    assert_eq!(d.headers["preference-applied"], "wait=10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_job_whose_worker_died_three_times_still_runs() {
    let redis = ee_testing::RedisServer::start();
    let queue = Queue::connect(ee_core::RedisConfig::standalone(redis.url()), "orders")
        .await
        .unwrap();
    // The platform's charge worker settings, with a lease short enough to
    // see stalls in a test.
    let settings = ee_queue::WorkerConfig {
        lease_ms: 400,
        stalled_interval_ms: 100,
        block_ms: 200,
        ..ee_platform::services::order::charge_worker_config()
    };
    let id = queue
        .add(
            "charge",
            &json!({"order": "ord_1"}),
            JobOptions::default().job_id("charge-ord_1").attempts(
                50,
                ee_queue::Backoff::Fixed {
                    delay_ms: 250,
                    jitter: 0.0,
                },
            ),
        )
        .await
        .unwrap();
    let job = |queue: Queue, id: String| async move { queue.job(&id).await.unwrap().unwrap() };
    let until = |what: &'static str, stalled: u32, state: JobState| {
        let (queue, id) = (queue.clone(), id.clone());
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let info = job(queue.clone(), id.clone()).await;
                if info.stalled == stalled && info.state == state {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "{what}: {info:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // Three workers die holding it (as a SIGKILL would: no outcome, no
    // renewal): each time the job goes back to the queue.
    for stalled in 0..3 {
        let stuck = tower::service_fn(|_job: ee_queue::Job<Value>| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, std::convert::Infallible>(())
        });
        let worker = ee_queue::Worker::new(queue.clone(), stuck)
            .config(&settings)
            .unwrap()
            .start();
        until("taken by the next worker", stalled, JobState::Active).await;
        worker.abort();
    }
    // The fourth runs it: the default (`max_stalled` 1) would have failed it
    // for good at its second stall.
    let runs = tower::service_fn(|_job: ee_queue::Job<Value>| async {
        Ok::<_, std::convert::Infallible>("confirmed")
    });
    let worker = ee_queue::Worker::new(queue.clone(), runs)
        .config(&settings)
        .unwrap()
        .start();
    until("run after three stalls", 3, JobState::Completed).await;
    worker.shutdown(Duration::from_secs(2)).await;
    let info = job(queue.clone(), id.clone()).await;
    // A stall is not a failed attempt: this was its first.
    assert_eq!(info.attempts_made, 1, "{info:?}");
}
