//! Repeatable jobs: cron expressions in a time zone, or every N; one job per
//! tick however many schedulers run.
//!
//! A repeat is stored in the queue's `repeat` hash. A scheduler (every
//! worker runs one; [`Scheduler`] runs one alone) reads the repeats and
//! Redis' clock about once a second and adds, for each, the job of its
//! next tick as a delayed job with the id `rpt:<key>:<tick ms>`. Adding an
//! existing id is a no-op, so any number of schedulers add each tick's job
//! once; a tick already past is never added.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::job::check_name;
use crate::queue::RedisQueue;
use crate::{JobOptions, Queue, QueueError};

/// When a repeatable job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Schedule {
    /// A cron expression (5 fields, or 6 with seconds first) in an IANA
    /// time zone: `"0 9 * * MON-FRI"` in `"Europe/Paris"`.
    Cron {
        /// The expression.
        pattern: String,
        /// The zone (`"UTC"`, `"America/New_York"`, …).
        tz: String,
    },
    /// Every `every_ms`, on multiples of it since the Unix epoch (so every
    /// scheduler computes the same ticks).
    Every {
        /// The period in milliseconds (at least 1 000).
        every_ms: u64,
    },
}

impl Schedule {
    /// A cron schedule; fails on a bad expression or an unknown zone.
    pub fn cron(pattern: &str, tz: &str) -> Result<Self, QueueError> {
        let s = Self::Cron {
            pattern: pattern.to_owned(),
            tz: tz.to_owned(),
        };
        s.next_after(0)?;
        Ok(s)
    }

    /// Every `period` (at least one second).
    pub fn every(period: Duration) -> Result<Self, QueueError> {
        let every_ms = crate::job::millis(period);
        if every_ms < 1000 {
            return Err(QueueError::InvalidOption(format!(
                "a repeat period of {every_ms} ms is below the 1 s minimum"
            )));
        }
        Ok(Self::Every { every_ms })
    }

    /// The first tick strictly after `after_ms` (ms since the Unix epoch).
    pub fn next_after(&self, after_ms: u64) -> Result<u64, QueueError> {
        match self {
            Self::Every { every_ms } => {
                let every = (*every_ms).max(1000);
                Ok((after_ms / every + 1) * every)
            }
            Self::Cron { pattern, tz } => {
                let bad = |what: String| QueueError::InvalidOption(what);
                let cron = croner::parser::CronParser::builder()
                    .seconds(croner::parser::Seconds::Optional)
                    .build()
                    .parse(pattern)
                    .map_err(|e| bad(format!("cron expression {pattern:?}: {e}")))?;
                let zone = jiff::tz::TimeZone::get(tz)
                    .map_err(|e| bad(format!("time zone {tz:?}: {e}")))?;
                let ts =
                    jiff::Timestamp::from_millisecond(i64::try_from(after_ms).unwrap_or(i64::MAX))
                        .map_err(|e| bad(format!("time {after_ms}: {e}")))?;
                let next = cron
                    .find_next_occurrence(&ts.to_zoned(zone), false)
                    .map_err(|e| {
                        bad(format!("cron expression {pattern:?} has no next time: {e}"))
                    })?;
                u64::try_from(next.timestamp().as_millisecond()).map_err(|_| {
                    bad(format!(
                        "cron expression {pattern:?} gives a time before 1970"
                    ))
                })
            }
        }
    }
}

/// A repeatable job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repeat {
    /// Its key (unique in the queue).
    pub key: String,
    /// When it runs.
    pub schedule: Schedule,
    /// The name each job gets.
    pub name: String,
    /// The payload each job gets.
    pub data: serde_json::Value,
    /// The options each job gets (its `delay` and `job_id` are the
    /// scheduler's).
    pub options: JobOptions,
}

/// The hash of the queue's repeatable jobs.
fn repeat_key(redis: &RedisQueue) -> String {
    format!("{}repeat", redis.inner.base)
}

