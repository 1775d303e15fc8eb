//! The live progress line on stderr (only when stderr is a terminal, so logs and CI output stay clean):
//! messages/s, MB/s and p99 latency so far, read from the collector a few times a second.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::settings::Scenario;
use crate::stats::{Collector, LatencySummary};

/// Redraw period: fast enough to feel live, slow enough that snapshotting histograms costs nothing.
const REFRESH_INTERVAL_MS: u64 = 250;

/// A running progress line; stops and clears itself when finished or dropped.
pub struct Progress {
    bar: ProgressBar,
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the line if stderr is a terminal; otherwise returns a handle that draws nothing.
    pub fn start(scenario: Scenario, collector: Arc<Collector>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: ProgressBar::hidden(), task: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("constant template"));
        let task = tokio::spawn(refresh(bar.clone(), scenario, collector));
        Progress { bar, task: Some(task) }
    }

    /// Prints a status line (e.g. "filling backlog") above the progress line, or to stderr without one.
    pub fn note(&self, text: &str) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn refresh(bar: ProgressBar, scenario: Scenario, collector: Arc<Collector>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(REFRESH_INTERVAL_MS));
    loop {
        ticker.tick().await;
        bar.set_message(line(scenario, &collector, Instant::now()));
        bar.tick();
    }
}

fn line(scenario: Scenario, collector: &Collector, now: Instant) -> String {
    let Some(measured) = now.checked_duration_since(collector.measure_from) else {
        return "warming up".to_owned();
    };
    let totals = collector.snapshot();
    let (flow, histogram) = match scenario {
        Scenario::Produce => (totals.produced, &totals.produce_latency),
        Scenario::Consume => (totals.consumed, &totals.e2e_latency),
        Scenario::E2e => (totals.consumed, &totals.e2e_latency),
    };
    let seconds = measured.as_secs_f64().max(1e-3);
    let mut text = format!(
        "{:>12.0} msgs/s {:>9.1} MB/s  {} msgs",
        flow.messages as f64 / seconds,
        flow.bytes as f64 / 1e6 / seconds,
        flow.messages
    );
    if let Some(summary) = LatencySummary::of(histogram) {
        text.push_str(&format!("  p99 {:.3} ms", summary.p99));
    }
    if totals.errors > 0 {
        text.push_str(&format!("  {} errors", totals.errors));
    }
    text
}
