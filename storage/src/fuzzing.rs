//! Fuzz target bodies for every file a partition directory holds (segments, offset and time indexes, the
//! recovery checkpoint, the clean-shutdown marker, the replication checkpoints), shared by the cargo-fuzz
//! crate (`fuzz/`) and the stable property test (`broker/tests/fuzz_targets.rs`). Each body lays its input
//! out as files on a fresh `FaultyBackend`, opens the log with `Log::open` (the real recovery), and then uses
//! it: reads every batch, looks up timestamps, reads the checkpoints, appends, closes and reopens. Errors are
//! acceptable outcomes; a panic is a finding. Not part of the API.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rill_proto::Compression;
use rill_proto::batch::{self, BatchHeader};
use rill_proto::fuzzing::sample_batch;
pub use rill_proto::fuzzing::{Target, repair_batch};

use crate::checkpoint::{CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE, Checkpoint};
use crate::encryption::{KEY_RECORD_SUFFIX, Keyring};
use crate::replica_checkpoint::{
    HIGH_WATERMARK_FILE, LEADER_EPOCH_FILE, decode_epochs, decode_high_watermark, encode_epochs, encode_high_watermark,
};
use crate::segment::{LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, segment_path};
use crate::{Backend as _, Encryption, EpochEntry, FaultyBackend, Log, LogConfig};

/// The targets of this crate.
pub const TARGETS: &[Target] = &[
    Target { name: "segment_scan", run: segment_scan, seeds: segment_scan_seeds },
    Target { name: "index_files", run: index_files, seeds: index_files_seeds },
    Target { name: "checkpoints", run: checkpoints, seeds: checkpoints_seeds },
    Target { name: "log_dir", run: log_dir, seeds: log_dir_seeds },
    Target { name: "encrypted_segment", run: encrypted_segment, seeds: encrypted_segment_seeds },
];

/// Where every target's partition lives on its in-memory backend.
const DIR: &str = "/fuzz/partition";
/// Small segments and a small index interval, so that a few hundred bytes make several segments with index
/// entries, and the fuzzer's inputs stay small.
pub fn fuzz_config() -> LogConfig {
    LogConfig { segment_bytes_max: 1024, index_interval_bytes: 64, ..LogConfig::default() }
}
/// Segments in the sample log (`sample_files`).
const SAMPLE_SEGMENTS: usize = 3;
/// How many reads, lookups and batches the exercise after an open does at most, so that no input turns a
/// target into a long loop of legitimate work.
const EXERCISE_STEPS_MAX: usize = 2_000;

/// A partition directory's files by name, as `(file name, contents)`.
pub type Files = Vec<(String, Vec<u8>)>;

/// The files of a cleanly closed sample log: three segments of batches (two codecs, leader epochs 1 and 2,
/// each with index entries), the recovery checkpoint, the clean-shutdown marker, a leader-epoch history and a
/// high watermark. Built once: every target starts from it.
pub fn sample_files() -> &'static Files {
    static FILES: OnceLock<Files> = OnceLock::new();
    FILES.get_or_init(|| build_sample(fuzz_config()))
}

/// The fuzz configuration with every segment encrypted under one fixed key, nonces from a fixed counter
/// (so the sample is the same bytes on every run).
pub fn encrypted_fuzz_config() -> LogConfig {
    static KEYRING: OnceLock<Arc<Keyring>> = OnceLock::new();
    let keyring = KEYRING.get_or_init(|| {
        Arc::new(Keyring::with_counter_nonces(vec![("fuzz".into(), [0x42; 32])], None, 0).expect("a fuzz keyring"))
    });
    LogConfig { encryption: Encryption::Aes256Gcm, keyring: Some(Arc::clone(keyring)), ..fuzz_config() }
}

/// The sample log of `sample_files`, encrypted (`encrypted_fuzz_config`): each segment with its key record.
pub fn encrypted_sample_files() -> &'static Files {
    static FILES: OnceLock<Files> = OnceLock::new();
    FILES.get_or_init(|| build_sample(encrypted_fuzz_config()))
}

