//! The shell around one partition replica on a simulated broker, doing what `rill_broker::partition` does:
//! steps events one at a time and carries out each step's commands in order (appends, truncations, epoch
//! checkpoints, fetches, ISR proposals), group-commit fsyncs, the leader's long-polled answers to follower
//! fetches, produce requests with the producer-table check and the acks=all wait, and consumer reads below
//! the HW.

use rill_broker::producer_state::{ProducerStateTable, Verdict};
use rill_broker::replication::{
    AlterPartitionError, Command, Event, FetchAnswer, FetchError, FetchReply, FetchRequest, ProduceError, Replica,
    ReplicaFetch, Warning,
};
use rill_tests::checker::jepsen::Op;

use crate::disk::SimBatch;
use crate::net::{CONTROLLER, ClientError, Msg, NodeId};
use crate::world::{Timer, World};

/// Batches per follower fetch answer, so that catching up takes several rounds.
const FETCH_BATCHES_MAX: usize = 4;
/// Records per consumer fetch answer.
const CLIENT_FETCH_RECORDS_MAX: usize = 8;
/// How long a leader holds a caught-up follower's fetch waiting for new records (`REPLICA_FETCH_WAIT_MS`).
const LONG_POLL_MS: u64 = 40;
/// The follower's deadline on a fetch RPC, after which it steps `Unreachable`.
const FETCH_TIMEOUT_MS: u64 = 200;
const ALTER_PARTITION_TIMEOUT_MS: u64 = 200;
/// How long the leader waits for an acks=all write to commit before answering `Timeout`.
const PRODUCE_WAIT_MS: u64 = 300;

/// A follower fetch held by the leader until new records arrive or the long poll ends.
struct Parked {
    from: NodeId,
    /// The follower's incarnation when it sent the fetch: a restarted follower must not get the answer.
    from_incarnation: u32,
    fetch_id: u64,
    fetch_offset: u64,
    high_watermark: u64,
    log_start_offset: u64,
}

/// A follower fetch answered with records read when the answer leaves.
struct Read {
    to: NodeId,
    incarnation: Option<u32>,
    fetch_id: u64,
    fetch_offset: u64,
    high_watermark: u64,
    log_start_offset: u64,
}

/// An acks=all produce waiting for the HW to pass it (`Partition::wait_committed`).
struct Waiter {
    client: NodeId,
    request_id: u64,
    base_offset: u64,
    last_offset: u64,
    leader_epoch: u32,
    deadline_ms: u64,
}

pub(crate) struct PartitionShell {
    pub(crate) replica: Replica,
    pub(crate) producers: ProducerStateTable,
    /// The metadata last applied to the replica.
    pub(crate) applied: Option<rill_broker::metadata::PartitionRecord>,
    /// The fetches sent and not yet stepped: exactly one `FetchResponse` is stepped for each.
    fetches: std::collections::BTreeSet<u64>,
    proposals: std::collections::BTreeSet<u64>,
    parked: Vec<Parked>,
    waiters: Vec<Waiter>,
    flushing: bool,
    published_high_watermark: u64,
}

impl PartitionShell {
    pub(crate) fn new(replica: Replica, producers: ProducerStateTable) -> Self {
        let published_high_watermark = replica.high_watermark();
        PartitionShell {
            replica,
            producers,
            applied: None,
            fetches: Default::default(),
            proposals: Default::default(),
            parked: Vec::new(),
            waiters: Vec::new(),
            flushing: false,
            published_high_watermark,
        }
    }
}

impl World {
    fn shell(&mut self, id: NodeId, partition: u32) -> Option<&mut PartitionShell> {
        self.brokers.get_mut(&id).and_then(|b| b.partitions.get_mut(&partition))
    }

    /// Steps one event and carries out its commands.
    pub(crate) fn step(&mut self, id: NodeId, partition: u32, event: Event) -> Option<FetchReply> {
        let shell = self.shell(id, partition)?;
        let commands = shell.replica.step(event);
        self.execute(id, partition, commands, None)
    }

