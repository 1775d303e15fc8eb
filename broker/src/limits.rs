//! Every limit and default of the broker in one place, each with the reason for its value.

/// Largest single record batch accepted by default (per-topic `max.message.bytes` may lower or raise it). Big
/// enough for a client's 1 MiB linger batches with headroom; small enough that one batch never dominates memory.
pub const BATCH_BYTES_MAX_DEFAULT: u64 = 8 * 1024 * 1024;
/// Largest request body decoded by default. A produce request carries one batch per partition, so this
/// bounds the memory one request pins.
pub const REQUEST_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024;
/// Largest fetch response by default, over all partitions.
pub const FETCH_BYTES_MAX_DEFAULT: u64 = 32 * 1024 * 1024;
/// Largest slice of one partition in a fetch response by default. One segment read, so one zero-copy slice.
pub const PARTITION_FETCH_BYTES_MAX_DEFAULT: u64 = 8 * 1024 * 1024;
/// A long-poll fetch never waits longer than this, whatever the client asks: a client that wants to wait
/// longer polls again, which bounds how long a request holds broker resources.
pub const FETCH_WAIT_MS_MAX: u64 = 30_000;
/// Default wait for `acks=all` before answering TIMEOUT.
pub const PRODUCE_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// How often logs persist their recovery point: after kill -9, recovery scans at most what was written since.
pub const CHECKPOINT_INTERVAL_MS_DEFAULT: u64 = 5_000;
/// How often segments are checked against retention and roll-by-age.
pub const RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 30_000;
/// How long SIGTERM waits for in-flight requests before closing the logs anyway.
pub const SHUTDOWN_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Responses a streaming fetch may queue before the stream waits for the client (bounded queue).
pub const FETCH_STREAM_QUEUE_RESPONSES_MAX: usize = 4;
/// Kafka's limit on a topic name, so names stay portable to Kafka tooling.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Partitions of one topic: far beyond any sensible use, small enough that a typo cannot create millions of
/// directories.
pub const TOPIC_PARTITIONS_MAX: u32 = 10_000;
/// A metadata record larger than this in the metadata log is treated as corruption.
pub const METADATA_RECORD_BYTES_MAX: u32 = 16 * 1024 * 1024;

const _: () = assert!(PARTITION_FETCH_BYTES_MAX_DEFAULT <= FETCH_BYTES_MAX_DEFAULT);
const _: () = assert!(BATCH_BYTES_MAX_DEFAULT <= REQUEST_BYTES_MAX_DEFAULT);
// A fetch must be able to return any batch the broker accepted.
const _: () = assert!(BATCH_BYTES_MAX_DEFAULT <= PARTITION_FETCH_BYTES_MAX_DEFAULT);

/// An in-sync follower that has not caught up with the leader's log end for this long is proposed for removal
/// from the ISR. Long enough to ride out a GC-free but busy follower, short enough that one slow replica
/// does not hold acks=all writes for long (Kafka's default is 30 s; Rill's fsync group commit keeps followers
/// closer).
pub const REPLICA_LAG_MS_MAX_DEFAULT: u64 = 10_000;
/// How long a follower waits before fetching again after a refused or failed fetch.
pub const FETCH_BACKOFF_MS: u64 = 100;
/// How long a leader holds a caught-up follower's fetch waiting for new records. Short enough that a
/// follower notices a leader change quickly through its next fetch.
pub const REPLICA_FETCH_WAIT_MS: u32 = 500;
/// Most bytes one replica fetch returns: one segment read, at least one whole batch.
pub const REPLICA_FETCH_BYTES_MAX: u32 = 8 * 1024 * 1024;
/// A replica fetch that has not answered in this long past its long-poll wait counts as failed.
pub const REPLICA_FETCH_TIMEOUT_MS: u64 = 5_000;
/// Connection set-up to a peer broker.
pub const PEER_CONNECT_TIMEOUT_MS: u64 = 3_000;
/// HTTP/2 keepalive towards peers: without it a connection across a dropped network path hangs silently.
pub const PEER_KEEPALIVE_INTERVAL_MS: u64 = 1_000;
pub const PEER_KEEPALIVE_TIMEOUT_MS: u64 = 3_000;
/// Brokers heartbeat to the active controller this often by default.
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 500;
/// A broker silent this long is fenced by the controller, and stops leading on its own (lease). Several
/// heartbeats long, so one lost heartbeat does not fence a live broker.
pub const SESSION_TIMEOUT_MS_DEFAULT: u64 = 3_000;
const _: () = assert!(SESSION_TIMEOUT_MS_DEFAULT >= 4 * HEARTBEAT_INTERVAL_MS_DEFAULT);
/// How long a forwarded controller request keeps retrying (no active controller yet, or it moved).
pub const CONTROLLER_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Pause between attempts to reach the active controller.
pub const CONTROLLER_RETRY_BACKOFF_MS: u64 = 100;
/// How long a client request waits for a starting broker to join the cluster before it is refused.
pub const STARTUP_WAIT_MS: u64 = 10_000;
/// Batches remembered per producer for deduplication. A producer has at most this many batches in flight
/// per partition (Kafka's cap on `max.in.flight.requests.per.connection` with idempotence, which Rill's
/// client, with one in flight, stays well under), so any retry is one of its last this many batches.
pub const PRODUCER_BATCHES_KEPT: usize = 5;
/// A producer id that has written nothing to a partition for this long (by its batches' timestamps) is
/// forgotten there. Long enough that a producer paused over a long weekend or through an outage keeps its
/// deduplication; short enough that ids of producers that went away do not pile up (Kafka's
/// `transactional.id.expiration.ms` default, which also governed producer ids before Kafka 3.4).
pub const PRODUCER_ID_IDLE_MS_MAX_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// Producer ids one partition tracks at most; a leader refuses new ones beyond it until idle ones expire.
/// About 140 bytes of snapshot and a few hundred bytes of memory each, so 100,000 costs tens of MB at worst,
/// far more distinct live producers than one partition sees in practice, while a storm of short-lived
/// producers cannot grow the state without bound.
pub const PRODUCER_IDS_PER_PARTITION_MAX: usize = 100_000;