fn build_sample(config: LogConfig) -> Files {
    {
        let backend = Arc::new(FaultyBackend::new());
        let dir = Path::new(DIR);
        let (mut log, _) = Log::open(backend.clone(), dir, config, 0).expect("open an empty log");
        let mut epochs = Vec::new();
        let mut i = 0;
        while log.segment_count() < SAMPLE_SEGMENTS || i < 12 {
            let epoch = if i < 6 { 1 } else { 2 };
            if epochs.last().is_none_or(|e: &EpochEntry| e.epoch != epoch) {
                epochs.push(EpochEntry { epoch, start_offset: log.end_offset() });
            }
            let codec = if i % 3 == 2 { Compression::Gzip } else { Compression::None };
            log.append(&sample_batch(codec, 1 + i % 3), epoch as i32, 1_700_000_000_000 + i as i64)
                .expect("append to the sample log");
            i += 1;
        }
        log.write_leader_epochs(&epochs).expect("write the sample epochs");
        log.write_high_watermark(log.end_offset() - 1).expect("write the sample high watermark");
        log.close().expect("close the sample log");
        let mut files: Files = backend
            .list_dir(dir)
            .expect("list the sample log")
            .into_iter()
            .map(|name| {
                let contents = backend.file_contents(&dir.join(&name)).expect("listed file exists");
                (name, contents)
            })
            .collect();
        files.sort();
        files
    }
}

/// Segment base offsets of the sample log, oldest first.
fn sample_bases() -> Vec<u64> {
    sample_files().iter().filter_map(|(name, _)| crate::segment::parse_segment_name(name, LOG_SUFFIX)).collect()
}

/// Opens a log over `files` and exercises it (see the module doc); true when all of it succeeded.
pub fn open_and_exercise(files: &[(String, Vec<u8>)]) -> bool {
    open_and_exercise_with(files, &fuzz_config())
}

/// `open_and_exercise` with another log configuration.
pub fn open_and_exercise_with(files: &[(String, Vec<u8>)], config: &LogConfig) -> bool {
    let backend = Arc::new(FaultyBackend::new());
    let dir = Path::new(DIR);
    for (name, contents) in files {
        backend.put_file(&dir.join(name), contents);
    }
    let Ok((mut log, report)) = Log::open(backend.clone(), dir, config.clone(), 0) else { return false };
    assert!(report.log_start_offset <= report.end_offset, "recovery report: start after end");
    let before = exercise(&mut log, files.len());
    let Some(end) = before else { return false };
    if log.close().is_err() {
        return false;
    }
    // A clean close and reopen must give back the same log.
    let (reopened, report) = Log::open(backend, dir, config.clone(), 0).expect("reopen after a clean close");
    assert!(report.clean_shutdown, "a log closed cleanly reopens without a scan: {report:?}");
    assert_eq!(reopened.end_offset(), end, "the reopened log ends where the closed one did");
    true
}

/// Reads, looks up and appends; returns the log end after the append (None when the log refused something
/// on the way, which ends the exercise).
fn exercise(log: &mut Log, seed: usize) -> Option<u64> {
    let start = log.log_start_offset();
    let end = log.end_offset();
    assert!(start <= end && log.flushed_offset() <= end, "offsets out of order after open");
    read_everything(log);
    let bases = log.segment_bases();
    // Each segment's first offsets and the last offset it claims (the next one's base minus one, or the log
    // end minus one): what consumers may ask for.
    let lasts = bases.iter().skip(1).copied().chain([end]).map(|next| next.saturating_sub(1));
    for (&base, last) in bases.iter().zip(lasts) {
        for offset in [base, base.saturating_add(1), base.saturating_add(seed as u64), last] {
            if let Ok(read) = log.read(offset, 4096, end) {
                check_read(&read.records, offset, read.next_offset);
            }
        }
    }
    for timestamp in [i64::MIN, 0, 1_700_000_000_000, 1_700_000_000_005, i64::MAX] {
        if let Ok(Some((offset, _))) = log.offset_for_timestamp(timestamp) {
            assert!(offset >= start && offset < end, "timestamp lookup outside the log");
        }
    }
    let _ = log.read_leader_epochs();
    let _ = log.read_high_watermark();
    let _ = log.leader_epochs_from_batches();
    let _ = log.producer_snapshot_offsets();
    let appended = log.append(&sample_batch(Compression::None, 2), 3, 1_800_000_000_000).ok()?;
    assert_eq!(appended.base_offset, end, "an append lands at the log end");
    assert_eq!(log.end_offset(), end + 2, "an append of two records moves the end by two");
    let read = log.read(end, 1 << 20, log.end_offset()).expect("read back what was just appended");
    check_read(&read.records, end, read.next_offset);
    Some(log.end_offset())
}

