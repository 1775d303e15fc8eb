//! Measurement: per-worker `Recorder`s that count and time without sharing anything on the hot path, and
//! the shared `Collector` they merge into a few times a second, which the progress line and the final
//! report read.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Largest latency a histogram holds, in microseconds (an hour); longer ones are clamped to it.
const LATENCY_MICROS_MAX: u64 = 3_600_000_000;
/// Significant decimal digits the histograms keep: 0.1% resolution at every scale.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// How often a recorder merges into the collector; bounds how stale the progress line is.
const FLUSH_INTERVAL_MS: u64 = 100;
/// Events between clock reads that decide whether to merge, so the check costs nothing per record.
const EVENTS_PER_FLUSH_CHECK: u32 = 256;

/// A latency histogram in microseconds.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MICROS_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Messages and value bytes that crossed one point (acknowledged, or received), and when the last did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    pub messages: u64,
    pub bytes: u64,
    pub last_at: Option<Instant>,
}

impl Flow {
    fn add(&mut self, bytes: usize, at: Instant) {
        self.messages += 1;
        self.bytes += bytes as u64;
        self.last_at = Some(self.last_at.map_or(at, |last| last.max(at)));
    }

    fn merge(&mut self, other: &Flow) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.last_at = match (self.last_at, other.last_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Everything measured so far.
#[derive(Debug, Clone)]
pub struct Totals {
    /// Measured records acknowledged to producers.
    pub produced: Flow,
    /// Measured records received by consumers.
    pub consumed: Flow,
    /// Send (or scheduled send) to acknowledgement.
    pub produce_latency: Histogram<u64>,
    /// Send (or scheduled send) to receipt by a consumer.
    pub e2e_latency: Histogram<u64>,
    /// Every record sent, measured or not, whose delivery succeeded; e2e consumers wait for this many.
    pub delivered_all: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            produced: Flow::default(),
            consumed: Flow::default(),
            produce_latency: latency_histogram(),
            e2e_latency: latency_histogram(),
            delivered_all: 0,
            errors: 0,
            first_error: None,
        }
    }
}

impl Totals {
    fn merge(&mut self, other: &Totals) {
        self.produced.merge(&other.produced);
        self.consumed.merge(&other.consumed);
        // Both histograms have the same bounds, so adding cannot fail.
        self.produce_latency.add(&other.produce_latency).expect("histograms share their bounds");
        self.e2e_latency.add(&other.e2e_latency).expect("histograms share their bounds");
        self.delivered_all += other.delivered_all;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    fn clear(&mut self) {
        self.produced = Flow::default();
        self.consumed = Flow::default();
        self.produce_latency.reset();
        self.e2e_latency.reset();
        self.delivered_all = 0;
        self.errors = 0;
        self.first_error = None;
    }
}

/// The shared totals of a run.
#[derive(Debug)]
pub struct Collector {
    /// When measuring starts: the end of the warm-up.
    pub measure_from: Instant,
    totals: Mutex<Totals>,
}

impl Collector {
    pub fn new(measure_from: Instant) -> Arc<Collector> {
        Arc::new(Collector { measure_from, totals: Mutex::new(Totals::default()) })
    }

    fn lock(&self) -> MutexGuard<'_, Totals> {
        // A worker that panicked mid-merge leaves at worst a partial merge; the run reports its error anyway.
        self.totals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the totals (histograms included); called a few times a second and once at the end.
    pub fn snapshot(&self) -> Totals {
        self.lock().clone()
    }

    /// Records delivered so far, warm-up included, merged from every producer.
    pub fn delivered_all(&self) -> u64 {
        self.lock().delivered_all
    }

    pub fn recorder(self: &Arc<Self>) -> Recorder {
        Recorder {
            collector: Arc::clone(self),
            local: Totals::default(),
            last_flush: Instant::now(),
            events_since_check: 0,
        }
    }
}

/// One worker's unshared measurements, merged into the collector every [`FLUSH_INTERVAL_MS`] and on drop.
#[derive(Debug)]
pub struct Recorder {
    collector: Arc<Collector>,
    local: Totals,
    last_flush: Instant,
    events_since_check: u32,
}

impl Recorder {
    /// Whether an event that started at `at` counts (it is past the warm-up).
    pub fn measures(&self, at: Instant) -> bool {
        at >= self.collector.measure_from
    }

