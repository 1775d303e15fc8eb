//! Three replicas wired together in memory: a tiny network that turns commands into events, fake logs of
//! batches that lose their unflushed tail in a crash, a controller model, and an oracle checked every round.
//! With a seed it also shuffles each round's deliveries and duplicates some fetches.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::*;

/// How many batches a leader returns per fetch, so that catching up takes several rounds.
const FETCH_BATCHES_MAX: usize = 3;
pub(super) const BROKERS: [u32; 3] = [1, 2, 3];

/// A record as the oracle sees it: its offset and the leader epoch that wrote it.
pub(super) type Record = (u64, u32);

/// A broker: its replica and the fake log its shell keeps.
pub(super) struct Node {
    pub(super) replica: Replica,
    /// The log as batches; records are `(offset, epoch)` pairs expanded from them.
    pub(super) log: Vec<BatchMeta>,
    pub(super) flushed_offset: u64,
    pub(super) persisted_epochs: Vec<EpochEntry>,
    /// The last HW the shell was told of, which it checkpoints.
    pub(super) high_watermark_checkpoint: u64,
    /// Its registration generation, bumped by every restart.
    pub(super) broker_epoch: u64,
}

impl Node {
    fn new(id: u32) -> Self {
        Node {
            replica: replica_with_log(id, true, 0),
            log: Vec::new(),
            flushed_offset: 0,
            persisted_epochs: Vec::new(),
            high_watermark_checkpoint: 0,
            broker_epoch: 1,
        }
    }

    pub(super) fn log_end_offset(&self) -> u64 {
        self.log.last().map_or(0, |batch| batch.last_offset + 1)
    }

    pub(super) fn records(&self) -> Vec<Record> {
        let records =
            self.log.iter().flat_map(|b| (b.base_offset..=b.last_offset).map(|o| (o, b.partition_leader_epoch)));
        records.collect()
    }
}

enum Message {
    Event(Event),
    /// The shell steps `Flushed` with the log's flushed offset at the time it steps it (see `Event::Flushed`).
    FlushNow,
    Fetch {
        request: FetchRequest,
        from: u32,
        broker_epoch: u64,
    },
}

/// The controller's view of the partition.
pub(super) struct ControllerModel {
    pub(super) leader: u32,
    pub(super) leader_epoch: u32,
    pub(super) partition_epoch: u32,
    pub(super) isr: BTreeSet<u32>,
}

/// xorshift64*: enough randomness for a test, and the same seed always replays the same run.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// How often the interesting paths ran, so a fault test can show that its faults happened.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Coverage {
    pub(super) truncations: u64,
    pub(super) isr_shrinks: u64,
    pub(super) isr_expansions: u64,
    pub(super) elections: u64,
    pub(super) crashes: u64,
    pub(super) refused_fetches: u64,
}

pub(super) struct Cluster {
    pub(super) nodes: BTreeMap<u32, Node>,
    queue: VecDeque<(u32, Message)>,
    now_ms: u64,
    /// Time per round of `run`.
    pub(super) round_ms: u64,
    pub(super) controller: ControllerModel,
    /// Brokers cut off from the other brokers (not from the controller): their fetches fail as unreachable.
    pub(super) isolated: BTreeSet<u32>,
    /// Shuffles deliveries and duplicates fetches when set.
    pub(super) chaos: Option<Rng>,
    /// Produced records waiting for their leader's HW to pass them.
    pub(super) unacknowledged: Vec<Record>,
    pub(super) acknowledged: Vec<Record>,
    /// Records whose produce request failed because their leader lost its leadership first.
    pub(super) failed: Vec<Record>,
    pub(super) coverage: Coverage,
}

impl Cluster {
    pub(super) fn new() -> Self {
        let nodes = BROKERS.into_iter().map(|id| (id, Node::new(id))).collect();
        let controller = ControllerModel { leader: 0, leader_epoch: 0, partition_epoch: 0, isr: BROKERS.into() };
        let mut cluster = Cluster {
            nodes,
            queue: VecDeque::new(),
            now_ms: 0,
            round_ms: 10,
            controller,
            isolated: BTreeSet::new(),
            chaos: None,
            unacknowledged: Vec::new(),
            acknowledged: Vec::new(),
            failed: Vec::new(),
            coverage: Coverage::default(),
        };
        cluster.elect(1);
        cluster
    }

