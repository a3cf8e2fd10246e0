//! The test kit's own servers behave as documented.

use std::net::TcpStream;

use ee_testing::{Postgres, RedisCluster, RedisServer, Reply};

#[test]
fn redis_server_starts_stops_restarts_and_cleans_up() {
    let mut server = RedisServer::start();
    let port = server.port();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
    assert_eq!(
        server.command(&["SET", "k", "v"]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        server.command(&["GET", "k"]),
        Reply::Bulk(Some(b"v".to_vec()))
    );
    // Nothing is persisted.
    assert_eq!(
        server.command(&["CONFIG", "GET", "save"]),
        Reply::Array(Some(vec![
            Reply::Bulk(Some(b"save".to_vec())),
            Reply::Bulk(Some(Vec::new()))
        ]))
    );

    server.stop();
    assert!(!server.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "stopped means refused"
    );

    server.restart();
    assert_eq!(server.port(), port, "restart keeps the port");
    assert_eq!(
        server.command(&["GET", "k"]),
        Reply::Bulk(None),
        "restart starts empty"
    );
    drop(server);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "drop kills the server"
    );
}

#[test]
fn paused_servers_accept_but_do_not_answer() {
    let mut server = RedisServer::start();
    server.pause();
    // The kernel still completes the handshake; the reply never comes.
    let err = ee_testing::redis_command(server.port(), &["PING"]).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );
    server.resume();
    assert_eq!(server.command(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn servers_started_together_get_distinct_ports() {
    let servers: Vec<RedisServer> = (0..4).map(|_| RedisServer::start()).collect();
    let mut ports: Vec<u16> = servers.iter().map(RedisServer::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4);
}

#[test]
fn clusters_cover_every_slot() {
    let cluster = RedisCluster::start(3);
    assert_eq!(cluster.urls().len(), 3);
    for node in cluster.nodes() {
        let info = node.command(&["CLUSTER", "INFO"]).as_text().unwrap();
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        assert!(info.contains("cluster_known_nodes:3"), "{info}");
    }
    // Our slot computation agrees with the server's.
    for key in ["hello", "ee:x:{tag}:a", "{}x", "user:{42}"] {
        assert_eq!(
            cluster.nodes()[0].command(&["CLUSTER", "KEYSLOT", key]),
            Reply::Integer(i64::from(ee_testing::key_slot(key.as_bytes()))),
            "{key}"
        );
    }
    // A key is served by the node that owns it and redirected by the others.
    let owner = cluster.node_for_key("hello");
    assert_eq!(
        owner.command(&["SET", "hello", "1"]),
        Reply::Status("OK".into())
    );
    let other = cluster
        .nodes()
        .iter()
        .find(|n| n.port() != owner.port())
        .unwrap();
    let Reply::Error(moved) = other.command(&["GET", "hello"]) else {
        panic!("expected MOVED")
    };
    assert!(moved.starts_with("MOVED"), "{moved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tests_get_isolated_schemas_that_are_dropped() {
    let a = Postgres::connect().await;
    let b = Postgres::connect().await;
    assert_ne!(a.schema(), b.schema());
    for pg in [&a, &b] {
        // The same table name in each schema, no clash.
        pg.client()
            .batch_execute("CREATE TABLE items (id int primary key); INSERT INTO items VALUES (1)")
            .await
            .unwrap();
    }
    a.client()
        .execute("INSERT INTO items VALUES (2)", &[])
        .await
        .unwrap();
    async fn count(pg: &Postgres) -> i64 {
        pg.client()
            .query_one("SELECT count(*) FROM items", &[])
            .await
            .unwrap()
            .get(0)
    }
    assert_eq!(count(&a).await, 2);
    assert_eq!(count(&b).await, 1);

    // A second connection through url() lands in the same schema.
    let (other, connection) = tokio_postgres::connect(a.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let n: i64 = other
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);

    let schema = a.schema().to_owned();
    drop(a);
    let exists: bool = b
        .client()
        .query_one(
            "SELECT exists(SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "the schema is dropped with its Postgres value");
}
