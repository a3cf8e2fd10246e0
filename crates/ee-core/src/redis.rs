//! Redis plumbing shared by every ee Redis backend (feature `redis`).
//!
//! - [`RedisConn`]: one cloneable connection type for standalone Redis
//!   (redis-rs `ConnectionManager`: multiplexed, reconnecting) and Redis Cluster
//!   (redis-rs cluster-async), so a backend is written once for both.
//! - A per-call timeout on every call ([`RedisConn::query`],
//!   [`RedisConn::invoke`]): a stalled or unreachable server costs a request at
//!   most that long, and the error says so ([`RedisError::Timeout`]).
//! - [`RedisConn::invoke`] runs Lua [`Script`]s by SHA (`EVALSHA`); on
//!   `NOSCRIPT` (after a restart, a failover or `SCRIPT FLUSH`) it sends the
//!   script once with `EVAL`, which runs it and caches it on the node that owns
//!   the keys, so the next `EVALSHA` succeeds. No `SCRIPT LOAD` fan-out: on a
//!   Cluster with one node down, scripts still reload on the healthy ones.
//! - [`KeySpace`]: key names `ee:<crate>:<part>:…`, with a Cluster hash tag
//!   `{…}` around the part that several keys of one script share.
//!
//! Why a multiplexed connection rather than a pool: one multiplexed connection
//! pipelines concurrent requests over one socket, so 50 tasks share it without
//! waiting for a checkout; the measurements against `deadpool-redis` and `bb8`
//! are in `docs/benchmarks.md`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, ToRedisArgs, Value};
use serde::{Deserialize, Serialize};

/// How to reach Redis. Deserialises with serde, so it can be loaded by ee-config.
///
/// ```
/// # use ee_core::RedisConfig;
/// let standalone: RedisConfig = serde_json::from_str(r#"{ "url": "redis://127.0.0.1:6379" }"#).unwrap();
/// let cluster: RedisConfig = serde_json::from_str(
///     r#"{ "cluster_nodes": ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"], "timeout_ms": 100 }"#,
/// ).unwrap();
/// assert!(!standalone.is_cluster() && cluster.is_cluster());
/// // Passwords stay out of `Debug` (and so out of logs and panics).
/// let secret = RedisConfig::standalone("redis://app:s3cret@cache:6379");
/// assert!(format!("{secret:?}").contains("redis://app:***@cache:6379"));
/// assert!(!format!("{secret:?}").contains("s3cret"));
/// ```
/// `Debug` shows the URLs without their passwords.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// A standalone server, `redis://[user:password@]host:port[/db]`
    /// (default `redis://127.0.0.1:6379`). Ignored when `cluster_nodes` is set.
    pub url: String,
    /// Seed nodes of a Redis Cluster; when non-empty, the connection is a
    /// Cluster connection and `url` is ignored.
    pub cluster_nodes: Vec<String>,
    /// Bound on each call, in milliseconds, from sending the command to its
    /// reply, including a script reload on `NOSCRIPT` (default 250).
    pub timeout_ms: u64,
    /// Bound on establishing a connection, in milliseconds (default 1000).
    pub connect_timeout_ms: u64,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<_> = self
            .cluster_nodes
            .iter()
            .map(|u| crate::redact_url(u))
            .collect();
        f.debug_struct("RedisConfig")
            .field("url", &crate::redact_url(&self.url))
            .field("cluster_nodes", &nodes)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            cluster_nodes: Vec::new(),
            timeout_ms: 250,
            connect_timeout_ms: 1000,
        }
    }
}

impl RedisConfig {
    /// A standalone server at `url`, with default timeouts.
    pub fn standalone(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// A Cluster reached through `nodes` (any subset of its nodes), with default timeouts.
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            cluster_nodes: nodes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Sets the per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = millis(timeout);
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout_ms = millis(timeout);
        self
    }

    /// Whether this describes a Cluster.
    pub fn is_cluster(&self) -> bool {
        !self.cluster_nodes.is_empty()
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The call did not complete within the per-call timeout.
    #[error("redis call timed out after {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl RedisError {
    /// True when Redis could not be reached or did not answer in time: the case
    /// an `on_backend_error` policy (fail open, fail closed, local fallback)
    /// is for. False for errors Redis itself returned (a script error, a wrong type).
    pub fn is_unavailable(&self) -> bool {
        match self {
            RedisError::Timeout(_) => true,
            RedisError::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_unrecoverable_error()
                    || e.is_cluster_error()
            }
        }
    }
}

#[derive(Clone)]
enum Inner {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

/// One connection to Redis, standalone or Cluster, with a per-call timeout.
///
/// Cheap to clone (clones share the multiplexed socket or the Cluster's node
/// connections); reconnects by itself after the server comes back. It also
/// implements redis-rs `aio::ConnectionLike`, so every redis-rs command API
/// works on it directly (those calls are bounded by the same timeout through
/// redis-rs' response timeout).
///
/// ```no_run
/// # async fn demo() -> Result<(), ee_core::RedisError> {
/// use ee_core::{KeySpace, RedisConfig, RedisConn, Script};
///
/// let conn = RedisConn::connect(&RedisConfig::standalone("redis://127.0.0.1:6379")).await?;
/// let keys = KeySpace::new("demo");
/// let incr = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
/// let n: i64 = conn.invoke(incr.key(keys.key(&["visits"])).arg(1)).await?;
/// let pong: String = conn.query(&redis::cmd("PING")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisConn {
    inner: Inner,
    timeout: Duration,
}