    /// The controller elects `leader` from its ISR with a new leader epoch and tells every broker.
    pub(super) fn elect(&mut self, leader: u32) {
        assert!(self.controller.isr.contains(&leader), "clean election only");
        // The deposed leader's shell fails its acks=all waiters: their records may or may not survive.
        self.failed.append(&mut self.unacknowledged);
        self.controller.leader = leader;
        self.coverage.elections += 1;
        self.controller.leader_epoch += 1;
        self.controller.partition_epoch += 1;
        self.publish_metadata();
    }

    fn publish_metadata(&mut self) {
        for id in BROKERS {
            self.send_metadata(id);
        }
    }

    fn send_metadata(&mut self, id: u32) {
        let ControllerModel { leader, leader_epoch, partition_epoch, ref isr } = self.controller;
        let (isr, replicas) = (isr.iter().copied().collect(), BROKERS.to_vec());
        let event = if id == leader {
            Event::BecomeLeader { leader_epoch, partition_epoch, replicas, isr, now_ms: self.now_ms }
        } else {
            Event::BecomeFollower { leader, leader_epoch, partition_epoch, replicas, isr }
        };
        self.step(id, event);
    }

    /// The producer writes `records` records to the controller's leader with acks=all, if it takes them.
    pub(super) fn produce(&mut self, records: u64) -> bool {
        let id = self.controller.leader;
        let node = self.nodes.get_mut(&id).unwrap();
        if node.replica.check_produce(true).is_err() {
            return false;
        }
        let epoch = node.replica.leader_epoch().unwrap();
        let base_offset = node.log_end_offset();
        node.log.push(BatchMeta { base_offset, last_offset: base_offset + records - 1, partition_leader_epoch: epoch });
        self.unacknowledged.extend((base_offset..base_offset + records).map(|offset| (offset, epoch)));
        let log_end_offset = node.log_end_offset();
        self.step(id, Event::Appended { log_end_offset });
        self.queue.push_back((id, Message::FlushNow));
        true
    }

    /// Kills broker `id`: its unflushed records and everything in flight to or from it are gone. It restarts
    /// from what its shell persisted, with a new broker epoch, and the controller moves its leadership (if
    /// any) to a new epoch, as it does for a broker that re-registers.
    pub(super) fn crash_and_restart(&mut self, id: u32) {
        self.queue.retain(|(to, message)| *to != id && !matches!(message, Message::Fetch { from, .. } if *from == id));
        self.coverage.crashes += 1;
        let node = self.nodes.get_mut(&id).unwrap();
        let flushed_offset = node.flushed_offset;
        node.log.retain(|batch| batch.last_offset < flushed_offset);
        assert_eq!(node.log_end_offset(), flushed_offset, "flushes cover whole batches");
        let recovered = RecoveredLog {
            log_start_offset: 0,
            log_end_offset: flushed_offset,
            flushed_offset,
            high_watermark: node.high_watermark_checkpoint,
            epochs: EpochHistory::from_entries(node.persisted_epochs.clone()).unwrap(),
        };
        let (replica, commands) = Replica::new(config(id, true), recovered);
        node.replica = replica;
        node.broker_epoch += 1;
        node.high_watermark_checkpoint = node.replica.high_watermark();
        self.execute(id, commands, None);
        if self.controller.leader == id {
            let candidates: Vec<u32> = self.controller.isr.iter().copied().collect();
            let pick = self.chaos.as_mut().map_or(0, |rng| rng.below(candidates.len() as u64) as usize);
            self.elect(candidates[pick]);
        } else {
            self.send_metadata(id);
        }
    }

    pub(super) fn step(&mut self, id: u32, event: Event) {
        let commands = self.nodes.get_mut(&id).unwrap().replica.step(event);
        self.execute(id, commands, None);
    }

