//! Per-topic settings: parsed from `key=value` pairs (Kafka's key names where Kafka has the setting),
//! validated, and turned into the storage crate's `LogConfig`.

use std::collections::BTreeMap;

use rill_storage::{Durability, Encryption, LogConfig};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Every key a topic accepts, with its default and meaning, for error messages and docs.
pub const TOPIC_KEYS: &[(&str, &str)] = &[
    ("durability", "fsync | interval | os (default fsync)"),
    ("flush.ms", "fsync period of the interval policy in ms (default 1000)"),
    ("segment.bytes", "segment size in bytes before a roll (default 1073741824)"),
    ("segment.ms", "segment age in ms before a roll (default 604800000)"),
    ("retention.ms", "delete segments older than this; -1 = forever (default 604800000)"),
    ("retention.bytes", "keep at most this many bytes per partition; -1 = no limit (default -1)"),
    ("max.message.bytes", "largest record batch in bytes (default: the broker's batch-bytes-max)"),
    ("index.interval.bytes", "bytes between sparse index entries (default 4096)"),
    (
        "cache.window.bytes",
        "drop cached pages this far behind a segment's end once written to disk; -1 = keep all (default -1)",
    ),
    ("min.insync.replicas", "in-sync replicas an acks=all write needs (default 2 with 3+ replicas, else 1)"),
    ("unclean.leader.election.enable", "elect a leader from outside the ISR, risking loss (default false)"),
    (
        "encryption",
        "none | aes-256-gcm: encrypt the records of new segments at rest with the broker's active key (default none)",
    ),
];

#[derive(Debug, Clone)]
pub struct TopicConfig {
    pub log: LogConfig,
    pub batch_bytes_max: u64,
    pub min_insync_replicas: u32,
    pub unclean_leader_election: bool,
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value.trim().parse().map_err(|_| format!("{key}={value}: not a valid number"))
}

fn positive(key: &str, value: &str, min: u64) -> Result<u64, String> {
    let v: u64 = number(key, value)?;
    if v < min {
        return Err(format!("{key}={value}: must be at least {min}"));
    }
    Ok(v)
}

/// -1 for "no limit", else a non-negative number.
fn optional_limit(key: &str, value: &str) -> Result<Option<u64>, String> {
    let v: i64 = number(key, value)?;
    match v {
        -1 => Ok(None),
        v if v >= 0 => Ok(Some(v as u64)),
        _ => Err(format!("{key}={value}: must be -1 (no limit) or at least 0")),
    }
}