/// Reads the log from its start to its end in small steps, skipping over what does not read.
fn read_everything(log: &Log) {
    let end = log.end_offset();
    let bases = log.segment_bases();
    let mut offset = log.log_start_offset();
    for _ in 0..EXERCISE_STEPS_MAX {
        if offset >= end {
            break;
        }
        match log.read(offset, 512, end) {
            Ok(read) if read.next_offset > offset => {
                check_read(&read.records, offset, read.next_offset);
                offset = read.next_offset;
            }
            // No progress, or a corrupt batch: go on from the next segment.
            _ => match bases.iter().find(|&&base| base > offset) {
                Some(&next) => offset = next,
                None => break,
            },
        }
    }
}

/// What `Log::read` returns: whole batches with good CRCs, contiguous, covering `offset` and ending just
/// before `next_offset`.
fn check_read(records: &[u8], offset: u64, next_offset: u64) {
    let mut expected: Option<u64> = None;
    for item in batch::split_batches(records) {
        let (header, range) = item.expect("reads return whole batches");
        batch::check_crc(&records[range]).expect("reads return batches whose CRC holds");
        if let Some(expected) = expected {
            assert_eq!(header.base_offset, expected, "read batches are contiguous");
        } else {
            assert!(header.base_offset <= offset && offset <= header.last_offset(), "first batch holds the offset");
        }
        expected = Some(header.next_offset());
    }
    if let Some(expected) = expected {
        assert_eq!(expected, next_offset, "next offset follows the last batch read");
    }
}

/// Recomputes the CRC of every batch `split_batches` finds in a segment's bytes (and makes the batch
/// lengths of the last one fit the buffer), so that mutations reach offset continuity and indexing.
fn repair_segment(bytes: &mut [u8]) {
    let mut at = 0;
    while at < bytes.len() {
        let Ok(header) = BatchHeader::parse(&bytes[at..]) else { break };
        let end = at + header.size();
        if end > bytes.len() {
            if let Some(repaired) = repair_batch(&bytes[at..]) {
                bytes[at..].copy_from_slice(&repaired);
            }
            break;
        }
        if let Some(repaired) = repair_batch(&bytes[at..end]) {
            bytes[at..end].copy_from_slice(&repaired);
        }
        at = end;
    }
}

/// Replaces (or adds) one file of `files`.
fn replace(files: &mut Files, name: &str, contents: Vec<u8>) {
    files.retain(|(n, _)| n != name);
    files.push((name.to_string(), contents));
}

fn segment_file(base: u64, suffix: &str) -> String {
    segment_path(Path::new(""), base, suffix).to_string_lossy().into_owned()
}

/// Segment recovery: the sample log with one segment's `.log` replaced by the input after its first byte.
/// Selector bits: 0-1 the segment (3: a new segment after the last, at the log end), 2 drop the clean-shutdown
/// marker (so recovery scans), 3 drop the checkpoint too, 4 repair the batches' CRCs.
pub fn segment_scan(data: &[u8]) -> bool {
    let Some((&selector, contents)) = data.split_first() else { return false };
    let mut files = sample_files().clone();
    let bases = sample_bases();
    let base = match usize::from(selector & 3) {
        i if i < bases.len() => bases[i],
        _ => sample_end_offset(),
    };
    let mut contents = contents.to_vec();
    if selector & 0x10 != 0 {
        repair_segment(&mut contents);
    }
    replace(&mut files, &segment_file(base, LOG_SUFFIX), contents);
    drop_per_selector(&mut files, selector);
    open_and_exercise(&files)
}

