//! Produce: validate every batch of a partition once, append them all or none, then wait as `acks` asks.

use std::sync::Arc;

use rill_proto::batch::{self, BatchError, BatchHeader};
use rill_proto::v1::{Acks, ErrorCode, PartitionProduceResult, PartitionRecords, ProduceRequest, ProduceResponse};

use super::errors::{self, error};
use super::{BrokerCore, now_ms};
use crate::partition::Partition;

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

fn append_one(
    core: &BrokerCore,
    p: &PartitionRecords,
    acks_all: bool,
) -> Result<(Arc<Partition>, u64, u64, u32), Option<rill_proto::v1::Error>> {
    if p.topic == crate::group::OFFSETS_TOPIC {
        return Err(error(ErrorCode::InvalidRequest, format!("{} is written by group coordinators only", p.topic)));
    }
    let Some(partition) = core.partitions.get(&p.topic, p.partition) else {
        return Err(errors::missing_partition(core, &p.topic, p.partition));
    };
    let batches = validate_batches(&p.records, partition.config.batch_bytes_max)?;
    let (first, last, leader_epoch) =
        partition.append(&batches, acks_all, now_ms()).map_err(|e| errors::from_partition(&partition.name(), &e))?;
    Ok((partition, first, last, leader_epoch))
}

pub async fn produce(core: &BrokerCore, request: ProduceRequest) -> ProduceResponse {
    let acks = Acks::try_from(request.acks);
    let timeout_ms = match request.timeout_ms {
        0 => core.config.produce_timeout_ms,
        t => u64::from(t),
    };
    let mut results = Vec::with_capacity(request.partitions.len());
    let mut to_await = Vec::new();
    for (index, p) in request.partitions.iter().enumerate() {
        let mut result =
            PartitionProduceResult { topic: p.topic.clone(), partition: p.partition, ..Default::default() };
        let Ok(acks) = acks else {
            result.error = error(ErrorCode::InvalidRequest, format!("unknown acks value {}", request.acks));
            results.push(result);
            continue;
        };
        match append_one(core, p, acks == Acks::All) {
            Ok((partition, first, last, leader_epoch)) => {
                result.base_offset = first;
                result.last_offset = last;
                result.log_start_offset = partition.offsets().log_start;
                if acks == Acks::All {
                    to_await.push(Appended { index, partition, last_offset: last, leader_epoch });
                }
            }
            Err(e) => result.error = e,
        }
        results.push(result);
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