    /// What the shell does with a step's commands. `fetch` names the fetch being answered, if any.
    fn execute(&mut self, id: u32, commands: Vec<Command>, fetch: Option<(u32, u64)>) {
        for command in commands {
            match command {
                Command::ReplyFetch { replica_id, reply } => {
                    let (follower, fetch_id) = fetch.expect("replies answer a fetch");
                    assert_eq!(follower, replica_id);
                    let answer = self.answer(id, reply);
                    let response = Event::FetchResponse { fetch_id, answer, now_ms: self.now_ms };
                    self.queue.push_back((follower, Message::Event(response)));
                }
                Command::SendFetch(request) => {
                    let broker_epoch = self.nodes[&id].broker_epoch;
                    self.queue.push_back((request.leader, Message::Fetch { request, from: id, broker_epoch }));
                }
                Command::AppendReplicated { batches, .. } => {
                    let node = self.nodes.get_mut(&id).unwrap();
                    assert_eq!(batches[0].base_offset, node.log_end_offset());
                    node.log.extend(batches);
                    self.queue.push_back((id, Message::FlushNow));
                }
                Command::Truncate { offset } => {
                    self.coverage.truncations += 1;
                    let node = self.nodes.get_mut(&id).unwrap();
                    node.log.retain(|batch| batch.last_offset < offset);
                    assert_eq!(node.log_end_offset(), offset, "truncations fall on batch boundaries");
                    node.flushed_offset = node.flushed_offset.min(offset);
                }
                Command::TruncateFully { .. } => panic!("no retention here, so no follower falls below a log start"),
                Command::PersistEpochHistory { entries } => self.nodes.get_mut(&id).unwrap().persisted_epochs = entries,
                Command::HighWatermarkAdvanced { high_watermark } => self.high_watermark_advanced(id, high_watermark),
                Command::ProposeIsr { proposal_id, leader_epoch, partition_epoch, isr } => {
                    self.alter_partition(id, proposal_id, leader_epoch, partition_epoch, isr)
                }
                Command::Warn(warning) => {
                    self.coverage.refused_fetches += u64::from(matches!(warning, Warning::FetchRefused { .. }));
                    assert!(!matches!(warning, Warning::AcknowledgedRecordsLost { .. }), "{warning:?}");
                }
            }
        }
    }

    /// The leader shell reads what the reply asks for from its log.
    fn answer(&self, leader: u32, reply: FetchReply) -> FetchAnswer {
        match reply {
            FetchReply::Read { fetch_offset, high_watermark, log_start_offset } => {
                let log = &self.nodes[&leader].log;
                let batches: Vec<BatchMeta> =
                    log.iter().filter(|b| b.base_offset >= fetch_offset).take(FETCH_BATCHES_MAX).copied().collect();
                assert!(batches.first().is_none_or(|b| b.base_offset == fetch_offset), "fetches start at batches");
                FetchAnswer::Records { batches, high_watermark, log_start_offset }
            }
            FetchReply::Diverging { diverging_epoch, end_offset, high_watermark } => {
                FetchAnswer::Diverging { diverging_epoch, end_offset, high_watermark }
            }
            FetchReply::Error(error) => FetchAnswer::Error(error),
        }
    }

    fn high_watermark_advanced(&mut self, id: u32, high_watermark: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        assert!(high_watermark > node.high_watermark_checkpoint, "HW moved backwards on {id}");
        node.high_watermark_checkpoint = high_watermark;
        if node.replica.role() == Role::Leader {
            // The shell completes acks=all requests for records now below the leader's HW.
            let (done, waiting): (Vec<Record>, Vec<Record>) =
                self.unacknowledged.iter().partition(|&&(offset, _)| offset < high_watermark);
            let records = node.records();
            for record in &done {
                assert_eq!(records.get(record.0 as usize), Some(record), "acknowledged a record the leader lacks");
            }
            self.acknowledged.extend(done);
            self.unacknowledged = waiting;
        }
    }

