//! Three replicas wired together in memory: a tiny network that turns commands into events, fake logs of
//! batches, and a hand-driven controller. It checks that after leader changes with divergent tails every
//! replica converges on one log and that no acknowledged (below-HW) record is lost.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::*;

/// How many batches a leader returns per fetch, so that catching up takes several rounds.
const FETCH_BATCHES_MAX: usize = 3;
const ROUND_MS: u64 = 10;

/// A record as the oracle sees it: its offset and the leader epoch that wrote it.
type Record = (u64, u32);

/// A broker: its replica and the fake log the shell would keep.
struct Node {
    replica: Replica,
    /// The log as batches; records are `(offset, epoch)` pairs expanded from them.
    log: Vec<BatchMeta>,
    flushed_offset: u64,
    persisted_epochs: Vec<EpochEntry>,
    high_watermark_seen: u64,
}

impl Node {
    fn log_end_offset(&self) -> u64 {
        self.log.last().map_or(0, |batch| batch.last_offset + 1)
    }

    fn records(&self) -> Vec<Record> {
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
    },
}

/// The controller's view of the partition.
struct ControllerModel {
    leader: u32,
    leader_epoch: u32,
    partition_epoch: u32,
    isr: BTreeSet<u32>,
}

struct Cluster {
    nodes: BTreeMap<u32, Node>,
    queue: VecDeque<(u32, Message)>,
    now_ms: u64,
    controller: ControllerModel,
    /// Brokers cut off from everyone: their fetches and fetch answers fail as unreachable.
    isolated: BTreeSet<u32>,
    /// Produced records waiting for their leader's HW to pass them.
    unacknowledged: Vec<Record>,
    acknowledged: Vec<Record>,
    /// Records whose produce request failed because their leader lost its leadership first.
    failed: Vec<Record>,
}

impl Cluster {
    fn new() -> Self {
        let nodes = [1, 2, 3]
            .into_iter()
            .map(|id| {
                let node = Node {
                    replica: replica_with_log(id, true, 0),
                    log: Vec::new(),
                    flushed_offset: 0,
                    persisted_epochs: Vec::new(),
                    high_watermark_seen: 0,
                };
                (id, node)
            })
            .collect();
        let controller = ControllerModel { leader: 0, leader_epoch: 0, partition_epoch: 0, isr: [1, 2, 3].into() };
        let mut cluster = Cluster {
            nodes,
            queue: VecDeque::new(),
            now_ms: 0,
            controller,
            isolated: BTreeSet::new(),
            unacknowledged: Vec::new(),
            acknowledged: Vec::new(),
            failed: Vec::new(),
        };
        cluster.elect(1);
        cluster
    }

    /// The controller elects `leader` from its ISR with a new leader epoch and tells every broker.
    fn elect(&mut self, leader: u32) {
        assert!(self.controller.isr.contains(&leader), "clean election only");
        // The deposed leader's shell fails its acks=all waiters: their records may or may not survive.
        self.failed.append(&mut self.unacknowledged);
        self.controller.leader = leader;
        self.controller.leader_epoch += 1;
        self.controller.partition_epoch += 1;
        self.publish_metadata();
    }

    fn publish_metadata(&mut self) {
        let ControllerModel { leader, leader_epoch, partition_epoch, ref isr } = self.controller;
        let isr: Vec<u32> = isr.iter().copied().collect();
        for id in [1, 2, 3] {
            let replicas = vec![1, 2, 3];
            let event = if id == leader {
                Event::BecomeLeader { leader_epoch, partition_epoch, replicas, isr: isr.clone(), now_ms: self.now_ms }
            } else {
                Event::BecomeFollower { leader, leader_epoch, partition_epoch, replicas, isr: isr.clone() }
            };
            self.step(id, event);
        }
    }

    /// The producer writes `records` records to whoever it believes leads (acks=all).
    fn produce_to(&mut self, id: u32, records: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        node.replica.check_produce(true).expect("the ISR is large enough");
        let epoch = node.replica.leader_epoch().unwrap();
        let base_offset = node.log_end_offset();
        node.log.push(BatchMeta { base_offset, last_offset: base_offset + records - 1, partition_leader_epoch: epoch });
        self.unacknowledged.extend((base_offset..base_offset + records).map(|offset| (offset, epoch)));
        let log_end_offset = node.log_end_offset();
        self.step(id, Event::Appended { log_end_offset });
        self.queue.push_back((id, Message::FlushNow));
    }