impl Queue {
    /// Adds (or replaces) the repeatable job `key`: a job `name` with
    /// `data` at every tick of `schedule`. Schedulers add the next tick's
    /// job within about a second.
    ///
    /// # Errors
    /// A bad key, name, option or schedule (400); Redis unavailable (503);
    /// [`QueueError::Unsupported`] in memory.
    pub async fn repeat<T: Serialize + ?Sized>(
        &self,
        key: &str,
        schedule: Schedule,
        name: &str,
        data: &T,
        options: JobOptions,
    ) -> Result<(), QueueError> {
        crate::job::check_job_id(key)?;
        check_name(name)?;
        options.check()?;
        schedule.next_after(0)?;
        let data = serde_json::to_value(data).map_err(|e| QueueError::Serialize(e.to_string()))?;
        let repeat = Repeat {
            key: key.to_owned(),
            schedule,
            name: name.to_owned(),
            data,
            options: JobOptions {
                delay: None,
                job_id: None,
                ..options
            },
        };
        let json =
            serde_json::to_string(&repeat).map_err(|e| QueueError::Serialize(e.to_string()))?;
        let redis = self.redis("repeat")?;
        let mut cmd = redis::cmd("HSET");
        cmd.arg(repeat_key(redis)).arg(key).arg(json);
        redis.inner.conn.query::<()>(&cmd).await?;
        Ok(())
    }