    /// Carries out one step's commands in order, then publishes the new offsets (`Partition::execute`).
    /// `pending` holds the batches of the fetch answer being stepped.
    pub(crate) fn execute(
        &mut self,
        id: NodeId,
        partition: u32,
        commands: Vec<Command>,
        mut pending: Option<Vec<SimBatch>>,
    ) -> Option<FetchReply> {
        let mut fetch_reply = None;
        for command in commands {
            self.trace(|| format!("broker {id} p{partition} {command:?}"));
            match command {
                Command::ReplyFetch { reply, .. } => fetch_reply = Some(reply),
                Command::PersistEpochHistory { entries } => {
                    self.disks.get_mut(&(id, partition)).expect("a disk").epochs = entries;
                }
                Command::HighWatermarkAdvanced { .. } => {}
                Command::SendFetch(request) => self.send_fetch(id, partition, request),
                Command::AppendReplicated { batches, .. } => {
                    let records = pending.take().expect("an append answers the fetch being stepped");
                    let disk = self.disks.get_mut(&(id, partition)).expect("a disk");
                    let mut appended = Vec::new();
                    for batch in records.into_iter().filter(|b| batches.iter().any(|m| m.base_offset == b.base_offset))
                    {
                        appended.push(batch.clone());
                        disk.append(batch);
                    }
                    assert_eq!(appended.len(), batches.len(), "every accepted batch is in the answer");
                    let shell = self.shell(id, partition).expect("open");
                    for batch in &appended {
                        let producer = batch.producer_batch();
                        shell.producers.apply(&producer, batch.base_offset, batch.last_offset(), batch.timestamp_ms);
                    }
                    self.request_flush(id, partition);
                }
                Command::Truncate { offset } => {
                    self.stats.truncations += 1;
                    let disk = self.disks.get_mut(&(id, partition)).expect("a disk");
                    disk.truncate(offset);
                    let table = disk.producer_table();
                    self.shell(id, partition).expect("open").producers = table;
                }
                Command::TruncateFully { .. } => unreachable!("no retention in the simulation"),
                Command::ProposeIsr { proposal_id, leader_epoch, partition_epoch, isr } => {
                    let broker_epoch = self.brokers[&id].broker_epoch.unwrap_or(0);
                    self.shell(id, partition).expect("open").proposals.insert(proposal_id);
                    let msg = Msg::AlterPartition {
                        broker_epoch,
                        partition,
                        proposal_id,
                        leader_epoch,
                        partition_epoch,
                        isr,
                    };
                    self.send(id, CONTROLLER, msg);
                    self.schedule_timer(
                        id,
                        Timer::ProposalTimeout { partition, proposal_id },
                        ALTER_PARTITION_TIMEOUT_MS,
                    );
                }
                Command::Warn(Warning::AcknowledgedRecordsLost { high_watermark, truncate_offset }) => {
                    self.trace(|| {
                        format!(
                            "broker {id} p{partition} LOST acknowledged records {truncate_offset}..{high_watermark}"
                        )
                    });
                }
                Command::Warn(_) => {}
            }
        }
        self.publish(id, partition);
        fetch_reply
    }

    /// After a step: records a HW change, answers acks=all waiters and wakes held fetches.
    fn publish(&mut self, id: NodeId, partition: u32) {
        let incarnation = self.brokers[&id].incarnation;
        let now_ms = self.now_ms;
        let Some(shell) = self.shell(id, partition) else { return };
        let high_watermark = shell.replica.high_watermark();
        if high_watermark != shell.published_high_watermark {
            shell.published_high_watermark = high_watermark;
            self.record(Op::HighWatermark { time_ms: now_ms, broker: id, incarnation, partition, high_watermark });
        }
        self.complete_produce_waiters(id, partition);
        let log_end_offset = self.disks[&(id, partition)].log_end_offset();
        let shell = self.shell(id, partition).expect("open");
        if shell.parked.iter().any(|p| p.fetch_offset < log_end_offset) || !shell.replica.is_acting_leader() {
            self.answer_parked_fetches(id, partition, false);
        }
    }

    // Group-commit fsyncs.

    fn request_flush(&mut self, id: NodeId, partition: u32) {
        let shell = self.shell(id, partition).expect("open");
        if shell.flushing {
            return;
        }
        let disk = self.disks.get_mut(&(id, partition)).expect("a disk");
        if disk.durable_offset == disk.log_end_offset() {
            return;
        }
        disk.flush_upto = Some(disk.log_end_offset());
        self.shell(id, partition).expect("open").flushing = true;
        let fsync_ms = rand::Rng::random_range(&mut self.rng, 1..=6);
        self.schedule_timer(id, Timer::FlushDone { partition }, fsync_ms);
    }

