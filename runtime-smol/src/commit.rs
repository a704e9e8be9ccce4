//! Group commit: deliveries from all connections go to one task, which stores whatever has
//! queued up while the previous commit ran in a single durable transaction
//! (`Services::deliver_batch`), on the blocking pool. One fsync then acknowledges many
//! messages; a lone message waits for nobody.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::SystemTime;

use atacama_core::service::Services;
use atacama_core::smtp::{Delivery, DeliveryError, MessageId};
use smol::channel::{Receiver, Sender};

/// Messages stored in one transaction at most: bounds the memory of a batch and the
/// latency of its first message.
const MAX_BATCH: usize = 64;

type Outcome = Result<MessageId, DeliveryError>;

/// One delivery waiting for its commit.
struct Job {
    delivery: Delivery,
    received_at: SystemTime,
    done: Sender<Outcome>,
}

/// The sending side, shared by every connection.
#[derive(Clone)]
pub struct Committer {
    jobs: Sender<Job>,
}

impl Committer {
    /// A committer and the loop that must run for it (spawn it on the executor).
    pub fn new(services: Arc<Services>) -> (Committer, impl Future<Output = ()>) {
        // Unbounded, yet bounded by the connection gate: a session has one delivery pending
        // at most.
        let (jobs, queue) = smol::channel::unbounded();
        (Committer { jobs }, commit_loop(services, queue))
    }

    /// Stores `delivery` durably; returns once it is committed (or failed).
    pub async fn deliver(&self, delivery: Delivery, received_at: SystemTime) -> Outcome {
        let (done, result) = smol::channel::bounded(1);
        let job = Job {
            delivery,
            received_at,
            done,
        };
        if self.jobs.send(job).await.is_err() {
            return Err(DeliveryError("the store is closing".into()));
        }
        result
            .recv()
            .await
            .unwrap_or_else(|_| Err(DeliveryError("the store is closing".into())))
    }
}

async fn commit_loop(services: Arc<Services>, queue: Receiver<Job>) {
    while let Ok(first) = queue.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let (batch, replies): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .map(|job| ((job.delivery, job.received_at), job.done))
            .unzip();
        let services = Arc::clone(&services);
        let results = smol::unblock(move || {
            // A panic in processing must still answer every message of the batch.
            std::panic::catch_unwind(AssertUnwindSafe(|| services.deliver_batch(&batch)))
                .unwrap_or_else(|_| {
                    let error = DeliveryError("internal error while storing".into());
                    batch.iter().map(|_| Err(error.clone())).collect()
                })
        })
        .await;
        for (reply, result) in replies.into_iter().zip(results) {
            // The connection may be gone; its message is stored all the same.
            let _ = reply.try_send(result);
        }
    }
}
