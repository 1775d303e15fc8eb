//! The result of a run and its two renderings: a table for people and one JSON object for scripts.
//! MB means 10^6 bytes throughout, and bytes count record values only (not keys, headers or framing).

use std::fmt::Write as _;
use std::time::Instant;

use serde_json::{Value, json};

use crate::settings::Scenario;
use crate::stats::{Flow, LatencySummary, Totals};

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub scenario: Scenario,
    pub preset: Option<&'static str>,
    /// The headline flow: acknowledged records for produce, received records for consume and e2e.
    pub messages: u64,
    pub bytes: u64,
    /// From the end of the warm-up to the last counted record.
    pub seconds: f64,
    /// Acknowledged records in an e2e run, shown beside the received ones.
    pub produced_messages: Option<u64>,
    pub produce_latency: Option<LatencySummary>,
    pub e2e_latency: Option<LatencySummary>,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Records sent but never received (e2e), when the consumers gave up waiting.
    pub missing: u64,
}

impl Report {
    /// Builds the report from the final totals; `measure_from` is the end of the warm-up.
    pub fn new(scenario: Scenario, preset: Option<&'static str>, totals: &Totals, measure_from: Instant) -> Report {
        let headline: &Flow = if scenario == Scenario::Produce { &totals.produced } else { &totals.consumed };
        let seconds = headline.last_at.map_or(0.0, |last| last.saturating_duration_since(measure_from).as_secs_f64());
        Report {
            scenario,
            preset,
            messages: headline.messages,
            bytes: headline.bytes,
            seconds,
            produced_messages: (scenario == Scenario::E2e).then_some(totals.produced.messages),
            produce_latency: LatencySummary::of(&totals.produce_latency),
            e2e_latency: LatencySummary::of(&totals.e2e_latency),
            errors: totals.errors,
            first_error: totals.first_error.clone(),
            missing: 0,
        }
    }

    pub fn msgs_per_sec(&self) -> f64 {
        rate(self.messages as f64, self.seconds)
    }

    pub fn mb_per_sec(&self) -> f64 {
        rate(self.bytes as f64 / 1e6, self.seconds)
    }

    /// The JSON object documented in docs/PERFORMANCE.md; a latency not measured is `null`.
    pub fn to_json(&self) -> Value {
        let latency = |summary: Option<LatencySummary>| match summary {
            Some(s) => json!({"p50": s.p50, "p90": s.p90, "p99": s.p99, "p999": s.p999, "max": s.max}),
            None => Value::Null,
        };
        json!({
            "scenario": self.scenario.as_str(),
            "messages": self.messages,
            "bytes": self.bytes,
            "seconds": round3(self.seconds),
            "msgs_per_sec": round3(self.msgs_per_sec()),
            "mb_per_sec": round3(self.mb_per_sec()),
            "produce_latency_ms": latency(self.produce_latency),
            "e2e_latency_ms": latency(self.e2e_latency),
        })
    }

    /// The table printed at the end of a run.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let title = match self.preset {
            Some(preset) => format!("{} (preset {preset})", self.scenario.as_str()),
            None => self.scenario.as_str().to_owned(),
        };
        let _ = writeln!(out, "{title}");
        let _ = writeln!(out, "  messages     {:>14}", self.messages);
        if let Some(produced) = self.produced_messages {
            let _ = writeln!(out, "  produced     {produced:>14}");
        }
        let _ = writeln!(out, "  bytes        {:>14}", self.bytes);
        let _ = writeln!(out, "  seconds      {:>14.3}", self.seconds);
        let _ = writeln!(out, "  messages/s   {:>14.0}", self.msgs_per_sec());
        let _ = writeln!(out, "  MB/s         {:>14.1}", self.mb_per_sec());
        if self.produce_latency.is_some() || self.e2e_latency.is_some() {
            let _ = writeln!(out, "\n  latency (ms)      p50      p90      p99    p99.9      max");
            for (name, summary) in [("produce", self.produce_latency), ("end-to-end", self.e2e_latency)] {
                if let Some(s) = summary {
                    let _ = writeln!(
                        out,
                        "  {name:<12} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                        s.p50, s.p90, s.p99, s.p999, s.max
                    );
                }
            }
        }
        if self.errors > 0 {
            let first = self.first_error.as_deref().unwrap_or("");
            let _ = writeln!(out, "\n  errors       {:>14}  (first: {first})", self.errors);
        }
        if self.missing > 0 {
            let _ = writeln!(out, "  never received {:>12}", self.missing);
        }
        out
    }
}

fn rate(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { amount / seconds } else { 0.0 }
}

/// Three decimals are below any noise the harness can see; more only clutters the JSON.
fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn report(scenario: Scenario, with_e2e: bool) -> Report {
        let start = Instant::now();
        let mut totals = Totals {
            produced: Flow { messages: 2000, bytes: 2_000_000, last_at: Some(start + Duration::from_millis(500)) },
            ..Totals::default()
        };
        totals.produce_latency.record(1500).unwrap();
        totals.produce_latency.record(2500).unwrap();
        if with_e2e {
            totals.consumed =
                Flow { messages: 1000, bytes: 1_000_000, last_at: Some(start + Duration::from_millis(250)) };
            totals.e2e_latency.record(4000).unwrap();
        }
        Report::new(scenario, None, &totals, start)
    }

    #[test]
    fn json_has_exactly_the_documented_fields() {
        let value = report(Scenario::Produce, false).to_json();
        let object = value.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "bytes",
                "e2e_latency_ms",
                "mb_per_sec",
                "messages",
                "msgs_per_sec",
                "produce_latency_ms",
                "scenario",
                "seconds"
            ]
        );
        assert_eq!(value["scenario"], "produce");
        assert_eq!(value["messages"], 2000);
        assert_eq!(value["bytes"], 2_000_000);
        assert_eq!(value["seconds"], 0.5);
        assert_eq!(value["msgs_per_sec"], 4000.0);
        assert_eq!(value["mb_per_sec"], 4.0, "MB is 10^6 bytes");
        let latency = value["produce_latency_ms"].as_object().unwrap();
        let mut latency_keys: Vec<&str> = latency.keys().map(String::as_str).collect();
        latency_keys.sort_unstable();
        assert_eq!(latency_keys, ["max", "p50", "p90", "p99", "p999"]);
        assert!(latency.values().all(Value::is_f64));
        assert!(value["e2e_latency_ms"].is_null(), "e2e is null when not measured");
    }

    #[test]
    fn e2e_reports_received_records_and_both_latencies() {
        let report = report(Scenario::E2e, true);
        let value = report.to_json();
        assert_eq!(value["scenario"], "e2e");
        assert_eq!(value["messages"], 1000, "the headline is what consumers received");
        assert_eq!(value["seconds"], 0.25);
        assert!((value["e2e_latency_ms"]["p50"].as_f64().unwrap() - 4.0).abs() < 0.01);
        assert!(value["produce_latency_ms"].is_object());
        assert_eq!(report.produced_messages, Some(2000));
        let table = report.to_table();
        assert!(table.contains("end-to-end") && table.contains("produced"), "{table}");
    }

    #[test]
    fn nothing_measured_gives_zero_rates_not_nan() {
        let report = Report::new(Scenario::Consume, None, &Totals::default(), Instant::now());
        let value = report.to_json();
        assert_eq!(value["msgs_per_sec"], 0.0);
        assert!(value["produce_latency_ms"].is_null() && value["e2e_latency_ms"].is_null());
    }
}
