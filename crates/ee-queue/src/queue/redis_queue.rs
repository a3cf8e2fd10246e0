//! The Redis backend of [`Queue`](crate::Queue): every operation is one
//! Lua script (or one pipeline) on the queue's hash slot.

use std::collections::HashMap;
use std::sync::Arc;

use ee_core::KeySpace;
use ee_core::{RedisConfig, RedisConn};
use serde::Serialize;

use super::{Counts, NewJob, QueueEvent, current_traceparent};
use crate::config::QueueConfig;
use crate::job::{JobInfo, JobOptions, JobState, check_name};
use crate::metrics::Meters;
use crate::{QueueError, scripts};

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

/// One queue in Redis. Cheap to clone; every clone shares one connection.
///
/// Every key of the queue shares the hash slot of `{<name>}`, so a queue
/// lives on one Cluster node and each operation is one atomic script.
#[derive(Clone)]
pub(crate) struct RedisQueue {
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

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("name", &self.inner.name)
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// Queue `name` (checked by the caller) on `conn`.
    pub(crate) fn new(
        conn: RedisConn,
        redis: RedisConfig,
        name: &str,
        config: QueueConfig,
    ) -> Self {
        let base = KeySpace::new("queue").tagged(&[name], &[""]);
        // `tagged` ends the key with the escaped empty part `%`: drop it.
        let base = base.strip_suffix('%').unwrap_or(&base).to_owned();
        Self {
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
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) async fn add<T: Serialize + ?Sized>(
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

    pub(crate) async fn add_bulk<T: Serialize>(
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

    pub(crate) async fn pause(&self) -> Result<(), QueueError> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&self.inner.meta).arg("paused").arg(1);
        self.inner.conn.query::<()>(&cmd).await?;
        Ok(())
    }

    pub(crate) async fn resume(&self) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HDEL")
            .arg(&self.inner.meta)
            .arg("paused")
            .ignore();
        self.then_wake(pipe).await
    }

    pub(crate) async fn advance_clock(&self, by: std::time::Duration) -> Result<(), QueueError> {
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

    pub(crate) async fn counts(&self) -> Result<Counts, QueueError> {
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

    pub(crate) async fn job(&self, id: &str) -> Result<Option<JobInfo>, QueueError> {
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

    pub(crate) async fn jobs(
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

    pub(crate) async fn retry(&self, id: &str) -> Result<(), QueueError> {
        self.manage("retry", id, "failed or completed").await
    }

    pub(crate) async fn promote(&self, id: &str) -> Result<(), QueueError> {
        self.manage("promote", id, "delayed").await
    }

    pub(crate) async fn remove(&self, id: &str) -> Result<(), QueueError> {
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

    pub(crate) async fn obliterate(&self) -> Result<(), QueueError> {
        loop {
            let mut call = scripts::OBLITERATE.call();
            call.key(&self.inner.meta).arg(&self.inner.base);
            let deleted: u64 = self.inner.conn.invoke(&call).await?;
            if deleted == 0 {
                return Ok(());
            }
        }
    }

    pub(crate) async fn events(
        &self,
        after: &str,
        count: usize,
    ) -> Result<Vec<QueueEvent>, QueueError> {
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
