//! Throwaway `redis-server` processes: one server, or a Redis Cluster.
//!
//! Each server runs on a free loopback port in a temporary directory, keeps
//! nothing on disk, and is killed when its handle is dropped. Tests that need an
//! outage stop, pause or restart it.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const HOW_TO_GET_REDIS: &str = "ee-testing needs `redis-server` (and Redis 7 or newer for clusters) on PATH: \
     on Debian/Ubuntu run `sudo apt-get install redis-server`, on macOS `brew install redis`, \
     or run `./scripts/test`, which installs it when it can";

/// A reply of the Redis protocol (RESP2), as read by [`RedisServer::command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR …`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$…`, `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*…`, `None` for the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (status, error, bulk string or integer).
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Status(s) | Reply::Error(s) => Some(s.clone()),
            Reply::Integer(n) => Some(n.to_string()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Sends one command over a fresh connection and reads its reply. Blocking, for
/// test set-up and assertions only.
pub fn command(port: u16, args: &[&str]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out)?;
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty reply"))?;
    let int = |s: &str| s.parse::<i64>().map_err(|_| bad("bad length"));
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(int(rest)?),
        "$" => match usize::try_from(int(rest)?) {
            Err(_) => Reply::Bulk(None),
            Ok(len) => {
                let mut buf = vec![0; len + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(len);
                Reply::Bulk(Some(buf))
            }
        },
        "*" => match usize::try_from(int(rest)?) {
            Err(_) => Reply::Array(None),
            Ok(len) => Reply::Array(Some(
                (0..len)
                    .map(|_| read_reply(r))
                    .collect::<std::io::Result<_>>()?,
            )),
        },
        _ => return Err(bad("unknown reply type")),
    })
}

/// A fresh directory under the system temp dir, removed by its owner.
fn temp_dir(label: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ee-testing-{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("cannot create a temp dir for redis-server");
    dir
}

/// A loopback port that was free a moment ago (and, with `bus`, whose cluster
/// bus port `port + 10000` was too).
fn free_port(bus: bool) -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        if !bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A real `redis-server` on a free loopback port, killed on drop.
///
/// ```no_run
/// let mut redis = ee_testing::RedisServer::start();
/// let url = redis.url(); // redis://127.0.0.1:<port>
/// redis.stop();    // an outage: connections are refused
/// redis.restart(); // back on the same port, empty
/// redis.pause();   // a hang: connections stay open, nothing answers
/// redis.resume();
/// ```
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
    paused: bool,
}

impl RedisServer {
    /// Starts a server. Panics, saying how to install Redis, if `redis-server`
    /// cannot be run.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (`["--maxmemory", "1mb"]`).
    pub fn start_with(args: &[&str]) -> Self {
        let extra: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let cluster = args.contains(&"--cluster-enabled");
        let mut last_log = String::new();
        // A free port can be taken between our probe and the server's bind: retry.
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(cluster),
                dir: temp_dir("redis"),
                extra: extra.clone(),
                child: None,
                paused: false,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start after 5 attempts; its last log:\n{last_log}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server ({e}). {HOW_TO_GET_REDIS}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = self.child.as_ref().map(Child::id).unwrap_or_default();
        while Instant::now() < deadline {
            // Our process, not another test's server that won a race for the port.
            if let Ok(info) = command(self.port, &["INFO", "server"])
                && let Some(info) = info.as_text()
                && info
                    .lines()
                    .any(|l| l.trim() == format!("process_id:{pid}"))
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return Err(read_log(&log));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        Err(format!(
            "no PONG within 10 s; log:\n{}",
            read_log(&self.dir.join("redis.log"))
        ))
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one command (blocking) and returns its reply.
    pub fn command(&self, args: &[&str]) -> Reply {
        command(self.port, args).unwrap_or_else(|e| panic!("redis command {args:?} failed: {e}"))
    }

    /// Kills the server (SIGKILL): open connections break, new ones are refused.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port, with no data.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(log) if Instant::now() > deadline => {
                    panic!("redis-server did not restart on port {}: {log}", self.port)
                }
                // The port may linger for a moment after the kill.
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers,
    /// the way a stalled server or a network partition looks to a client.
    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&mut self) {
        self.signal("-CONT");
        self.paused = false;
    }

