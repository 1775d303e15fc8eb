//! The simulated network: the messages nodes exchange, and how a send becomes zero, one or two deliveries
//! (drop, delay, duplication; reordering follows from independent delays), or none across a partition.

use std::collections::BTreeSet;

use rand::Rng;
use rill_broker::metadata::MetadataRecord;
use rill_broker::replication::{AcceptedIsr, AlterPartitionError, FetchAnswer, FetchRequest};

use crate::disk::SimBatch;
use crate::world::{Ev, World};
use rill_tests::checker::jepsen::Value;

pub(crate) type NodeId = u32;

/// The active controller's address. Brokers are 1..=N (0 is `NO_LEADER`), clients from `CLIENT_BASE`.
pub(crate) const CONTROLLER: NodeId = 1000;
pub(crate) const CLIENT_BASE: NodeId = 100;

/// Why a broker refused a client request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientError {
    NotLeader,
    NotEnoughReplicas,
    /// The acks=all wait ran out at the broker.
    Timeout,
    /// The producer table refused the batch: out of order, fenced or unknown producer.
    ProducerState,
    /// The fetch offset lies beyond the leader's log.
    OffsetOutOfRange,
}

#[derive(Debug, Clone)]
pub(crate) enum Msg {
    // Broker to broker.
    ReplicaFetch {
        partition: u32,
        request: FetchRequest,
        broker_epoch: u64,
    },
    ReplicaFetchAnswer {
        partition: u32,
        fetch_id: u64,
        answer: FetchAnswer,
        batches: Vec<SimBatch>,
    },
    // Broker to controller and back.
    Register,
    Registered {
        broker_epoch: u64,
    },
    Heartbeat {
        broker_epoch: u64,
        sent_at_ms: u64,
    },
    HeartbeatAnswer {
        sent_at_ms: u64,
        metadata_offset: Option<u64>,
    },
    WatchMetadata {
        from_offset: u64,
    },
    MetadataRecords {
        records: Vec<(u64, MetadataRecord)>,
    },
    AlterPartition {
        broker_epoch: u64,
        partition: u32,
        proposal_id: u64,
        leader_epoch: u32,
        partition_epoch: u32,
        isr: Vec<u32>,
    },
    AlterPartitionAnswer {
        partition: u32,
        proposal_id: u64,
        result: Result<AcceptedIsr, AlterPartitionError>,
    },
    // Clients.
    InitProducerId {
        producer_id: i64,
        producer_epoch: i16,
    },
    InitProducerIdAnswer {
        granted: Option<(i64, i16)>,
    },
    MetadataRequest,
    MetadataAnswer {
        leaders: Vec<(u32, u32)>,
    },
    Produce {
        request_id: u64,
        partition: u32,
        batch: SimBatch,
    },
    ProduceAnswer {
        request_id: u64,
        result: Result<u64, ClientError>,
    },
    Fetch {
        request_id: u64,
        partition: u32,
        offset: u64,
    },
    FetchAnswer {
        request_id: u64,
        result: Result<Vec<(u64, Value)>, ClientError>,
    },
}

/// The network's behaviour in one run, drawn from the seed.
#[derive(Debug, Clone)]
pub(crate) struct NetworkProfile {
    pub(crate) drop_percent: u32,
    pub(crate) duplicate_percent: u32,
    pub(crate) delay_ms_max: u64,
    /// Some messages take much longer (a slow path), which reorders them behind later ones.
    pub(crate) slow_percent: u32,
}

/// Directed links that deliver nothing: `(from, to)`. A symmetric partition cuts both directions.
#[derive(Debug, Default)]
pub(crate) struct Cuts {
    pub(crate) links: BTreeSet<(NodeId, NodeId)>,
}

impl World {
    /// Sends `msg` from `from` to `to`: dropped, delivered once or twice, each after its own delay. An answer
    /// to the message being handled goes to the incarnation that sent it: if that process died meanwhile, its
    /// connection died with it.
    pub(crate) fn send(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        let incarnation = match self.replying_to {
            Some((node, incarnation)) if node == to => Some(incarnation),
            _ => self.incarnation_of(to),
        };
        self.send_to_incarnation(from, to, incarnation, msg)
    }

    /// Sends to one incarnation of `to` (`None`: nobody), as an answer given later must.
    pub(crate) fn send_to_incarnation(&mut self, from: NodeId, to: NodeId, incarnation: Option<u32>, msg: Msg) {
        let Some(to_incarnation) = incarnation else {
            self.trace(|| format!("net {from}->{to} no such node: {msg:?}"));
            return;
        };
        if self.cuts.links.contains(&(from, to)) {
            self.trace(|| format!("net {from}->{to} cut: {msg:?}"));
            return;
        }
        let profile = self.network.clone();
        if self.rng.random_range(0..100) < profile.drop_percent {
            self.trace(|| format!("net {from}->{to} dropped: {msg:?}"));
            return;
        }
        let copies = if self.rng.random_range(0..100) < profile.duplicate_percent { 2 } else { 1 };
        for _ in 0..copies {
            let mut delay_ms = self.rng.random_range(1..=profile.delay_ms_max);
            if self.rng.random_range(0..100) < profile.slow_percent {
                delay_ms += self.rng.random_range(10..=60);
            }
            let at_ms = self.now_ms + delay_ms;
            let from_incarnation = self.incarnation_of(from).unwrap_or(0);
            self.schedule(at_ms, Ev::Deliver { from, from_incarnation, to, to_incarnation, msg: msg.clone() });
        }
    }
}
