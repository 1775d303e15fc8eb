//! The plain-data vocabulary between the replication state machine and its shell: the events it is stepped
//! with and the commands it answers with. Nothing here does IO; everything compares, so tests assert on it.

use super::epochs::EpochEntry;

/// Everything that can happen to one partition replica. Time only ever enters through `now_ms` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Metadata (a controller PartitionChange) makes this broker the partition's leader.
    BecomeLeader { leader_epoch: u32, partition_epoch: u32, replicas: Vec<u32>, isr: Vec<u32>, now_ms: u64 },
    /// Metadata makes `leader` the partition's leader and this broker one of its followers.
    BecomeFollower { leader: u32, leader_epoch: u32, partition_epoch: u32, replicas: Vec<u32>, isr: Vec<u32> },
    /// A produce append by the leader completed and the log now ends at `log_end_offset`. Ignored unless
    /// leading: a follower's log end is set by its own `AppendReplicated` and `Truncate` commands, and a report
    /// from before a role change must not undo them.
    Appended { log_end_offset: u64 },
    /// Everything below `flushed_offset` is fsynced. The shell reads it from the log when it steps this event,
    /// after executing every earlier command, so it describes the log's current contents (a flush that began
    /// before a truncation must not vouch for records written after it).
    Flushed { flushed_offset: u64 },
    /// Retention deleted segments; the log now starts at `log_start_offset`.
    LogStartAdvanced { log_start_offset: u64 },
    /// Leader side: a follower asks for records.
    ReplicaFetch(ReplicaFetch),
    /// Follower side: the answer to the `SendFetch` with the same `fetch_id`, or its transport failure.
    FetchResponse { fetch_id: u64, answer: FetchAnswer, now_ms: u64 },
    /// Time passed: ISR maintenance on a leader, fetch retries on a follower.
    Tick { now_ms: u64 },
    /// The controller's answer to the `ProposeIsr` with the same `proposal_id`.
    AlterPartitionResponse { proposal_id: u64, result: Result<AcceptedIsr, AlterPartitionError> },
    /// The broker has not heard from the controller within its session timeout: the controller may already
    /// have elected another leader, so this one must stop acting as leader.
    LeaseExpired,
    /// The controller answered again. Followers could not fetch while the lease was out, so their lag clocks
    /// restart at `now_ms` rather than counting the outage against them.
    LeaseRenewed { now_ms: u64 },
}

/// A follower's fetch as the leader receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetch {
    pub replica_id: u32,
    /// The follower's registration generation: a lower one than already seen is an old incarnation.
    pub broker_epoch: u64,
    pub current_leader_epoch: u32,
    /// The follower's log end offset: everything below it matches the leader once this fetch is accepted.
    pub fetch_offset: u64,
    /// The epoch of the follower's last record; `None` for an empty log.
    pub last_fetched_epoch: Option<u32>,
    pub flushed_offset: u64,
    pub now_ms: u64,
}

/// An ISR change the controller committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedIsr {
    pub isr: Vec<u32>,
    pub partition_epoch: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterPartitionError {
    /// The proposal was based on an old partition epoch: newer metadata is on its way.
    StalePartitionEpoch,
    /// The controller knows a newer leader epoch: this leader is deposed, metadata is on its way.
    FencedLeaderEpoch,
    /// A replica to add is fenced or shutting down; the leader may propose again later.
    IneligibleReplica,
    /// No controller answered; the leader may propose again later.
    Unavailable,
}

/// The first 61 bytes of a stored batch that replication cares about. The shell keeps the batch bytes; the
/// state machine only checks where they go and which epoch wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub base_offset: u64,
    pub last_offset: u64,
    pub partition_leader_epoch: u32,
}

/// What a follower's fetch came back with, as the shell hands it to the follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAnswer {
    /// Batches from the fetch offset on (possibly none) plus the leader's offsets.
    Records {
        batches: Vec<BatchMeta>,
        high_watermark: u64,
        log_start_offset: u64,
    },
    /// The follower's last fetched epoch ends at `end_offset` in the leader (see `FetchReply::Diverging`).
    Diverging {
        diverging_epoch: Option<u32>,
        end_offset: u64,
        high_watermark: u64,
    },
    Error(FetchError),
}

