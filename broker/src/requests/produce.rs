//! Produce: validate every batch of a partition once, append them all or none (through the partition's
//! producer-state check), then wait as `acks` asks.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rill_proto::batch::{self, BatchError, BatchHeader};

use super::{BrokerCore, Error, ErrorKind};
use crate::clock::now_ms;
use crate::limits::SEQUENCE_GAP_WAIT_MS;
use crate::partition::{Partition, PartitionError};
use crate::producer_state::Verdict;
use crate::security::{Operation, Principal, Resource};

/// What a write waits for before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Durable on every in-sync replica (one node: durable under the topic's policy).
    All,
    /// Appended to the leader's log.
    Leader,
    /// Nothing awaited; errors are still reported to transports that answer.
    None,
}

/// One or more record batches, back to back, for one partition.
#[derive(Debug, Clone)]
pub struct PartitionRecords {
    pub topic: String,
    pub partition: u32,
    pub records: Bytes,
}

#[derive(Debug, Clone)]
pub struct ProduceRequest {
    pub acks: Acks,
    /// How long `Acks::All` waits; `None` is the broker's default.
    pub timeout_ms: Option<u64>,
    pub partitions: Vec<PartitionRecords>,
}

/// Where a partition's records were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    /// Offset of the first record written.
    pub base_offset: u64,
    /// Offset of the last record written.
    pub last_offset: u64,
    pub log_start_offset: u64,
}

/// The outcome for one partition of a request, in the request's order.
#[derive(Debug, Clone)]
pub struct PartitionProduced {
    pub topic: String,
    pub partition: u32,
    pub result: Result<Produced, Error>,
}

/// Splits and validates the batches of one partition's records. Nothing is written if any batch fails.
pub(crate) fn validate_batches(records: &[u8], batch_bytes_max: u64) -> Result<Vec<(BatchHeader, &[u8])>, Error> {
    if records.is_empty() {
        return Err(Error::new(ErrorKind::InvalidBatch, "no record batch in the request"));
    }
    let mut batches = Vec::new();
    for item in batch::split_batches(records) {
        let (header, range) = item.map_err(|e| match e {
            BatchError::Truncated { .. } => Error::new(ErrorKind::InvalidBatch, format!("truncated record batch: {e}")),
            other => Error::from_batch(&other),
        })?;
        if header.size() as u64 > batch_bytes_max {
            return Err(Error::new(
                ErrorKind::BatchTooLarge,
                format!("record batch of {} bytes exceeds the limit of {batch_bytes_max} bytes", header.size()),
            ));
        }
        let bytes = &records[range];
        batch::validate(bytes).map_err(|e| Error::from_batch(&e))?;
        batches.push((header, bytes));
    }
    Ok(batches)
}

/// A partition's local append: the partition, its first and last offsets, and the leader epoch written in.
struct Appended {
    partition: Arc<Partition>,
    base_offset: u64,
    last_offset: u64,
    leader_epoch: u32,
}

/// Why a partition's records were not appended.
struct NotAppended {
    error: Error,
    /// Set when the batch is an idempotent one whose predecessor has not arrived yet: worth another try once
    /// the partition appends something.
    ahead_of: Option<Arc<Partition>>,
}

impl From<Error> for NotAppended {
    fn from(error: Error) -> Self {
        NotAppended { error, ahead_of: None }
    }
}

