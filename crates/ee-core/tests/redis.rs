//! Redis plumbing against real servers: standalone, a 3-node Cluster, and a
//! server that is stopped, paused and restarted mid-test.
#![cfg(feature = "redis")]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ee_core::{KeySpace, RedisConfig, RedisConn, RedisError, Script};
use ee_testing::{RedisCluster, RedisServer, Reply};

const TIMEOUT: Duration = Duration::from_millis(200);

async fn connect(server: &RedisServer) -> RedisConn {
    RedisConn::connect(&RedisConfig::standalone(server.url()).with_timeout(TIMEOUT))
        .await
        .expect("connect to the throwaway redis-server")
}

fn counter_script() -> Script {
    // Touches two keys of one entity: they must share a hash slot on a Cluster.
    Script::new(
        "local n = redis.call('INCRBY', KEYS[1], ARGV[1]); \
         redis.call('SET', KEYS[2], n, 'PX', 60000); \
         return n",
    )
}

fn evalsha_calls(server: &RedisServer) -> u64 {
    let Reply::Bulk(Some(info)) = server.command(&["INFO", "commandstats"]) else {
        panic!("INFO commandstats")
    };
    let info = String::from_utf8(info).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn commands_and_scripts_run_on_standalone_redis() {
    let server = RedisServer::start();
    let conn = connect(&server).await;
    assert!(!conn.is_cluster());
    let keys = KeySpace::new("test");

    let set: String = conn
        .query(redis::cmd("SET").arg(keys.key(&["a"])).arg("1"))
        .await
        .unwrap();
    assert_eq!(set, "OK");
    let got: String = conn
        .query(redis::cmd("GET").arg(keys.key(&["a"])))
        .await
        .unwrap();
    assert_eq!(got, "1");

    let script = counter_script();
    let (k1, k2) = (
        keys.tagged(&["u1"], &["n"]),
        keys.tagged(&["u1"], &["copy"]),
    );
    for expected in 1..=3 {
        let n: i64 = conn.invoke(script.key(&k1).key(&k2).arg(1)).await.unwrap();
        assert_eq!(n, expected);
    }
    // The script is loaded once, then each call is exactly one EVALSHA.
    let before = evalsha_calls(&server);
    let _: i64 = conn.invoke(script.key(&k1).key(&k2).arg(1)).await.unwrap();
    assert_eq!(evalsha_calls(&server) - before, 1);
    let ttl: i64 = conn.query(redis::cmd("PTTL").arg(&k2)).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");

    // A script error from Redis is not an outage.
    let broken = Script::new("return redis.call('NOPE')");
    let err = conn.invoke::<i64>(&broken.call()).await.unwrap_err();
    assert!(matches!(err, RedisError::Redis(_)), "{err:?}");
    assert!(!err.is_unavailable());
}

#[tokio::test]
async fn scripts_are_reloaded_after_noscript() {
    let server = RedisServer::start();
    let conn = connect(&server).await;
    let script = counter_script();
    let keys = KeySpace::new("test");
    let (k1, k2) = (keys.tagged(&["u"], &["n"]), keys.tagged(&["u"], &["c"]));
    let _: i64 = conn.invoke(script.key(&k1).key(&k2).arg(5)).await.unwrap();
    server.command(&["SCRIPT", "FLUSH"]);
    let n: i64 = conn.invoke(script.key(&k1).key(&k2).arg(5)).await.unwrap();
    assert_eq!(
        n, 10,
        "the call after SCRIPT FLUSH loads the script and succeeds"
    );
}

/// Retries `f` until it succeeds or `limit` passes.
async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RedisError>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("still failing after {limit:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn a_paused_server_times_out_within_the_bound_and_recovers() {
    let mut server = RedisServer::start();
    let conn = connect(&server).await;
    let ping = redis::cmd("PING");
    let _: String = conn.query(&ping).await.unwrap();

    server.pause();
    let started = Instant::now();
    let err = conn.query::<String>(&ping).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, RedisError::Timeout(t) if t == TIMEOUT),
        "{err:?}"
    );
    assert!(err.is_unavailable());
    // The bound holds (with slack for a loaded 2-core machine, not a timing test).
    assert!(took < TIMEOUT + Duration::from_secs(2), "{took:?}");

    // A longer per-call timeout really is longer (redis-rs' own response
    // timeout does not cut it short).
    let patient = conn.with_timeout(Duration::from_millis(700));
    let started = Instant::now();
    let err = patient.query::<String>(&ping).await.unwrap_err();
    assert!(
        matches!(err, RedisError::Timeout(t) if t == Duration::from_millis(700)),
        "{err:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(650),
        "{:?}",
        started.elapsed()
    );

    // Commands sent through redis-rs' own API on a RedisConn are bounded too.
    let mut raw = conn.clone();
    let err = redis::cmd("PING")
        .query_async::<String>(&mut raw)
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");

    server.resume();
    let pong: String = eventually(Duration::from_secs(10), || conn.query(&ping)).await;
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn a_stopped_server_fails_fast_and_the_connection_recovers_after_restart() {
    let mut server = RedisServer::start();
    let conn = connect(&server).await;
    let keys = KeySpace::new("test");
    let script = counter_script();
    let (k1, k2) = (keys.tagged(&["r"], &["n"]), keys.tagged(&["r"], &["c"]));
    let _: i64 = conn.invoke(script.key(&k1).key(&k2).arg(1)).await.unwrap();

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let err = conn
            .invoke::<i64>(script.key(&k1).key(&k2).arg(1))
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(2));
    }

    // Back, empty: the script cache is gone too, so this also covers NOSCRIPT.
    server.restart();
    let (c, s, k1, k2) = (&conn, &script, &k1, &k2);
    let n: i64 = eventually(Duration::from_secs(10), || async move {
        c.invoke(s.key(k1).key(k2).arg(1)).await
    })
    .await;
    assert_eq!(n, 1, "a restarted server starts empty");
}

