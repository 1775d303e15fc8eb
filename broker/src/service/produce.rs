//! Produce: validate every batch of a partition once, append them all or none, then wait as `acks` asks.

use std::sync::Arc;

use rill_proto::batch::{self, BatchError, BatchHeader};
use rill_proto::v1::{Acks, ErrorCode, PartitionProduceResult, PartitionRecords, ProduceRequest, ProduceResponse};

use super::errors::{self, error};
use super::{BrokerCore, now_ms};
use crate::partition::{Partition, PartitionError};
use crate::producer_state::Verdict;

/// Splits and validates the batches of one partition's records. Nothing is written if any batch fails.
fn validate_batches(
    records: &[u8],
    batch_bytes_max: u64,
) -> Result<Vec<(BatchHeader, &[u8])>, Option<rill_proto::v1::Error>> {
    if records.is_empty() {
        return Err(error(ErrorCode::InvalidBatch, "no record batch in the request"));
    }
    let mut batches = Vec::new();
    for item in batch::split_batches(records) {
        let (header, range) = item.map_err(|e| match e {
            BatchError::Truncated { .. } => error(ErrorCode::InvalidBatch, format!("truncated record batch: {e}")),
            other => errors::from_batch(&other),
        })?;
        if header.size() as u64 > batch_bytes_max {
            return Err(error(
                ErrorCode::BatchTooLarge,
                format!("record batch of {} bytes exceeds the limit of {batch_bytes_max} bytes", header.size()),
            ));
        }
        let bytes = &records[range];
        batch::validate(bytes).map_err(|e| errors::from_batch(&e))?;
        batches.push((header, bytes));
    }
    Ok(batches)
}

struct Appended {
    index: usize,
    partition: Arc<Partition>,
    last_offset: u64,
    leader_epoch: u32,
}

/// How long an idempotent batch that arrived ahead of its predecessor waits for it before the partition
/// answers `OUT_OF_ORDER_SEQUENCE`. A producer pipelines up to 5 batches per partition; their requests travel
/// as concurrent HTTP/2 streams, so one can overtake another by a few milliseconds. A predecessor lost in
/// transport is retried by the client after its backoff, well within this bound.
const SEQUENCE_GAP_WAIT_MS: u64 = 2_000;

/// Why a partition's records were not appended.
struct NotAppended {
    error: Option<rill_proto::v1::Error>,
    /// Set when the batch is an idempotent one whose predecessor has not arrived yet: worth another try once
    /// the partition appends something.
    ahead_of: Option<Arc<Partition>>,
}

impl From<Option<rill_proto::v1::Error>> for NotAppended {
    fn from(error: Option<rill_proto::v1::Error>) -> Self {
        NotAppended { error, ahead_of: None }
    }
}

fn append_one(
    core: &BrokerCore,
    p: &PartitionRecords,
    acks_all: bool,
) -> Result<(Arc<Partition>, u64, u64, u32), NotAppended> {
    if p.topic == crate::group::OFFSETS_TOPIC {
        return Err(
            error(ErrorCode::InvalidRequest, format!("{} is written by group coordinators only", p.topic)).into()
        );
    }
    let Some(partition) = core.partitions.get(&p.topic, p.partition) else {
        return Err(errors::missing_partition(core, &p.topic, p.partition).into());
    };
    let batches = validate_batches(&p.records, partition.config.batch_bytes_max)?;
    match partition.append(&batches, acks_all, now_ms()) {
        Ok((first, last, leader_epoch)) => Ok((partition, first, last, leader_epoch)),
        Err(e) => {
            // A gap after the expected sequence, or a producer the partition has not seen yet whose first
            // batch (sequence 0) may still be on its way.
            let ahead = match (&e, batches.as_slice()) {
                (PartitionError::Producer { verdict: Verdict::OutOfOrderSequence { expected }, .. }, [(header, _)]) => {
                    header.base_sequence > *expected
                }
                (PartitionError::Producer { verdict: Verdict::UnknownProducerId, .. }, [(header, _)]) => {
                    header.base_sequence > 0
                }
                _ => false,
            };
            let error = errors::from_partition(&partition.name(), &e);
            Err(NotAppended { error, ahead_of: ahead.then_some(partition) })
        }
    }
}

