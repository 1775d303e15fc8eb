//! The broker's event metrics: counters and histograms that the request core and the partitions update once
//! per request, batch or fsync (never per record), registered under the `rill_` prefix. Gauges of state (HW,
//! ISR, lag, controller, groups) are not kept here: `/metrics` reads them from the broker's state when it is
//! scraped (`http/metrics.rs`), so keeping them costs nothing between scrapes.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// A client request: which operation and how it ended (`none`, or the request core's error kind).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub api: &'static str,
    pub error: Cow<'static, str>,
}

/// One operation, for its latency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: &'static str,
}

/// Per-topic traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

/// Latency buckets for requests and fsyncs, in seconds: 100 µs to 30 s, about three per decade.
const SECONDS_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0];

/// Bytes-per-fsync buckets: 4 KiB to 256 MiB by factors of 4.
fn fsync_bytes_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(4096.0, 4.0, 10)
}

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

/// The event metrics of one broker. Cloning shares them (every handle is reference-counted).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<ApiLabels, Histogram, fn() -> Histogram>,
    pub produced_bytes: Family<TopicLabels, Counter>,
    pub produced_batches: Family<TopicLabels, Counter>,
    pub produced_records: Family<TopicLabels, Counter>,
    pub fetched_bytes: Family<TopicLabels, Counter>,
    pub fsync_seconds: Histogram,
    pub fsync_bytes: Histogram,
    pub isr_shrinks: Counter,
    pub isr_expands: Counter,
    pub leaderships_taken: Counter,
    /// Count and sum of `request_seconds` per operation, for the console's mean latency (the histogram's own
    /// totals are not readable through prometheus-client's API); not exported.
    latency_count: Family<ApiLabels, Counter>,
    latency_sum: Family<ApiLabels, Counter<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(seconds_histogram),
            produced_bytes: Family::default(),
            produced_batches: Family::default(),
            produced_records: Family::default(),
            fetched_bytes: Family::default(),
            fsync_seconds: seconds_histogram(),
            fsync_bytes: Histogram::new(fsync_bytes_buckets()),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            leaderships_taken: Counter::default(),
            latency_count: Family::default(),
            latency_sum: Family::default(),
        }
    }
}

impl Metrics {
    /// Adds every metric to `registry` (which gives the `rill` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register("requests", "Client requests served, by operation and outcome", self.requests.clone());
        registry.register_with_unit(
            "request_duration",
            "Time from a client request's arrival in the request core to its answer (long polls included)",
            Unit::Seconds,
            self.request_seconds.clone(),
        );
        registry.register_with_unit(
            "topic_produced",
            "Record batch bytes appended by produce requests on this broker, per topic",
            Unit::Bytes,
            self.produced_bytes.clone(),
        );
        registry.register(
            "topic_produced_batches",
            "Record batches appended by produce requests on this broker, per topic",
            self.produced_batches.clone(),
        );
        registry.register(
            "topic_produced_records",
            "Records appended by produce requests on this broker, per topic",
            self.produced_records.clone(),
        );
        registry.register_with_unit(
            "topic_fetched",
            "Record batch bytes returned to consumers by this broker, per topic",
            Unit::Bytes,
            self.fetched_bytes.clone(),
        );
        registry.register_with_unit(
            "fsync_duration",
            "Time of one log flush (fsync of the segment files written since the last one)",
            Unit::Seconds,
            self.fsync_seconds.clone(),
        );
        registry.register_with_unit(
            "fsync_size",
            "Log bytes made durable by one flush",
            Unit::Bytes,
            self.fsync_bytes.clone(),
        );
        registry.register("isr_shrinks", "Partitions led here whose ISR lost a replica", self.isr_shrinks.clone());
        registry.register("isr_expands", "Partitions led here whose ISR gained a replica", self.isr_expands.clone());
        registry.register(
            "leaderships_taken",
            "Times this broker became a partition's leader (summed over brokers: the cluster's elections)",
            self.leaderships_taken.clone(),
        );
    }

    /// Counts one client request and its latency; `error` is the first error it answered (its `Debug` name).
    pub fn request(&self, api: &'static str, error: Option<impl std::fmt::Debug>, elapsed: std::time::Duration) {
        let error = error.map_or(Cow::Borrowed("none"), |e| Cow::Owned(format!("{e:?}")));
        self.requests.get_or_create(&RequestLabels { api, error }).inc();
        let seconds = elapsed.as_secs_f64();
        self.request_seconds.get_or_create(&ApiLabels { api }).observe(seconds);
        self.latency_count.get_or_create(&ApiLabels { api }).inc();
        self.latency_sum.get_or_create(&ApiLabels { api }).inc_by(seconds);
    }

    /// Counts the batches of one partition appended by a produce request.
    pub fn produced(&self, topic: &str, batches: u64, records: u64, bytes: u64) {
        let labels = TopicLabels { topic: topic.to_string() };
        self.produced_bytes.get_or_create(&labels).inc_by(bytes);
        self.produced_batches.get_or_create(&labels).inc_by(batches);
        self.produced_records.get_or_create(&labels).inc_by(records);
    }

    /// Counts the bytes of one partition returned by a fetch.
    pub fn fetched(&self, topic: &str, bytes: u64) {
        if bytes > 0 {
            self.fetched_bytes.get_or_create(&TopicLabels { topic: topic.to_string() }).inc_by(bytes);
        }
    }

    /// How many `api` requests this broker answered and their latencies' sum, in seconds.
    pub fn latency_totals(&self, api: &'static str) -> (u64, f64) {
        let labels = ApiLabels { api };
        let count = self.latency_count.get(&labels).map_or(0, |c| c.get());
        let sum = self.latency_sum.get(&labels).map_or(0.0, |c| c.get());
        (count, sum)
    }

    /// A topic's produced bytes, produced records and fetched bytes on this broker so far.
    pub fn topic_totals(&self, topic: &str) -> (u64, u64, u64) {
        let labels = TopicLabels { topic: topic.to_string() };
        let read = |family: &Family<TopicLabels, Counter>| family.get(&labels).map_or(0, |c| c.get());
        (read(&self.produced_bytes), read(&self.produced_records), read(&self.fetched_bytes))
    }

    /// Records one completed flush.
    pub fn fsync(&self, elapsed: std::time::Duration, bytes: u64) {
        self.fsync_seconds.observe(elapsed.as_secs_f64());
        self.fsync_bytes.observe(bytes as f64);
    }
}
