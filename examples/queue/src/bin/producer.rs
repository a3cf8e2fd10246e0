//! Adds order confirmations: `queue-producer [count]` (default 100), in
//! batches of 500. `EE_REDIS_URL` picks the server.

use ee_example_queue::{Confirmation, QUEUE, redis_config};
use ee_queue::{Backoff, JobOptions, NewJob, Queue};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u64 = std::env::args().nth(1).map_or(Ok(100), |n| n.parse())?;
    let queue = Queue::connect(redis_config(), QUEUE).await?;
    let options = JobOptions::default().attempts(
        5,
        Backoff::exponential(std::time::Duration::from_millis(200)).with_jitter(0.2),
    );
    let mut added = 0;
    while added < count {
        let batch = (added..count.min(added + 500)).map(|order_id| {
            NewJob::new(
                "confirm",
                Confirmation {
                    order_id,
                    email: format!("customer-{order_id}@example.com"),
                },
            )
            .options(options.clone())
        });
        added += queue.add_bulk(batch).await?.len() as u64;
    }
    println!("added {added} confirmations to `{QUEUE}`");
    Ok(())
}