    /// Removes the repeatable job `key` and its pending tick; true if it existed.
    ///
    /// # Errors
    /// Redis unavailable (503); [`QueueError::Unsupported`] in memory.
    pub async fn remove_repeat(&self, key: &str) -> Result<bool, QueueError> {
        let redis = self.redis("remove_repeat")?;
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(repeat_key(redis)).arg(key);
        let removed: u64 = redis.inner.conn.query(&cmd).await?;
        // Its pending tick: delayed ids matching `rpt:<key>:*`, found by
        // the server (ZSCAN), not by reading every delayed job.
        let escaped: String = key
            .chars()
            .flat_map(|c| match c {
                '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("rpt:{escaped}:*");
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("ZSCAN");
            scan.arg(format!("{}delayed", redis.inner.base))
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, found): (u64, Vec<String>) = redis.inner.conn.query(&scan).await?;
            // Members and scores alternate.
            for id in found.iter().step_by(2) {
                match redis.remove(id).await {
                    Ok(()) | Err(QueueError::NotFound(_) | QueueError::WrongState { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(removed == 1)
    }

    /// Every repeatable job of the queue.
    ///
    /// # Errors
    /// Redis unavailable (503); [`QueueError::Unsupported`] in memory.
    pub async fn repeats(&self) -> Result<Vec<Repeat>, QueueError> {
        let redis = self.redis("repeats")?;
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(repeat_key(redis));
        let all: HashMap<String, String> = redis.inner.conn.query(&cmd).await?;
        let mut out: Vec<Repeat> = all
            .values()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// One scheduler pass: adds the next tick's job of every repeat (a
    /// no-op for those already added). Returns how many jobs were new.
    ///
    /// # Errors
    /// Redis unavailable (503); [`QueueError::Unsupported`] in memory.
    pub async fn schedule_repeats(&self) -> Result<usize, QueueError> {
        let redis = self.redis("schedule_repeats")?;
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(repeat_key(redis));
        pipe.cmd("TIME");
        pipe.cmd("HGET").arg(&redis.inner.meta).arg("clock");
        let (all, (secs, micros), shift): (HashMap<String, String>, (u64, u64), Option<u64>) =
            redis.inner.conn.query_pipeline(&pipe).await?;
        if all.is_empty() {
            return Ok(0);
        }
        let now = secs * 1000 + micros / 1000 + shift.unwrap_or(0);
        let mut call = crate::scripts::ADD.call();
        let mut n = 0usize;
        let traceparent = String::new();
        let mut args = Vec::new();
        for json in all.values() {
            let Ok(repeat) = serde_json::from_str::<Repeat>(json) else {
                tracing::warn!(queue = %self.name(), "an unreadable repeat spec is skipped");
                continue;
            };
            let next = match repeat.schedule.next_after(now) {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(queue = %self.name(), key = %repeat.key, error = %e, "a repeat without a next tick is skipped");
                    continue;
                }
            };
            args.push((repeat, next));
        }
        if args.is_empty() {
            return Ok(0);
        }
        call.key(&redis.inner.meta)
            .arg(&redis.inner.base)
            .arg(redis.inner.config.events_max_len)
            .arg(args.len());
        for (repeat, next) in &args {
            let options = JobOptions {
                job_id: Some(format!("rpt:{}:{next}", repeat.key)),
                ..repeat.options.clone()
            };
            redis.push_job_at(
                &mut call,
                &repeat.name,
                &repeat.data,
                &options,
                crate::queue::Placement {
                    due_ms: Some(*next),
                    ..crate::queue::Placement::now(&traceparent)
                },
            )?;
            n += 1;
        }
        let reply: Vec<(String, u8)> = redis.inner.conn.invoke(&call).await?;
        let fresh = reply.iter().filter(|(_, f)| *f == 1).count();
        redis.inner.meters.added.increment(fresh as u64);
        debug_assert!(n == reply.len());
        Ok(fresh)
    }
}

/// Runs [`Queue::schedule_repeats`] about once a second until stopped (a
/// worker runs one itself; use this where no worker runs). On a queue in
/// memory, which has no repeats, it logs that once and stops.
#[derive(Debug)]
pub struct Scheduler {
    task: tokio::task::JoinHandle<()>,
}

impl Scheduler {
    /// Starts scheduling the repeats of `queue`.
    pub fn start(queue: Queue) -> Self {
        Self {
            task: tokio::spawn(async move { run(&queue, Duration::from_secs(1)).await }),
        }
    }

    /// Stops it.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Schedules repeats every `interval`, logging failures once per outage.
pub(crate) async fn run(queue: &Queue, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match queue.schedule_repeats().await {
            Ok(_) => failing = false,
            Err(e @ QueueError::Unsupported { .. }) => {
                tracing::warn!(queue = %queue.name(), error = %e, "no repeatable jobs to schedule");
                return;
            }
            Err(e) => {
                queue.meters().backend_errors.increment(1);
                if !failing {
                    tracing::warn!(queue = %queue.name(), error = %e, "scheduling repeatable jobs failed");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ticks_on_multiples_of_the_period() {
        let s = Schedule::every(Duration::from_secs(60)).unwrap();
        assert_eq!(s.next_after(0).unwrap(), 60_000);
        assert_eq!(s.next_after(59_999).unwrap(), 60_000);
        assert_eq!(s.next_after(60_000).unwrap(), 120_000);
        assert!(Schedule::every(Duration::from_millis(999)).is_err());
    }

    #[test]
    fn cron_ticks_follow_the_time_zone() {
        // 2026-11-25 12:00:00 UTC.
        let noon_utc = 1_764_072_000_000;
        let at_nine = |tz: &str| {
            Schedule::cron("0 9 * * *", tz)
                .unwrap()
                .next_after(noon_utc)
                .unwrap()
        };
        // 09:00 in Tokyo (UTC+9) is 00:00 UTC: the next one is the 26th at 00:00 UTC.
        assert_eq!(at_nine("Asia/Tokyo"), 1_764_115_200_000);
        // 09:00 in New York (UTC-5 in November) is 14:00 UTC: today.
        assert_eq!(at_nine("America/New_York"), 1_764_079_200_000);
        // Six fields: seconds first.
        let every_10s = Schedule::cron("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(
            every_10s.next_after(noon_utc + 1).unwrap(),
            noon_utc + 10_000
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        let e = Schedule::cron("61 * * * *", "UTC").unwrap_err().to_string();
        assert!(e.contains("cron expression"), "{e}");
        let e = Schedule::cron("0 9 * * *", "Mars/Olympus")
            .unwrap_err()
            .to_string();
        assert!(e.contains("time zone"), "{e}");
    }
}
