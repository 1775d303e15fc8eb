//! The producer's background task: takes ready batches from the accumulator, groups them per leader broker
//! into produce requests, keeps a bounded number of requests in flight per broker, and routes each answer
//! back: acknowledge, retry after a backoff (refreshing metadata when the leader may have moved), or fail.
//! For an idempotent producer it also takes a new epoch when a sequence got a hole, and stops for good when
//! the producer is fenced.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rill_proto::v1::{ErrorCode, PartitionRecords, ProduceRequest};
use tokio::task::JoinSet;

use super::Shared;
use super::accumulator::{Identity, ProducerBatch};
use crate::error::{BrokerError, Error, Result};
use crate::types::TopicPartition;

/// A finished produce request: the broker it went to and each batch with its outcome (base offset or error).
type RequestOutcome = (u32, Vec<(ProducerBatch, Result<u64>)>);

/// Runs until the producer is closed and nothing is left to deliver.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut requests: JoinSet<RequestOutcome> = JoinSet::new();
    let mut in_flight: HashMap<u32, usize> = HashMap::new();
    let mut refresh: Option<tokio::task::JoinHandle<()>> = None;
    let mut refresh_wanted = false;
    let mut epoch_bump: Option<tokio::task::JoinHandle<Result<Identity>>> = None;
    loop {
        let now = Instant::now();
        let next_wakeup = {
            let mut accumulator = shared.lock();
            for batch in accumulator.expired(now) {
                let error = timeout_error(&shared, &batch);
                batch.fail(error);
            }
            let metadata = shared.cluster.metadata();
            let mut next_wakeup;
            // Each round takes at most one batch per partition (a request carries one batch of a partition);
            // rounds repeat while batches keep going out, so an idempotent partition fills its pipeline.
            loop {
                let (ready, wakeup) = accumulator.ready(now);
                next_wakeup = wakeup;
                let mut per_broker: BTreeMap<u32, (String, Vec<ProducerBatch>, usize)> = BTreeMap::new();
                for tp in ready {
                    let Some((broker, address)) = metadata.leader(&tp) else {
                        // No known leader (election under way, or stale metadata): try again after a refresh.
                        refresh_wanted = true;
                        continue;
                    };
                    if in_flight.get(&broker).copied().unwrap_or(0) >= shared.config.inflight_requests_max {
                        continue;
                    }
                    let entry = per_broker.entry(broker).or_insert_with(|| (address, Vec::new(), 0));
                    if !entry.1.is_empty()
                        && entry.2 + accumulator.front_size_bytes(&tp) > shared.config.request_bytes_max
                    {
                        // This request is full; the partition goes out in the next round.
                        continue;
                    }
                    if let Some(batch) = accumulator.take(&tp) {
                        entry.2 += batch.bytes().len();
                        entry.1.push(batch);
                    }
                }
                let mut sent = false;
                for (broker, (address, batches, _)) in per_broker {
                    if batches.is_empty() {
                        continue;
                    }
                    sent = true;
                    *in_flight.entry(broker).or_default() += 1;
                    requests.spawn(send_request(shared.clone(), broker, address, batches));
                }
                if !sent {
                    break;
                }
            }
            if epoch_bump.is_none()
                && accumulator.epoch_bump_ready()
                && let Some(identity) = accumulator.identity()
            {
                tracing::info!(
                    producer_id = identity.producer_id,
                    epoch = identity.epoch,
                    "taking a new producer epoch"
                );
                epoch_bump = Some(tokio::spawn(new_epoch(shared.clone(), identity)));
            }
            // Metadata older than metadata_max_age_ms is refreshed even while nothing fails, so that records
            // are partitioned over partitions added since.
            match shared.cluster.metadata_stale_at() {
                Some(at) if at <= now => refresh_wanted = true,
                Some(at) => next_wakeup = Some(next_wakeup.map_or(at, |n| n.min(at))),
                None => {}
            }
            if accumulator.is_empty() && requests.is_empty() && shared.closed.load(Ordering::SeqCst) {
                if let Some(task) = epoch_bump.take() {
                    task.abort();
                }
                return;
            }
            next_wakeup
        };

        if refresh_wanted && refresh.as_ref().is_none_or(|r| r.is_finished()) {
            refresh_wanted = false;
            let shared = shared.clone();
            refresh = Some(tokio::spawn(async move {
                let mut topics = shared.lock().topics();
                topics.extend(shared.cluster.metadata().topics.keys().cloned());
                topics.sort();
                topics.dedup();
                if let Err(e) = shared.cluster.refresh(&topics).await {
                    tracing::warn!(error = %e, "metadata refresh failed");
                }
                // Pace refreshes: a leaderless partition would otherwise ask again immediately.
                shared.cluster.backoff().await;
                shared.wake.notify_one();
            }));
        }

        let sleep_until = next_wakeup.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            () = shared.wake.notified() => {}
            () = tokio::time::sleep_until(sleep_until.into()) => {}
            Some(done) = requests.join_next(), if !requests.is_empty() => {
                match done {
                    Ok((broker, outcomes)) => {
                        if let Some(count) = in_flight.get_mut(&broker) {
                            *count = count.saturating_sub(1);
                        }
                        refresh_wanted |= complete(&shared, outcomes);
                    }
                    Err(e) => tracing::error!(error = %e, "produce request task failed"),
                }
            }
            done = async { epoch_bump.as_mut().expect("guarded").await }, if epoch_bump.is_some() => {
                epoch_bump = None;
                let mut accumulator = shared.lock();
                match done {
                    Ok(Ok(identity)) => accumulator.start_epoch(identity),
                    Ok(Err(error)) => {
                        tracing::error!(%error, "the producer cannot take a new epoch; failing its records");
                        for batch in accumulator.fail_all(error.clone()) {
                            batch.fail(error.clone());
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "producer epoch task failed"),
                }
            }
        }
    }
}