/// Drops the clean-shutdown marker (selector bit 2) and the recovery checkpoint (bit 3).
fn drop_per_selector(files: &mut Files, selector: u8) {
    if selector & 4 != 0 {
        files.retain(|(n, _)| n != CLEAN_SHUTDOWN_FILE);
    }
    if selector & 8 != 0 {
        files.retain(|(n, _)| n != CHECKPOINT_FILE);
    }
}

/// The log end offset of the sample log: after the last batch of its last segment.
fn sample_end_offset() -> u64 {
    let last = *sample_bases().last().expect("the sample log has segments");
    let name = segment_file(last, LOG_SUFFIX);
    let (_, bytes) = sample_files().iter().find(|(n, _)| *n == name).expect("the last segment's file");
    batch::split_batches(bytes).flatten().last().map_or(last, |(header, _)| header.next_offset())
}

pub fn segment_scan_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (i, base) in sample_bases().into_iter().enumerate() {
        let name = segment_file(base, LOG_SUFFIX);
        let (_, contents) = sample_files().iter().find(|(n, _)| *n == name).expect("a sample segment");
        for flags in [0u8, 0x04, 0x0c, 0x1c] {
            let mut seed = vec![i as u8 | flags];
            seed.extend_from_slice(contents);
            seeds.push(seed);
        }
    }
    // A new segment after the last holding one valid batch at the log end.
    let mut batch = sample_batch(Compression::None, 2).to_vec();
    batch::set_base_offset(&mut batch, sample_end_offset());
    seeds.push([&[3u8 | 0x04][..], &batch].concat());
    seeds
}

/// Index files: the sample log with one index file replaced by the input after its first byte. Selector
/// bits: 0-1 the segment (3: the last), 2 drop the clean-shutdown marker, 3 drop the checkpoint, 4 the time
/// index rather than the offset index.
pub fn index_files(data: &[u8]) -> bool {
    let Some((&selector, contents)) = data.split_first() else { return false };
    let mut files = sample_files().clone();
    let bases = sample_bases();
    let base = bases[usize::from(selector & 3).min(bases.len() - 1)];
    let suffix = if selector & 0x10 != 0 { TIME_INDEX_SUFFIX } else { OFFSET_INDEX_SUFFIX };
    replace(&mut files, &segment_file(base, suffix), contents.to_vec());
    drop_per_selector(&mut files, selector);
    open_and_exercise(&files)
}

pub fn index_files_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (i, base) in sample_bases().into_iter().enumerate() {
        for (bit, suffix) in [(0u8, OFFSET_INDEX_SUFFIX), (0x10, TIME_INDEX_SUFFIX)] {
            let name = segment_file(base, suffix);
            let contents = sample_files().iter().find(|(n, _)| *n == name).map(|(_, c)| c.clone()).unwrap_or_default();
            for flags in [0u8, 0x04] {
                seeds.push([&[i as u8 | bit | flags][..], &contents].concat());
            }
        }
    }
    seeds
}

