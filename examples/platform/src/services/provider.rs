//! The simulated payment provider's clock: one thread wakes every charge
//! waiting for its answer at its deadline.
//!
//! A charge "at the provider" waits `payment.latency_ms`. tokio's timer
//! rounds a sleep up to its next 1 ms tick and then to the driver's next
//! wake-up, which made 5 ms take 6.4 ms on average here; a thread sleeping
//! to a deadline wakes within tens of microseconds of it. A thread of the
//! blocking pool per charge (the first way this was done) holds a thread
//! per charge in flight: past the pool's 512, charges queue for a thread
//! and their latency doubles. Here one thread keeps every deadline in a
//! heap, sleeps until the earliest (or until a new charge arrives) and
//! answers each charge through a oneshot channel: one thread however many
//! charges wait.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// A charge waiting for its answer: when, and whom to wake.
struct Waiting {
    due: Instant,
    /// Order of arrival, so two charges due at once are both kept.
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl Eq for Waiting {}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// The provider's clock. Cheap to clone; its thread ends when the last
/// clone is dropped.
#[derive(Clone, Debug)]
pub struct ProviderClock {
    to_thread: mpsc::Sender<(Instant, oneshot::Sender<()>)>,
}

impl ProviderClock {
    /// Starts the clock's thread.
    ///
    /// # Panics
    /// The operating system refuses a thread (at start-up).
    pub fn start() -> Self {
        let (to_thread, arrivals) = mpsc::channel();
        std::thread::Builder::new()
            .name("payment-provider".to_owned())
            .spawn(move || run(&arrivals))
            .expect("a thread for the payment provider's clock");
        Self { to_thread }
    }

    /// Waits `latency` (from now), as closely as the operating system's
    /// sleep allows. Zero does not wait at all.
    pub async fn wait(&self, latency: Duration) {
        if latency.is_zero() {
            return;
        }
        let due = Instant::now() + latency;
        let (wake, woken) = oneshot::channel();
        if self.to_thread.send((due, wake)).is_err() || woken.await.is_err() {
            // The clock's thread is gone (it panicked): tokio's timer then.
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// The clock's thread: takes new charges, wakes those due, sleeps until
/// the next one is due; ends when every sender is gone.
fn run(arrivals: &mpsc::Receiver<(Instant, oneshot::Sender<()>)>) {
    let mut heap: BinaryHeap<Reverse<Waiting>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(w)| w.due <= now) {
            let Reverse(w) = heap.pop().expect("peeked");
            // A charge no longer waiting (its request dropped) is fine.
            let _ = w.wake.send(());
        }
        let arrived = match heap.peek() {
            Some(Reverse(next)) => arrivals.recv_timeout(next.due.saturating_duration_since(now)),
            None => arrivals.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match arrived {
            Ok((due, wake)) => {
                seq += 1;
                heap.push(Reverse(Waiting { due, seq, wake }));
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Every clock is dropped, so no charge waits on this thread
            // any more (a wait holds its clock).
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads of this process (Linux: `/proc/self/status`).
    fn threads() -> Option<usize> {
        std::fs::read_to_string("/proc/self/status")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))?
            .trim()
            .parse()
            .ok()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn six_hundred_concurrent_charges_wait_one_latency_on_one_thread() {
        let clock = ProviderClock::start();
        let latency = Duration::from_millis(50);
        let before = threads();
        let started = Instant::now();
        let charges: Vec<_> = (0..600)
            .map(|_| {
                let clock = clock.clone();
                tokio::spawn(async move {
                    let t = Instant::now();
                    clock.wait(latency).await;
                    t.elapsed()
                })
            })
            .collect();
        // Every charge is waiting now (or done): the threads they hold.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let during = threads();
        let mut took = Vec::new();
        for c in charges {
            took.push(c.await.unwrap());
        }
        let all = started.elapsed();
        let mean = took.iter().sum::<Duration>() / 600;
        eprintln!(
            "600 charges of {latency:?}: all done in {all:?}, each {mean:?} on average (max {:?})",
            took.iter().max().unwrap()
        );
        // None answers early.
        assert!(took.iter().all(|t| *t >= latency), "{took:?}");
        // Not one thread per charge (the blocking pool would take up to 512).
        if let (Some(before), Some(during)) = (before, during) {
            assert!(
                during <= before + 20,
                "{before} threads before, {during} while 600 charges wait"
            );
        }
        // Not serialized, nor in batches of a pool: about one latency in all
        // (generous for a shared machine; serialized would be 30 s, batches
        // of 512 at least 2 latencies).
        assert!(all < latency * 4, "600 concurrent charges took {all:?}");
    }

    #[tokio::test]
    async fn a_charge_given_up_on_leaves_the_others_waiting() {
        let clock = ProviderClock::start();
        clock.wait(Duration::ZERO).await;
        // A request dropped mid-charge (its client went away) drops its
        // wait; the clock goes on for the next charge.
        let gone = tokio::time::timeout(
            Duration::from_millis(1),
            clock.wait(Duration::from_secs(60)),
        );
        assert!(gone.await.is_err());
        let t = Instant::now();
        clock.wait(Duration::from_millis(5)).await;
        assert!(t.elapsed() >= Duration::from_millis(5));
    }
}
