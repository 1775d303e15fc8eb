//! Simulated clients with retries, behaving like `rill_client`'s: producers (idempotent or not) that write
//! numbered records with acks=all, one batch in flight, retrying each batch until it is acknowledged; and
//! consumers that read every partition from offset 0 through its leader. Both find leaders by asking any
//! broker for metadata, so they may act on a broker's stale view.

use std::collections::BTreeMap;

use rand::Rng;
use rill_tests::checker::jepsen::{Op, Value};

use crate::disk::SimBatch;
use crate::net::{CONTROLLER, ClientError, Msg, NodeId};
use crate::world::{Timer, World};

const REQUEST_TIMEOUT_MS: u64 = 400;
const RETRY_BACKOFF_MS: u64 = 30;
const RECORDS_PER_BATCH_MAX: u64 = 3;
const CONSUMER_POLL_INTERVAL_MS: u64 = 15;
/// Ids of requests that are not produce or fetch requests (metadata, InitProducerId) need no matching.
const INIT_REQUEST: u64 = u64::MAX;

/// A batch waiting to be acknowledged.
struct Batch {
    partition: u32,
    values: Vec<Value>,
    base_sequence: i32,
}

pub(crate) struct Producer {
    pub(crate) id: NodeId,
    idempotent: bool,
    /// The producer id and epoch granted by InitProducerId; `None` until granted, or after a refusal.
    granted: Option<(i64, i16)>,
    /// The id and epoch to present when asking for a new epoch.
    previous: (i64, i16),
    needs_init: bool,
    sequences: BTreeMap<u32, i32>,
    next_seq: u64,
    leaders: BTreeMap<u32, NodeId>,
    current: Option<Batch>,
    in_flight: Option<u64>,
    next_request_id: u64,
}

impl Producer {
    pub(crate) fn new(id: NodeId, idempotent: bool) -> Self {
        Producer {
            id,
            idempotent,
            granted: None,
            previous: (-1, -1),
            needs_init: idempotent,
            sequences: BTreeMap::new(),
            next_seq: 0,
            leaders: BTreeMap::new(),
            current: None,
            in_flight: None,
            next_request_id: 0,
        }
    }

    pub(crate) fn busy(&self) -> bool {
        self.current.is_some() || self.in_flight.is_some()
    }
}

pub(crate) struct Consumer {
    pub(crate) id: NodeId,
    positions: BTreeMap<u32, u64>,
    leaders: BTreeMap<u32, NodeId>,
    in_flight: Option<(u64, u32)>,
    next_partition: u32,
    next_request_id: u64,
}

impl Consumer {
    pub(crate) fn new(id: NodeId) -> Self {
        Consumer {
            id,
            positions: BTreeMap::new(),
            leaders: BTreeMap::new(),
            in_flight: None,
            next_partition: 0,
            next_request_id: 0,
        }
    }

    pub(crate) fn position(&self, partition: u32) -> u64 {
        self.positions.get(&partition).copied().unwrap_or(0)
    }
}

impl World {
    pub(crate) fn client_timer(&mut self, id: NodeId, timer: Timer) {
        match timer {
            Timer::ClientWake if self.producers.contains_key(&id) => self.producer_wake(id),
            Timer::ClientWake => self.consumer_wake(id),
            Timer::ClientTimeout { request_id } => {
                if let Some(producer) = self.producers.get_mut(&id) {
                    if producer.in_flight == Some(request_id) {
                        producer.in_flight = None;
                        self.client_retry(id);
                    }
                } else if let Some(consumer) = self.consumers.get_mut(&id)
                    && consumer.in_flight.is_some_and(|(r, _)| r == request_id)
                {
                    consumer.in_flight = None;
                    self.client_retry(id);
                }
            }
            other => unreachable!("not a client timer: {other:?}"),
        }
    }

    /// After a failure: ask a random broker where the leaders are, and try again after a backoff.
    fn client_retry(&mut self, id: NodeId) {
        let broker = self.rng.random_range(1..=self.options.brokers);
        self.send(id, broker, Msg::MetadataRequest);
        self.schedule_timer(id, Timer::ClientWake, RETRY_BACKOFF_MS);
    }

    fn producer_wake(&mut self, id: NodeId) {
        let partitions = self.options.partitions;
        let producer = self.producers.get_mut(&id).expect("a producer");
        if producer.in_flight.is_some() {
            return;
        }
        if producer.needs_init {
            let (producer_id, producer_epoch) = producer.granted.unwrap_or(producer.previous);
            producer.in_flight = Some(INIT_REQUEST);
            self.send(id, CONTROLLER, Msg::InitProducerId { producer_id, producer_epoch });
            return self.schedule_timer(id, Timer::ClientTimeout { request_id: INIT_REQUEST }, REQUEST_TIMEOUT_MS);
        }
        if producer.current.is_none() {
            if self.healing {
                return;
            }
            let partition = self.rng.random_range(0..partitions);
            let count = self.rng.random_range(1..=RECORDS_PER_BATCH_MAX);
            let producer = self.producers.get_mut(&id).expect("a producer");
            let values: Vec<Value> = (producer.next_seq..producer.next_seq + count).map(|seq| (id, seq)).collect();
            producer.next_seq += count;
            let sequence = producer.sequences.entry(partition).or_insert(0);
            let base_sequence = *sequence;
            *sequence += count as i32;
            let idempotent = producer.idempotent;
            producer.current = Some(Batch { partition, values: values.clone(), base_sequence });
            for (producer, seq) in values {
                self.record(Op::Send { time_ms: self.now_ms, producer, seq, partition, idempotent });
            }
        }
        let producer = self.producers.get_mut(&id).expect("a producer");
        let batch = producer.current.as_ref().expect("a batch to send");
        let Some(&leader) = producer.leaders.get(&batch.partition).filter(|&&l| l != 0) else {
            return self.client_retry(id);
        };
        let (producer_id, producer_epoch) =
            if producer.idempotent { producer.granted.expect("granted before sending") } else { (-1, -1) };
        let sim_batch = SimBatch {
            base_offset: 0,
            leader_epoch: 0,
            producer_id,
            producer_epoch,
            base_sequence: if producer.idempotent { batch.base_sequence } else { -1 },
            timestamp_ms: self.now_ms as i64,
            values: batch.values.clone(),
        };
        let partition = batch.partition;
        let request_id = producer.next_request_id;
        producer.next_request_id += 1;
        producer.in_flight = Some(request_id);
        self.send(id, leader, Msg::Produce { request_id, partition, batch: sim_batch });
        self.schedule_timer(id, Timer::ClientTimeout { request_id }, REQUEST_TIMEOUT_MS);
    }