#[tokio::test]
async fn connecting_to_nothing_fails_within_the_connect_timeout() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.stop();
    let started = Instant::now();
    let config = RedisConfig::standalone(url)
        .with_timeout(TIMEOUT)
        .with_connect_timeout(Duration::from_millis(300));
    let err = RedisConn::connect(&config).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_same_code_runs_on_a_three_node_cluster() {
    let cluster = RedisCluster::start(3);
    let conn = RedisConn::connect(
        &RedisConfig::cluster(cluster.urls()).with_timeout(Duration::from_secs(1)),
    )
    .await
    .expect("connect to the cluster");
    assert!(conn.is_cluster());
    let keys = KeySpace::new("test");
    let script = counter_script();

    // Many entities: their keys spread over every node, and each entity's two
    // keys share a slot, so the two-key script works for all of them.
    let mut owners = HashSet::new();
    for i in 0..60 {
        let id = format!("user:{i}");
        let (k1, k2) = (keys.tagged(&[&id], &["n"]), keys.tagged(&[&id], &["copy"]));
        let slot = |k: &str| cluster.nodes()[0].command(&["CLUSTER", "KEYSLOT", k]);
        assert_eq!(slot(&k1), slot(&k2));
        owners.insert(cluster.node_for_key(&k1).port());
        let n: i64 = conn.invoke(script.key(&k1).key(&k2).arg(2)).await.unwrap();
        assert_eq!(n, 2);
        let copy: i64 = conn.query(redis::cmd("GET").arg(&k2)).await.unwrap();
        assert_eq!(copy, 2);
        // The key really lives on the node that owns its slot.
        let Reply::Bulk(Some(v)) = cluster.node_for_key(&k1).command(&["GET", &k1]) else {
            panic!("{k1} is not on its slot's node")
        };
        assert_eq!(v, b"2");
    }
    assert_eq!(owners.len(), 3, "tags spread entities over every node");

    // NOSCRIPT on a Cluster: the reload reaches the node that runs the script.
    for node in cluster.nodes() {
        node.command(&["SCRIPT", "FLUSH"]);
    }
    let (k1, k2) = (
        keys.tagged(&["user:0"], &["n"]),
        keys.tagged(&["user:0"], &["copy"]),
    );
    let n: i64 = conn.invoke(script.key(&k1).key(&k2).arg(2)).await.unwrap();
    assert_eq!(n, 4);
}

#[tokio::test]
async fn scripts_reload_on_a_cluster_with_one_node_down() {
    let mut cluster = RedisCluster::start(3);
    let conn = RedisConn::connect(
        &RedisConfig::cluster(cluster.urls()).with_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let keys = KeySpace::new("test");
    let script = counter_script();
    let (k1, k2) = (keys.tagged(&["e"], &["n"]), keys.tagged(&["e"], &["copy"]));
    let _: i64 = conn.invoke(script.key(&k1).key(&k2).arg(1)).await.unwrap();
    let owner = cluster.node_for_key(&k1).port();
    // Another node dies; the owner loses its script cache. A `SCRIPT LOAD` sent
    // to every node would fail on the dead one: the reload must not need it.
    // (Done well within the 2 s node timeout, before the Cluster marks itself down.)
    let other = cluster
        .nodes_mut()
        .iter_mut()
        .find(|n| n.port() != owner)
        .unwrap();
    other.stop();
    cluster.node_for_key(&k1).command(&["SCRIPT", "FLUSH"]);
    let n: i64 = conn.invoke(script.key(&k1).key(&k2).arg(1)).await.unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn a_paused_cluster_node_times_out_and_recovers() {
    let mut cluster = RedisCluster::start(3);
    let conn = RedisConn::connect(&RedisConfig::cluster(cluster.urls()).with_timeout(TIMEOUT))
        .await
        .unwrap();
    let key = KeySpace::new("test").key(&["paused"]);
    let port = cluster.node_for_key(&key).port();
    let _: () = conn
        .query(redis::cmd("SET").arg(&key).arg("v"))
        .await
        .unwrap();

    let node = cluster
        .nodes_mut()
        .iter_mut()
        .find(|n| n.port() == port)
        .unwrap();
    node.pause();
    let err = conn
        .query::<String>(redis::cmd("GET").arg(&key))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    node.resume();
    let (c, key) = (&conn, &key);
    let v: String = eventually(Duration::from_secs(15), || async move {
        c.query(redis::cmd("GET").arg(key)).await
    })
    .await;
    assert_eq!(v, "v");
}
