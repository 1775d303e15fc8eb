//! Client quotas: which rate limits apply to a request, and how long its answer is held back.
//!
//! A quota is set on an entity (one user, every user by default, one client id, every client id by default)
//! for a key (produced bytes, fetched bytes, requests, each per second). Like Kafka's, quotas are per broker:
//! each broker holds every client to the rate on its own. For each key the most specific entity that has a
//! value applies, in Kafka's order for single-type entities: `user=NAME`, `user=<default>`,
//! `client-id=ID`, `client-id=<default>`. A default entity's rate applies to each user (or client id) on its
//! own.
//!
//! Usage is measured with a token bucket per key and user (or client id), holding one second of the rate: a
//! request always goes through and is recorded, and once the bucket is in debt the answer is held back for
//! the time the rate needs to pay the debt off (capped at `QUOTA_THROTTLE_MS_MAX`; the debt stays, so the
//! next answers are held too). This module is pure: the caller passes the time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::limits::{QUOTA_BUCKETS_MAX, QUOTA_THROTTLE_MS_MAX};

/// What a quota is set on. `None` is the default for every user (or client id) without one of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum QuotaEntity {
    User(Option<String>),
    ClientId(Option<String>),
}

/// How the default entities are written, as in Kafka.
pub const DEFAULT_NAME: &str = "<default>";

impl fmt::Display for QuotaEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, name) = match self {
            QuotaEntity::User(name) => ("user", name),
            QuotaEntity::ClientId(name) => ("client-id", name),
        };
        write!(f, "{kind}={}", name.as_deref().unwrap_or(DEFAULT_NAME))
    }
}

impl FromStr for QuotaEntity {
    type Err = String;

    /// `user=NAME`, `user=<default>`, `client-id=ID` or `client-id=<default>`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, name) = text.split_once('=').ok_or_else(|| format!("'{text}' is not user=NAME or client-id=ID"))?;
        if name.is_empty() {
            return Err(format!("'{text}' names no {kind}"));
        }
        let name = (name != DEFAULT_NAME).then(|| name.to_string());
        match kind {
            "user" => Ok(QuotaEntity::User(name)),
            "client-id" => Ok(QuotaEntity::ClientId(name)),
            other => Err(format!("'{other}' is not a quota entity type (user or client-id)")),
        }
    }
}

impl From<QuotaEntity> for String {
    fn from(entity: QuotaEntity) -> String {
        entity.to_string()
    }
}

impl TryFrom<String> for QuotaEntity {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

/// What a quota limits, per second. The byte rates have Kafka's names; `request_rate` is Rill's own
/// (Kafka's `request_percentage` limits handler time instead, which Rill does not measure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaKey {
    /// Record bytes a client produces.
    ProducerByteRate,
    /// Record bytes a client fetches.
    ConsumerByteRate,
    /// Requests a client sends.
    RequestRate,
}

impl QuotaKey {
    pub const ALL: [QuotaKey; 3] = [QuotaKey::ProducerByteRate, QuotaKey::ConsumerByteRate, QuotaKey::RequestRate];

    pub fn name(self) -> &'static str {
        match self {
            QuotaKey::ProducerByteRate => "producer_byte_rate",
            QuotaKey::ConsumerByteRate => "consumer_byte_rate",
            QuotaKey::RequestRate => "request_rate",
        }
    }
}

impl fmt::Display for QuotaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for QuotaKey {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        QuotaKey::ALL.into_iter().find(|k| k.name() == text).ok_or_else(|| {
            let known: Vec<&str> = QuotaKey::ALL.iter().map(|k| k.name()).collect();
            format!("'{text}' is not a quota key (known: {})", known.join(", "))
        })
    }
}

/// A change to an entity's quotas, key by key: a rate to set, or `None` to remove the key.
pub type QuotaValues = Vec<(QuotaKey, Option<u64>)>;

/// Every quota the cluster holds: per entity, its rates.
pub type QuotaTable = BTreeMap<QuotaEntity, BTreeMap<QuotaKey, u64>>;

