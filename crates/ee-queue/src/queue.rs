//! The producer and admin handle of one queue.

use std::collections::HashMap;
use std::sync::Arc;

use ee_core::KeySpace;
use ee_core::{RedisConfig, RedisConn};
use serde::Serialize;

use crate::config::QueueConfig;
use crate::job::{JobInfo, JobOptions, JobState, check_name};
use crate::metrics::Meters;
use crate::{QueueError, scripts};

/// One job to add with [`Queue::add_bulk`].
#[derive(Debug, Clone)]
pub struct NewJob<T> {
    /// What the job is (`"send-email"`).
    pub name: String,
    /// The payload, serialized as JSON.
    pub data: T,
    /// Its options.
    pub options: JobOptions,
}

impl<T> NewJob<T> {
    /// A job with default options.
    pub fn new(name: impl Into<String>, data: T) -> Self {
        Self {
            name: name.into(),
            data,
            options: JobOptions::default(),
        }
    }

    /// The same job with `options`.
    #[must_use]
    pub fn options(mut self, options: JobOptions) -> Self {
        self.options = options;
        self
    }
}

/// Where a job goes besides its options say: its trace context, a fixed
/// due time (a repeat's tick), its place in a flow.
pub(crate) struct Placement<'a> {
    pub(crate) traceparent: &'a str,
    /// Due at this time (ms), and not added once it is past.
    pub(crate) due_ms: Option<u64>,
    /// The position of its parent in the same ADD call.
    pub(crate) parent: Option<usize>,
    /// How many children it waits for.
    pub(crate) children: usize,
}

impl<'a> Placement<'a> {
    pub(crate) fn now(traceparent: &'a str) -> Self {
        Self {
            traceparent,
            due_ms: None,
            parent: None,
            children: 0,
        }
    }
}

/// How many jobs are in each state, and whether the queue is paused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Ready, without priority.
    pub waiting: u64,
    /// Ready, with a priority.
    pub prioritized: u64,
    /// Waiting for a delay or a retry backoff.
    pub delayed: u64,
    /// Taken by a worker.
    pub active: u64,
    /// Done (as many as retention keeps).
    pub completed: u64,
    /// Failed for good (the dead-letter set).
    pub failed: u64,
    /// Flow parents waiting for their children.
    #[serde(rename = "waiting-children")]
    pub waiting_children: u64,
    /// Whether workers are told to take nothing.
    pub paused: bool,
}

impl Counts {
    /// The count of `state`.
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Waiting => self.waiting,
            JobState::Prioritized => self.prioritized,
            JobState::Delayed => self.delayed,
            JobState::Active => self.active,
            JobState::Completed => self.completed,
            JobState::Failed => self.failed,
            JobState::WaitingChildren => self.waiting_children,
        }
    }
}

/// One entry of the queue's event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueEvent {
    /// The stream entry id (`<ms>-<seq>`), to read on from.
    pub stream_id: String,
    /// `waiting`, `delayed`, `active`, `progress`, `completed`, `failed`,
    /// `stalled` or `removed`.
    pub event: String,
    /// The job.
    pub job_id: String,
    /// The other fields (`reason`, `attempts`, `retry`, `delay`, `progress`).
    pub fields: HashMap<String, String>,
}

