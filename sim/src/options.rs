//! What one simulated run looks like: its seed, sizes and phases, and the bugs planted in the simulated shell
//! and clients (bugs in the replication core are planted through `Options::replica_hook`).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rill_broker::replication::Replica;

/// Bugs planted in the simulator's own shell and clients, to prove the checker finds what they cause. The
/// shell mirrors `rill_broker::partition`, so each is a bug that shell could have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Planted {
    /// A broker that becomes a partition's leader starts with an empty producer table, so a retried
    /// idempotent batch is appended again (`duplicate`).
    pub forget_producer_state_on_leader_change: bool,
    /// Consumers are served records up to the leader's log end instead of its HW, so they read records that
    /// a failover later replaces (`poll-skip`).
    pub read_beyond_high_watermark: bool,
    /// A consumer told `NotLeader` treats its position as invalid and seeks back to the log start, reading
    /// again what it read (`nonmonotonic`).
    pub consumer_rewinds_on_leader_change: bool,
}

/// One run. `Options::new(seed)` is what CI runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// Set by `Options::varied`, so that a failure names the command that replays it.
    pub varied: bool,
    /// Many more faults: 5-25% of messages dropped, 5-20% duplicated, 5-20% slow, a fault every 30-200 ms.
    pub harsh: bool,
    pub brokers: u32,
    pub partitions: u32,
    pub idempotent_producers: u32,
    pub plain_producers: u32,
    pub consumers: u32,
    /// Simulated time under faults; producers stop starting new batches when it ends.
    pub safety_ms: u64,
    /// The liveness phase fails if the cluster has not converged this long after healing.
    pub liveness_ms_max: u64,
    /// Record the trace (a line per message, timer and fault).
    pub trace: bool,
    pub planted: Planted,
    /// Called on every replica the shell builds (at start and after each restart): where the tests plant
    /// bugs in the replication core (`Replica::plant`, behind rill-broker's `planted-bugs` feature).
    pub replica_hook: Option<fn(&mut Replica)>,
}

impl Options {
    pub fn new(seed: u64) -> Self {
        Options {
            seed,
            varied: false,
            harsh: false,
            brokers: 3,
            partitions: 2,
            idempotent_producers: 2,
            plain_producers: 1,
            consumers: 2,
            safety_ms: 3_000,
            liveness_ms_max: 20_000,
            trace: false,
            planted: Planted::default(),
            replica_hook: None,
        }
    }

    /// `Options::varied` with harsh faults.
    pub fn harsh(seed: u64) -> Self {
        Options { harsh: true, ..Options::varied(seed) }
    }

    /// A run whose shape also comes from the seed: 3 to 5 brokers, 1 to 3 partitions, 1 to 3 idempotent and
    /// 0 to 2 plain producers, 1 or 2 consumers, 2 to 6 s of faults. `Options::new` keeps one shape so that
    /// its seeds stay comparable; this one explores.
    pub fn varied(seed: u64) -> Self {
        let mut shape = StdRng::seed_from_u64(seed ^ 0x5EED_5A9E);
        Options {
            brokers: shape.random_range(3..=5),
            partitions: shape.random_range(1..=3),
            idempotent_producers: shape.random_range(1..=3),
            plain_producers: shape.random_range(0..=2),
            consumers: shape.random_range(1..=2),
            safety_ms: shape.random_range(2_000..=6_000),
            varied: true,
            ..Options::new(seed)
        }
    }
}
