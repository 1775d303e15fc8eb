//! Resolution of a run's settings: explicit flags, then the preset's values, then the defaults; and the
//! checks that refuse a run which could only mislead (idempotence without acks=all, a record too small to
//! carry its send time).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use rill_client::{Acks, Compression};

use crate::cli::{AcksArg, BOOTSTRAP_DEFAULT, KeyDistribution, OnOff, PresetName, RunOptions, ScenarioCommand};
use crate::payload::STAMP_BYTES;

/// Measured run length of produce and e2e runs when neither `--messages` nor `--duration` is given.
const DURATION_DEFAULT_SECS: f64 = 10.0;
/// Topic used when neither `--topic` nor a preset names one.
const TOPIC_DEFAULT: &str = "rill-bench";
/// Value size when nothing sets one: the 1 KiB of the standard presets.
const MESSAGE_SIZE_DEFAULT: usize = 1024;
/// Largest value the harness generates; well below the client's 1 MiB default batch, so a record always fits.
pub const MESSAGE_SIZE_MAX: usize = 512 * 1024;
/// Bound on producers and consumers: each opens its own connections, and the machine has two cores.
pub const WORKERS_MAX: usize = 256;

/// Rate of the e2e-half preset in messages/s: half of the fsync-1k peak measured on the reference machine
/// (docs/PERFORMANCE.md). On other hardware, measure fsync-1k and pass `--rate` with half its msgs/s.
pub const E2E_HALF_RATE_DEFAULT: u64 = 264_000;
/// Backlog of the consume-backlog preset: 2 GiB of values.
pub const BACKLOG_PRESET_BYTES: u64 = 2 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Produce,
    Consume,
    E2e,
}

impl Scenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Produce => "produce",
            Scenario::Consume => "consume",
            Scenario::E2e => "e2e",
        }
    }

    pub fn produces(self) -> bool {
        matches!(self, Scenario::Produce | Scenario::E2e)
    }

    pub fn consumes(self) -> bool {
        matches!(self, Scenario::Consume | Scenario::E2e)
    }
}

impl From<ScenarioCommand> for Scenario {
    fn from(command: ScenarioCommand) -> Self {
        match command {
            ScenarioCommand::Produce => Scenario::Produce,
            ScenarioCommand::Consume => Scenario::Consume,
            ScenarioCommand::E2e => Scenario::E2e,
        }
    }
}

/// When the measured part of a run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this many measured messages (sent by the producers, or read by the consumers).
    Messages(u64),
    /// After this long, counted from the end of the warm-up.
    Duration(Duration),
    /// consume only: once the consumers reach the end offsets seen when the run started.
    EndOfLog,
}

/// Everything a run needs, fully resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub scenario: Scenario,
    pub preset: Option<PresetName>,
    pub bootstrap: String,
    /// TLS towards the brokers; `None` for plaintext.
    pub tls: Option<rill_client::TlsConfig>,
    pub topic: String,
    pub partitions: u32,
    pub replication_factor: Option<u32>,
    pub topic_config: BTreeMap<String, String>,
    pub stop: Stop,
    pub warmup: Duration,
    pub message_size: usize,
    pub producers: usize,
    pub consumers: usize,
    pub batch_bytes: Option<usize>,
    pub linger_ms: Option<u64>,
    pub acks: Acks,
    /// Idempotent producers (exactly-once appends); needs acks=all.
    pub idempotence: bool,
    pub compression: Compression,
    /// Messages/s across all producers; 0 is closed loop, as fast as the client accepts records.
    pub rate: u64,
    pub key_distribution: KeyDistribution,
    pub backlog_bytes: u64,
    pub keep_topic: bool,
    pub json: bool,
}