/// A handle on one queue in Redis: adds jobs and manages them. Cheap to
/// clone; every clone shares one connection.
///
/// Every key of the queue shares the hash slot of `{<name>}`, so a queue
/// lives on one Cluster node and each operation is one atomic script.
#[derive(Clone)]
pub struct Queue {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) name: String,
    /// `ee:queue:{<name>}:`
    pub(crate) base: String,
    /// `ee:queue:{<name>}:meta`: the routing key of every script.
    pub(crate) meta: String,
    pub(crate) conn: RedisConn,
    pub(crate) redis: RedisConfig,
    pub(crate) config: QueueConfig,
    pub(crate) meters: Meters,
    /// The queue's retention, as FINISH reads it.
    pub(crate) keep_completed: String,
    pub(crate) keep_failed: String,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.inner.name)
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Connects to Redis (standalone or Cluster) and opens queue `name`
    /// with default settings.
    pub async fn connect(redis: RedisConfig, name: &str) -> Result<Self, QueueError> {
        Self::connect_with(redis, name, QueueConfig::default()).await
    }

    /// As [`connect`](Self::connect), with `config`.
    pub async fn connect_with(
        redis: RedisConfig,
        name: &str,
        config: QueueConfig,
    ) -> Result<Self, QueueError> {
        let conn = RedisConn::connect(&redis).await?;
        Self::with_connection(conn, redis, name, config)
    }

    /// A queue on an existing connection. `redis` is what workers use to
    /// open their own connection for blocking waits.
    pub fn with_connection(
        conn: RedisConn,
        redis: RedisConfig,
        name: &str,
        config: QueueConfig,
    ) -> Result<Self, QueueError> {
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(QueueError::InvalidOption(format!(
                "queue name {name:?} must be 1-200 bytes without control characters"
            )));
        }
        let base = KeySpace::new("queue").tagged(&[name], &[""]);
        // `tagged` ends the key with the escaped empty part `%`: drop it.
        let base = base.strip_suffix('%').unwrap_or(&base).to_owned();
        Ok(Self {
            inner: Arc::new(Inner {
                meta: format!("{base}meta"),
                name: name.to_owned(),
                keep_completed: config.keep_completed.encode(),
                keep_failed: config.keep_failed.encode(),
                meters: Meters::new(name),
                base,
                conn,
                redis,
                config,
            }),
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The prefix of every key of this queue (`ee:queue:{<name>}:`).
    pub fn key_prefix(&self) -> &str {
        &self.inner.base
    }

    /// The settings the queue was opened with.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// Adds one job; returns its id (the existing one when `options.job_id`
    /// names a job that is already there).
    pub async fn add<T: Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
        options: JobOptions,
    ) -> Result<String, QueueError> {
        let mut call = scripts::ADD.call();
        call.key(&self.inner.meta)
            .arg(&self.inner.base)
            .arg(self.inner.config.events_max_len)
            .arg(1);
        let traceparent = current_traceparent();
        self.push_job(&mut call, name, data, &options, &traceparent)?;
        let reply: Vec<(String, u8)> = self.inner.conn.invoke(&call).await?;
        let (id, fresh) = reply
            .into_iter()
            .next()
            .ok_or_else(|| QueueError::Backend("ADD returned nothing".into()))?;
        self.inner.meters.added.increment(u64::from(fresh));
        Ok(id)
    }

    /// Adds many jobs in one round trip and one atomic step; returns their
    /// ids in order. Nothing is added when any job is invalid.
    pub async fn add_bulk<T: Serialize>(
        &self,
        jobs: impl IntoIterator<Item = NewJob<T>>,
    ) -> Result<Vec<String>, QueueError> {
        let mut call = scripts::ADD.call();
        let jobs: Vec<NewJob<T>> = jobs.into_iter().collect();
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        call.key(&self.inner.meta)
            .arg(&self.inner.base)
            .arg(self.inner.config.events_max_len)
            .arg(jobs.len());
        let traceparent = current_traceparent();
        for job in &jobs {
            self.push_job(&mut call, &job.name, &job.data, &job.options, &traceparent)?;
        }
        let reply: Vec<(String, u8)> = self.inner.conn.invoke(&call).await?;
        let fresh: u64 = reply.iter().map(|(_, f)| u64::from(*f)).sum();
        self.inner.meters.added.increment(fresh);
        Ok(reply.into_iter().map(|(id, _)| id).collect())
    }

    fn push_job<T: Serialize + ?Sized>(
        &self,
        call: &mut ee_core::ScriptCall<'_>,
        name: &str,
        data: &T,
        options: &JobOptions,
        traceparent: &str,
    ) -> Result<(), QueueError> {
        self.push_job_at(call, name, data, options, Placement::now(traceparent))
    }

    /// The ADD arguments of one job, placed as `at` says.
    pub(crate) fn push_job_at<T: Serialize + ?Sized>(
        &self,
        call: &mut ee_core::ScriptCall<'_>,
        name: &str,
        data: &T,
        options: &JobOptions,
        at: Placement<'_>,
    ) -> Result<(), QueueError> {
        check_name(name)?;
        options.check()?;
        let bytes = serde_json::to_vec(data).map_err(|e| QueueError::Serialize(e.to_string()))?;
        let limit = self.inner.config.max_payload_bytes;
        if bytes.len() > limit {
            return Err(QueueError::PayloadTooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let opts = if *options == JobOptions::default() {
            String::new()
        } else {
            serde_json::to_string(options).map_err(|e| QueueError::Serialize(e.to_string()))?
        };
        let keep = |k: Option<crate::Keep>| k.map_or_else(String::new, crate::Keep::encode);
        call.arg(options.job_id.as_deref().unwrap_or(""))
            .arg(name)
            .arg(bytes)
            .arg(opts)
            .arg(options.priority)
            .arg(at.due_ms.map_or_else(
                || options.delay.map_or(0, crate::job::millis).to_string(),
                |due| format!("@{due}"),
            ))
            .arg(at.traceparent)
            .arg(keep(options.remove_on_complete))
            .arg(keep(options.remove_on_fail))
            .arg(at.parent.map_or_else(String::new, |p| p.to_string()))
            .arg(at.children);
        Ok(())
    }

    /// Tells workers to take no more jobs (those running finish). Jobs can
    /// still be added.
    pub async fn pause(&self) -> Result<(), QueueError> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&self.inner.meta).arg("paused").arg(1);
        self.inner.conn.query::<()>(&cmd).await?;
        Ok(())
    }

    /// Lets workers take jobs again.
    pub async fn resume(&self) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HDEL")
            .arg(&self.inner.meta)
            .arg("paused")
            .ignore();
        self.then_wake(pipe).await
    }

    /// Moves this queue's clock forward by `by` (for tests: delays, retry
    /// backoff, leases and repeats then behave as if that much time had
    /// passed, without sleeping). Every operation adds the shift to Redis'
    /// time; it is stored in the queue's `meta` hash, so every worker sees it.
    pub async fn advance_clock(&self, by: std::time::Duration) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HINCRBY")
            .arg(&self.inner.meta)
            .arg("clock")
            .arg(i64::try_from(crate::job::millis(by)).unwrap_or(i64::MAX))
            .ignore();
        self.then_wake(pipe).await
    }

    /// Runs `pipe`, then wakes the workers blocked on the queue's marker
    /// (one round trip), so they look again at once.
    async fn then_wake(&self, mut pipe: redis::Pipeline) -> Result<(), QueueError> {
        pipe.cmd("ZADD")
            .arg(format!("{}marker", self.inner.base))
            .arg(0)
            .arg("0")
            .ignore();
        self.inner.conn.query_pipeline::<()>(&pipe).await?;
        Ok(())
    }

    /// How many jobs are in each state (one round trip); also publishes the
    /// `ee_queue_depth` gauges.
    pub async fn counts(&self) -> Result<Counts, QueueError> {
        let b = &self.inner.base;
        let mut pipe = redis::pipe();
        pipe.cmd("LLEN").arg(format!("{b}wait"));
        for set in ["prio", "delayed", "active", "completed", "failed", "wchild"] {
            pipe.cmd("ZCARD").arg(format!("{b}{set}"));
        }
        pipe.cmd("HEXISTS").arg(&self.inner.meta).arg("paused");
        let (waiting, prioritized, delayed, active, completed, failed, waiting_children, paused): (
            u64,
            u64,
            u64,
            u64,
            u64,
            u64,
            u64,
            bool,
        ) = self.inner.conn.query_pipeline(&pipe).await?;
        let counts = Counts {
            waiting,
            prioritized,
            delayed,
            active,
            completed,
            failed,
            waiting_children,
            paused,
        };
        self.inner.meters.publish_depth(&counts);
        Ok(counts)
    }

    /// Everything stored about job `id`, or `None`.
    pub async fn job(&self, id: &str) -> Result<Option<JobInfo>, QueueError> {
        let mut call = scripts::INFO.call();
        call.key(&self.inner.meta).arg(&self.inner.base).arg(id);
        let reply: Vec<String> = self.inner.conn.invoke(&call).await?;
        let Some((state, fields)) = reply.split_first() else {
            return Ok(None);
        };
        let state = JobState::parse(state)
            .ok_or_else(|| QueueError::Backend(format!("unknown job state {state:?}")))?;
        let map: HashMap<&str, &str> = fields
            .chunks_exact(2)
            .map(|kv| (kv[0].as_str(), kv[1].as_str()))
            .collect();
        Ok(Some(job_info(id, state, &map)))
    }

    /// Up to `limit` jobs in `state` from `offset`: waiting and prioritized
    /// in the order workers take them, delayed soonest first, completed and
    /// failed newest first.
    pub async fn jobs(
        &self,
        state: JobState,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<JobInfo>, QueueError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = format!("{}{}", self.inner.base, state.key());
        let end = offset.saturating_add(limit - 1);
        let cmd = match state {
            JobState::Waiting => {
                // LPUSH in, RPOP out: the next job is the last element.
                let mut c = redis::cmd("LRANGE");
                c.arg(&key)
                    .arg(-1 - i64::try_from(end).unwrap_or(i64::MAX - 1))
                    .arg(-1 - i64::try_from(offset).unwrap_or(i64::MAX - 1));
                c
            }
            JobState::Completed | JobState::Failed => {
                let mut c = redis::cmd("ZRANGE");
                c.arg(&key).arg(offset).arg(end).arg("REV");
                c
            }
            _ => {
                let mut c = redis::cmd("ZRANGE");
                c.arg(&key).arg(offset).arg(end);
                c
            }
        };
        let mut ids: Vec<String> = self.inner.conn.query(&cmd).await?;
        if state == JobState::Waiting {
            ids.reverse();
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL")
                .arg(format!("{}job:{id}", self.inner.base));
        }
        let all: Vec<HashMap<String, String>> = self.inner.conn.query_pipeline(&pipe).await?;
        Ok(ids
            .iter()
            .zip(all)
            .filter(|(_, fields)| !fields.is_empty())
            .map(|(id, fields)| {
                let map: HashMap<&str, &str> = fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                job_info(id, state, &map)
            })
            .collect())
    }

    /// Runs a failed (or completed) job again, with its attempts reset.
    pub async fn retry(&self, id: &str) -> Result<(), QueueError> {
        self.manage("retry", id, "failed or completed").await
    }

    /// Runs a delayed job now.
    pub async fn promote(&self, id: &str) -> Result<(), QueueError> {
        self.manage("promote", id, "delayed").await
    }

    /// Deletes a job that is not running.
    pub async fn remove(&self, id: &str) -> Result<(), QueueError> {
        self.manage("remove", id, "not active").await
    }

    async fn manage(
        &self,
        action: &'static str,
        id: &str,
        needs: &'static str,
    ) -> Result<(), QueueError> {
        let mut call = scripts::MANAGE.call();
        call.key(&self.inner.meta)
            .arg(&self.inner.base)
            .arg(self.inner.config.events_max_len)
            .arg(action)
            .arg(id);
        let reply: String = self.inner.conn.invoke(&call).await?;
        match reply.as_str() {
            "ok" => Ok(()),
            "missing" => Err(QueueError::NotFound(id.to_owned())),
            other => {
                let state = match other {
                    "active" => "active".to_owned(),
                    _ => self
                        .job(id)
                        .await?
                        .map_or_else(|| "gone".to_owned(), |j| j.state.to_string()),
                };
                Err(QueueError::WrongState {
                    id: id.to_owned(),
                    state,
                    action,
                    needs,
                })
            }
        }
    }

    /// Deletes the queue: every job in every state and every key.
    pub async fn obliterate(&self) -> Result<(), QueueError> {
        loop {
            let mut call = scripts::OBLITERATE.call();
            call.key(&self.inner.meta).arg(&self.inner.base);
            let deleted: u64 = self.inner.conn.invoke(&call).await?;
            if deleted == 0 {
                return Ok(());
            }
        }
    }

    /// The lifecycle events of up to `count` stream entries after stream id
    /// `after` (`"0"` for the oldest kept). The stream keeps about
    /// `events_max_len` entries.
    ///
    /// Jobs that had the same plain event (`waiting`, `active`, `completed`,
    /// `stalled`, `removed`) in one batch share one entry, so this can return
    /// more than `count` events; they come one per job, in order, each with
    /// its entry's `stream_id`. Read on from the last one's `stream_id`.
    pub async fn events(&self, after: &str, count: usize) -> Result<Vec<QueueEvent>, QueueError> {
        // `(` makes the start exclusive; `-` is the oldest entry.
        let start = if after == "0" {
            "-".to_owned()
        } else {
            format!("({after}")
        };
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(format!("{}events", self.inner.base))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count);
        let entries: Vec<(String, Vec<(String, String)>)> = self.inner.conn.query(&cmd).await?;
        let mut events = Vec::with_capacity(entries.len());
        for (stream_id, pairs) in entries {
            // An entry names one job, or several (`id` repeated) that had
            // the same event in one script call.
            let mut ids = Vec::with_capacity(1);
            let mut fields = HashMap::new();
            for (k, v) in pairs {
                if k == "id" {
                    ids.push(v);
                } else {
                    fields.insert(k, v);
                }
            }
            let event = fields.remove("event").unwrap_or_default();
            for job_id in ids {
                events.push(QueueEvent {
                    stream_id: stream_id.clone(),
                    event: event.clone(),
                    job_id,
                    fields: fields.clone(),
                });
            }
        }
        Ok(events)
    }
}

/// The `traceparent` of the code adding a job: a child of the current
/// request's span (ee-logging), or none.
pub(crate) fn current_traceparent() -> String {
    ee_logging::TraceContext::current().map_or_else(String::new, |c| c.child().traceparent())
}

fn job_info(id: &str, state: JobState, f: &HashMap<&str, &str>) -> JobInfo {
    let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
    let json = |k: &str| {
        f.get(k).filter(|v| !v.is_empty()).map(|v| {
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String((*v).to_owned()))
        })
    };
    JobInfo {
        id: id.to_owned(),
        name: f.get("name").copied().unwrap_or_default().to_owned(),
        state,
        data: json("data").unwrap_or(serde_json::Value::Null),
        options: f
            .get("opts")
            .filter(|v| !v.is_empty())
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default(),
        attempts_made: num("att").map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        stalled: num("stc").map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        created_ms: num("ts").unwrap_or(0),
        processed_ms: num("pon"),
        finished_ms: num("fon"),
        failed_reason: f.get("err").map(|s| (*s).to_owned()),
        return_value: json("ret"),
        progress: json("prog"),
        traceparent: f
            .get("tp")
            .filter(|v| !v.is_empty())
            .map(|s| (*s).to_owned()),
    }
}
