//! The three scenarios wired end to end: connect and position every client first, start the clock, run the
//! workers, and turn the collected totals into a `Report`. Also the untimed backlog fill of consume runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rill_client::{Acks, ClientConfig, Consumer, ConsumerConfig, Producer, TopicPartition};
use tokio::task::JoinSet;

use crate::consume::{ConsumeStop, PositionedConsumer, StartAt, position_consumer, run_consumer};
use crate::payload::{KeyGenerator, RunClock, value_template};
use crate::produce::{ProduceJob, Quota, connect_producers, producer_config, run_producer};
use crate::progress::Progress;
use crate::report::Report;
use crate::schedule::{RateSchedule, partitions_of, share_of};
use crate::settings::{Scenario, Settings, Stop};
use crate::stats::Collector;
use crate::topic::BenchTopic;

/// Runs the scenario the settings describe against the cluster, creating (and afterwards deleting) the
/// topic as needed. Ctrl-C ends the run early; what was measured until then is still reported.
///
/// # Errors
///
/// When the cluster cannot be reached, the topic cannot be prepared, or a worker fails.
pub async fn run(settings: &Settings) -> anyhow::Result<Report> {
    let client = rill_client::ClientConfig {
        tls: settings.tls.clone(),
        ..rill_client::ClientConfig::new(&settings.bootstrap).context("--bootstrap")?
    };
    let topic = BenchTopic::prepare(&client, settings).await?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_ctrl_c(Arc::clone(&interrupted)));
    let run = Run { client: &client, settings, topic: &topic, interrupted };
    let outcome = match settings.scenario {
        Scenario::Produce => run.produce().await,
        Scenario::Consume => run.consume().await,
        Scenario::E2e => run.e2e().await,
    };
    watcher.abort();
    let cleanup = topic.finish(settings.keep_topic).await;
    let report = outcome?;
    cleanup?;
    Ok(report)
}

async fn watch_ctrl_c(interrupted: Arc<AtomicBool>) {
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!("interrupted: finishing what is in flight");
        interrupted.store(true, Ordering::Relaxed);
    }
}

/// What every part of a run shares.
struct Run<'a> {
    client: &'a ClientConfig,
    settings: &'a Settings,
    topic: &'a BenchTopic,
    /// Set on Ctrl-C; workers stop starting new work.
    interrupted: Arc<AtomicBool>,
}

