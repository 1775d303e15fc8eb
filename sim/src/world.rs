//! The simulated world: the clock, the one seeded RNG, the event queue, every node, the history and the
//! trace; and a run from start to verdict.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rill_tests::checker::jepsen::{self, FinalPartition, HistoryReport, Op};

use crate::broker::Broker;
use crate::clients::{Consumer, Producer};
use crate::controller::Controller;
use crate::disk::Disk;
use crate::faults::Fault;
use crate::net::{CLIENT_BASE, CONTROLLER, Cuts, Msg, NetworkProfile, NodeId};
use crate::options::Options;

/// Timers a node sets for itself. They belong to one incarnation of the node: a restart cancels them.
#[derive(Debug, Clone)]
pub(crate) enum Timer {
    BrokerTick,
    Heartbeat,
    MetadataPull,
    Checkpoint,
    RegisterRetry,
    FlushDone { partition: u32 },
    FetchTimeout { partition: u32, fetch_id: u64 },
    LongPollDeadline { partition: u32 },
    ProposalTimeout { partition: u32, proposal_id: u64 },
    ProduceDeadline { partition: u32 },
    ControllerTick,
    ClientWake,
    ClientTimeout { request_id: u64 },
}

#[derive(Debug, Clone)]
pub(crate) enum Ev {
    Deliver { from: NodeId, from_incarnation: u32, to: NodeId, to_incarnation: u32, msg: Msg },
    Timer { node: NodeId, incarnation: u32, timer: Timer },
    Fault(Fault),
}

struct Scheduled {
    at_ms: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.seq) == (other.at_ms, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_ms, self.seq).cmp(&(other.at_ms, other.seq))
    }
}

/// How far a run got, for coverage checks and the summary line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub events: u64,
    pub crashes: u64,
    pub pauses: u64,
    pub partitions: u64,
    pub controller_failovers: u64,
    pub truncations: u64,
    pub elections: u64,
    pub acked: u64,
    pub end_ms: u64,
}

pub(crate) struct World {
    pub(crate) options: Options,
    pub(crate) now_ms: u64,
    pub(crate) rng: StdRng,
    queue: BinaryHeap<Reverse<Scheduled>>,
    next_seq: u64,
    pub(crate) network: NetworkProfile,
    pub(crate) cuts: Cuts,
    pub(crate) brokers: BTreeMap<NodeId, Broker>,
    pub(crate) disks: BTreeMap<(NodeId, u32), Disk>,
    pub(crate) controller: Controller,
    pub(crate) producers: BTreeMap<NodeId, Producer>,
    pub(crate) consumers: BTreeMap<NodeId, Consumer>,
    /// Nodes that take no steps until this time.
    pub(crate) paused_until: BTreeMap<NodeId, u64>,
    /// Faults stop and everything heals once this is set.
    pub(crate) healing: bool,
    pub(crate) history: Vec<Op>,
    pub(crate) trace: Option<Vec<String>>,
    pub(crate) stats: Stats,
    /// The sender of the message being handled, and its incarnation when it sent it: answers go there.
    pub(crate) replying_to: Option<(NodeId, u32)>,
}

/// The verdict on one run.
#[derive(Debug)]
pub struct Outcome {
    pub seed: u64,
    /// Whether the run's shape came from `Options::varied`.
    pub varied: bool,
    /// Whether the run had `Options::harsh` faults.
    pub harsh: bool,
    pub report: HistoryReport,
    /// Why the liveness phase failed, if it did.
    pub liveness: Option<String>,
    /// A broken invariant inside a state machine or the simulator (a panic), if any.
    pub panic: Option<String>,
    pub trace: Vec<String>,
    pub stats: Stats,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.report.is_valid() && self.liveness.is_none() && self.panic.is_none()
    }

    /// The command that replays this run with its trace.
    pub fn replay_command(&self) -> String {
        let varied = if self.varied { "--varied " } else { "" };
        let harsh = if self.harsh { "--harsh " } else { "" };
        format!("cargo run -p rill-sim -- {varied}{harsh}--seed {} --trace", self.seed)
    }

    /// The verdict, the replay command and the last `lines` lines of the trace.
    pub fn describe(&self, lines: usize) -> String {
        let mut out = format!("seed {}: {}\n", self.seed, if self.passed() { "passed" } else { "FAILED" });
        if let Some(panic) = &self.panic {
            out += &format!("panic: {panic}\n");
        }
        if let Some(liveness) = &self.liveness {
            out += &format!("liveness: {liveness}\n");
        }
        out += &format!("{}", self.report);
        out += &format!("{:?}\n", self.stats);
        if !self.passed() {
            out += &format!("replay: {}\n", self.replay_command());
            let start = self.trace.len().saturating_sub(lines);
            if !self.trace.is_empty() {
                out += &format!("trace (last {} of {} lines):\n", self.trace.len() - start, self.trace.len());
            }
            for line in &self.trace[start..] {
                out += line;
                out.push('\n');
            }
        }
        out
    }
}

