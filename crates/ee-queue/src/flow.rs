//! Parent/child flows, as BullMQ's `FlowProducer`: a parent job waits
//! (state `waiting-children`) until every child has completed, then runs
//! with their results at hand. A child that fails for good fails its
//! parent. A flow is added in one atomic step; its jobs live in one queue
//! (one hash slot), and children may have children.

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::queue::RedisQueue;
use crate::{JobOptions, Queue, QueueError};

/// One job of a flow, with its children.
#[derive(Debug, Clone)]
pub struct FlowJob {
    /// What the job is.
    pub name: String,
    /// Its payload (JSON).
    pub data: serde_json::Value,
    /// Its options (no `job_id` in a flow; a parent's `delay` is ignored:
    /// it runs when its children are done).
    pub options: JobOptions,
    /// Jobs that must complete before this one runs.
    pub children: Vec<FlowJob>,
}

impl FlowJob {
    /// A job with default options and no children.
    pub fn new<T: Serialize + ?Sized>(
        name: impl Into<String>,
        data: &T,
    ) -> Result<Self, QueueError> {
        Ok(Self {
            name: name.into(),
            data: serde_json::to_value(data).map_err(|e| QueueError::Serialize(e.to_string()))?,
            options: JobOptions::default(),
            children: Vec::new(),
        })
    }

    /// The same job with `options`.
    #[must_use]
    pub fn options(mut self, options: JobOptions) -> Self {
        self.options = options;
        self
    }

    /// The same job with one more child.
    #[must_use]
    pub fn child(mut self, child: FlowJob) -> Self {
        self.children.push(child);
        self
    }
}

/// The ids a flow got: the job's, and its children's, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowIds {
    /// This job's id.
    pub id: String,
    /// Its children's.
    pub children: Vec<FlowIds>,
}

impl Queue {
    /// Adds a flow (parent, children, grandchildren…) in one round trip and
    /// one atomic step.
    ///
    /// # Errors
    /// A job of the flow with a `job_id`, or invalid as for
    /// [`add`](Queue::add) (400); Redis unavailable (503);
    /// [`QueueError::Unsupported`] in memory.
    pub async fn add_flow(&self, flow: FlowJob) -> Result<FlowIds, QueueError> {
        let redis = self.redis("add_flow")?;
        // Parents before children: each job names its parent by position.
        let mut order: Vec<(&FlowJob, Option<usize>)> = Vec::new();
        let mut stack = vec![(&flow, None)];
        while let Some((job, parent)) = stack.pop() {
            if job.options.job_id.is_some() {
                return Err(QueueError::InvalidOption(
                    "jobs of a flow cannot have their own job_id".into(),
                ));
            }
            let at = order.len();
            order.push((job, parent));
            for child in job.children.iter().rev() {
                stack.push((child, Some(at)));
            }
        }
        let mut call = crate::scripts::ADD.call();
        call.key(&redis.inner.meta)
            .arg(&redis.inner.base)
            .arg(redis.inner.config.events_max_len)
            .arg(order.len());
        let traceparent = crate::queue::current_traceparent();
        for (job, parent) in &order {
            redis.push_job_at(
                &mut call,
                &job.name,
                &job.data,
                &job.options,
                crate::queue::Placement {
                    parent: *parent,
                    children: job.children.len(),
                    ..crate::queue::Placement::now(&traceparent)
                },
            )?;
        }
        let reply: Vec<(String, u8)> = redis.inner.conn.invoke(&call).await?;
        redis.inner.meters.added.increment(reply.len() as u64);
        let ids: Vec<String> = reply.into_iter().map(|(id, _)| id).collect();
        // Rebuild the tree from the positions.
        fn build(at: usize, order: &[(&FlowJob, Option<usize>)], ids: &[String]) -> FlowIds {
            FlowIds {
                id: ids[at].clone(),
                children: (0..order.len())
                    .filter(|i| order[*i].1 == Some(at))
                    .map(|i| build(i, order, ids))
                    .collect(),
            }
        }
        Ok(build(0, &order, &ids))
    }

    /// The results of job `id`'s completed children, by child id.
    ///
    /// # Errors
    /// A result that does not decode as `R` (400); Redis unavailable (503);
    /// [`QueueError::Unsupported`] in memory.
    pub async fn children_results<R: DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<HashMap<String, R>, QueueError> {
        self.redis("children_results")?.children_results(id).await
    }
}

impl RedisQueue {
    /// As [`Queue::children_results`].
    pub(crate) async fn children_results<R: DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<HashMap<String, R>, QueueError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(format!("{}job:{id}", self.inner.base));
        let fields: HashMap<String, String> = self.inner.conn.query(&cmd).await?;
        fields
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("kid:").map(|c| (c.to_owned(), v)))
            .map(|(child, v)| {
                serde_json::from_str(&v)
                    .map(|r| (child.clone(), r))
                    .map_err(|e| QueueError::Serialize(format!("child {child}'s result: {e}")))
            })
            .collect()
    }
}
