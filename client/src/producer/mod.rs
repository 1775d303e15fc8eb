//! `Producer`: buffers records into per-partition batches and sends them to partition leaders in the
//! background, resolving one [`DeliveryFuture`] per record.

mod accumulator;
mod delivery;
mod sender;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use self::accumulator::{Accumulator, Identity, NewRecord};
pub use self::delivery::DeliveryFuture;
use crate::cluster::Cluster;
use crate::config::{ClientConfig, ProducerConfig};
use crate::error::{Error, Result};
use crate::partitioner::partition_for_key;
use crate::types::ProducerRecord;

/// State shared by the producer handles and the background sender task.
pub(crate) struct Shared {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    accumulator: Mutex<Accumulator>,
    /// Wakes the sender: a batch was started or filled, a flush began, or the producer is closing.
    wake: Notify,
    /// Bytes of buffered records; `send` waits here when the buffer is full.
    buffer: Arc<Semaphore>,
    closed: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Accumulator> {
        self.accumulator.lock().expect("accumulator lock poisoned")
    }
}

struct Inner {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Without `close`, the sender still delivers what is buffered, then stops.
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
    }
}

/// An asynchronous, batching producer. Cloning it is cheap; clones share the buffer and the sender task.
///
/// Records of one partition are written in the order `send` was called for them, each once. With idempotence
/// (the default) the producer holds a cluster-unique producer id; every batch carries it, the producer epoch
/// and a per-partition sequence number assigned once, so the broker appends batches in sequence order, answers
/// a retry of a batch it already holds with the original offsets, and refuses a batch from an older epoch
/// ([`Error::ProducerFenced`]). Up to 5 batches per partition are in flight. Without idempotence one batch per
/// partition is in flight and a retry after a lost answer may write a batch twice.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> rill_client::Result<()> {
/// use rill_client::{ClientConfig, Producer, ProducerConfig, ProducerRecord};
///
/// let producer = Producer::connect(ClientConfig::new("127.0.0.1:9400")?, ProducerConfig::default()).await?;
/// let delivery = producer.send(ProducerRecord::new("demo", "hello").key("user-1")).await?;
/// let metadata = delivery.await?;
/// println!("written to partition {} at offset {}", metadata.partition, metadata.offset);
/// producer.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl Producer {
    /// Connects to the cluster and starts the background sender.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for inconsistent settings; [`Error::NoBrokerReachable`] if no bootstrap address answers.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is started until the future completes.
    pub async fn connect(client: ClientConfig, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let cluster = Cluster::connect(client).await?;
        let identity = if config.idempotence {
            let (id, epoch) = config.take_over_producer.unwrap_or((-1, -1));
            let patience = cluster.config().request_timeout();
            let (producer_id, epoch) = cluster.init_producer_id(id, epoch, patience).await?;
            Some(Identity { producer_id, epoch })
        } else {
            None
        };
        Ok(Producer::start(cluster, config, identity))
    }

    pub(crate) fn start(cluster: Arc<Cluster>, config: ProducerConfig, identity: Option<Identity>) -> Producer {
        let buffer = Arc::new(Semaphore::new(config.buffer_bytes_max));
        let accumulator = Accumulator::new(
            config.batch_bytes_max,
            Duration::from_millis(config.linger_ms),
            Duration::from_millis(config.delivery_timeout_ms),
            identity,
            Some(buffer.clone()),
        )
        .with_compression(config.compression);
        let shared = Arc::new(Shared {
            cluster,
            buffer,
            config,
            accumulator: Mutex::new(accumulator),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let task = tokio::spawn(sender::run(shared.clone()));
        Producer { inner: Arc::new(Inner { shared, task: Mutex::new(Some(task)) }) }
    }

    /// Enqueues a record and returns the future of its delivery. It waits only while the buffer is full
    /// (`buffer_bytes_max`); sending happens in the background.
    ///
    /// The partition is the record's explicit one if set, else `murmur2(key) % partitions` as Kafka computes
    /// it, else a sticky partition that changes once per batch, so keyless records form large batches.
    ///
    /// # Errors
    ///
    /// [`Error::ProducerClosed`] after [`Producer::close`]. Errors about the record itself (unknown topic or
    /// partition, record too large, delivery failures) resolve its [`DeliveryFuture`] instead.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, the record was not enqueued.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let shared = &self.inner.shared;
        if shared.closed.load(Ordering::SeqCst) {
            return Err(Error::ProducerClosed);
        }
        let size_bound = record.size_bound();
        if !Accumulator::fits_in_a_batch(size_bound, shared.config.batch_bytes_max) {
            return Ok(DeliveryFuture::failed(Error::RecordTooLarge {
                record_bytes: size_bound,
                batch_bytes_max: shared.config.batch_bytes_max,
            }));
        }
        let permits = u32::try_from(size_bound).expect("record bound fits a batch, so it fits u32");
        let reserved = Reserved::acquire(&shared.buffer, permits).await?;
        let partitions = match shared.cluster.partition_count(&record.topic).await {
            Ok(count) if count > 0 => count,
            Ok(_) => return Ok(DeliveryFuture::failed(Error::UnknownTopic(record.topic.to_string()))),
            Err(e) => return Ok(DeliveryFuture::failed(e)),
        };
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if p >= partitions => {
                return Ok(DeliveryFuture::failed(Error::UnknownPartition {
                    topic: record.topic.to_string(),
                    partition: p,
                    partitions,
                }));
            }
            (Some(p), _) => Some(p),
            (None, Some(key)) => Some(partition_for_key(key, partitions)),
            (None, None) => None,
        };
        let timestamp_ms = record.timestamp_ms.unwrap_or_else(now_ms);
        let appended = {
            let mut accumulator = shared.lock();
            if accumulator.closing {
                return Err(Error::ProducerClosed);
            }
            if let Some(fatal) = accumulator.fatal.clone() {
                return Ok(DeliveryFuture::failed(fatal));
            }
            let new = NewRecord { record: &record, timestamp_ms, buffer_permits: reserved.hand_over() };
            accumulator.append(partition, partitions, new, Instant::now)
        };
        if appended.wake_sender {
            shared.wake.notify_one();
        }
        Ok(appended.delivery)
    }

    /// Sends every buffered record now, ignoring linger, and waits until each record sent before this call is
    /// acknowledged or failed. Records' own futures still say which.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future stops waiting; the records are still sent.
    pub async fn flush(&self) {
        let shared = &self.inner.shared;
        let signals = {
            let mut accumulator = shared.lock();
            accumulator.flushing += 1;
            accumulator.incomplete()
        };
        let _guard = FlushGuard(shared);
        shared.wake.notify_one();
        for mut signal in signals {
            // `changed` fails once the batch, which owns the sender half, is dropped: that is completion.
            let _ = signal.changed().await;
        }
    }

    /// The producer id and epoch this producer writes with, if idempotent. The epoch changes if the producer
    /// had to restart its sequences (after a batch failed for good).
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        self.inner.shared.lock().identity().map(|i| (i.producer_id, i.epoch))
    }

    /// The number of partitions of `topic`, from the cached metadata or after one refresh.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTopic`] if the cluster has no such topic.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn partition_count(&self, topic: &str) -> Result<u32> {
        self.inner.shared.cluster.partition_count(topic).await
    }

    /// Flushes, then stops the sender. Later `send` calls fail with [`Error::ProducerClosed`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the producer is marked closed at once; buffered records are still delivered.
    pub async fn close(&self) {
        let shared = &self.inner.shared;
        shared.closed.store(true, Ordering::SeqCst);
        shared.lock().closing = true;
        shared.wake.notify_one();
        self.flush().await;
        let task = self.inner.task.lock().expect("task lock poisoned").take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "producer sender task failed");
        }
    }
}

/// Ends a flush's "send everything now" mode even if the flush is cancelled.
struct FlushGuard<'a>(&'a Shared);

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().flushing -= 1;
    }
}

/// Buffer space taken for one record in `send`: given back if the record never reaches a batch (an early
/// return, or the `send` future dropped), else handed to its batch, which gives it back when it is dropped.
struct Reserved<'a> {
    semaphore: &'a Semaphore,
    permits: u32,
}

impl<'a> Reserved<'a> {
    async fn acquire(semaphore: &'a Semaphore, permits: u32) -> Result<Reserved<'a>> {
        semaphore.acquire_many(permits).await.map_err(|_| Error::ProducerClosed)?.forget();
        Ok(Reserved { semaphore, permits })
    }

    fn hand_over(self) -> usize {
        let permits = self.permits as usize;
        std::mem::forget(self);
        permits
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.semaphore.add_permits(self.permits as usize);
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
