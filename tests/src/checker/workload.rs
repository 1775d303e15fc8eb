//! A producer that writes numbered records continuously and records the outcome of every one, so a test can
//! crash, pause or cut off brokers underneath it and then check the history.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rill_client::{Acks, ClientConfig, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Attempt, History, Outcome, encode_value};

/// What a [`ContinuousProducer`] writes and how fast.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// Written into every value (`p<producer>-<seq>`), so several workloads can share a partition.
    pub producer: u32,
    pub topic: String,
    /// Records go to these partitions in turn.
    pub partitions: Vec<u32>,
    /// Records sent but not yet acknowledged or failed; bounds the history's loose end at a crash.
    pub in_flight_max: usize,
    /// Pause between sends, so a test's history stays a size the checker reads quickly.
    pub send_interval_ms: u64,
    pub producer_config: ProducerConfig,
}

impl WorkloadOptions {
    /// `acks=all` to partition 0 of `topic`, at most 8 records in flight, one every 5 ms, with delivery
    /// timeouts short enough for a failover test (a record unacknowledged for 30 s fails).
    pub fn new(producer: u32, topic: &str) -> WorkloadOptions {
        WorkloadOptions {
            producer,
            topic: topic.to_owned(),
            partitions: vec![0],
            in_flight_max: 8,
            send_interval_ms: 5,
            producer_config: ProducerConfig {
                acks: Acks::All,
                linger_ms: 1,
                request_timeout_ms: 10_000,
                delivery_timeout_ms: 30_000,
                retry_backoff_ms: 100,
                ..ProducerConfig::default()
            },
        }
    }
}

/// A record's delivery, resolved or failed, with when it was sent.
type Pending = Pin<Box<dyn Future<Output = Attempt> + Send>>;

/// Writes records until stopped, recording each attempt. Runs on the caller's tokio runtime.
pub struct ContinuousProducer {
    history: Arc<Mutex<History>>,
    /// Bumped after each recorded attempt, so waiters wake on progress instead of polling.
    progress: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ContinuousProducer {
    /// Connects a producer and starts writing.
    ///
    /// # Errors
    ///
    /// If the producer cannot connect (no bootstrap address answers) or its settings are inconsistent.
    pub async fn start(client: ClientConfig, options: WorkloadOptions) -> anyhow::Result<ContinuousProducer> {
        assert!(
            !options.partitions.is_empty() && options.in_flight_max > 0,
            "a workload needs partitions and room in flight"
        );
        let producer = Producer::connect(client, options.producer_config.clone()).await?;
        let history = Arc::new(Mutex::new(History::default()));
        let (progress_sender, progress) = watch::channel(0u64);
        let (stop, stop_receiver) = watch::channel(false);
        let task = tokio::spawn(run(producer, options, history.clone(), progress_sender, stop_receiver));
        Ok(ContinuousProducer { history, progress, stop, task })
    }

    /// A copy of the attempts completed so far.
    pub fn snapshot(&self) -> History {
        lock(&self.history).clone()
    }

    /// Waits until `condition` holds for the history, re-checking after every completed attempt.
    ///
    /// # Panics
    ///
    /// If it does not hold within `within`; the message names `what` and summarises the history.
    pub async fn wait_for(&self, within: Duration, what: &str, mut condition: impl FnMut(&History) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        let mut progress = self.progress.clone();
        loop {
            {
                let history = lock(&self.history);
                if condition(&history) {
                    return;
                }
            }
            if tokio::time::timeout_at(deadline, progress.changed()).await.is_err() {
                let history = lock(&self.history);
                let last_failure = history.attempts.iter().rev().find_map(|a| match &a.outcome {
                    Outcome::Failed { error } => Some(error.clone()),
                    Outcome::Acked { .. } => None,
                });
                panic!(
                    "timed out after {within:?} waiting until {what}: {} acknowledged, {} failed, last failure: {}",
                    history.acked_count(),
                    history.failed_count(),
                    last_failure.as_deref().unwrap_or("none")
                );
            }
        }
    }

    /// Stops sending, waits for every record in flight to be acknowledged or to fail, and returns the
    /// history.
    ///
    /// # Panics
    ///
    /// If the workload task panicked.
    pub async fn stop(self) -> History {
        let _ = self.stop.send(true);
        self.task.await.expect("the workload task panicked");
        std::mem::take(&mut *lock(&self.history))
    }
}

fn lock(history: &Mutex<History>) -> MutexGuard<'_, History> {
    history.lock().expect("history lock poisoned")
}

async fn run(
    producer: Producer,
    options: WorkloadOptions,
    history: Arc<Mutex<History>>,
    progress: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut in_flight: FuturesUnordered<Pending> = FuturesUnordered::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(options.send_interval_ms.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let record = |attempt: Attempt| {
        lock(&history).attempts.push(attempt);
        progress.send_modify(|count| *count += 1);
    };
    let mut seq = 0u64;
    loop {
        tokio::select! {
            // A dropped handle (an error) stops the workload too.
            _ = stop.changed() => break,
            Some(attempt) = in_flight.next() => record(attempt),
            _ = ticker.tick(), if in_flight.len() < options.in_flight_max => {
                // Awaited before `push`, so no borrow of `in_flight` is held across the await.
                let pending = send_one(&producer, &options, seq).await;
                in_flight.push(pending);
                seq += 1;
            }
        }
    }
    while let Some(attempt) = in_flight.next().await {
        record(attempt);
    }
    producer.close().await;
}

/// Enqueues record `seq` and returns the future of its attempt.
async fn send_one(producer: &Producer, options: &WorkloadOptions, seq: u64) -> Pending {
    let partition = options.partitions[(seq % options.partitions.len() as u64) as usize];
    let (producer_id, topic) = (options.producer, options.topic.clone());
    let idempotent = options.producer_config.idempotence;
    let record = ProducerRecord::new(topic.clone(), encode_value(producer_id, seq)).partition(partition);
    let sent_at = Instant::now();
    let delivery = producer.send(record).await;
    Box::pin(async move {
        let result: rill_client::Result<RecordMetadata> = match delivery {
            Ok(delivery) => delivery.await,
            Err(e) => Err(e),
        };
        let outcome = match result {
            Ok(metadata) => Outcome::Acked { offset: metadata.offset },
            Err(e) => Outcome::Failed { error: e.to_string() },
        };
        let completed_at = Instant::now();
        Attempt { producer: producer_id, seq, topic, partition, idempotent, sent_at, completed_at, outcome }
    })
}