    pub(crate) fn flush_done(&mut self, id: NodeId, partition: u32) {
        let Some(shell) = self.shell(id, partition) else { return };
        shell.flushing = false;
        let disk = self.disks.get_mut(&(id, partition)).expect("a disk");
        if let Some(upto) = disk.flush_upto.take() {
            disk.durable_offset = disk.durable_offset.max(upto.min(disk.log_end_offset()));
        }
        let flushed_offset = disk.durable_offset;
        self.step(id, partition, Event::Flushed { flushed_offset });
        self.request_flush(id, partition);
    }

    // Follower side of a fetch.

    fn send_fetch(&mut self, id: NodeId, partition: u32, request: FetchRequest) {
        let broker_epoch = self.brokers[&id].broker_epoch.unwrap_or(0);
        let fetch_id = request.fetch_id;
        self.shell(id, partition).expect("open").fetches.insert(fetch_id);
        self.send(id, request.leader, Msg::ReplicaFetch { partition, request, broker_epoch });
        self.schedule_timer(id, Timer::FetchTimeout { partition, fetch_id }, FETCH_TIMEOUT_MS);
    }

    pub(crate) fn fetch_answered(
        &mut self,
        id: NodeId,
        partition: u32,
        fetch_id: u64,
        answer: FetchAnswer,
        batches: Vec<SimBatch>,
    ) {
        let now_ms = self.now_ms;
        let Some(shell) = self.shell(id, partition) else { return };
        if !shell.fetches.remove(&fetch_id) {
            return;
        }
        let commands = shell.replica.step(Event::FetchResponse { fetch_id, answer, now_ms });
        self.execute(id, partition, commands, Some(batches));
    }

    pub(crate) fn fetch_timed_out(&mut self, id: NodeId, partition: u32, fetch_id: u64) {
        let answer = FetchAnswer::Error(FetchError::Unreachable);
        self.fetch_answered(id, partition, fetch_id, answer, Vec::new());
    }

    // Leader side of a fetch.

    pub(crate) fn answer_replica_fetch(
        &mut self,
        id: NodeId,
        partition: u32,
        from: NodeId,
        request: FetchRequest,
        broker_epoch: u64,
    ) {
        if self.shell(id, partition).is_none() {
            let answer = FetchAnswer::Error(FetchError::NotLeader);
            let msg = Msg::ReplicaFetchAnswer { partition, fetch_id: request.fetch_id, answer, batches: Vec::new() };
            return self.send(id, from, msg);
        }
        self.refresh_lease(id);
        let fetch = ReplicaFetch {
            replica_id: from,
            broker_epoch,
            current_leader_epoch: request.current_leader_epoch,
            fetch_offset: request.fetch_offset,
            last_fetched_epoch: request.last_fetched_epoch,
            flushed_offset: request.flushed_offset,
            now_ms: self.now_ms,
        };
        let reply = self.step(id, partition, Event::ReplicaFetch(fetch)).expect("a replica fetch is answered");
        let fetch_id = request.fetch_id;
        let answer = match reply {
            FetchReply::Read { fetch_offset, high_watermark, log_start_offset } => {
                let log_end_offset = self.disks[&(id, partition)].log_end_offset();
                if fetch_offset >= log_end_offset {
                    let from_incarnation = self.replying_to.map_or(0, |(_, incarnation)| incarnation);
                    let parked =
                        Parked { from, from_incarnation, fetch_id, fetch_offset, high_watermark, log_start_offset };
                    self.shell(id, partition).expect("open").parked.push(parked);
                    self.schedule_timer(id, Timer::LongPollDeadline { partition }, LONG_POLL_MS);
                    return;
                }
                let incarnation = self.replying_to.map(|(_, incarnation)| incarnation);
                let read = Read { to: from, incarnation, fetch_id, fetch_offset, high_watermark, log_start_offset };
                return self.send_read(id, partition, read);
            }
            FetchReply::Diverging { diverging_epoch, end_offset, high_watermark } => {
                FetchAnswer::Diverging { diverging_epoch, end_offset, high_watermark }
            }
            FetchReply::Error(error) => FetchAnswer::Error(error),
        };
        self.send(id, from, Msg::ReplicaFetchAnswer { partition, fetch_id, answer, batches: Vec::new() });
    }