impl TopicConfig {
    /// Resolves a topic's settings: its own `overrides`, then the broker's `defaults`, then built-ins.
    /// `broker_batch_bytes_max` caps `max.message.bytes`.
    pub fn parse(
        overrides: &BTreeMap<String, String>,
        defaults: &BTreeMap<String, String>,
        broker_batch_bytes_max: u64,
    ) -> Result<TopicConfig, String> {
        for key in overrides.keys().chain(defaults.keys()) {
            if !TOPIC_KEYS.iter().any(|(k, _)| k == key) {
                let known: Vec<&str> = TOPIC_KEYS.iter().map(|(k, _)| *k).collect();
                return Err(format!("unknown topic config key '{key}' (known: {})", known.join(", ")));
            }
        }
        let get = |key: &str| overrides.get(key).or_else(|| defaults.get(key)).map(String::as_str);
        let flush_ms = get("flush.ms").map(|v| positive("flush.ms", v, 1)).transpose()?.unwrap_or(1000);
        let durability = match get("durability").unwrap_or("fsync") {
            "fsync" => Durability::Fsync,
            "interval" => Durability::Interval { interval_ms: flush_ms },
            "os" => Durability::Os,
            other => return Err(format!("durability={other}: must be fsync, interval or os")),
        };
        let batch_bytes_max = match get("max.message.bytes") {
            Some(v) => {
                let v = positive("max.message.bytes", v, 1024)?;
                if v > broker_batch_bytes_max {
                    return Err(format!(
                        "max.message.bytes={v}: above the broker's batch-bytes-max ({broker_batch_bytes_max})"
                    ));
                }
                v
            }
            None => broker_batch_bytes_max,
        };
        let encryption = match get("encryption").unwrap_or("none") {
            "none" => Encryption::None,
            "aes-256-gcm" => Encryption::Aes256Gcm,
            other => return Err(format!("encryption={other}: must be none or aes-256-gcm")),
        };
        let log = LogConfig {
            segment_bytes_max: get("segment.bytes")
                .map(|v| positive("segment.bytes", v, 1024))
                .transpose()?
                .unwrap_or(1 << 30),
            segment_ms_max: Some(
                get("segment.ms").map(|v| positive("segment.ms", v, 1)).transpose()?.unwrap_or(7 * DAY_MS),
            ),
            retention_ms: match get("retention.ms") {
                Some(v) => optional_limit("retention.ms", v)?,
                None => Some(7 * DAY_MS),
            },
            retention_bytes: get("retention.bytes")
                .map(|v| optional_limit("retention.bytes", v))
                .transpose()?
                .flatten(),
            index_interval_bytes: get("index.interval.bytes")
                .map(|v| positive("index.interval.bytes", v, 1))
                .transpose()?
                .map(|v| u32::try_from(v).map_err(|_| format!("index.interval.bytes={v}: too large")))
                .transpose()?
                .unwrap_or(4096),
            durability,
            cache_window_bytes: get("cache.window.bytes")
                .map(|v| optional_limit("cache.window.bytes", v))
                .transpose()?
                .flatten(),
            encryption,
            // The broker's keyring is attached where a partition is opened (`PartitionManager`).
            keyring: None,
        };
        log.validate().map_err(|e| e.to_string())?;
        let min_insync_replicas =
            get("min.insync.replicas").map(|v| positive("min.insync.replicas", v, 1)).transpose()?.unwrap_or(1);
        let min_insync_replicas =
            u32::try_from(min_insync_replicas).map_err(|_| "min.insync.replicas: too large".to_string())?;
        let unclean_leader_election = match get("unclean.leader.election.enable").unwrap_or("false") {
            "true" => true,
            "false" => false,
            other => return Err(format!("unclean.leader.election.enable={other}: must be true or false")),
        };
        Ok(TopicConfig { log, batch_bytes_max, min_insync_replicas, unclean_leader_election })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn built_in_defaults() {
        let c = TopicConfig::parse(&map(&[]), &map(&[]), 1 << 20).unwrap();
        assert_eq!(c.log.durability, Durability::Fsync);
        assert_eq!(c.log.segment_bytes_max, 1 << 30);
        assert_eq!(c.log.retention_ms, Some(7 * DAY_MS));
        assert_eq!(c.log.retention_bytes, None);
        assert_eq!(c.log.cache_window_bytes, None, "everything stays cached unless asked");
        assert_eq!(c.batch_bytes_max, 1 << 20);
    }

    #[test]
    fn cache_window_is_a_byte_count_or_minus_one() {
        let c = TopicConfig::parse(&map(&[("cache.window.bytes", "67108864")]), &map(&[]), 1 << 20).unwrap();
        assert_eq!(c.log.cache_window_bytes, Some(64 << 20));
        let c =
            TopicConfig::parse(&map(&[("cache.window.bytes", "-1")]), &map(&[("cache.window.bytes", "0")]), 1 << 20)
                .unwrap();
        assert_eq!(c.log.cache_window_bytes, None, "the topic's -1 wins over the broker default");
        let err = TopicConfig::parse(&map(&[("cache.window.bytes", "-5")]), &map(&[]), 1 << 20).unwrap_err();
        assert!(err.contains("cache.window.bytes"), "{err}");
    }

    #[test]
    fn encryption_is_none_or_aes_256_gcm() {
        assert_eq!(TopicConfig::parse(&map(&[]), &map(&[]), 1 << 20).unwrap().log.encryption, Encryption::None);
        let c = TopicConfig::parse(&map(&[("encryption", "aes-256-gcm")]), &map(&[]), 1 << 20).unwrap();
        assert_eq!(c.log.encryption, Encryption::Aes256Gcm);
        let err = TopicConfig::parse(&map(&[("encryption", "aes-128")]), &map(&[]), 1 << 20).unwrap_err();
        assert!(err.contains("encryption=aes-128"), "{err}");
    }

    #[test]
    fn overrides_win_over_broker_defaults() {
        let c = TopicConfig::parse(
            &map(&[("durability", "interval"), ("retention.ms", "-1")]),
            &map(&[("durability", "os"), ("flush.ms", "250")]),
            1 << 20,
        )
        .unwrap();
        assert_eq!(c.log.durability, Durability::Interval { interval_ms: 250 });
        assert_eq!(c.log.retention_ms, None);
    }

    #[test]
    fn bad_keys_and_values_are_refused_with_the_key_named() {
        for (k, v) in [
            ("retention.ms", "-2"),
            ("segment.bytes", "ten"),
            ("durability", "sometimes"),
            ("max.message.bytes", "999999999"),
            ("no.such.key", "1"),
        ] {
            let err = TopicConfig::parse(&map(&[(k, v)]), &map(&[]), 1 << 20).unwrap_err();
            assert!(err.contains(k), "{err}");
        }
    }
}