/// The checkpoint files: the decoders on the input after its first byte (with a round trip: whatever decodes
/// encodes back to the same bytes), then the sample log with that file replaced. Selector bits: 0-1 the file
/// (recovery checkpoint, leader epochs, high watermark, recovery checkpoint again), 2 drop the clean-shutdown
/// marker, 4 recompute the file's CRC.
pub fn checkpoints(data: &[u8]) -> bool {
    let Some((&selector, contents)) = data.split_first() else { return false };
    let mut contents = contents.to_vec();
    let name = match selector & 3 {
        1 => LEADER_EPOCH_FILE,
        2 => HIGH_WATERMARK_FILE,
        _ => CHECKPOINT_FILE,
    };
    if selector & 0x10 != 0 && contents.len() >= 4 {
        let covered = contents.len() - 4;
        let crc = crc32c::crc32c(&contents[..covered]);
        contents[covered..].copy_from_slice(&crc.to_be_bytes());
    }
    let decoded = match name {
        LEADER_EPOCH_FILE => decode_epochs(&contents)
            .map(|entries| assert_same_but_reserved(&encode_epochs(&entries), &contents, "leader epochs"))
            .is_ok(),
        HIGH_WATERMARK_FILE => decode_high_watermark(&contents)
            .map(|hw| assert_same_but_reserved(&encode_high_watermark(hw), &contents, "high watermark"))
            .is_ok(),
        _ => Checkpoint::decode(&contents)
            .map(|checkpoint| assert_same_but_reserved(&checkpoint.encode(), &contents, "recovery checkpoint"))
            .is_ok(),
    };
    let mut files = sample_files().clone();
    replace(&mut files, name, contents);
    drop_per_selector(&mut files, selector & 0x04);
    open_and_exercise(&files) && decoded
}

/// A decoded file encodes back to the same bytes, but for the reserved field (bytes 10..12, which readers
/// do not check) and the CRC that covers it.
fn assert_same_but_reserved(encoded: &[u8], original: &[u8], what: &str) {
    assert_eq!(encoded.len(), original.len(), "{what} round trip: length");
    let covered = encoded.len() - 4;
    assert_eq!(encoded[..10], original[..10], "{what} round trip: preamble");
    assert_eq!(encoded[12..covered], original[12..covered], "{what} round trip: body");
}

pub fn checkpoints_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (selector, name) in [(0u8, CHECKPOINT_FILE), (1, LEADER_EPOCH_FILE), (2, HIGH_WATERMARK_FILE)] {
        let contents = sample_files().iter().find(|(n, _)| n == name).map(|(_, c)| c.clone()).unwrap_or_default();
        for flags in [0u8, 0x04, 0x10] {
            seeds.push([&[selector | flags][..], &contents].concat());
        }
    }
    seeds
}

/// A whole partition directory from the input: entries `[kind: u8][length: u16 BE][contents]`, where kind
/// 0-2 are a segment's `.log`, `.index`, `.timeindex` (their base offset, a u64 BE, follows the kind), 3 the
/// recovery checkpoint, 4 the clean-shutdown marker, 5 the leader epochs, 6 the high watermark, 7 a `.tmp`
/// leftover; kind 8 is a `.log` whose batches get their CRCs repaired. A cut-off entry ends the directory.
pub fn log_dir(data: &[u8]) -> bool {
    open_and_exercise(&parse_dir(data))
}

/// The directory an input of `log_dir` describes.
pub fn parse_dir(mut data: &[u8]) -> Files {
    let mut files = Files::new();
    while let Some((&kind, rest)) = data.split_first() {
        let kind = kind % 9;
        let mut rest = rest;
        let mut base = 0;
        if matches!(kind, 0..=2 | 8) {
            let Some((bytes, after)) = rest.split_first_chunk::<8>() else { break };
            base = u64::from_be_bytes(*bytes);
            rest = after;
        }
        let Some((length, after)) = rest.split_first_chunk::<2>() else { break };
        let length = usize::from(u16::from_be_bytes(*length)).min(after.len());
        let (contents, after) = after.split_at(length);
        let mut contents = contents.to_vec();
        let name = match kind {
            0 => segment_file(base, LOG_SUFFIX),
            1 => segment_file(base, OFFSET_INDEX_SUFFIX),
            2 => segment_file(base, TIME_INDEX_SUFFIX),
            3 => CHECKPOINT_FILE.to_string(),
            4 => CLEAN_SHUTDOWN_FILE.to_string(),
            5 => LEADER_EPOCH_FILE.to_string(),
            6 => HIGH_WATERMARK_FILE.to_string(),
            7 => format!("{}.tmp", segment_file(base, LOG_SUFFIX)),
            _ => {
                repair_segment(&mut contents);
                segment_file(base, LOG_SUFFIX)
            }
        };
        replace(&mut files, &name, contents);
        data = after;
    }
    files
}