    /// Reads the log from `fetch_offset` when the answer goes out, as `answer_replica_fetch` does after its
    /// long poll: the HW may have moved up meanwhile, and a log cut below the offset is answered `NotLeader`.
    fn send_read(&mut self, id: NodeId, partition: u32, read: Read) {
        let Read { to, incarnation, fetch_id, fetch_offset, high_watermark, log_start_offset } = read;
        let disk = &self.disks[&(id, partition)];
        let answer_and_batches = if fetch_offset > disk.log_end_offset() {
            (FetchAnswer::Error(FetchError::NotLeader), Vec::new())
        } else {
            let batches: Vec<SimBatch> =
                disk.log.iter().filter(|b| b.base_offset >= fetch_offset).take(FETCH_BATCHES_MAX).cloned().collect();
            let current = self.brokers[&id].partitions[&partition].replica.high_watermark();
            let high_watermark = high_watermark.max(current);
            let metas = batches.iter().map(SimBatch::meta).collect();
            (FetchAnswer::Records { batches: metas, high_watermark, log_start_offset }, batches)
        };
        let (answer, batches) = answer_and_batches;
        self.send_to_incarnation(id, to, incarnation, Msg::ReplicaFetchAnswer { partition, fetch_id, answer, batches });
    }

    /// Answers held fetches that have news (or all of them, at the long poll's end).
    pub(crate) fn answer_parked_fetches(&mut self, id: NodeId, partition: u32, deadline: bool) {
        let Some(log_end_offset) = self.disks.get(&(id, partition)).map(|d| d.log_end_offset()) else { return };
        let Some(shell) = self.shell(id, partition) else { return };
        let leading = shell.replica.is_acting_leader();
        let (ready, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut shell.parked)
            .into_iter()
            .partition(|p| deadline || !leading || p.fetch_offset < log_end_offset);
        shell.parked = waiting;
        for p in ready {
            let read = Read {
                to: p.from,
                incarnation: Some(p.from_incarnation),
                fetch_id: p.fetch_id,
                fetch_offset: p.fetch_offset,
                high_watermark: p.high_watermark,
                log_start_offset: p.log_start_offset,
            };
            self.send_read(id, partition, read);
        }
    }

    // ISR proposals.

    pub(crate) fn proposal_answered(
        &mut self,
        id: NodeId,
        partition: u32,
        proposal_id: u64,
        result: Result<Result<rill_broker::replication::AcceptedIsr, AlterPartitionError>, ()>,
    ) {
        let Some(shell) = self.shell(id, partition) else { return };
        if !shell.proposals.remove(&proposal_id) {
            return;
        }
        let result = result.unwrap_or(Err(AlterPartitionError::Unavailable));
        self.step(id, partition, Event::AlterPartitionResponse { proposal_id, result });
    }

    pub(crate) fn proposal_timed_out(&mut self, id: NodeId, partition: u32, proposal_id: u64) {
        self.proposal_answered(id, partition, proposal_id, Err(()));
    }

    // Clients.

    /// A produce request (`Partition::append` and the acks=all wait of the produce service).
    pub(crate) fn produce(&mut self, id: NodeId, client: NodeId, request_id: u64, partition: u32, mut batch: SimBatch) {
        let refuse =
            |world: &mut World, error| world.send(id, client, Msg::ProduceAnswer { request_id, result: Err(error) });
        if self.shell(id, partition).is_none() {
            return refuse(self, ClientError::NotLeader);
        }
        self.refresh_lease(id);
        let shell = self.shell(id, partition).expect("open");
        match shell.replica.check_produce(true) {
            Ok(()) => {}
            Err(ProduceError::NotLeader) => return refuse(self, ClientError::NotLeader),
            Err(ProduceError::NotEnoughReplicas { .. }) => return refuse(self, ClientError::NotEnoughReplicas),
        }
        let leader_epoch = shell.replica.leader_epoch().expect("a leader has an epoch");
        let (base_offset, last_offset) = match shell.producers.check(&batch.producer_batch()) {
            Verdict::Append => {
                let disk = self.disks.get_mut(&(id, partition)).expect("a disk");
                batch.base_offset = disk.log_end_offset();
                batch.leader_epoch = leader_epoch;
                let (base_offset, last_offset) = (batch.base_offset, batch.last_offset());
                let producer = batch.producer_batch();
                let timestamp_ms = batch.timestamp_ms;
                disk.append(batch);
                let log_end_offset = disk.log_end_offset();
                self.record(Op::LeaderWrite {
                    time_ms: self.now_ms,
                    broker: id,
                    partition,
                    leader_epoch,
                    offset: base_offset,
                });
                self.shell(id, partition).expect("open").producers.apply(
                    &producer,
                    base_offset,
                    last_offset,
                    timestamp_ms,
                );
                self.step(id, partition, Event::Appended { log_end_offset });
                self.request_flush(id, partition);
                (base_offset, last_offset)
            }
            Verdict::Duplicate { base_offset, last_offset } => (base_offset, last_offset),
            _ => return refuse(self, ClientError::ProducerState),
        };
        let deadline_ms = self.now_ms + PRODUCE_WAIT_MS;
        let waiter = Waiter { client, request_id, base_offset, last_offset, leader_epoch, deadline_ms };
        self.shell(id, partition).expect("open").waiters.push(waiter);
        self.schedule_timer(id, Timer::ProduceDeadline { partition }, PRODUCE_WAIT_MS);
        self.complete_produce_waiters(id, partition);
    }