/// The values a preset supplies; `None` leaves the default.
fn preset_options(preset: PresetName) -> (Scenario, RunOptions) {
    let base = RunOptions {
        topic: Some(format!("bench-{}", preset.as_str())),
        partitions: Some(1),
        producers: Some(1),
        consumers: Some(1),
        message_size: Some(1024),
        acks: Some(AcksArg::All),
        topic_config: vec![("durability".into(), "fsync".into())],
        duration: Some(5.0),
        warmup: Some(1.0),
        ..RunOptions::default()
    };
    match preset {
        PresetName::Fsync1k => (Scenario::Produce, base),
        PresetName::Os1k => {
            (Scenario::Produce, RunOptions { topic_config: vec![("durability".into(), "os".into())], ..base })
        }
        PresetName::Small100b => (Scenario::Produce, RunOptions { message_size: Some(100), ..base }),
        PresetName::ConsumeBacklog => (
            Scenario::Consume,
            RunOptions {
                // The fill is untimed setup, so it uses the fastest durability; reads do not depend on it.
                topic_config: vec![("durability".into(), "os".into())],
                backlog_bytes: Some(BACKLOG_PRESET_BYTES),
                duration: None,
                warmup: Some(0.0),
                ..base
            },
        ),
        // A latency run does not wait to fill batches: the client's 5 ms default linger alone would exceed
        // the 5 ms p99 target. Batching still happens while a request is in flight.
        PresetName::E2eHalf => {
            (Scenario::E2e, RunOptions { rate: Some(E2E_HALF_RATE_DEFAULT), linger_ms: Some(0), ..base })
        }
    }
}