    fn step(&mut self, id: u32, event: Event) {
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
                    self.queue.push_back((request.leader, Message::Fetch { request, from: id }))
                }
                Command::AppendReplicated { batches, .. } => {
                    let node = self.nodes.get_mut(&id).unwrap();
                    assert_eq!(batches[0].base_offset, node.log_end_offset());
                    node.log.extend(batches);
                    self.queue.push_back((id, Message::FlushNow));
                }
                Command::Truncate { offset } => {
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
        assert!(high_watermark > node.high_watermark_seen, "HW moved backwards on {id}");
        node.high_watermark_seen = high_watermark;
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
        let result = if self.isolated.contains(&leader) {
            Err(AlterPartitionError::Unavailable)
        } else if leader_epoch != self.controller.leader_epoch {
            Err(AlterPartitionError::FencedLeaderEpoch)
        } else if partition_epoch != self.controller.partition_epoch {
            Err(AlterPartitionError::StalePartitionEpoch)
        } else {
            self.controller.partition_epoch += 1;
            self.controller.isr = isr.iter().copied().collect();
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
            Message::Fetch { request, from } if self.isolated.contains(&to) || self.isolated.contains(&from) => {
                let answer = FetchAnswer::Error(FetchError::Unreachable);
                let response = Event::FetchResponse { fetch_id: request.fetch_id, answer, now_ms: self.now_ms };
                self.queue.push_back((from, Message::Event(response)));
            }
            Message::Fetch { request, from } => {
                let fetch = ReplicaFetch {
                    replica_id: from,
                    broker_epoch: 1,
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
    fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.now_ms += ROUND_MS;
            for id in [1, 2, 3] {
                self.step(id, Event::Tick { now_ms: self.now_ms });
            }
            for _ in 0..self.queue.len() {
                let (to, message) = self.queue.pop_front().unwrap();
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
            if leader_records.len() >= high_watermark {
                assert_eq!(records[..high_watermark], leader_records[..high_watermark], "{id} differs below its HW");
            }
        }
    }
}

#[test]
fn replicas_converge_after_leader_changes_with_divergent_tails_and_keep_every_acknowledged_record() {
    let mut cluster = Cluster::new();
    cluster.produce_to(1, 3);
    cluster.produce_to(1, 2);
    cluster.run(20);
    assert_eq!(cluster.acknowledged.len(), 5, "both batches committed on all three replicas");

    // Broker 3 falls behind; broker 1 writes a tail that only broker 2 copies (uncommitted: 3 is in the ISR).
    cluster.isolated.insert(3);
    cluster.produce_to(1, 4);
    cluster.run(10);
    assert_eq!(cluster.nodes[&2].log_end_offset(), 9);
    assert_eq!(cluster.acknowledged.len(), 5);
    // Then broker 1 is cut off too and writes a tail no one copies.
    cluster.isolated.insert(1);
    cluster.produce_to(1, 2);
    cluster.run(5);

    // The controller elects broker 3, still in the ISR, which lacks both tails; it writes its own.
    cluster.isolated.clear();
    cluster.elect(3);
    cluster.produce_to(3, 3);
    cluster.run(40);
    let logs: Vec<_> = cluster.nodes.values().map(Node::records).collect();
    assert_eq!(logs[0], logs[2], "broker 1 dropped its divergent tail");
    assert_eq!(logs[1], logs[2], "broker 2 dropped its divergent tail");
    assert_eq!(logs[2].len(), 8);
    assert_eq!(cluster.acknowledged.len(), 8);

    // Another election, this time of a replica that was once diverged.
    cluster.elect(2);
    cluster.produce_to(2, 2);
    cluster.run(40);

    let logs: Vec<_> = cluster.nodes.values().map(Node::records).collect();
    assert!(logs.iter().all(|log| *log == logs[0]), "one log on every replica");
    for node in cluster.nodes.values() {
        assert_eq!(node.replica.high_watermark(), 10);
        assert_eq!(node.persisted_epochs, node.replica.epoch_history().entries(), "the shell's copy is current");
        assert_eq!(node.replica.epoch_history().entries(), entries(&[(1, 0), (2, 5), (3, 8)]));
    }
    for record in &cluster.acknowledged {
        assert_eq!(logs[0].get(record.0 as usize), Some(record), "acknowledged record {record:?} lost");
    }
    assert_eq!(cluster.acknowledged.len(), 10);
    assert!(cluster.unacknowledged.is_empty());
    assert_eq!(cluster.failed.len(), 6, "only the two divergent tails failed");
}