    /// Answers the waiters whose records the HW passed, and fails them all once this broker stops leading
    /// in their epoch. An acknowledgement records which ISR members held the records durably.
    fn complete_produce_waiters(&mut self, id: NodeId, partition: u32) {
        let shell = self.shell(id, partition).expect("open");
        if shell.waiters.is_empty() {
            return;
        }
        let high_watermark = shell.replica.high_watermark();
        let leading = shell.replica.is_acting_leader();
        let epoch = shell.replica.leader_epoch();
        let (done, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut shell.waiters)
            .into_iter()
            .partition(|w| high_watermark > w.last_offset || !leading || epoch != Some(w.leader_epoch));
        shell.waiters = waiting;
        for waiter in done {
            if high_watermark > waiter.last_offset {
                self.record_ack_replication(id, partition, waiter.last_offset);
                let msg = Msg::ProduceAnswer { request_id: waiter.request_id, result: Ok(waiter.base_offset) };
                self.send(id, waiter.client, msg);
            } else {
                let msg = Msg::ProduceAnswer { request_id: waiter.request_id, result: Err(ClientError::NotLeader) };
                self.send(id, waiter.client, msg);
            }
        }
    }

    fn record_ack_replication(&mut self, id: NodeId, partition: u32, offset: u64) {
        let leader_disk = &self.disks[&(id, partition)];
        let Some(value) = leader_disk.records().into_iter().find(|(o, _)| *o == offset).map(|(_, v)| v) else {
            panic!("broker {id} acknowledged {partition}@{offset}, which its log lacks")
        };
        let isr = self.controller.partition(partition).map(|s| s.isr.clone()).unwrap_or_default();
        let durable_on: Vec<u32> = self
            .disks
            .iter()
            .filter(|((_, p), disk)| *p == partition && disk.holds_durably(offset, value))
            .map(|((b, _), _)| *b)
            .collect();
        self.record(Op::AckReplication { time_ms: self.now_ms, partition, offset, isr, durable_on });
    }

    pub(crate) fn expire_produce_waiters(&mut self, id: NodeId, partition: u32) {
        let now_ms = self.now_ms;
        let Some(shell) = self.shell(id, partition) else { return };
        let (expired, waiting): (Vec<Waiter>, Vec<Waiter>) =
            std::mem::take(&mut shell.waiters).into_iter().partition(|w| w.deadline_ms <= now_ms);
        shell.waiters = waiting;
        for waiter in expired {
            let msg = Msg::ProduceAnswer { request_id: waiter.request_id, result: Err(ClientError::Timeout) };
            self.send(id, waiter.client, msg);
        }
    }

    /// A consumer's fetch, served by the acting leader below its HW (`Partition::read`).
    pub(crate) fn client_fetch(&mut self, id: NodeId, client: NodeId, request_id: u64, partition: u32, offset: u64) {
        if self.shell(id, partition).is_some() {
            self.refresh_lease(id);
        }
        let result = match self.shell(id, partition) {
            Some(shell) if shell.replica.is_acting_leader() => {
                let high_watermark = shell.replica.high_watermark();
                let disk = &self.disks[&(id, partition)];
                let upper = if self.options.planted.read_beyond_high_watermark {
                    disk.log_end_offset()
                } else {
                    high_watermark
                };
                if offset > disk.log_end_offset() {
                    Err(ClientError::OffsetOutOfRange)
                } else {
                    let records = disk
                        .records()
                        .into_iter()
                        .filter(|(o, _)| *o >= offset && *o < upper)
                        .take(CLIENT_FETCH_RECORDS_MAX)
                        .collect();
                    Ok(records)
                }
            }
            _ => Err(ClientError::NotLeader),
        };
        self.send(id, client, Msg::FetchAnswer { request_id, result });
    }
}