/// Runs one simulation to its verdict. A panic inside (a broken invariant of a state machine) is caught and
/// reported with the trace so far.
pub fn run(options: Options) -> Outcome {
    let (seed, varied, harsh) = (options.seed, options.varied, options.harsh);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let mut world = World::new(options);
        let (report, liveness, stats) = world.run_phases();
        let trace = world.trace.take().unwrap_or_default();
        Outcome { seed, varied, harsh, report, liveness, panic: None, trace, stats }
    }));
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        let trace = PANIC_TRACE.with(|t| std::mem::take(&mut *t.borrow_mut()));
        Outcome {
            seed,
            varied,
            harsh,
            report: HistoryReport::default(),
            liveness: None,
            panic: Some(message),
            trace,
            stats: Stats::default(),
        }
    })
}

thread_local! {
    /// The trace of a run that panicked, handed from the unwinding world to `run`.
    static PANIC_TRACE: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(trace) = self.trace.take()
        {
            PANIC_TRACE.with(|t| *t.borrow_mut() = trace);
        }
    }
}

impl World {
    fn new(options: Options) -> Self {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let network = crate::faults::network_profile(&mut rng, options.harsh);
        let trace = options.trace.then(Vec::new);
        let mut world = World {
            now_ms: 0,
            rng,
            queue: BinaryHeap::new(),
            next_seq: 0,
            network,
            cuts: Cuts::default(),
            brokers: BTreeMap::new(),
            disks: BTreeMap::new(),
            controller: Controller::new(),
            producers: BTreeMap::new(),
            consumers: BTreeMap::new(),
            paused_until: BTreeMap::new(),
            healing: false,
            history: Vec::new(),
            trace,
            stats: Stats::default(),
            replying_to: None,
            options,
        };
        let header = format!("seed {} network {:?}", world.options.seed, world.network);
        world.trace(|| header);
        for id in 1..=world.options.brokers {
            world.brokers.insert(id, Broker::new(id));
            world.start_broker(id);
        }
        world.schedule_timer(CONTROLLER, Timer::ControllerTick, 0);
        let producers = world.options.idempotent_producers + world.options.plain_producers;
        for index in 0..producers {
            let id = CLIENT_BASE + index;
            let idempotent = index < world.options.idempotent_producers;
            world.producers.insert(id, Producer::new(id, idempotent));
            world.schedule_timer(id, Timer::ClientWake, 50);
        }
        for index in 0..world.options.consumers {
            let id = CLIENT_BASE + 50 + index;
            world.consumers.insert(id, Consumer::new(id));
            world.schedule_timer(id, Timer::ClientWake, 50);
        }
        world.schedule_first_fault();
        world
    }

