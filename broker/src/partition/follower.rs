//! Both ends of a replica fetch: the follower's task that sends it and steps the answer, and the leader's
//! handling of one (step, then long-poll and read the log).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rill_proto::batch;
use rill_proto::v1::{ReplicaFetchError, ReplicaFetchRequest, ReplicaFetchResponse};
use rill_storage::StorageError;

use super::Partition;
use crate::clock::now_ms;
use crate::limits::{REPLICA_FETCH_BYTES_MAX, REPLICA_FETCH_WAIT_MS};
use crate::replication::{BatchMeta, Event, FetchAnswer, FetchError, FetchReply, FetchRequest, ReplicaFetch};

/// The leader's answer as the follower's state machine takes it, and the record bytes that came with it.
pub(crate) fn to_answer(response: ReplicaFetchResponse) -> Result<(FetchAnswer, Bytes), String> {
    use ReplicaFetchError as E;
    let error = match ReplicaFetchError::try_from(response.error) {
        Ok(E::ReplicaFetchOk) => None,
        Ok(E::ReplicaFetchFencedLeaderEpoch) => Some(FetchError::FencedLeaderEpoch),
        Ok(E::ReplicaFetchUnknownLeaderEpoch) => Some(FetchError::UnknownLeaderEpoch),
        Ok(E::ReplicaFetchNotLeader) | Ok(E::ReplicaFetchUnknownPartition) => Some(FetchError::NotLeader),
        Ok(E::ReplicaFetchUnknownReplica) => Some(FetchError::UnknownReplica),
        Ok(E::ReplicaFetchStaleBrokerEpoch) => Some(FetchError::StaleBrokerEpoch),
        Ok(E::ReplicaFetchOffsetOutOfRange) => Some(FetchError::OffsetOutOfRange {
            log_start_offset: response.log_start_offset,
            log_end_offset: response.log_end_offset,
        }),
        Err(_) => return Err(format!("unknown replica fetch error {}", response.error)),
    };
    if let Some(error) = error {
        return Ok((FetchAnswer::Error(error), Bytes::new()));
    }
    if response.diverging {
        let answer = FetchAnswer::Diverging {
            diverging_epoch: response.diverging_epoch,
            end_offset: response.diverging_end_offset,
            high_watermark: response.high_watermark,
        };
        return Ok((answer, Bytes::new()));
    }
    let mut batches = Vec::new();
    for item in batch::split_batches(&response.records) {
        let (header, range) = item.map_err(|e| format!("malformed batch from the leader: {e}"))?;
        // Checked on the follower too: a batch damaged on the way is never stored.
        batch::check_crc(&response.records[range]).map_err(|e| format!("batch at {}: {e}", header.base_offset))?;
        let epoch = u32::try_from(header.partition_leader_epoch)
            .map_err(|_| format!("batch at {} carries no leader epoch", header.base_offset))?;
        batches.push(BatchMeta {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            partition_leader_epoch: epoch,
        });
    }
    let answer = FetchAnswer::Records {
        batches,
        high_watermark: response.high_watermark,
        log_start_offset: response.log_start_offset,
    };
    Ok((answer, response.records))
}

impl Partition {
    /// Follower: sends `request` to the leader and steps exactly one `FetchResponse` for it.
    pub(super) async fn fetch_from_leader(self: Arc<Self>, request: FetchRequest) {
        let rpc = ReplicaFetchRequest {
            topic: self.topic.clone(),
            partition: self.index,
            replica_id: self.link.node_id(),
            broker_epoch: self.link.broker_epoch(),
            current_leader_epoch: request.current_leader_epoch,
            fetch_offset: request.fetch_offset,
            last_fetched_epoch: request.last_fetched_epoch,
            flushed_offset: request.flushed_offset,
            max_wait_ms: REPLICA_FETCH_WAIT_MS,
            max_bytes: REPLICA_FETCH_BYTES_MAX,
        };
        // A retired partition (topic deleted, broker stopping) fetches no more; its open fetch is abandoned.
        let mut offsets = self.subscribe();
        let outcome = tokio::select! {
            outcome = self.link.replica_fetch(request.leader, rpc) => outcome.and_then(to_answer),
            _ = offsets.wait_for(|o| o.failed.is_some()) => return,
        };
        let (answer, records) = outcome.unwrap_or_else(|e| {
            tracing::debug!(partition = %self.name(), error = %e, "replica fetch failed");
            (FetchAnswer::Error(FetchError::Unreachable), Bytes::new())
        });
        let fetch_id = request.fetch_id;
        // Stepping may append, truncate and fsync: off the async workers.
        let stepped = tokio::task::spawn_blocking(move || {
            *self.pending_fetch.lock().unwrap_or_else(|p| p.into_inner()) = Some((fetch_id, records));
            self.step(Event::FetchResponse { fetch_id, answer, now_ms: now_ms().max(0) as u64 });
            self.pending_fetch.lock().unwrap_or_else(|p| p.into_inner()).take();
        });
        if let Err(e) = stepped.await {
            tracing::error!(error = %e, "stepping a fetch answer failed");
        }
    }