/// The rate that applies to `user` with `client_id` for `key`, and whose bucket it fills: the user's or the
/// client id's, whichever entity matched.
pub fn resolve(table: &QuotaTable, user: &str, client_id: &str, key: QuotaKey) -> Option<(Holder, u64)> {
    let user_entity = QuotaEntity::User(Some(user.to_string()));
    let client_entity = QuotaEntity::ClientId(Some(client_id.to_string()));
    let candidates = [
        (&user_entity, Holder::User(user.to_string())),
        (&QuotaEntity::User(None), Holder::User(user.to_string())),
        (&client_entity, Holder::ClientId(client_id.to_string())),
        (&QuotaEntity::ClientId(None), Holder::ClientId(client_id.to_string())),
    ];
    candidates
        .into_iter()
        .find_map(|(entity, holder)| table.get(entity).and_then(|rates| rates.get(&key)).map(|rate| (holder, *rate)))
}

/// Who a bucket measures: one user or one client id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    User(String),
    ClientId(String),
}

/// One second of a rate, refilled continuously; negative when in debt.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn refill(&mut self, now_ms: u64, rate: u64) {
        let elapsed_s = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed_s * rate as f64).min(rate as f64);
        self.at_ms = self.at_ms.max(now_ms);
    }
}

/// The buckets of one broker.
#[derive(Debug, Default)]
pub struct QuotaBuckets {
    buckets: HashMap<(QuotaKey, Holder), Bucket>,
}

impl QuotaBuckets {
    /// Records `amount` (bytes, or 1 request) against the bucket of `holder` for `key` at `rate` per second,
    /// and returns how long the answer is to be held back, in ms.
    pub fn record(&mut self, key: QuotaKey, holder: Holder, rate: u64, amount: u64, now_ms: u64) -> u64 {
        if rate == 0 {
            return QUOTA_THROTTLE_MS_MAX;
        }
        if self.buckets.len() >= QUOTA_BUCKETS_MAX {
            self.forget_idle(now_ms, rate);
        }
        let bucket = self.buckets.entry((key, holder)).or_insert(Bucket { tokens: rate as f64, at_ms: now_ms });
        bucket.refill(now_ms, rate);
        bucket.tokens -= amount as f64;
        if bucket.tokens >= 0.0 {
            return 0;
        }
        let debt_ms = (-bucket.tokens / rate as f64 * 1000.0).ceil() as u64;
        debt_ms.min(QUOTA_THROTTLE_MS_MAX)
    }