impl Settings {
    /// Merges the command line over the preset and the defaults, and checks the result.
    ///
    /// # Errors
    ///
    /// When no scenario is named, the subcommand contradicts the preset, or a value is out of range or not
    /// supported (`--idempotence on` without acks=all).
    pub fn resolve(command: Option<ScenarioCommand>, cli: RunOptions) -> anyhow::Result<Settings> {
        let (preset_scenario, preset) = match cli.preset {
            Some(name) => {
                let (scenario, options) = preset_options(name);
                (Some(scenario), options)
            }
            None => (None, RunOptions::default()),
        };
        let scenario = match (command.map(Scenario::from), preset_scenario) {
            (Some(asked), Some(preset)) if asked != preset => bail!(
                "preset {} is a {} run; drop the '{}' subcommand or the preset",
                cli.preset.map_or("", PresetName::as_str),
                preset.as_str(),
                asked.as_str()
            ),
            (Some(scenario), _) | (None, Some(scenario)) => scenario,
            (None, None) => bail!("name a scenario (produce, consume, e2e) or a --preset; see --help"),
        };
        let pick = |explicit: Option<u64>, preset: Option<u64>| explicit.or(preset);
        // `--messages` and `--duration` exclude each other on the command line; either one given explicitly
        // replaces the preset's run length entirely.
        let (messages, duration) = if cli.messages.is_some() || cli.duration.is_some() {
            (cli.messages, cli.duration)
        } else {
            (preset.messages, preset.duration)
        };
        let stop = match (messages, duration) {
            (Some(n), _) => Stop::Messages(n),
            (None, Some(secs)) => Stop::Duration(seconds("--duration", secs)?),
            (None, None) if scenario == Scenario::Consume => Stop::EndOfLog,
            (None, None) => Stop::Duration(Duration::from_secs_f64(DURATION_DEFAULT_SECS)),
        };
        let mut topic_config: BTreeMap<String, String> = preset.topic_config.into_iter().collect();
        topic_config.extend(cli.topic_config);
        let acks: Acks = cli.acks.or(preset.acks).unwrap_or(AcksArg::All).into();
        let settings = Settings {
            scenario,
            preset: cli.preset,
            bootstrap: cli.bootstrap.unwrap_or_else(|| BOOTSTRAP_DEFAULT.to_owned()),
            tls: {
                let tls = rill_client::TlsConfig { ca: cli.tls_ca, cert: cli.tls_cert, key: cli.tls_key };
                (tls != rill_client::TlsConfig::default()).then_some(tls)
            },
            topic: cli.topic.or(preset.topic).unwrap_or_else(|| TOPIC_DEFAULT.to_owned()),
            partitions: cli.partitions.or(preset.partitions).unwrap_or(1),
            replication_factor: cli.replication_factor.or(preset.replication_factor),
            topic_config,
            stop,
            warmup: seconds("--warmup", cli.warmup.or(preset.warmup).unwrap_or(0.0))?,
            message_size: cli.message_size.or(preset.message_size).unwrap_or(MESSAGE_SIZE_DEFAULT),
            producers: cli.producers.or(preset.producers).unwrap_or(1),
            consumers: cli.consumers.or(preset.consumers).unwrap_or(1),
            batch_bytes: cli.batch_bytes.or(preset.batch_bytes),
            linger_ms: pick(cli.linger_ms, preset.linger_ms),
            acks,
            idempotence: match cli.idempotence {
                Some(choice) => choice == OnOff::On,
                None => acks == Acks::All,
            },
            compression: cli.compression.or(preset.compression).unwrap_or_default(),
            rate: pick(cli.rate, preset.rate).unwrap_or(0),
            key_distribution: cli.key_distribution.or(preset.key_distribution).unwrap_or(KeyDistribution::None),
            backlog_bytes: pick(cli.backlog_bytes, preset.backlog_bytes).unwrap_or(0),
            keep_topic: cli.keep_topic,
            json: cli.json,
        };
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> anyhow::Result<()> {
        rill_client::parse_bootstrap(&self.bootstrap).context("--bootstrap")?;
        if self.idempotence && self.acks != Acks::All {
            bail!("--idempotence on needs --acks all");
        }
        if self.partitions == 0 {
            bail!("--partitions must be at least 1");
        }
        if self.message_size > MESSAGE_SIZE_MAX {
            bail!("--message-size {} is above the harness limit of {MESSAGE_SIZE_MAX} bytes", self.message_size);
        }
        if self.scenario == Scenario::E2e && self.message_size < STAMP_BYTES {
            bail!(
                "e2e carries the send time in the first {STAMP_BYTES} bytes of each value; --message-size must be at least that"
            );
        }
        if self.scenario.produces() && !(1..=WORKERS_MAX).contains(&self.producers) {
            bail!("--producers must lie in 1..={WORKERS_MAX}");
        }
        if self.scenario.consumes() && !(1..=WORKERS_MAX).contains(&self.consumers) {
            bail!("--consumers must lie in 1..={WORKERS_MAX}");
        }
        if self.stop == Stop::Messages(0) {
            bail!("--messages must be at least 1");
        }
        if self.backlog_bytes > 0 && self.scenario != Scenario::Consume {
            bail!("--backlog-bytes applies to the consume scenario only");
        }
        if self.rate > 0 && self.scenario == Scenario::Consume {
            bail!("--rate paces producers; the consume scenario has none");
        }
        Ok(())
    }
}

/// Converts a seconds flag, refusing negative, infinite and absurd values.
fn seconds(flag: &str, secs: f64) -> anyhow::Result<Duration> {
    // A day is far beyond any sensible benchmark and keeps Instant arithmetic clear of overflow.
    const SECONDS_MAX: f64 = 86_400.0;
    if !(0.0..=SECONDS_MAX).contains(&secs) {
        bail!("{flag} {secs} must lie in 0..={SECONDS_MAX} seconds");
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn resolve(args: &[&str]) -> anyhow::Result<Settings> {
        let cli = Cli::try_parse_from(std::iter::once("rill-bench").chain(args.iter().copied()))?;
        Settings::resolve(cli.command, cli.options)
    }

    #[test]
    fn defaults_without_a_preset() {
        let s = resolve(&["produce"]).unwrap();
        assert_eq!(s.scenario, Scenario::Produce);
        if std::env::var_os("RILL_BOOTSTRAP").is_none() {
            assert_eq!(s.bootstrap, "127.0.0.1:9400");
        }
        assert_eq!(s.topic, "rill-bench");
        assert_eq!((s.partitions, s.producers, s.message_size, s.rate), (1, 1, 1024, 0));
        assert_eq!(s.acks, Acks::All);
        assert_eq!(s.stop, Stop::Duration(Duration::from_secs(10)));
        assert_eq!(s.warmup, Duration::ZERO);
        assert!(s.topic_config.is_empty());
        assert_eq!((s.batch_bytes, s.linger_ms), (None, None));
    }

    #[test]
    fn consume_without_a_length_reads_to_the_end() {
        assert_eq!(resolve(&["consume"]).unwrap().stop, Stop::EndOfLog);
    }

    #[test]
    fn presets_resolve_to_the_documented_runs() {
        let a = resolve(&["--preset", "fsync-1k"]).unwrap();
        assert_eq!(a.scenario, Scenario::Produce);
        assert_eq!((a.partitions, a.producers, a.message_size), (1, 1, 1024));
        assert_eq!(a.acks, Acks::All);
        assert_eq!(a.topic_config.get("durability").map(String::as_str), Some("fsync"));
        assert_eq!(a.topic, "bench-fsync-1k");

        let b = resolve(&["--preset", "os-1k"]).unwrap();
        assert_eq!(b.topic_config.get("durability").map(String::as_str), Some("os"));
        assert_eq!(b.message_size, 1024);

        let c = resolve(&["--preset", "small-100b"]).unwrap();
        assert_eq!(c.message_size, 100);

        let d = resolve(&["--preset", "consume-backlog"]).unwrap();
        assert_eq!(d.scenario, Scenario::Consume);
        assert_eq!((d.consumers, d.backlog_bytes), (1, 2 << 30));
        assert_eq!(d.stop, Stop::EndOfLog);

        let e = resolve(&["--preset", "e2e-half"]).unwrap();
        assert_eq!(e.scenario, Scenario::E2e);
        assert_eq!(e.rate, E2E_HALF_RATE_DEFAULT);
        assert_eq!(e.linger_ms, Some(0));
    }

    #[test]
    fn explicit_flags_override_the_preset() {
        let s = resolve(&[
            "--preset",
            "fsync-1k",
            "--message-size",
            "4096",
            "--messages",
            "100",
            "--topic-config",
            "durability=interval",
            "--topic-config",
            "flush.ms=50",
            "--topic",
            "mine",
        ])
        .unwrap();
        assert_eq!(s.message_size, 4096);
        assert_eq!(s.stop, Stop::Messages(100), "--messages replaces the preset's --duration");
        assert_eq!(s.topic_config.get("durability").map(String::as_str), Some("interval"));
        assert_eq!(s.topic_config.get("flush.ms").map(String::as_str), Some("50"));
        assert_eq!(s.topic, "mine");
        assert_eq!(s.acks, Acks::All, "values not given keep the preset's");
    }

    #[test]
    fn the_subcommand_must_agree_with_the_preset() {
        assert!(resolve(&["produce", "--preset", "os-1k"]).is_ok());
        let error = resolve(&["consume", "--preset", "os-1k"]).unwrap_err().to_string();
        assert!(error.contains("produce run"), "{error}");
        assert!(resolve(&[]).is_err(), "no scenario and no preset");
    }

    #[test]
    fn idempotence_defaults_to_on_with_acks_all_and_needs_it() {
        assert!(resolve(&["produce"]).unwrap().idempotence);
        assert!(!resolve(&["produce", "--idempotence", "off"]).unwrap().idempotence);
        assert!(!resolve(&["produce", "--acks", "leader"]).unwrap().idempotence);
        let error = resolve(&["produce", "--acks", "leader", "--idempotence", "on"]).unwrap_err().to_string();
        assert!(error.contains("idempotence"), "{error}");
    }

    #[test]
    fn compression_defaults_to_none_and_takes_each_codec() {
        assert_eq!(resolve(&["produce"]).unwrap().compression, Compression::None);
        for codec in Compression::ALL {
            assert_eq!(resolve(&["e2e", "--compression", codec.name()]).unwrap().compression, codec);
        }
        assert!(resolve(&["produce", "--compression", "brotli"]).is_err());
    }

    #[test]
    fn values_out_of_range_are_refused() {
        assert!(resolve(&["produce", "--partitions", "0"]).is_err());
        assert!(resolve(&["produce", "--messages", "0"]).is_err());
        assert!(resolve(&["produce", "--producers", "0"]).is_err());
        assert!(resolve(&["produce", "--warmup", "-1"]).is_err());
        assert!(resolve(&["produce", "--message-size", "100000000"]).is_err());
        assert!(resolve(&["e2e", "--message-size", "8"]).is_err());
        assert!(resolve(&["produce", "--message-size", "8"]).is_ok(), "only e2e needs room for the stamp");
        assert!(resolve(&["produce", "--bootstrap", "nohost"]).is_err());
        assert!(resolve(&["consume", "--rate", "10"]).is_err());
        assert!(resolve(&["produce", "--backlog-bytes", "10"]).is_err());
    }
}