fn append_one(core: &BrokerCore, p: &PartitionRecords, acks_all: bool) -> Result<Appended, NotAppended> {
    if p.topic == crate::group::OFFSETS_TOPIC {
        return Err(Error::invalid(format!("{} is written by group coordinators only", p.topic)).into());
    }
    let Some(partition) = core.partitions.get(&p.topic, p.partition) else {
        return Err(core.missing_partition(&p.topic, p.partition).into());
    };
    let batches = validate_batches(&p.records, partition.config().batch_bytes_max)?;
    match partition.append(&batches, acks_all, now_ms()) {
        Ok((base_offset, last_offset, leader_epoch)) => {
            let records = batches.iter().map(|(header, _)| u64::from(header.record_count)).sum();
            core.metrics.produced(&p.topic, batches.len() as u64, records, p.records.len() as u64);
            Ok(Appended { partition, base_offset, last_offset, leader_epoch })
        }
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
            let error = Error::from_partition(&partition.name(), &e);
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
) -> Result<Appended, NotAppended> {
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

impl BrokerCore {
    /// Writes each partition's batches (all of a partition's or none), then waits as `acks` asks: under
    /// `Acks::All` every partition waits for its own high watermark, concurrently.
    /// Partitions of topics `who` may not write get `TopicAuthorizationFailed`.
    pub async fn produce(&self, who: &Principal, request: &ProduceRequest) -> Vec<PartitionProduced> {
        let started = Instant::now();
        let first = self.append_each(who, request);
        self.complete_produce(request, first, started).await
    }

    /// [`BrokerCore::produce`] in two steps for a transport that pipelines one client's requests: the
    /// appends happen before this returns, in the order of the calls, and the future returned does the
    /// waiting (for a predecessor batch still on its way, and for `acks`), so later requests can be
    /// appended meanwhile.
    pub fn produce_pipelined(
        self: &Arc<Self>,
        who: &Principal,
        request: ProduceRequest,
    ) -> impl std::future::Future<Output = Vec<PartitionProduced>> + Send + 'static {
        let started = Instant::now();
        let first = self.append_each(who, &request);
        let core = self.clone();
        async move { core.complete_produce(&request, first, started).await }
    }

    /// The first attempt at each partition's append, in request order.
    fn append_each(&self, who: &Principal, request: &ProduceRequest) -> Vec<Result<Appended, NotAppended>> {
        let acks_all = request.acks == Acks::All;
        let append = |p: &PartitionRecords| match self.authorize(who, Operation::Write, Resource::topic(&p.topic)) {
            Ok(()) => append_one(self, p, acks_all),
            Err(refused) => Err(refused.into()),
        };
        request.partitions.iter().map(append).collect()
    }

    /// Waits for the batches of `first` that arrived ahead of their predecessors to be appended (or refused),
    /// then for `acks`.
    async fn complete_produce(
        &self,
        request: &ProduceRequest,
        first: Vec<Result<Appended, NotAppended>>,
        started: Instant,
    ) -> Vec<PartitionProduced> {
        let acks_all = request.acks == Acks::All;
        let timeout_ms = request.timeout_ms.unwrap_or(self.config.produce_timeout_ms);
        // Batches ahead of their predecessors wait concurrently: a predecessor may be later in this same
        // request's retry, or in another request that is itself waiting.
        let appended = first.into_iter().zip(&request.partitions).map(|(outcome, p)| async move {
            let outcome = match outcome {
                Err(NotAppended { ahead_of: Some(partition), .. }) => {
                    let wait_ms = timeout_ms.min(SEQUENCE_GAP_WAIT_MS);
                    append_when_in_order(self, p, acks_all, partition, wait_ms).await
                }
                other => other,
            };
            let result = match outcome {
                Ok(a) => self.answer_appended(a, acks_all, timeout_ms).await,
                Err(e) => Err(e.error),
            };
            PartitionProduced { topic: p.topic.clone(), partition: p.partition, result }
        });
        let produced = futures::future::join_all(appended).await;
        let error = produced.iter().find_map(|p| p.result.as_ref().err()).map(|e| e.kind);
        self.metrics.request("produce", error, started.elapsed());
        produced
    }

    async fn answer_appended(&self, a: Appended, acks_all: bool, timeout_ms: u64) -> Result<Produced, Error> {
        let produced = Produced {
            base_offset: a.base_offset,
            last_offset: a.last_offset,
            log_start_offset: a.partition.offsets().log_start,
        };
        if acks_all {
            let outcome = a.partition.wait_committed(a.last_offset, a.leader_epoch, timeout_ms).await;
            outcome.map_err(|e| Error::from_partition(&a.partition.name(), &e))?;
        }
        Ok(produced)
    }
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
        let kind = |r: Result<Vec<(BatchHeader, &[u8])>, Error>| r.unwrap_err().kind;
        let mut bad_crc = good.to_vec();
        bad_crc.extend_from_slice(&good);
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert_eq!(kind(validate_batches(&bad_crc, 1 << 20)), ErrorKind::CorruptBatch);
        assert_eq!(kind(validate_batches(&good[..good.len() - 3], 1 << 20)), ErrorKind::InvalidBatch);
        assert_eq!(kind(validate_batches(&[], 1 << 20)), ErrorKind::InvalidBatch);
        assert_eq!(kind(validate_batches(&good, 10)), ErrorKind::BatchTooLarge);
        let mut absurd = good.to_vec();
        absurd[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(kind(validate_batches(&absurd, 1 << 20)), ErrorKind::InvalidBatch);
    }
}