    pub(crate) fn trace(&mut self, line: impl FnOnce() -> String) {
        let now_ms = self.now_ms;
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{now_ms:>6} {}", line()));
        }
    }

    pub(crate) fn record(&mut self, op: Op) {
        self.trace(|| format!("history {op:?}"));
        self.history.push(op);
    }

    pub(crate) fn schedule(&mut self, at_ms: u64, ev: Ev) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(Scheduled { at_ms, seq, ev }));
    }

    pub(crate) fn schedule_timer(&mut self, node: NodeId, timer: Timer, after_ms: u64) {
        let incarnation = self.incarnation_of(node).unwrap_or(0);
        self.schedule(self.now_ms + after_ms, Ev::Timer { node, incarnation, timer });
    }

    /// The node's current incarnation, or `None` for an unknown address or a broker that is down.
    pub(crate) fn incarnation_of(&self, node: NodeId) -> Option<u32> {
        match self.brokers.get(&node) {
            Some(broker) => broker.up.then_some(broker.incarnation),
            None => (node == CONTROLLER || self.producers.contains_key(&node) || self.consumers.contains_key(&node))
                .then_some(0),
        }
    }

    /// Runs the safety phase, heals, runs the liveness phase, and checks the history.
    fn run_phases(&mut self) -> (HistoryReport, Option<String>, Stats) {
        let safety_ms = self.options.safety_ms;
        self.run_until(safety_ms);
        self.heal_everything();
        let deadline_ms = self.now_ms + self.options.liveness_ms_max;
        let mut liveness = None;
        loop {
            let next_check_ms = self.now_ms + 100;
            self.run_until(next_check_ms);
            match self.convergence() {
                Ok(()) => break,
                Err(why) if self.now_ms >= deadline_ms => {
                    liveness = Some(format!("no convergence {} ms after healing: {why}", self.options.liveness_ms_max));
                    break;
                }
                Err(_) => {}
            }
        }
        self.stats.end_ms = self.now_ms;
        let finals = self.final_partitions();
        let report = jepsen::check_history(&self.history, &finals);
        self.stats.acked = report.acked as u64;
        self.trace(|| format!("verdict {report}"));
        (report, liveness, self.stats)
    }

    fn run_until(&mut self, end_ms: u64) {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at_ms > end_ms {
                break;
            }
            let Reverse(Scheduled { at_ms, ev, .. }) = self.queue.pop().expect("peeked");
            self.now_ms = at_ms;
            self.stats.events += 1;
            self.dispatch(ev);
        }
        self.now_ms = end_ms;
    }

    fn dispatch(&mut self, ev: Ev) {
        let node = match &ev {
            Ev::Deliver { to, .. } => Some(*to),
            Ev::Timer { node, .. } => Some(*node),
            Ev::Fault(_) => None,
        };
        // A paused process takes no steps: what reaches it waits until it resumes.
        if let Some(node) = node
            && let Some(&until_ms) = self.paused_until.get(&node)
            && until_ms > self.now_ms
        {
            return self.schedule(until_ms, ev);
        }
        match ev {
            Ev::Deliver { from, from_incarnation, to, to_incarnation, msg } => {
                if self.incarnation_of(to) != Some(to_incarnation) {
                    return self.trace(|| format!("net {from}->{to} lost with a crash: {msg:?}"));
                }
                self.trace(|| format!("deliver {from}->{to} {msg:?}"));
                self.replying_to = Some((from, from_incarnation));
                if to == CONTROLLER {
                    self.controller_receive(from, msg);
                } else if self.brokers.contains_key(&to) {
                    self.broker_receive(to, from, msg);
                } else {
                    self.client_receive(to, from, msg);
                }
                self.replying_to = None;
            }
            Ev::Timer { node, incarnation, timer } => {
                if self.incarnation_of(node) != Some(incarnation) {
                    return;
                }
                if node == CONTROLLER {
                    self.controller_tick();
                } else if self.brokers.contains_key(&node) {
                    self.broker_timer(node, timer);
                } else {
                    self.client_timer(node, timer);
                }
            }
            Ev::Fault(fault) => self.apply_fault(fault),
        }
    }

    /// The end state every run must reach after healing: each partition led by an acting leader in the
    /// controller's epoch, every replica holding the leader's log, the HW at the log end, no producer with a
    /// record in flight, and every consumer caught up.
    fn convergence(&self) -> Result<(), String> {
        if self.brokers.values().any(|b| !b.up || b.broker_epoch.is_none()) {
            return Err("a broker is down or unregistered".into());
        }
        for partition in 0..self.options.partitions {
            let Some(state) = self.controller.partition(partition) else { return Err("no topic yet".into()) };
            let leader = state.leader;
            let Some(replica) = self.brokers.get(&leader).and_then(|b| b.partitions.get(&partition)) else {
                return Err(format!("partition {partition} has no leader ({leader})"));
            };
            if !replica.replica.is_acting_leader() || replica.replica.leader_epoch() != Some(state.leader_epoch) {
                return Err(format!("partition {partition}: broker {leader} is not acting leader yet"));
            }
            let leader_log = &self.disks[&(leader, partition)].log;
            if replica.replica.high_watermark() != self.disks[&(leader, partition)].log_end_offset() {
                return Err(format!("partition {partition}: HW below the log end"));
            }
            for &id in &state.replicas {
                if self.disks.get(&(id, partition)).is_none_or(|d| d.log != *leader_log) {
                    return Err(format!("partition {partition}: replica {id} differs from leader {leader}"));
                }
            }
            for consumer in self.consumers.values() {
                if consumer.position(partition) < replica.replica.high_watermark() {
                    return Err(format!("partition {partition}: consumer {} behind", consumer.id));
                }
            }
        }
        if let Some(producer) = self.producers.values().find(|p| p.busy()) {
            return Err(format!("producer {} has a batch in flight", producer.id));
        }
        Ok(())
    }

    fn final_partitions(&self) -> Vec<FinalPartition> {
        (0..self.options.partitions)
            .map(|partition| {
                let state = self.controller.partition(partition);
                let leader = state.map_or(0, |s| s.leader);
                let high_watermark = self
                    .brokers
                    .get(&leader)
                    .and_then(|b| b.partitions.get(&partition))
                    .map_or(0, |p| p.replica.high_watermark());
                let replicas: BTreeMap<u32, Vec<_>> = self
                    .disks
                    .iter()
                    .filter(|((_, p), _)| *p == partition)
                    .map(|((broker, _), disk)| (*broker, disk.records()))
                    .collect();
                let log = replicas.get(&leader).cloned().unwrap_or_default();
                FinalPartition { partition, high_watermark, log, replicas }
            })
            .collect()
    }
}