/// Encodes `files` as a `log_dir` input (the inverse of `parse_dir` for the files it knows).
pub fn encode_dir(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, contents) in files {
        let segment = [(0u8, LOG_SUFFIX), (1, OFFSET_INDEX_SUFFIX), (2, TIME_INDEX_SUFFIX)]
            .into_iter()
            .find_map(|(kind, suffix)| crate::segment::parse_segment_name(name, suffix).map(|base| (kind, base)));
        let kind = match (segment, name.as_str()) {
            (Some((kind, base)), _) => {
                out.push(kind);
                out.extend_from_slice(&base.to_be_bytes());
                None
            }
            (None, CHECKPOINT_FILE) => Some(3),
            (None, CLEAN_SHUTDOWN_FILE) => Some(4),
            (None, LEADER_EPOCH_FILE) => Some(5),
            (None, HIGH_WATERMARK_FILE) => Some(6),
            _ => continue,
        };
        if let Some(kind) = kind {
            out.push(kind);
        }
        let length = u16::try_from(contents.len()).expect("sample files are small");
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(contents);
    }
    out
}

pub fn log_dir_seeds() -> Vec<Vec<u8>> {
    let files = sample_files();
    let unclean: Files = files.iter().filter(|(n, _)| n != CLEAN_SHUTDOWN_FILE).cloned().collect();
    let one_segment: Files = files.iter().filter(|(n, _)| n.starts_with("00000000000000000000.")).cloned().collect();
    vec![encode_dir(files), encode_dir(&unclean), encode_dir(&one_segment), Vec::new()]
}

/// Encrypted segments: the encrypted sample log with one segment's `.log` or key record replaced by the input
/// after its first byte, opened with the sample's key. Selector bits: 0-1 the segment (3: the last), 2 drop
/// the clean-shutdown marker, 3 drop the checkpoint, 4 replace the key record rather than the `.log`, 5
/// repair the CRCs (of the batches, or of the key record).
pub fn encrypted_segment(data: &[u8]) -> bool {
    let Some((&selector, contents)) = data.split_first() else { return false };
    let mut files = encrypted_sample_files().clone();
    let bases: Vec<u64> =
        files.iter().filter_map(|(name, _)| crate::segment::parse_segment_name(name, LOG_SUFFIX)).collect();
    let base = bases[usize::from(selector & 3).min(bases.len() - 1)];
    let mut contents = contents.to_vec();
    let suffix = if selector & 0x10 != 0 { KEY_RECORD_SUFFIX } else { LOG_SUFFIX };
    if selector & 0x20 != 0 {
        if suffix == LOG_SUFFIX {
            repair_segment(&mut contents);
        } else if contents.len() >= 4 {
            let covered = contents.len() - 4;
            let crc = crc32c::crc32c(&contents[..covered]);
            contents[covered..].copy_from_slice(&crc.to_be_bytes());
        }
    }
    replace(&mut files, &segment_file(base, suffix), contents);
    drop_per_selector(&mut files, selector);
    open_and_exercise_with(&files, &encrypted_fuzz_config())
}

pub fn encrypted_segment_seeds() -> Vec<Vec<u8>> {
    let files = encrypted_sample_files();
    let bases: Vec<u64> =
        files.iter().filter_map(|(name, _)| crate::segment::parse_segment_name(name, LOG_SUFFIX)).collect();
    let mut seeds = Vec::new();
    for (i, base) in bases.into_iter().enumerate() {
        for (bit, suffix, flag_sets) in
            [(0u8, LOG_SUFFIX, &[0u8, 0x04, 0x0c][..]), (0x10, KEY_RECORD_SUFFIX, &[0u8, 0x04][..])]
        {
            let name = segment_file(base, suffix);
            let (_, contents) = files.iter().find(|(n, _)| *n == name).expect("every sample segment is encrypted");
            for flags in flag_sets {
                seeds.push([&[i as u8 | bit | flags][..], contents].concat());
            }
        }
    }
    seeds
}