/// Why a leader refused a fetch; also how the shell reports a fetch that never got an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The fetch names an older leader epoch than the leader's: the follower's metadata is behind.
    FencedLeaderEpoch,
    /// The fetch names a newer leader epoch: the leader's metadata is behind.
    UnknownLeaderEpoch,
    /// This broker does not lead the partition in that epoch, or its lease ran out.
    NotLeader,
    /// The fetching broker is not a replica of the partition.
    UnknownReplica,
    /// The fetching broker is an older incarnation than one already seen.
    StaleBrokerEpoch,
    /// The fetch offset is below the leader's log start or above its log end.
    OffsetOutOfRange { log_start_offset: u64, log_end_offset: u64 },
    /// Shell only: the request timed out or the connection failed.
    Unreachable,
}

/// The leader's reply to one `ReplicaFetch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchReply {
    /// Read batches from `fetch_offset` (up to the log end, not the HW: followers replicate uncommitted records)
    /// and send them with these offsets.
    Read {
        fetch_offset: u64,
        high_watermark: u64,
        log_start_offset: u64,
    },
    /// The follower's log diverged: epoch `diverging_epoch` (the largest leader epoch at most the follower's
    /// last fetched one) ends at `end_offset` in the leader, below the follower's fetch offset or at a different
    /// epoch. The follower truncates and fetches again.
    Diverging {
        diverging_epoch: Option<u32>,
        end_offset: u64,
        high_watermark: u64,
    },
    Error(FetchError),
}

/// What a follower's `SendFetch` asks its leader; the shell adds its broker id and broker epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Echoed in the `FetchResponse` so that answers to abandoned fetches are recognised and dropped.
    pub fetch_id: u64,
    pub leader: u32,
    pub current_leader_epoch: u32,
    pub fetch_offset: u64,
    pub last_fetched_epoch: Option<u32>,
    pub flushed_offset: u64,
}

/// Something the shell should know about but that needs no action from it beyond logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// Metadata with an epoch older than this replica's was ignored.
    StaleMetadata { leader_epoch: u32, partition_epoch: u32, current_leader_epoch: u32, current_partition_epoch: u32 },
    /// Metadata that cannot apply to this broker (e.g. it names this broker as its own leader's follower).
    InvalidMetadata { reason: String },
    /// A fetch answer broke the protocol (gaps, epochs going backwards); nothing of it was appended.
    InvalidFetchAnswer { reason: String },
    /// The leader refused a fetch; the follower waits for metadata or retries after its backoff.
    FetchRefused { error: FetchError },
    /// The controller refused an ISR change.
    IsrChangeRefused { error: AlterPartitionError },
    /// A truncation below the high watermark, allowed only because acknowledged records may be lost under this
    /// topic's settings (no fsync, or unclean leader election).
    AcknowledgedRecordsLost { high_watermark: u64, truncate_offset: u64 },
}

/// What the state machine asks its shell to do. The shell executes a step's commands in order before it steps
/// the next event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Answer the fetch just stepped from `replica_id`.
    ReplyFetch {
        replica_id: u32,
        reply: FetchReply,
    },
    /// Follower: send this fetch to the leader and step exactly one `Event::FetchResponse` for it: the
    /// leader's answer, or `FetchError::Unreachable` once the request timed out.
    SendFetch(FetchRequest),
    /// Follower: append these batches of the answer to fetch `fetch_id`, verbatim, at their offsets. The
    /// replica counts them as written from now on; a failed append takes the partition offline.
    AppendReplicated {
        fetch_id: u64,
        batches: Vec<BatchMeta>,
    },
    /// Follower: cut the log so that it ends at `offset`.
    Truncate {
        offset: u64,
    },
    /// Follower: delete every record and restart the log, empty, at `log_start_offset`. Sent when the leader's
    /// retention already deleted everything this log could continue from.
    TruncateFully {
        log_start_offset: u64,
    },
    /// Write the whole epoch history to its checkpoint file.
    PersistEpochHistory {
        entries: Vec<EpochEntry>,
    },
    /// The HW moved up: complete acks=all requests below it, let consumers read up to it, checkpoint it.
    HighWatermarkAdvanced {
        high_watermark: u64,
    },
    /// Leader: ask the controller (AlterPartition) to set the ISR, based on `partition_epoch`; answer with
    /// `Event::AlterPartitionResponse` carrying the same `proposal_id`.
    ProposeIsr {
        proposal_id: u64,
        leader_epoch: u32,
        partition_epoch: u32,
        isr: Vec<u32>,
    },
    Warn(Warning),
}

/// Why a produce request cannot be taken right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceError {
    /// Not the leader, or the leader's lease ran out.
    NotLeader,
    /// acks=all and the ISR is smaller than `min_insync_replicas`.
    NotEnoughReplicas { isr_size: usize, min_insync_replicas: usize },
}
