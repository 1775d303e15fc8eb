//! Consumer workers: each owns one `Consumer` over its share of the partitions, is positioned before any
//! timing starts, then counts what it receives and, in e2e runs, times each record from the send time its
//! value carries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rill_client::{ClientConfig, Consumer, ConsumerConfig, TopicPartition};

use crate::payload::RunClock;
use crate::stats::Recorder;

/// Longest wait in one poll; bounds how late a worker notices that it should stop.
const POLL_TIMEOUT_MS: u64 = 100;
/// How long e2e consumers keep waiting for records still missing once the producers are done.
pub const DRAIN_IDLE_MS_MAX: u64 = 10_000;

/// Where a worker starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest retained record: read the backlog.
    Beginning,
    /// The high watermark: only records produced from now on (e2e).
    End,
}

/// When a worker stops.
#[derive(Debug, Clone)]
pub enum ConsumeStop {
    /// Once the consumers together received this many measured records.
    Measured { target: u64, received: Arc<AtomicU64> },
    /// At this instant.
    Until(Instant),
    /// Once each partition's position reaches the end offset it had when the worker was positioned.
    EndOfLog,
    /// e2e: once the consumers together received every delivered record of this run (`expected`, unknown
    /// as `u64::MAX` until the producers are done), or after a quiet [`DRAIN_IDLE_MS_MAX`] past that point.
    Delivered { expected: Arc<AtomicU64>, received: Arc<AtomicU64> },
}

/// A consumer positioned on its partitions, with the end offsets seen at that moment.
pub struct PositionedConsumer {
    consumer: Consumer,
    ends: Vec<(TopicPartition, u64)>,
}

/// Connects a consumer, assigns it `partitions` of `topic` and positions it.
///
/// # Errors
///
/// When connecting, assigning or listing offsets fails.
pub async fn position_consumer(
    client: &ClientConfig,
    topic: &str,
    partitions: &[u32],
    start: StartAt,
) -> anyhow::Result<PositionedConsumer> {
    let mut consumer =
        Consumer::connect(client.clone(), ConsumerConfig::default()).await.context("connecting a consumer")?;
    let assigned: Vec<TopicPartition> = partitions.iter().map(|&p| TopicPartition::new(topic, p)).collect();
    consumer.assign(assigned.clone()).await.context("assigning partitions")?;
    match start {
        StartAt::Beginning => consumer.seek_to_beginning(&assigned).await,
        StartAt::End => consumer.seek_to_end(&assigned).await,
    }
    .context("positioning the consumer")?;
    let ends = consumer.end_offsets(&assigned).await.context("reading end offsets")?.into_iter().collect();
    Ok(PositionedConsumer { consumer, ends })
}

/// Reads until the stop condition holds. Fetch errors that the client gives up on end the worker.
///
/// # Errors
///
/// A fetch error the client does not retry (e.g. a corrupt batch), or transport failures for longer than
/// the client's request timeout.
pub async fn run_consumer(
    positioned: PositionedConsumer,
    stop: ConsumeStop,
    clock: Option<RunClock>,
    interrupted: Arc<AtomicBool>,
    mut recorder: Recorder,
) -> anyhow::Result<()> {
    let PositionedConsumer { mut consumer, ends } = positioned;
    let timeout = Duration::from_millis(POLL_TIMEOUT_MS);
    let mut last_record_at = Instant::now();
    while !interrupted.load(Ordering::Relaxed) && !should_stop(&stop, &consumer, &ends, last_record_at) {
        let records = consumer.poll(timeout).await.context("fetching records")?;
        if records.is_empty() {
            continue;
        }
        let now = Instant::now();
        last_record_at = now;
        let mut measured = 0u64;
        let mut of_this_run = 0u64;
        for record in &records {
            let bytes = record.value.as_ref().map_or(0, |v| v.len());
            match clock {
                Some(clock) => {
                    // Another run's records on the same topic carry another tag and are not this run's load.
                    let Some(sent_nanos) = record.value.as_deref().and_then(|v| clock.read_stamp(v)) else {
                        continue;
                    };
                    let sent = clock.anchor + Duration::from_nanos(sent_nanos);
                    of_this_run += 1;
                    measured += u64::from(recorder.measures(sent));
                    recorder.received(Some(sent), now, bytes);
                }
                None => {
                    measured += u64::from(recorder.measures(now));
                    recorder.received(None, now, bytes);
                }
            }
        }
        match &stop {
            ConsumeStop::Measured { received, .. } => {
                received.fetch_add(measured, Ordering::Relaxed);
            }
            ConsumeStop::Delivered { received, .. } => {
                received.fetch_add(of_this_run, Ordering::Relaxed);
            }
            ConsumeStop::Until(_) | ConsumeStop::EndOfLog => {}
        }
    }
    recorder.flush();
    Ok(())
}

fn should_stop(
    stop: &ConsumeStop,
    consumer: &Consumer,
    ends: &[(TopicPartition, u64)],
    last_record_at: Instant,
) -> bool {
    match stop {
        ConsumeStop::Measured { target, received } => received.load(Ordering::Relaxed) >= *target,
        ConsumeStop::Until(end) => Instant::now() >= *end,
        ConsumeStop::EndOfLog => ends.iter().all(|(tp, end)| consumer.position(tp).is_some_and(|p| p >= *end)),
        ConsumeStop::Delivered { expected, received } => {
            let expected = expected.load(Ordering::Acquire);
            expected != u64::MAX
                && (received.load(Ordering::Relaxed) >= expected
                    || last_record_at.elapsed() >= Duration::from_millis(DRAIN_IDLE_MS_MAX))
        }
    }
}
