//! Record contents: the value template, the send-time stamp that e2e runs carry in each value, and the keys
//! of each `--key-distribution`.
//!
//! The stamp sits in the value rather than in a header so that a record is exactly `--message-size` bytes
//! of value and nothing else, as in the runs without it. It holds a run tag (so records of another run on
//! the same topic are ignored) and the send time in nanoseconds since the run's anchor instant; producers
//! and consumers share that anchor because they run in one process, which spares clock synchronisation.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use rill_client::partitioner::partition_for_key;

use crate::cli::KeyDistribution;

/// Bytes at the start of a stamped value: run tag (8) and send time (8), little-endian.
pub const STAMP_BYTES: usize = 16;

/// The clock that stamps and reads send times within one run.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    pub anchor: Instant,
    pub tag: u64,
}

impl RunClock {
    /// A clock anchored now, with a tag that differs between runs (process id and wall time).
    pub fn start() -> RunClock {
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let tag = splitmix64(wall as u64 ^ (u64::from(std::process::id()) << 32));
        RunClock { anchor: Instant::now(), tag }
    }

    /// Nanoseconds from the anchor to `at` (0 for an instant before it).
    pub fn nanos_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.anchor).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The send time a value of this run carries, or `None` for a value from elsewhere.
    pub fn read_stamp(&self, value: &[u8]) -> Option<u64> {
        let tag = u64::from_le_bytes(value.get(0..8)?.try_into().ok()?);
        let sent = u64::from_le_bytes(value.get(8..16)?.try_into().ok()?);
        (tag == self.tag).then_some(sent)
    }
}

/// A value of `size` bytes with fixed pseudo-random filler, shared by every record of a run (cloning a
/// `Bytes` is a reference count, so unstamped runs cost the harness no copy per record).
pub fn value_template(size: usize) -> Bytes {
    let mut state = 0x5eed_u64;
    let mut value = BytesMut::with_capacity(size + 8);
    while value.len() < size {
        state = splitmix64(state);
        value.put_u64_le(state);
    }
    value.truncate(size);
    value.freeze()
}

/// A copy of `template` whose first [`STAMP_BYTES`] carry the clock's tag and `sent_nanos`.
///
/// # Panics
///
/// If the template is shorter than the stamp; settings refuse such sizes for e2e runs.
pub fn stamped(template: &Bytes, clock: &RunClock, sent_nanos: u64) -> Bytes {
    assert!(template.len() >= STAMP_BYTES, "value too small for the send-time stamp");
    let mut value = BytesMut::with_capacity(template.len());
    value.put_u64_le(clock.tag);
    value.put_u64_le(sent_nanos);
    value.extend_from_slice(&template[STAMP_BYTES..]);
    value.freeze()
}

/// The key of each record, per `--key-distribution`.
#[derive(Debug, Clone)]
pub enum KeyGenerator {
    None,
    /// One key per partition, found so that the client's murmur2 partitioner maps key `i` to partition `i`;
    /// cycling through them sends the records to the partitions in turn.
    RoundRobin {
        keys: Vec<Bytes>,
        next: usize,
    },
    /// Uniform random 8-byte keys from a seeded generator, so runs repeat exactly.
    Random {
        state: u64,
    },
}

impl KeyGenerator {
    /// A generator for `partitions` partitions; `seed` separates the producers' random sequences.
    pub fn new(distribution: KeyDistribution, partitions: u32, seed: u64) -> KeyGenerator {
        match distribution {
            KeyDistribution::None => KeyGenerator::None,
            KeyDistribution::RoundRobin => KeyGenerator::RoundRobin { keys: keys_per_partition(partitions), next: 0 },
            KeyDistribution::Random => KeyGenerator::Random { state: splitmix64(seed ^ 0x6b65_7973) },
        }
    }

    /// Starts the round-robin cycle at `offset`, so several producers do not all begin on partition 0.
    pub fn with_offset(mut self, offset: usize) -> KeyGenerator {
        if let KeyGenerator::RoundRobin { keys, next } = &mut self {
            *next = offset % keys.len();
        }
        self
    }

    pub fn next_key(&mut self) -> Option<Bytes> {
        match self {
            KeyGenerator::None => None,
            KeyGenerator::RoundRobin { keys, next } => {
                let key = keys[*next].clone();
                *next = (*next + 1) % keys.len();
                Some(key)
            }
            KeyGenerator::Random { state } => {
                *state = splitmix64(*state);
                Some(Bytes::copy_from_slice(&state.to_be_bytes()))
            }
        }
    }
}

/// For each partition, the first 8-byte big-endian counter value whose murmur2 hash lands on it.
fn keys_per_partition(partitions: u32) -> Vec<Bytes> {
    let count = partitions.max(1) as usize;
    let mut keys: Vec<Option<Bytes>> = vec![None; count];
    let mut missing = count;
    let mut candidate = 0u64;
    // murmur2 spreads consecutive counters evenly, so this ends after about count * ln(count) tries.
    while missing > 0 {
        let bytes = candidate.to_be_bytes();
        let partition = partition_for_key(&bytes, count as u32) as usize;
        if keys[partition].is_none() {
            keys[partition] = Some(Bytes::copy_from_slice(&bytes));
            missing -= 1;
        }
        candidate += 1;
    }
    keys.into_iter().map(|k| k.expect("every partition found a key")).collect()
}

/// SplitMix64: a tiny, well-mixed generator; good enough for filler bytes, keys and tags.
fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn templates_have_the_requested_size() {
        for size in [0, 1, 7, 8, 100, 1024] {
            assert_eq!(value_template(size).len(), size);
        }
    }

    #[test]
    fn a_stamp_reads_back_only_in_its_own_run() {
        let clock = RunClock::start();
        let template = value_template(100);
        let sent = clock.nanos_at(clock.anchor + Duration::from_micros(1500));
        let value = stamped(&template, &clock, sent);
        assert_eq!(value.len(), 100);
        assert_eq!(value[STAMP_BYTES..], template[STAMP_BYTES..]);
        assert_eq!(clock.read_stamp(&value), Some(1_500_000));
        let other_run = RunClock { tag: clock.tag ^ 1, ..clock };
        assert_eq!(other_run.read_stamp(&value), None);
        assert_eq!(clock.read_stamp(&value[..10]), None, "too short to hold a stamp");
    }

    #[test]
    fn round_robin_keys_visit_every_partition_in_turn() {
        let mut keys = KeyGenerator::new(KeyDistribution::RoundRobin, 6, 0);
        let partitions: Vec<u32> = (0..12).map(|_| partition_for_key(&keys.next_key().unwrap(), 6)).collect();
        assert_eq!(partitions, vec![0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]);
        let mut shifted = KeyGenerator::new(KeyDistribution::RoundRobin, 6, 0).with_offset(2);
        assert_eq!(partition_for_key(&shifted.next_key().unwrap(), 6), 2);
    }

    #[test]
    fn random_keys_repeat_per_seed_and_spread() {
        let take = |seed| {
            let mut keys = KeyGenerator::new(KeyDistribution::Random, 4, seed);
            (0..1000).map(|_| keys.next_key().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(take(1), take(1));
        assert_ne!(take(1), take(2));
        let mut per_partition = [0u32; 4];
        for key in take(3) {
            per_partition[partition_for_key(&key, 4) as usize] += 1;
        }
        assert!(per_partition.iter().all(|&n| n > 150), "{per_partition:?}");
    }

    #[test]
    fn no_distribution_means_no_key() {
        assert_eq!(KeyGenerator::new(KeyDistribution::None, 3, 0).next_key(), None);
    }
}