/// Asks the cluster for the next epoch of the producer's id, retrying while the controller is unavailable.
async fn new_epoch(shared: Arc<Shared>, current: Identity) -> Result<Identity> {
    let patience = Duration::from_millis(shared.config.delivery_timeout_ms);
    let (producer_id, epoch) = shared.cluster.init_producer_id(current.producer_id, current.epoch, patience).await?;
    Ok(Identity { producer_id, epoch })
}

/// Sends one produce request and pairs every batch with its outcome. Never fails as a whole: a transport
/// error becomes every batch's outcome.
async fn send_request(
    shared: Arc<Shared>,
    broker: u32,
    address: String,
    batches: Vec<ProducerBatch>,
) -> RequestOutcome {
    let config = &shared.config;
    let request = ProduceRequest {
        acks: config.acks.to_proto() as i32,
        timeout_ms: u32::try_from(config.request_timeout_ms).unwrap_or(u32::MAX),
        partitions: batches
            .iter()
            .map(|b| PartitionRecords { topic: b.tp.topic.clone(), partition: b.tp.partition, records: b.bytes() })
            .collect(),
    };
    // The broker may wait up to request_timeout_ms for replication; give the transport a margin beyond it.
    let grpc_request = shared.cluster.request(request, Duration::from_millis(config.request_timeout_ms));
    let answer = match shared.cluster.client(&address) {
        Ok(mut client) => client.produce(grpc_request).await.map_err(|status| Error::from_status(&address, &status)),
        Err(e) => Err(e),
    };
    let outcomes = match answer {
        Err(error) => batches.into_iter().map(|b| (b, Err(error.clone()))).collect(),
        Ok(response) => {
            let mut results: HashMap<(String, u32), _> =
                response.into_inner().results.into_iter().map(|r| ((r.topic.clone(), r.partition), r)).collect();
            batches
                .into_iter()
                .map(|b| {
                    let outcome = match results.remove(&(b.tp.topic.clone(), b.tp.partition)) {
                        None => Err(Error::Protocol(format!("no produce result for partition {}", b.tp))),
                        Some(r) => match BrokerError::from_proto(r.error.as_ref()) {
                            None => Ok(r.base_offset),
                            Some(e) => Err(Error::Broker(e)),
                        },
                    };
                    (b, outcome)
                })
                .collect()
        }
    };
    (broker, outcomes)
}

/// Applies the outcomes of one request. Returns whether metadata should be refreshed.
fn complete(shared: &Shared, outcomes: Vec<(ProducerBatch, Result<u64>)>) -> bool {
    let now = Instant::now();
    let mut refresh = false;
    let mut accumulator = shared.lock();
    for (mut batch, outcome) in outcomes {
        let tp = batch.tp.clone();
        let error = match outcome {
            Ok(base_offset) => {
                accumulator.finished(&tp, batch.id);
                batch.succeed(base_offset);
                continue;
            }
            Err(error) => error,
        };
        if let Some(fatal) = accumulator.fatal.clone() {
            accumulator.finished(&tp, batch.id);
            batch.fail(fatal);
            continue;
        }
        refresh |= error.needs_metadata_refresh();
        let code = error.code();
        if code == Some(ErrorCode::ProducerFenced) {
            let fenced = Error::ProducerFenced { message: error.to_string() };
            tracing::error!(partition = %tp, %error, "producer fenced by a newer instance");
            accumulator.finished(&tp, batch.id);
            batch.fail(fenced.clone());
            for queued in accumulator.fail_all(fenced.clone()) {
                queued.fail(fenced.clone());
            }
            continue;
        }
        let refused_sequence = batch.sequence.is_some()
            && matches!(code, Some(ErrorCode::OutOfOrderSequence | ErrorCode::UnknownProducerId));
        let retry_at = now + Duration::from_millis(shared.config.retry_backoff_ms);
        let retry = if refused_sequence {
            // The broker did not write the batch. Either it overtook an older batch still unsettled (that one
            // goes first on its retry), or the partition's sequence has a hole: a new epoch restarts it and
            // the batch is renumbered.
            batch.maybe_written = false;
            if !accumulator.has_unsettled_before(&tp, batch.id) {
                accumulator.epoch_bump_wanted = true;
            }
            true
        } else if error.is_retriable() {
            batch.maybe_written = true;
            true
        } else {
            false
        };
        if retry && retry_at < batch.deadline {
            tracing::debug!(partition = %tp, %error, attempts = batch.attempts, records = batch.record_count(), "retrying batch");
            batch.attempts += 1;
            batch.last_error = Some(error);
            accumulator.requeue(batch, retry_at);
            continue;
        }
        accumulator.finished(&tp, batch.id);
        // A sequenced batch that fails leaves a hole in its partition's sequence.
        accumulator.epoch_bump_wanted |= batch.sequence.is_some();
        let error = if retry { timeout_error(shared, &batch) } else { permanent_error(error, &tp) };
        batch.fail(error);
    }
    drop(accumulator);
    shared.wake.notify_one();
    refresh
}

/// Turns a broker's non-retriable answer into the error the record's owner sees.
fn permanent_error(error: Error, tp: &TopicPartition) -> Error {
    match error {
        Error::Broker(e) => Error::from_broker(e, &tp.topic),
        other => other,
    }
}

fn timeout_error(shared: &Shared, batch: &ProducerBatch) -> Error {
    Error::DeliveryTimeout {
        delivery_timeout_ms: shared.config.delivery_timeout_ms,
        last_error: batch.last_error.as_ref().map_or_else(|| "no leader available".to_owned(), ToString::to_string),
    }
}
