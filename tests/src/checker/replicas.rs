//! Compares what replicas store for a partition, byte by byte, below the high watermark (HW). A follower
//! stores its leader's batches verbatim, leader epoch stamp included, so every replica must hold exactly the
//! same bytes for every committed offset. Reads the segment files (`topics/<topic>.<id>/<partition>/*.log`,
//! docs/FORMAT.md) straight from the nodes' data directories.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rill_proto::batch::{BatchError, split_batches};

/// One batch as stored in a segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: u64,
    pub last_offset: u64,
    pub leader_epoch: i32,
    pub bytes: Vec<u8>,
}

/// The directory of `topic`-`partition` under a node's data directory, if the node hosts it. If a deleted
/// topic of the same name left a directory behind, the newest topic id wins.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> Option<PathBuf> {
    let entries = fs::read_dir(data_dir.join("topics")).ok()?;
    let newest = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let (name_part, id) = name.rsplit_once('.')?;
            (name_part == topic).then(|| id.parse::<u64>().ok().map(|id| (id, entry.path()))).flatten()
        })
        .max_by_key(|(id, _)| *id)?;
    let dir = newest.1.join(partition.to_string());
    dir.is_dir().then_some(dir)
}

/// The batches stored in the partition directory whose base offset is below `below`, in offset order. A
/// partial batch at the very end (an append in progress) ends the read.
///
/// # Errors
///
/// Unreadable files, a malformed batch, or offsets that are not contiguous.
pub fn read_stored_batches(dir: &Path, below: u64) -> anyhow::Result<Vec<StoredBatch>> {
    let mut segments: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("list {}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    // Names are zero-padded base offsets, so they sort like offsets.
    segments.sort();
    let mut batches: Vec<StoredBatch> = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let bytes = fs::read(segment).with_context(|| format!("read {}", segment.display()))?;
        for item in split_batches(&bytes) {
            let (header, range) = match item {
                Ok(batch) => batch,
                Err(BatchError::Truncated { .. }) if index + 1 == segments.len() => break,
                Err(e) => bail!("{}: {e}", segment.display()),
            };
            if header.base_offset >= below {
                return Ok(batches);
            }
            if let Some(previous) = batches.last()
                && header.base_offset != previous.last_offset + 1
            {
                bail!(
                    "{}: batch at {} does not follow the previous one ending at {}",
                    segment.display(),
                    header.base_offset,
                    previous.last_offset
                );
            }
            batches.push(StoredBatch {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                leader_epoch: header.partition_leader_epoch,
                bytes: bytes[range].to_vec(),
            });
        }
    }
    Ok(batches)
}

/// Compares the stored batches of `topic`-`partition` below `high_watermark` across replicas, given as
/// `(node id, data directory)`. Returns every problem found: a replica without the partition, one whose log
/// does not reach the HW, and the first batch at which a replica differs from the first replica listed.
/// Empty means identical.
pub fn compare_replicas(replicas: &[(u32, PathBuf)], topic: &str, partition: u32, high_watermark: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let mut reference: Option<(u32, Vec<StoredBatch>)> = None;
    for (node, data_dir) in replicas {
        let Some(dir) = partition_dir(data_dir, topic, partition) else {
            problems.push(format!("node {node} has no directory for {topic}-{partition}"));
            continue;
        };
        let batches = match read_stored_batches(&dir, high_watermark) {
            Ok(batches) => batches,
            Err(e) => {
                problems.push(format!("node {node}: {e:#}"));
                continue;
            }
        };
        let reaches = batches.last().map_or(0, |b| b.last_offset + 1);
        if high_watermark > 0 && reaches < high_watermark {
            problems.push(format!(
                "node {node} holds {topic}-{partition} only below {reaches}, short of HW {high_watermark}"
            ));
        }
        match &reference {
            None => reference = Some((*node, batches)),
            Some((reference_node, expected)) => {
                if let Some(difference) = first_difference(expected, &batches) {
                    problems.push(format!(
                        "node {node} differs from node {reference_node} in {topic}-{partition}: {difference}"
                    ));
                }
            }
        }
    }
    problems
}

/// Panics listing the problems if [`compare_replicas`] finds any.
#[track_caller]
pub fn assert_replicas_identical(replicas: &[(u32, PathBuf)], topic: &str, partition: u32, high_watermark: u64) {
    let problems = compare_replicas(replicas, topic, partition, high_watermark);
    assert!(
        problems.is_empty(),
        "replicas of {topic}-{partition} differ below HW {high_watermark}:\n  {}",
        problems.join("\n  ")
    );
}

/// Describes the first batch at which two replicas' committed batches differ, if any.
fn first_difference(expected: &[StoredBatch], actual: &[StoredBatch]) -> Option<String> {
    for (want, got) in expected.iter().zip(actual) {
        if want.base_offset != got.base_offset || want.last_offset != got.last_offset {
            return Some(format!(
                "batch boundaries differ: offsets {}..={} against {}..={}",
                want.base_offset, want.last_offset, got.base_offset, got.last_offset
            ));
        }
        if want.leader_epoch != got.leader_epoch {
            return Some(format!(
                "batch at {} has leader epoch {} against {}",
                want.base_offset, want.leader_epoch, got.leader_epoch
            ));
        }
        if want.bytes != got.bytes {
            let at = want
                .bytes
                .iter()
                .zip(&got.bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(want.bytes.len().min(got.bytes.len()));
            return Some(format!("batch at {} differs from byte {at} on", want.base_offset));
        }
    }
    (expected.len() != actual.len()).then(|| format!("{} committed batches against {}", expected.len(), actual.len()))
}