/// Partitions of `__consumer_offsets` by default, fixed when the topic is first created. Each is a log, a
/// leader and a coordinator shard; eight spread coordinators over up to eight brokers, which is more than a
/// small Rill cluster has, while each broker opens and rebuilds only a few logs at start (Kafka's 50 suit
/// clusters of dozens of brokers).
pub const OFFSETS_TOPIC_PARTITIONS_DEFAULT: u32 = 8;
/// Replication factor of `__consumer_offsets` by default, lowered to the live brokers at creation.
pub const OFFSETS_TOPIC_REPLICATION_FACTOR_DEFAULT: u32 = 3;
/// Segment size of `__consumer_offsets`: without compaction a coordinator reads its whole partition back
/// after a leadership change, so segments stay small to keep retention and reads cheap.
pub const OFFSETS_TOPIC_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Longest group id (Kafka sets none; this keeps records and log lines bounded).
pub const GROUP_ID_BYTES_MAX: usize = 255;
/// Longest client id a member may give.
pub const CLIENT_ID_BYTES_MAX: usize = 255;
/// Longest metadata string of an offset commit (Kafka's `offset.metadata.max.bytes` default).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// Topics one member may subscribe to, and offsets one commit may carry.
pub const GROUP_TOPICS_MAX: usize = 1_000;
pub const COMMIT_OFFSETS_MAX: usize = 10_000;
/// Session timeout of a member that gives none, and the bounds a member may ask for. A member silent this long
/// is removed and its partitions move: long enough to ride out a slow poll loop, short enough that a crashed
/// consumer's partitions resume within seconds.
pub const GROUP_SESSION_TIMEOUT_MS_DEFAULT: u64 = 10_000;
pub const GROUP_SESSION_TIMEOUT_MS_MIN: u64 = 1_000;
pub const GROUP_SESSION_TIMEOUT_MS_MAX: u64 = 300_000;
/// How long a member may keep partitions taken from it before it is removed, if it gives no timeout.
pub const GROUP_REBALANCE_TIMEOUT_MS_DEFAULT: u64 = 30_000;
pub const GROUP_REBALANCE_TIMEOUT_MS_MAX: u64 = 600_000;
/// How often a coordinator checks sessions and its shards' leadership.
pub const GROUP_TICK_MS: u64 = 100;
/// How long a new coordinator waits for its partition's HW to reach the log end before reading it back.
pub const GROUP_LOAD_WAIT_MS: u64 = 30_000;
const _: () = assert!(GROUP_SESSION_TIMEOUT_MS_MIN <= GROUP_SESSION_TIMEOUT_MS_DEFAULT);
const _: () = assert!(GROUP_SESSION_TIMEOUT_MS_DEFAULT <= GROUP_SESSION_TIMEOUT_MS_MAX);
const _: () = assert!(GROUP_TICK_MS * 5 <= GROUP_SESSION_TIMEOUT_MS_MIN);