    /// Whether the process is running (not stopped; it may be paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("redis-server is not running");
        assert!(send_signal(sig, child.id()), "kill {sig} failed");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused {
                // A stopped process still dies on SIGKILL; resume only for tidiness.
                send_signal("-CONT", child.id());
                self.paused = false;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends a signal with the shell's built-in `kill` (no procps needed).
fn send_signal(sig: &str, pid: u32) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("kill {sig} {pid}"))
        .status()
        .is_ok_and(|s| s.success())
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|_| "(no log)".into())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A real Redis Cluster of `n` primaries (no replicas) on free loopback ports,
/// every slot assigned, killed on drop.
///
/// ```no_run
/// let cluster = ee_testing::RedisCluster::start(3);
/// let seeds: Vec<String> = cluster.urls(); // redis://127.0.0.1:<port> per node
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `n` (at least 1) primaries and joins them into one Cluster; returns
    /// when every node reports `cluster_state:ok`. Panics with the reason otherwise.
    pub fn start(n: usize) -> Self {
        assert!(n >= 1, "a cluster needs at least one node");
        let nodes: Vec<RedisServer> = (0..n)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        // Slots split evenly, each node its own config epoch (as redis-cli does).
        const SLOTS: usize = 16_384;
        for (i, node) in nodes.iter().enumerate() {
            let (from, to) = (i * SLOTS / n, (i + 1) * SLOTS / n);
            let mut args = vec!["CLUSTER".to_owned(), "ADDSLOTS".to_owned()];
            args.extend((from..to).map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            expect_ok(node.command(&args), "CLUSTER ADDSLOTS");
            let epoch = (i + 1).to_string();
            expect_ok(
                node.command(&["CLUSTER", "SET-CONFIG-EPOCH", &epoch]),
                "CLUSTER SET-CONFIG-EPOCH",
            );
        }
        for node in &nodes[1..] {
            let port = node.port().to_string();
            expect_ok(
                nodes[0].command(&["CLUSTER", "MEET", "127.0.0.1", &port]),
                "CLUSTER MEET",
            );
        }
        let cluster = Self { nodes };
        cluster.wait_until_ok(Duration::from_secs(30));
        cluster
    }

    fn wait_until_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let want_nodes = format!("cluster_known_nodes:{}", self.nodes.len());
        loop {
            let ready = self.nodes.iter().all(|node| {
                command(node.port(), &["CLUSTER", "INFO"])
                    .ok()
                    .and_then(|r| r.as_text())
                    .is_some_and(|info| {
                        info.contains("cluster_state:ok") && info.contains(&want_nodes)
                    })
            });
            if ready {
                return;
            }
            if Instant::now() > deadline {
                let info = command(self.nodes[0].port(), &["CLUSTER", "INFO"]);
                panic!("the Redis Cluster did not become ready within {limit:?}: {info:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis://127.0.0.1:<port>` of every node, to seed a Cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes, to stop, pause or query one of them.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Mutable access to the nodes (for `stop`/`pause` of one node).
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// The node that owns `key`'s hash slot (computed here, so it works while
    /// nodes are down).
    pub fn node_for_key(&self, key: &str) -> &RedisServer {
        let slot = i64::from(key_slot(key.as_bytes()));
        let n = self.nodes.len() as i64;
        let index = (0..n)
            .find(|i| slot >= i * 16_384 / n && slot < (i + 1) * 16_384 / n)
            .expect("every slot is assigned");
        &self.nodes[usize::try_from(index).expect("index fits")]
    }
}

/// The Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag (the part
/// inside the first non-empty `{…}`) or of the whole key, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16_384
}

fn expect_ok(reply: Reply, what: &str) {
    assert_eq!(
        reply,
        Reply::Status("OK".into()),
        "{what} did not answer OK"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_redis_cluster_spec() {
        // Examples from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"123456789"), 12_739);
        assert_eq!(key_slot(b"foo"), 12_182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(
            key_slot(b"foo{}{bar}"),
            key_slot(b"bar"),
            "an empty tag is no tag"
        );
    }

    #[test]
    fn replies_parse() {
        let mut input: &[u8] = b"*3\r\n+OK\r\n$5\r\nhello\r\n*2\r\n:7\r\n$-1\r\n";
        assert_eq!(
            read_reply(&mut input).unwrap(),
            Reply::Array(Some(vec![
                Reply::Status("OK".into()),
                Reply::Bulk(Some(b"hello".to_vec())),
                Reply::Array(Some(vec![Reply::Integer(7), Reply::Bulk(None)])),
            ]))
        );
    }
}
