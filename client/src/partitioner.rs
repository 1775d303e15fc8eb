//! Choosing a partition for a record: explicit, by key hash (Kafka-compatible murmur2), or sticky for keyless
//! records.
//!
//! Keyed records map exactly as Kafka's default partitioner maps them, so a topic fed by both Rill and Kafka
//! clients (through a future Kafka listener) keeps each key in one partition.

/// MurmurHash2 (32-bit) with the seed and byte order Kafka's `Utils.murmur2` uses.
///
/// The algorithm mixes each little-endian 4-byte block into the hash with the multiplier `0x5bd1e995` and a
/// 24-bit shift, folds in the 1 to 3 trailing bytes, then finishes with shifts of 13 and 15.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let mut h = SEED ^ data.len() as u32;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        // The reference falls through its switch: each trailing byte is folded in, then one multiply.
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `toPositive`: clears the sign bit (not `abs`, which overflows on `i32::MIN`).
fn to_positive(hash: i32) -> u32 {
    (hash & 0x7fff_ffff) as u32
}

/// The partition of a keyed record: `positive(murmur2(key)) % partitions`.
///
/// # Panics
///
/// If `partitions` is 0; the caller checks the topic has partitions first.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    to_positive(murmur2(key)) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's own `UtilsTest.testMurmur2`; matching them keeps key placement compatible.
    #[test]
    fn murmur2_matches_kafka_reference_values() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input), expected, "murmur2({:?})", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn to_positive_never_overflows() {
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), 0x7fff_ffff);
        assert_eq!(to_positive(5), 5);
    }

    #[test]
    fn key_mapping_is_stable_and_in_range() {
        for partitions in 1..20u32 {
            for i in 0..200 {
                let key = format!("key-{i}");
                let p = partition_for_key(key.as_bytes(), partitions);
                assert!(p < partitions);
                assert_eq!(p, partition_for_key(key.as_bytes(), partitions));
            }
        }
        // Pinned so that a change to the hash, which would move every key, fails loudly.
        assert_eq!(partition_for_key(b"foobar", 3), to_positive(-790_332_482) % 3);
    }

    #[test]
    fn keys_spread_over_partitions() {
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[partition_for_key(format!("user-{i}").as_bytes(), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "uneven spread {counts:?}");
    }
}