    /// A record acknowledged at `now` whose send started (or was due) at `sent`.
    pub fn acknowledged(&mut self, sent: Instant, now: Instant, bytes: usize) {
        self.local.delivered_all += 1;
        if self.measures(sent) {
            self.local.produced.add(bytes, now);
            self.local.produce_latency.saturating_record(micros(now.saturating_duration_since(sent)));
        }
        self.tick(now);
    }

    /// A record received at `now`; `sent` is its send time when the record carries one.
    pub fn received(&mut self, sent: Option<Instant>, now: Instant, bytes: usize) {
        match sent {
            Some(sent) if self.measures(sent) => {
                self.local.consumed.add(bytes, now);
                self.local.e2e_latency.saturating_record(micros(now.saturating_duration_since(sent)));
            }
            Some(_) => {}
            None if self.measures(now) => self.local.consumed.add(bytes, now),
            None => {}
        }
        self.tick(now);
    }

    /// A failed delivery or fetch; the run goes on and reports the count and the first message.
    pub fn failed(&mut self, error: &dyn std::fmt::Display) {
        self.local.errors += 1;
        if self.local.first_error.is_none() {
            self.local.first_error = Some(error.to_string());
        }
    }

    fn tick(&mut self, now: Instant) {
        self.events_since_check += 1;
        if self.events_since_check >= EVENTS_PER_FLUSH_CHECK {
            self.events_since_check = 0;
            if now.saturating_duration_since(self.last_flush) >= Duration::from_millis(FLUSH_INTERVAL_MS) {
                self.flush_at(now);
            }
        }
    }

    /// Merges into the collector now.
    pub fn flush(&mut self) {
        self.flush_at(Instant::now());
    }

    fn flush_at(&mut self, now: Instant) {
        self.collector.lock().merge(&self.local);
        self.local.clear();
        self.last_flush = now;
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The latency percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    /// `None` for an empty histogram: nothing was measured.
    pub fn of(histogram: &Histogram<u64>) -> Option<LatencySummary> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(LatencySummary {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_events_are_not_measured() {
        let start = Instant::now();
        let collector = Collector::new(start + Duration::from_secs(1));
        let mut recorder = collector.recorder();
        recorder.acknowledged(start, start + Duration::from_millis(3), 100);
        recorder.acknowledged(start + Duration::from_secs(2), start + Duration::from_millis(2005), 100);
        recorder.received(Some(start), start + Duration::from_secs(3), 100);
        recorder.received(None, start + Duration::from_secs(3), 50);
        recorder.flush();
        let totals = collector.snapshot();
        assert_eq!(totals.delivered_all, 2, "every delivery counts toward what e2e consumers await");
        assert_eq!((totals.produced.messages, totals.produced.bytes), (1, 100));
        assert_eq!(totals.produce_latency.len(), 1);
        assert_eq!((totals.consumed.messages, totals.consumed.bytes), (1, 50));
        assert!(totals.e2e_latency.is_empty(), "the stamped record was sent during the warm-up");
    }

    #[test]
    fn recorders_merge_on_drop() {
        let start = Instant::now();
        let collector = Collector::new(start);
        for worker in 0..3u64 {
            let mut recorder = collector.recorder();
            let sent = start + Duration::from_millis(worker);
            recorder.acknowledged(sent, sent + Duration::from_millis(1 + worker), 10);
            recorder.failed(&format!("worker {worker} failed"));
        }
        let totals = collector.snapshot();
        assert_eq!(totals.produced.messages, 3);
        assert_eq!(totals.produced.last_at, Some(start + Duration::from_millis(5)));
        assert_eq!(totals.errors, 3);
        assert_eq!(totals.first_error.as_deref(), Some("worker 0 failed"));
    }

    #[test]
    fn summaries_are_in_milliseconds() {
        let mut histogram = latency_histogram();
        assert_eq!(LatencySummary::of(&histogram), None);
        for micros in 1..=1000u64 {
            histogram.record(micros * 10).unwrap();
        }
        let summary = LatencySummary::of(&histogram).unwrap();
        assert!((summary.p50 - 5.0).abs() < 0.01, "{summary:?}");
        assert!((summary.p99 - 9.9).abs() < 0.01, "{summary:?}");
        assert!((summary.max - 10.0).abs() < 0.01, "{summary:?}");
        assert!(summary.p50 <= summary.p90 && summary.p90 <= summary.p99 && summary.p99 <= summary.p999);
    }
}
