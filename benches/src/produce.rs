//! Producer workers: each owns one `Producer`, sends on its schedule (or as fast as the client accepts),
//! and times every record from its send (or due) time to its acknowledgement.
//!
//! A worker is a single task that interleaves sending with collecting acknowledgements (`select!` over the
//! pending deliveries, see [`InFlight`]), so an acknowledgement is timed when it arrives even while `send`
//! waits for buffer space, and no task or channel is spent per record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use rill_client::{ClientConfig, Compression, Producer, ProducerConfig, ProducerRecord};

use crate::inflight::InFlight;
use crate::payload::{KeyGenerator, RunClock, stamped};
use crate::schedule::RateSchedule;
use crate::stats::Recorder;

/// The client's default per-request limit; a larger `--batch-bytes` raises it (and the buffer) to fit.
const REQUEST_BYTES_DEFAULT: usize = 3 * 1024 * 1024;
/// Batches a producer may buffer: enough to keep requests in flight while the next batches fill.
const BUFFERED_BATCHES_MIN: usize = 8;

/// When a worker stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// After this many measured sends (sends before the end of the warm-up do not count).
    Measured(u64),
    /// After this many sends of any kind (the untimed backlog fill).
    Total(u64),
    /// Once the next send would start (or be due) at or after this instant.
    Until(Instant),
}

/// What one producer worker sends.
#[derive(Debug, Clone)]
pub struct ProduceJob {
    pub topic: Arc<str>,
    pub quota: Quota,
    /// `None` for closed loop.
    pub schedule: Option<RateSchedule>,
    pub value: Bytes,
    pub keys: KeyGenerator,
    /// Set for e2e runs: each value carries its send time.
    pub stamp: Option<RunClock>,
    /// Set on Ctrl-C: stop sending, settle what is in flight.
    pub interrupted: Arc<AtomicBool>,
}

/// The producer settings a run asks for, over the client's defaults.
pub fn producer_config(
    batch_bytes: Option<usize>,
    linger_ms: Option<u64>,
    acks: rill_client::Acks,
    idempotence: bool,
    compression: Compression,
) -> anyhow::Result<ProducerConfig> {
    let mut config = ProducerConfig { acks, idempotence, compression, ..ProducerConfig::default() };
    if let Some(batch) = batch_bytes {
        config.batch_bytes_max = batch;
        config.request_bytes_max = REQUEST_BYTES_DEFAULT.max(batch);
        config.buffer_bytes_max = config.buffer_bytes_max.max(batch.saturating_mul(BUFFERED_BATCHES_MIN));
    }
    if let Some(linger) = linger_ms {
        config.linger_ms = linger;
    }
    config.validate().context("producer settings (--batch-bytes, --linger-ms, --acks, --idempotence)")?;
    Ok(config)
}

/// Connects `count` producers, before any timing starts.
///
/// # Errors
///
/// When a producer cannot connect.
pub async fn connect_producers(
    client: &ClientConfig,
    config: &ProducerConfig,
    count: usize,
) -> anyhow::Result<Vec<Producer>> {
    let connects = (0..count).map(|_| Producer::connect(client.clone(), config.clone()));
    let producers = futures::future::try_join_all(connects).await.context("connecting producers")?;
    Ok(producers)
}

/// Runs one worker to its quota, then waits for every acknowledgement and closes the producer. Delivery
/// failures are counted in the recorder; the worker fails only if the producer itself stops working.
///
/// # Errors
///
/// When the producer is closed under the worker.
pub async fn run_producer(producer: Producer, mut job: ProduceJob, mut recorder: Recorder) -> anyhow::Result<()> {
    let mut pending = InFlight::default();
    let mut sent_count = 0u64;
    let mut measured_count = 0u64;
    loop {
        let due = job.schedule.map(|s| s.due(sent_count));
        let planned = due.unwrap_or_else(Instant::now);
        let done = match job.quota {
            Quota::Measured(n) => measured_count >= n,
            Quota::Total(n) => sent_count >= n,
            Quota::Until(end) => planned >= end,
        };
        if done || job.interrupted.load(Ordering::Relaxed) {
            break;
        }
        if let Some(due) = due {
            wait_until(due, &mut pending, &mut recorder).await;
        }
        let sent = due.unwrap_or_else(Instant::now);
        let value = match &job.stamp {
            Some(clock) => stamped(&job.value, clock, clock.nanos_at(sent)),
            None => job.value.clone(),
        };
        let bytes = value.len();
        let mut record = ProducerRecord::new(job.topic.clone(), value);
        record.key = job.keys.next_key();
        let send = producer.send(record);
        tokio::pin!(send);
        let delivery = loop {
            tokio::select! {
                biased;
                () = pending.settle(&mut recorder), if !pending.is_empty() => {}
                outcome = &mut send => break outcome.context("sending a record")?,
            }
        };
        pending.push(sent, bytes, delivery, &mut recorder);
        sent_count += 1;
        measured_count += u64::from(recorder.measures(sent));
    }
    while !pending.is_empty() {
        pending.settle(&mut recorder).await;
    }
    producer.close().await;
    recorder.flush();
    Ok(())
}

/// Waits until `due`, settling acknowledgements meanwhile.
///
/// tokio's timer fires on millisecond ticks, so a send may leave up to a millisecond after its due time, and
/// sends due within one tick leave together. Latency still counts from the due time, so this adds at most a
/// millisecond to the measured figures; spinning instead would cost a whole core of a two-core machine that the
/// broker needs.
async fn wait_until(due: Instant, pending: &mut InFlight, recorder: &mut Recorder) {
    let sleep = tokio::time::sleep_until(due.into());
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            () = pending.settle(recorder), if !pending.is_empty() => {}
            () = &mut sleep => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_batches_raise_the_request_and_buffer_limits() {
        let config =
            producer_config(Some(8 << 20), Some(20), rill_client::Acks::Leader, false, Compression::Lz4).unwrap();
        assert_eq!(config.batch_bytes_max, 8 << 20);
        assert!(config.request_bytes_max >= 8 << 20);
        assert!(config.buffer_bytes_max >= 64 << 20);
        assert_eq!(config.linger_ms, 20);
        assert_eq!(config.acks, rill_client::Acks::Leader);
        assert_eq!(config.compression, Compression::Lz4);
    }

    #[test]
    fn client_defaults_stay_when_nothing_is_asked() {
        let config = producer_config(None, None, rill_client::Acks::All, true, Compression::None).unwrap();
        let default = ProducerConfig::default();
        assert_eq!((config.batch_bytes_max, config.linger_ms), (default.batch_bytes_max, default.linger_ms));
    }

    #[test]
    fn a_tiny_batch_is_refused() {
        assert!(producer_config(Some(10), None, rill_client::Acks::All, true, Compression::None).is_err());
    }
}