    /// Drops the buckets that have refilled (judged at `rate`, the rate of the request making room: a
    /// bucket of a slower rate may be forgiven some debt), since a full bucket is what a new one is, so
    /// that clients that came and went do not pile up. Clears them all if that frees nothing.
    fn forget_idle(&mut self, now_ms: u64, rate: u64) {
        self.buckets.retain(|_, bucket| {
            let mut refilled = *bucket;
            refilled.refill(now_ms, rate);
            refilled.tokens < rate as f64
        });
        if self.buckets.len() >= QUOTA_BUCKETS_MAX {
            self.buckets.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, QuotaKey, u64)]) -> QuotaTable {
        let mut table = QuotaTable::new();
        for (entity, key, rate) in entries {
            table.entry(entity.parse().unwrap()).or_default().insert(*key, *rate);
        }
        table
    }

    #[test]
    fn entities_print_and_parse_with_defaults() {
        for text in ["user=alice", "user=<default>", "client-id=web-1", "client-id=<default>"] {
            assert_eq!(text.parse::<QuotaEntity>().unwrap().to_string(), text);
        }
        assert_eq!("user=<default>".parse::<QuotaEntity>().unwrap(), QuotaEntity::User(None));
        assert!("group=g".parse::<QuotaEntity>().is_err());
        assert!("user=".parse::<QuotaEntity>().is_err());
        assert!("alice".parse::<QuotaEntity>().is_err());
        let json = serde_json::to_string(&table(&[("user=alice", QuotaKey::ProducerByteRate, 5)])).unwrap();
        assert_eq!(json, r#"{"user=alice":{"producer_byte_rate":5}}"#);
        assert_eq!("request_rate".parse::<QuotaKey>().unwrap(), QuotaKey::RequestRate);
        assert!("request_percentage".parse::<QuotaKey>().unwrap_err().contains("producer_byte_rate"));
    }

    #[test]
    fn the_most_specific_entity_with_a_value_applies_key_by_key() {
        let produce = QuotaKey::ProducerByteRate;
        let t = table(&[
            ("user=alice", produce, 100),
            ("user=<default>", produce, 200),
            ("user=<default>", QuotaKey::RequestRate, 7),
            ("client-id=web", QuotaKey::ConsumerByteRate, 300),
            ("client-id=<default>", QuotaKey::ConsumerByteRate, 400),
        ]);
        let user = |name: &str| Holder::User(name.into());
        assert_eq!(resolve(&t, "alice", "web", produce), Some((user("alice"), 100)));
        assert_eq!(resolve(&t, "bob", "web", produce), Some((user("bob"), 200)));
        assert_eq!(resolve(&t, "alice", "web", QuotaKey::RequestRate), Some((user("alice"), 7)));
        let consume = QuotaKey::ConsumerByteRate;
        assert_eq!(resolve(&t, "alice", "web", consume), Some((Holder::ClientId("web".into()), 300)));
        assert_eq!(resolve(&t, "alice", "cli", consume), Some((Holder::ClientId("cli".into()), 400)));
        assert_eq!(resolve(&QuotaTable::new(), "alice", "web", produce), None);
    }

    #[test]
    fn a_bucket_allows_a_second_of_the_rate_then_holds_answers_until_the_debt_is_paid() {
        let mut buckets = QuotaBuckets::default();
        let key = QuotaKey::ProducerByteRate;
        let alice = || Holder::User("alice".into());
        // 1000 bytes/s: the first 1000 bytes pass at once.
        assert_eq!(buckets.record(key, alice(), 1000, 1000, 0), 0);
        // 500 more is half a second of debt.
        assert_eq!(buckets.record(key, alice(), 1000, 500, 0), 500);
        // Half a second later the debt is paid; the next 250 bytes owe a quarter second.
        assert_eq!(buckets.record(key, alice(), 1000, 250, 500), 250);
        // Other holders and keys have buckets of their own.
        assert_eq!(buckets.record(key, Holder::User("bob".into()), 1000, 1000, 500), 0);
        assert_eq!(buckets.record(QuotaKey::RequestRate, alice(), 10, 1, 500), 0);
        // A huge debt is held back at most QUOTA_THROTTLE_MS_MAX per answer, and stays owed.
        assert_eq!(buckets.record(key, alice(), 1000, 100_000_000, 750), QUOTA_THROTTLE_MS_MAX);
        assert_eq!(buckets.record(key, alice(), 1000, 1, 750 + QUOTA_THROTTLE_MS_MAX), QUOTA_THROTTLE_MS_MAX);
    }

    #[test]
    fn over_a_long_run_the_bytes_let_through_keep_to_the_rate() {
        // A client that sends 64 KiB whenever its last answer arrives, against 1 MiB/s.
        let (rate, chunk) = (1 << 20, 64 << 10);
        let mut buckets = QuotaBuckets::default();
        let (mut now_ms, mut sent) = (0u64, 0u64);
        while now_ms < 20_000 {
            sent += chunk;
            now_ms += buckets.record(QuotaKey::ProducerByteRate, Holder::User("a".into()), rate, chunk, now_ms).max(1);
        }
        let per_second = sent as f64 / (now_ms as f64 / 1000.0);
        // One second of burst on top of 20 s of rate: within 10% of the rate.
        assert!((per_second / rate as f64 - 1.0).abs() < 0.1, "{per_second} bytes/s against {rate}");
    }

    #[test]
    fn idle_buckets_are_forgotten_when_there_are_too_many() {
        let mut buckets = QuotaBuckets::default();
        for i in 0..QUOTA_BUCKETS_MAX {
            buckets.record(QuotaKey::RequestRate, Holder::ClientId(i.to_string()), 10, 1, 0);
        }
        assert_eq!(buckets.len(), QUOTA_BUCKETS_MAX);
        // A second later every bucket is full again: all are dropped to make room.
        buckets.record(QuotaKey::RequestRate, Holder::ClientId("new".into()), 10, 1, 1000);
        assert_eq!(buckets.len(), 1);
    }
}