impl fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConn")
            .field("cluster", &self.is_cluster())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisConn {
    /// Connects (standalone or Cluster, as `config` says). Fails if no
    /// connection can be made within the connect timeout.
    pub async fn connect(config: &RedisConfig) -> Result<Self, RedisError> {
        let timeout = config.timeout();
        let connect_timeout = config.connect_timeout();
        let connecting = async {
            if config.is_cluster() {
                // Response timeouts are ours (per call, see `bounded`), so that
                // `with_timeout` can lengthen them as well as shorten them.
                let client = ClusterClient::builder(config.cluster_nodes.clone())
                    .connection_timeout(connect_timeout)
                    .build()?;
                Ok(Inner::Cluster(client.get_async_connection().await?))
            } else {
                let client = redis::Client::open(config.url.as_str())?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(None)
                    // Reconnect attempts are made in the background; keep them
                    // short so the first call after a restart finds a connection.
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(200));
                Ok(Inner::Standalone(
                    ConnectionManager::new_with_config(client, manager_config).await?,
                ))
            }
        };
        // Bound the whole set-up (DNS, Cluster slot discovery) as well.
        let inner = tokio::time::timeout(connect_timeout + timeout, connecting)
            .await
            .map_err(|_| RedisError::Timeout(connect_timeout + timeout))?
            .map_err(RedisError::Redis)?;
        Ok(Self { inner, timeout })
    }

    /// Whether this is a Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner, Inner::Cluster(_))
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A handle to the same connection with another per-call timeout (for
    /// example a longer one for a start-up migration).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            inner: self.inner.clone(),
            timeout,
        }
    }

    async fn bounded<T, F>(&self, call: F) -> Result<T, RedisError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(RedisError::Redis),
            Err(_) => {
                tracing::debug!(timeout = ?self.timeout, "redis call timed out");
                Err(RedisError::Timeout(self.timeout))
            }
        }
    }

    /// Runs one command, bounded by the per-call timeout.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        let mut inner = self.inner.clone();
        self.bounded(cmd.query_async(&mut inner)).await
    }

    /// Runs a pipeline (one round trip), bounded by the per-call timeout. On a
    /// Cluster every key of the pipeline must live in one hash slot.
    pub async fn query_pipeline<T: FromRedisValue>(
        &self,
        pipeline: &Pipeline,
    ) -> Result<T, RedisError> {
        let mut inner = self.inner.clone();
        self.bounded(pipeline.query_async(&mut inner)).await
    }

    /// Runs a script by SHA (`EVALSHA`); on `NOSCRIPT`, runs it with `EVAL`,
    /// which also caches it on that node. One round trip when the script is
    /// cached; the timeout bounds the whole exchange. On a Cluster, the script's
    /// keys must share a hash slot (see [`KeySpace::tagged`](crate::KeySpace::tagged)).
    pub async fn invoke<T: FromRedisValue>(&self, call: &ScriptCall<'_>) -> Result<T, RedisError> {
        let mut inner = self.inner.clone();
        self.bounded(async {
            match call.command(true).query_async(&mut inner).await {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    call.command(false).query_async(&mut inner).await
                }
                other => other,
            }
        })
        .await
    }
}

impl ConnectionLike for Inner {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Inner::Standalone(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Inner::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Inner::Standalone(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}

/// Bounds a redis-rs call by `timeout`, failing with an I/O `TimedOut` error.
fn bounded_call<'a, T: Send + 'a>(
    timeout: Duration,
    call: RedisFuture<'a, T>,
) -> RedisFuture<'a, T> {
    Box::pin(async move {
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("redis call timed out after {timeout:?}"),
                )))
            })
    })
}

/// Every command sent through redis-rs' own APIs on a `RedisConn` is bounded
/// by the per-call timeout too.
impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        bounded_call(self.timeout, self.inner.req_packed_command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        bounded_call(
            self.timeout,
            self.inner.req_packed_commands(pipeline, offset, count),
        )
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// A Lua script, run with [`RedisConn::invoke`]. Build it once (a `static`
/// `LazyLock` is typical); the SHA1 is computed here.
#[derive(Debug, Clone)]
pub struct Script {
    code: Arc<str>,
    hash: Arc<str>,
}

impl Script {
    /// A script from its Lua source.
    pub fn new(code: &str) -> Self {
        Self {
            hash: redis::Script::new(code).get_hash().into(),
            code: code.into(),
        }
    }

    /// The Lua source.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The SHA1 of the source, as `EVALSHA` wants it.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// A call of this script, starting with one key.
    pub fn key<T: ToRedisArgs>(&self, key: T) -> ScriptCall<'_> {
        let mut call = self.call();
        call.key(key);
        call
    }

    /// A call of this script, starting with one argument.
    pub fn arg<T: ToRedisArgs>(&self, arg: T) -> ScriptCall<'_> {
        let mut call = self.call();
        call.arg(arg);
        call
    }

    /// A call of this script with no keys or arguments yet.
    pub fn call(&self) -> ScriptCall<'_> {
        ScriptCall {
            script: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }
}

/// The keys and arguments of one script call.
#[derive(Debug, Clone)]
pub struct ScriptCall<'a> {
    script: &'a Script,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl ScriptCall<'_> {
    /// Adds a key (`KEYS[n]`).
    pub fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    /// Adds an argument (`ARGV[n]`).
    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    fn command(&self, by_sha: bool) -> Cmd {
        let mut cmd = if by_sha {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&*self.script.hash);
            cmd
        } else {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(&*self.script.code);
            cmd
        };
        cmd.arg(self.keys.len()).arg(&self.keys).arg(&self.args);
        cmd
    }
}