/// Appends a batch that arrived ahead of its predecessor once the predecessor is in, trying again after each
/// append to the partition until `wait_ms` has passed.
async fn append_when_in_order(
    core: &BrokerCore,
    p: &PartitionRecords,
    acks_all: bool,
    partition: Arc<Partition>,
    wait_ms: u64,
) -> Result<(Arc<Partition>, u64, u64, u32), NotAppended> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
    loop {
        // Created before the attempt, so an append between the attempt and the wait still wakes it.
        let next_append = partition.next_append();
        match append_one(core, p, acks_all) {
            Err(NotAppended { ahead_of: Some(_), error }) => {
                if tokio::time::timeout_at(deadline, next_append).await.is_err() {
                    return Err(error.into());
                }
            }
            outcome => return outcome,
        }
    }
}

pub async fn produce(core: &BrokerCore, request: ProduceRequest) -> ProduceResponse {
    let acks = Acks::try_from(request.acks);
    let timeout_ms = match request.timeout_ms {
        0 => core.config.produce_timeout_ms,
        t => u64::from(t),
    };
    let mut results = Vec::with_capacity(request.partitions.len());
    let mut appended = Vec::new();
    let mut ahead = Vec::new();
    for (index, p) in request.partitions.iter().enumerate() {
        let result = PartitionProduceResult { topic: p.topic.clone(), partition: p.partition, ..Default::default() };
        results.push(result);
        let Ok(acks) = acks else {
            results[index].error = error(ErrorCode::InvalidRequest, format!("unknown acks value {}", request.acks));
            continue;
        };
        match append_one(core, p, acks == Acks::All) {
            Ok(done) => appended.push((index, done)),
            Err(NotAppended { ahead_of: Some(partition), .. }) => ahead.push((index, partition)),
            Err(NotAppended { error, .. }) => results[index].error = error,
        }
    }
    // Batches ahead of their predecessors wait concurrently: a predecessor may be later in this same request's
    // retry, or in another request that is itself waiting.
    let acks_all = matches!(acks, Ok(Acks::All));
    let waits = ahead.into_iter().map(|(index, partition)| {
        let p = &request.partitions[index];
        let wait_ms = timeout_ms.min(SEQUENCE_GAP_WAIT_MS);
        async move { (index, append_when_in_order(core, p, acks_all, partition, wait_ms).await) }
    });
    for (index, outcome) in futures::future::join_all(waits).await {
        match outcome {
            Ok(done) => appended.push((index, done)),
            Err(NotAppended { error, .. }) => results[index].error = error,
        }
    }
    let mut to_await = Vec::new();
    for (index, (partition, first, last, leader_epoch)) in appended {
        let result = &mut results[index];
        result.base_offset = first;
        result.last_offset = last;
        result.log_start_offset = partition.offsets().log_start;
        if acks_all {
            to_await.push(Appended { index, partition, last_offset: last, leader_epoch });
        }
    }
    // acks=all: every partition waits for its own high watermark, concurrently.
    let waits = to_await.into_iter().map(|a| async move {
        let outcome = a.partition.wait_committed(a.last_offset, a.leader_epoch, timeout_ms).await;
        (a.index, a.partition, outcome)
    });
    for (index, partition, outcome) in futures::future::join_all(waits).await {
        if let Err(e) = outcome {
            results[index].error = errors::from_partition(&partition.name(), &e);
        }
    }
    ProduceResponse { results }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_proto::batch::BatchBuilder;

    fn batch() -> bytes::Bytes {
        let mut b = BatchBuilder::new();
        b.push(1, None, Some(b"value"), &[]);
        b.finish()
    }

    #[test]
    fn well_formed_batches_pass_and_are_split() {
        let mut two = batch().to_vec();
        two.extend_from_slice(&batch());
        assert_eq!(validate_batches(&two, 1 << 20).unwrap().len(), 2);
    }

    #[test]
    fn any_bad_batch_rejects_the_whole_partition() {
        let good = batch();
        let code = |r: Result<Vec<(BatchHeader, &[u8])>, Option<rill_proto::v1::Error>>| {
            ErrorCode::try_from(r.unwrap_err().unwrap().code).unwrap()
        };
        let mut bad_crc = good.to_vec();
        bad_crc.extend_from_slice(&good);
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert_eq!(code(validate_batches(&bad_crc, 1 << 20)), ErrorCode::CorruptBatch);
        assert_eq!(code(validate_batches(&good[..good.len() - 3], 1 << 20)), ErrorCode::InvalidBatch);
        assert_eq!(code(validate_batches(&[], 1 << 20)), ErrorCode::InvalidBatch);
        assert_eq!(code(validate_batches(&good, 10)), ErrorCode::BatchTooLarge);
        let mut absurd = good.to_vec();
        absurd[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(code(validate_batches(&absurd, 1 << 20)), ErrorCode::InvalidBatch);
    }
}