    fn alter_partition(
        &mut self,
        leader: u32,
        proposal_id: u64,
        leader_epoch: u32,
        partition_epoch: u32,
        isr: Vec<u32>,
    ) {
        let result = if leader_epoch != self.controller.leader_epoch {
            Err(AlterPartitionError::FencedLeaderEpoch)
        } else if partition_epoch != self.controller.partition_epoch {
            Err(AlterPartitionError::StalePartitionEpoch)
        } else {
            self.controller.partition_epoch += 1;
            let isr_after: BTreeSet<u32> = isr.iter().copied().collect();
            self.coverage.isr_shrinks += u64::from(isr_after.len() < self.controller.isr.len());
            self.coverage.isr_expansions += u64::from(isr_after.len() > self.controller.isr.len());
            self.controller.isr = isr_after;
            Ok(AcceptedIsr { isr, partition_epoch: self.controller.partition_epoch })
        };
        let accepted = result.is_ok();
        self.queue.push_back((leader, Message::Event(Event::AlterPartitionResponse { proposal_id, result })));
        if accepted {
            self.publish_metadata();
        }
    }

    fn deliver(&mut self, to: u32, message: Message) {
        match message {
            Message::Event(event) => self.step(to, event),
            Message::FlushNow => {
                let node = self.nodes.get_mut(&to).unwrap();
                node.flushed_offset = node.log_end_offset();
                let flushed_offset = node.flushed_offset;
                self.step(to, Event::Flushed { flushed_offset });
            }
            Message::Fetch { request, from, .. } if self.isolated.contains(&to) || self.isolated.contains(&from) => {
                let answer = FetchAnswer::Error(FetchError::Unreachable);
                let response = Event::FetchResponse { fetch_id: request.fetch_id, answer, now_ms: self.now_ms };
                self.queue.push_back((from, Message::Event(response)));
            }
            Message::Fetch { request, from, broker_epoch } => {
                let fetch = ReplicaFetch {
                    replica_id: from,
                    broker_epoch,
                    current_leader_epoch: request.current_leader_epoch,
                    fetch_offset: request.fetch_offset,
                    last_fetched_epoch: request.last_fetched_epoch,
                    flushed_offset: request.flushed_offset,
                    now_ms: self.now_ms,
                };
                let commands = self.nodes.get_mut(&to).unwrap().replica.step(Event::ReplicaFetch(fetch));
                self.execute(to, commands, Some((from, request.fetch_id)));
            }
        }
    }

    /// Each round: time advances, every replica ticks, and the messages queued before the round are delivered
    /// (the ones they cause wait for the next round, so an idle follower's refetching cannot spin forever).
    pub(super) fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.now_ms += self.round_ms;
            for id in BROKERS {
                self.step(id, Event::Tick { now_ms: self.now_ms });
            }
            let mut round: Vec<(u32, Message)> = self.queue.drain(..).collect();
            if let Some(rng) = &mut self.chaos {
                shuffle(&mut round, rng);
                duplicate_some_fetches(&mut round, rng);
            }
            for (to, message) in round {
                self.deliver(to, message);
            }
            self.check_prefix_agreement();
        }
    }

    /// Every replica's log below its HW matches the leader's there.
    fn check_prefix_agreement(&self) {
        let leader_records = self.nodes[&self.controller.leader].records();
        for (id, node) in &self.nodes {
            let high_watermark = node.replica.high_watermark() as usize;
            let records = node.records();
            assert!(records.len() >= high_watermark, "{id}: HW above its log");
            assert!(leader_records.len() >= high_watermark, "{id}: HW {high_watermark} above the leader's log");
            assert_eq!(records[..high_watermark], leader_records[..high_watermark], "{id} differs below its HW");
        }
    }

    /// Every acknowledged record is in every log, at its offset.
    pub(super) fn check_acknowledged_everywhere(&self) {
        for (id, node) in &self.nodes {
            let records = node.records();
            for record in &self.acknowledged {
                assert_eq!(records.get(record.0 as usize), Some(record), "acknowledged {record:?} missing on {id}");
            }
        }
    }
}

fn shuffle(round: &mut [(u32, Message)], rng: &mut Rng) {
    for i in (1..round.len()).rev() {
        round.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

/// A fetch delivered twice (a retry after a lost answer): the leader answers both, the follower takes one.
fn duplicate_some_fetches(round: &mut Vec<(u32, Message)>, rng: &mut Rng) {
    let mut copies = Vec::new();
    for (to, message) in round.iter() {
        if let Message::Fetch { request, from, broker_epoch } = message
            && rng.chance(5)
        {
            copies.push((*to, Message::Fetch { request: request.clone(), from: *from, broker_epoch: *broker_epoch }));
        }
    }
    round.extend(copies);
}