    fn consumer_wake(&mut self, id: NodeId) {
        let partitions = self.options.partitions;
        let consumer = self.consumers.get_mut(&id).expect("a consumer");
        if consumer.in_flight.is_some() {
            return;
        }
        let partition = consumer.next_partition;
        consumer.next_partition = (partition + 1) % partitions;
        let Some(&leader) = consumer.leaders.get(&partition).filter(|&&l| l != 0) else {
            return self.client_retry(id);
        };
        let request_id = consumer.next_request_id;
        consumer.next_request_id += 1;
        consumer.in_flight = Some((request_id, partition));
        let offset = consumer.position(partition);
        self.send(id, leader, Msg::Fetch { request_id, partition, offset });
        self.schedule_timer(id, Timer::ClientTimeout { request_id }, REQUEST_TIMEOUT_MS);
    }

    pub(crate) fn client_receive(&mut self, id: NodeId, _from: NodeId, msg: Msg) {
        match msg {
            Msg::MetadataAnswer { leaders } => {
                let map = if let Some(p) = self.producers.get_mut(&id) {
                    &mut p.leaders
                } else {
                    &mut self.consumers.get_mut(&id).expect("a client").leaders
                };
                map.extend(leaders);
            }
            Msg::InitProducerIdAnswer { granted } => {
                let producer = self.producers.get_mut(&id).expect("a producer");
                if producer.in_flight != Some(INIT_REQUEST) {
                    return;
                }
                producer.in_flight = None;
                match granted {
                    Some(grant) => {
                        producer.granted = Some(grant);
                        producer.needs_init = false;
                        // A new epoch restarts every sequence; the batch in hand is sent again from 0.
                        producer.sequences.clear();
                        if let Some(batch) = &mut producer.current {
                            batch.base_sequence = 0;
                            producer.sequences.insert(batch.partition, batch.values.len() as i32);
                        }
                    }
                    // Fenced or unknown: start over with a new producer id.
                    None => {
                        producer.granted = None;
                        producer.previous = (-1, -1);
                    }
                }
                self.schedule_timer(id, Timer::ClientWake, 1);
            }
            Msg::ProduceAnswer { request_id, result } => {
                let producer = self.producers.get_mut(&id).expect("a producer");
                if producer.in_flight != Some(request_id) {
                    return;
                }
                producer.in_flight = None;
                match result {
                    Ok(base_offset) => {
                        let batch = producer.current.take().expect("the batch answered");
                        for (i, (producer, seq)) in batch.values.into_iter().enumerate() {
                            let offset = base_offset + i as u64;
                            let partition = batch.partition;
                            self.record(Op::Ack { time_ms: self.now_ms, producer, seq, partition, offset });
                        }
                        let think_ms = self.rng.random_range(1..=20);
                        self.schedule_timer(id, Timer::ClientWake, think_ms);
                    }
                    // The partition lost this producer's state: ask for a new epoch and send the batch again
                    // (KIP-360), which is safe only if the broker kept its state whenever it should have.
                    Err(ClientError::ProducerState) => {
                        producer.needs_init = true;
                        producer.previous = producer.granted.unwrap_or((-1, -1));
                        self.schedule_timer(id, Timer::ClientWake, RETRY_BACKOFF_MS);
                    }
                    Err(_) => self.client_retry(id),
                }
            }
            Msg::FetchAnswer { request_id, result } => {
                let consumer = self.consumers.get_mut(&id).expect("a consumer");
                let Some((_, partition)) = consumer.in_flight.filter(|(r, _)| *r == request_id) else { return };
                consumer.in_flight = None;
                match result {
                    Ok(records) => {
                        let position = consumer.position(partition);
                        let records: Vec<(u64, Value)> = records.into_iter().filter(|(o, _)| *o >= position).collect();
                        if let Some(&(last, _)) = records.last() {
                            consumer.positions.insert(partition, last + 1);
                            self.record(Op::Poll { time_ms: self.now_ms, consumer: id, partition, records });
                        }
                        self.schedule_timer(id, Timer::ClientWake, CONSUMER_POLL_INTERVAL_MS);
                    }
                    // The leader's log will grow to the position again: wait for it.
                    Err(ClientError::OffsetOutOfRange) => self.schedule_timer(id, Timer::ClientWake, RETRY_BACKOFF_MS),
                    Err(ClientError::NotLeader) if self.options.planted.consumer_rewinds_on_leader_change => {
                        consumer.positions.insert(partition, 0);
                        self.client_retry(id);
                    }
                    Err(_) => self.client_retry(id),
                }
            }
            other => unreachable!("client {id} got {other:?}"),
        }
    }
}