impl Run<'_> {
    fn preset(&self) -> Option<&'static str> {
        self.settings.preset.map(|p| p.as_str())
    }

    async fn produce(&self) -> anyhow::Result<Report> {
        let settings = self.settings;
        let config = producer_config(
            settings.batch_bytes,
            settings.linger_ms,
            settings.acks,
            settings.idempotence,
            settings.compression,
        )?;
        let producers = connect_producers(self.client, &config, settings.producers).await?;
        let start = Instant::now();
        let collector = Collector::new(start + settings.warmup);
        let progress = Progress::start(settings.scenario, Arc::clone(&collector));
        let mut workers = JoinSet::new();
        self.spawn_producers(&mut workers, producers, start, None, &collector);
        let joined = join_all(workers).await;
        progress.finish();
        joined?;
        Ok(Report::new(settings.scenario, self.preset(), &collector.snapshot(), collector.measure_from))
    }

    async fn consume(&self) -> anyhow::Result<Report> {
        let settings = self.settings;
        if settings.backlog_bytes > 0 {
            self.fill_backlog().await?;
        }
        let consumers = self.position_consumers(StartAt::Beginning).await?;
        let collector = Collector::new(Instant::now() + settings.warmup);
        let progress = Progress::start(settings.scenario, Arc::clone(&collector));
        let stop = match settings.stop {
            Stop::Messages(target) => ConsumeStop::Measured { target, received: Arc::new(AtomicU64::new(0)) },
            Stop::Duration(duration) => ConsumeStop::Until(collector.measure_from + duration),
            Stop::EndOfLog => ConsumeStop::EndOfLog,
        };
        let mut workers = JoinSet::new();
        for positioned in consumers {
            let interrupted = Arc::clone(&self.interrupted);
            workers.spawn(run_consumer(positioned, stop.clone(), None, interrupted, collector.recorder()));
        }
        let joined = join_all(workers).await;
        progress.finish();
        joined?;
        Ok(Report::new(settings.scenario, self.preset(), &collector.snapshot(), collector.measure_from))
    }

    async fn e2e(&self) -> anyhow::Result<Report> {
        let settings = self.settings;
        let clock = RunClock::start();
        // Consumers sit at the log end before the first record is sent, so they see every one of this run.
        let consumers = self.position_consumers(StartAt::End).await?;
        let config = producer_config(
            settings.batch_bytes,
            settings.linger_ms,
            settings.acks,
            settings.idempotence,
            settings.compression,
        )?;
        let producers = connect_producers(self.client, &config, settings.producers).await?;
        let start = Instant::now();
        let collector = Collector::new(start + settings.warmup);
        let progress = Progress::start(settings.scenario, Arc::clone(&collector));
        let expected = Arc::new(AtomicU64::new(u64::MAX));
        let received = Arc::new(AtomicU64::new(0));
        let stop = ConsumeStop::Delivered { expected: Arc::clone(&expected), received: Arc::clone(&received) };
        let mut readers = JoinSet::new();
        for positioned in consumers {
            let interrupted = Arc::clone(&self.interrupted);
            readers.spawn(run_consumer(positioned, stop.clone(), Some(clock), interrupted, collector.recorder()));
        }
        let mut writers = JoinSet::new();
        self.spawn_producers(&mut writers, producers, start, Some(clock), &collector);
        let written = join_all(writers).await;
        // Every producer's recorder has merged by now, so this is the exact count the consumers must see.
        let delivered = collector.delivered_all();
        expected.store(delivered, Ordering::Release);
        if written.is_err() {
            self.interrupted.store(true, Ordering::Relaxed);
        }
        let read = join_all(readers).await;
        progress.finish();
        written?;
        read?;
        let mut report = Report::new(settings.scenario, self.preset(), &collector.snapshot(), collector.measure_from);
        report.missing = delivered.saturating_sub(received.load(Ordering::Relaxed));
        Ok(report)
    }

    /// Spawns one worker per producer, each with its share of the run and its own key sequence.
    fn spawn_producers(
        &self,
        workers: &mut JoinSet<anyhow::Result<()>>,
        producers: Vec<Producer>,
        start: Instant,
        stamp: Option<RunClock>,
        collector: &Arc<Collector>,
    ) {
        let settings = self.settings;
        let count = producers.len();
        let value = value_template(settings.message_size);
        for (worker, producer) in producers.into_iter().enumerate() {
            let quota = match settings.stop {
                Stop::Messages(total) => Quota::Measured(share_of(total, worker, count)),
                Stop::Duration(duration) => Quota::Until(collector.measure_from + duration),
                Stop::EndOfLog => unreachable!("settings give producing scenarios a message count or a duration"),
            };
            let job = ProduceJob {
                topic: Arc::from(self.topic.name.as_str()),
                quota,
                schedule: (settings.rate > 0).then(|| RateSchedule::new(start, settings.rate, worker, count)),
                value: value.clone(),
                keys: self.keys(worker),
                stamp,
                interrupted: Arc::clone(&self.interrupted),
            };
            workers.spawn(run_producer(producer, job, collector.recorder()));
        }
    }

    /// Worker `worker`'s keys: its own random sequence, or the round-robin cycle shifted by its index.
    fn keys(&self, worker: usize) -> KeyGenerator {
        KeyGenerator::new(self.settings.key_distribution, self.topic.partitions, worker as u64).with_offset(worker)
    }

    /// Connects and positions one consumer per non-empty share of the partitions.
    async fn position_consumers(&self, start: StartAt) -> anyhow::Result<Vec<PositionedConsumer>> {
        let consumers = self.settings.consumers;
        let partitions = self.topic.partitions;
        let shares: Vec<Vec<u32>> = (0..consumers)
            .map(|worker| partitions_of(worker, consumers, partitions))
            .filter(|share| !share.is_empty())
            .collect();
        if shares.len() < consumers {
            let idle = consumers - shares.len();
            eprintln!("warning: {consumers} consumers for {partitions} partitions; {idle} stay idle");
        }
        let positioning = shares.iter().map(|share| position_consumer(self.client, &self.topic.name, share, start));
        futures::future::try_join_all(positioning).await
    }

    /// Produces, untimed, until the topic holds at least `--backlog-bytes` of values. Records already there
    /// count, so a kept topic (`--keep-topic`) is topped up rather than filled again.
    async fn fill_backlog(&self) -> anyhow::Result<()> {
        let settings = self.settings;
        let size = settings.message_size.max(1) as u64;
        let wanted = settings.backlog_bytes.div_ceil(size);
        let missing = wanted.saturating_sub(records_in(self.client, self.topic).await?);
        if missing == 0 {
            return Ok(());
        }
        // Leader acknowledgement: the fill is setup, not measured, and needs no more than the log append.
        let config =
            producer_config(settings.batch_bytes, settings.linger_ms, Acks::Leader, false, settings.compression)?;
        let producers = connect_producers(self.client, &config, settings.producers).await?;
        let started = Instant::now();
        // Nothing of the fill is measured: its collector starts measuring a year from now.
        let collector = Collector::new(started + Duration::from_secs(365 * 24 * 3600));
        let progress = Progress::start(Scenario::Produce, Arc::clone(&collector));
        progress.note(&format!("filling the backlog: {missing} records of {size} bytes (untimed)"));
        let value = value_template(settings.message_size);
        let mut workers = JoinSet::new();
        let count = producers.len();
        for (worker, producer) in producers.into_iter().enumerate() {
            let job = ProduceJob {
                topic: Arc::from(self.topic.name.as_str()),
                quota: Quota::Total(share_of(missing, worker, count)),
                schedule: None,
                value: value.clone(),
                keys: self.keys(worker),
                stamp: None,
                interrupted: Arc::clone(&self.interrupted),
            };
            workers.spawn(run_producer(producer, job, collector.recorder()));
        }
        let joined = join_all(workers).await;
        progress.finish();
        joined?;
        let totals = collector.snapshot();
        if totals.errors > 0 {
            let first = totals.first_error.unwrap_or_default();
            bail!("{} records of the backlog fill failed; first: {first}", totals.errors);
        }
        let seconds = started.elapsed().as_secs_f64().max(1e-3);
        eprintln!("backlog filled in {seconds:.1} s ({:.0} MB/s)", (missing * size) as f64 / 1e6 / seconds);
        Ok(())
    }
}

/// Records the topic holds: the sum over partitions of high watermark minus log start.
async fn records_in(client: &ClientConfig, topic: &BenchTopic) -> anyhow::Result<u64> {
    let consumer = Consumer::connect(client.clone(), ConsumerConfig::default()).await.context("connecting")?;
    let partitions: Vec<TopicPartition> =
        (0..topic.partitions).map(|p| TopicPartition::new(topic.name.as_str(), p)).collect();
    let starts = consumer.beginning_offsets(&partitions).await.context("reading log start offsets")?;
    let ends = consumer.end_offsets(&partitions).await.context("reading end offsets")?;
    Ok(partitions.iter().map(|tp| ends[tp].saturating_sub(starts[tp])).sum())
}

/// Waits for every worker and returns the first failure, if any.
async fn join_all(mut workers: JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        let outcome = joined.context("a worker task panicked").and_then(|result| result);
        if let Err(e) = outcome {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