    /// Leader: answers a follower's fetch. A caught-up follower's fetch waits up to its `max_wait_ms` for new
    /// records, so it learns of them (and of the HW) as soon as they are written.
    pub async fn answer_replica_fetch(self: &Arc<Self>, request: ReplicaFetchRequest) -> ReplicaFetchResponse {
        let fetch = ReplicaFetch {
            replica_id: request.replica_id,
            broker_epoch: request.broker_epoch,
            current_leader_epoch: request.current_leader_epoch,
            fetch_offset: request.fetch_offset,
            last_fetched_epoch: request.last_fetched_epoch,
            flushed_offset: request.flushed_offset,
            now_ms: now_ms().max(0) as u64,
        };
        let reply = {
            let mut replica = self.lock_replica();
            self.check_lease(&mut replica);
            let commands = replica.step(Event::ReplicaFetch(fetch));
            self.execute(&mut replica, commands).expect("a replica fetch is always answered")
        };
        let mut response = ReplicaFetchResponse::default();
        match reply {
            FetchReply::Error(error) => response.error = fetch_error_code(error, &mut response) as i32,
            FetchReply::Diverging { diverging_epoch, end_offset, high_watermark } => {
                response.diverging = true;
                response.diverging_epoch = diverging_epoch;
                response.diverging_end_offset = end_offset;
                response.high_watermark = high_watermark;
            }
            FetchReply::Read { fetch_offset, high_watermark, log_start_offset } => {
                self.wait_for_records(fetch_offset, request.max_wait_ms).await;
                let max_bytes = request.max_bytes.clamp(1, REPLICA_FETCH_BYTES_MAX) as usize;
                match self.read_log().read(fetch_offset, max_bytes, u64::MAX) {
                    Ok(read) => response.records = read.records,
                    Err(StorageError::OffsetOutOfRange { log_start, log_end, .. }) => {
                        // The log changed under the wait (truncated as leadership moved): the follower retries.
                        response.error = ReplicaFetchError::ReplicaFetchNotLeader as i32;
                        tracing::debug!(partition = %self.name(), log_start, log_end, "log moved during a replica fetch");
                    }
                    Err(e) => {
                        tracing::error!(partition = %self.name(), error = %e, "cannot serve a replica fetch");
                        response.error = ReplicaFetchError::ReplicaFetchNotLeader as i32;
                    }
                }
                let offsets = self.offsets();
                // The HW may have moved during the wait; it never moves backwards, so the newer one is as true.
                response.high_watermark = high_watermark.max(offsets.high_watermark);
                response.log_start_offset = log_start_offset.max(offsets.log_start);
                response.log_end_offset = offsets.log_end;
            }
        }
        response
    }

    async fn wait_for_records(&self, fetch_offset: u64, max_wait_ms: u32) {
        let mut offsets = self.subscribe();
        let wait = offsets.wait_for(|o| o.log_end > fetch_offset || !o.is_leader || o.failed.is_some());
        let max_wait_ms = max_wait_ms.min(REPLICA_FETCH_WAIT_MS);
        let _ = tokio::time::timeout(Duration::from_millis(u64::from(max_wait_ms)), wait).await;
    }
}

fn fetch_error_code(error: FetchError, response: &mut ReplicaFetchResponse) -> ReplicaFetchError {
    match error {
        FetchError::FencedLeaderEpoch => ReplicaFetchError::ReplicaFetchFencedLeaderEpoch,
        FetchError::UnknownLeaderEpoch => ReplicaFetchError::ReplicaFetchUnknownLeaderEpoch,
        FetchError::NotLeader | FetchError::Unreachable => ReplicaFetchError::ReplicaFetchNotLeader,
        FetchError::UnknownReplica => ReplicaFetchError::ReplicaFetchUnknownReplica,
        FetchError::StaleBrokerEpoch => ReplicaFetchError::ReplicaFetchStaleBrokerEpoch,
        FetchError::OffsetOutOfRange { log_start_offset, log_end_offset } => {
            response.log_start_offset = log_start_offset;
            response.log_end_offset = log_end_offset;
            ReplicaFetchError::ReplicaFetchOffsetOutOfRange
        }
    }
}
