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
/// How often a stopping broker asks again to move leaderships that had no other in-sync replica yet.
pub const CONTROLLED_SHUTDOWN_RETRY_MS: u64 = 250;
/// How long a stopping broker waits for its leaderships to move before it stops anyway.
pub const CONTROLLED_SHUTDOWN_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// How often the active controller runs a preferred-leader election over every topic; Kafka's
/// `leader.imbalance.check.interval.seconds` defaults to the same 5 minutes.
pub const LEADER_BALANCE_INTERVAL_MS_DEFAULT: u64 = 300_000;

/// How long a topic change waits for this broker's partitions to reflect it before answering anyway, so a
/// client that creates a topic can usually produce to it at once.
pub const TOPIC_CHANGE_APPLY_WAIT_MS: u64 = 10_000;
/// How long an idempotent batch that arrived ahead of its predecessor waits for it before the partition
/// answers `OUT_OF_ORDER_SEQUENCE`. A producer pipelines up to 5 batches per partition; their requests travel
/// as concurrent HTTP/2 streams, so one can overtake another by a few milliseconds. A predecessor lost in
/// transport is retried by the client after its backoff, well within this bound.
pub const SEQUENCE_GAP_WAIT_MS: u64 = 2_000;
/// Largest HTTP/2 DATA frame clients and peers may send (SETTINGS_MAX_FRAME_SIZE; the protocol's default is
/// 16 KiB): a 1 MiB produce request then crosses in one frame instead of 64, with one frame's bookkeeping.
pub const HTTP2_FRAME_BYTES_MAX: u32 = 1 << 20;
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
/// How long FindCoordinator waits for a new `__consumer_offsets` topic to appear in this node's metadata.
pub const OFFSETS_TOPIC_CREATE_WAIT_MS: u64 = 10_000;
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

/// Kafka listener connections open at once. At the limit the listener stops accepting until one closes, so
/// further clients wait in the kernel's backlog (Kafka's `max.connections` does the same); each connection
/// holds at most one request of up to `request_bytes_max` at a time, so this bounds the listener's memory.
pub const KAFKA_CONNECTIONS_MAX: usize = 4_096;
/// A Kafka connection that sends no complete request for this long is closed (Kafka's
/// `connections.max.idle.ms` default). Clients reconnect on demand, so this only frees abandoned sockets.
pub const KAFKA_CONNECTION_IDLE_MS_MAX: u64 = 600_000;
/// Produce requests of one Kafka connection appended and waiting for their acknowledgement at once: the
/// five in flight a Kafka producer keeps by default (librdkafka's and the Java client's
/// `max.in.flight.requests.per.connection` with idempotence), so its pipeline stays full while each batch
/// waits for the group-commit fsync and replication.
pub const KAFKA_PRODUCE_PIPELINE_MAX: usize = 5;
/// The smallest Kafka request frame: API key, API version and correlation id (2 + 2 + 4 bytes), which even a
/// header v0 carries. A shorter frame cannot be answered, since it names no correlation id.
pub const KAFKA_FRAME_BYTES_MIN: usize = 8;
/// Pause after a failed accept (out of file descriptors, say) before the next, so the loop does not spin.
pub const KAFKA_ACCEPT_BACKOFF_MS: u64 = 100;

/// Kafka's `group.initial.rebalance.delay.ms` default for classic-protocol groups: when an empty group gets
/// its first member, the coordinator waits this long (extended by each new member, up to the rebalance
/// timeout) before forming a generation, so consumers started together land in one generation instead of
/// rebalancing once per member.
pub const CLASSIC_INITIAL_REBALANCE_DELAY_MS_DEFAULT: u64 = 3_000;
/// How much longer than its rebalance timeout a parked JoinGroup or SyncGroup waits for its answer before it
/// gives up: the coordinator's tick, every `GROUP_TICK_MS`, completes a rebalance whose deadline passed.
pub const CLASSIC_PARKED_SLACK_MS: u64 = 5_000;
/// The longest a classic-protocol rebalance waits for members to join again (and for them to sync after),
/// whatever rebalance timeout (`max.poll.interval.ms`) they give. Clients that set it to hours (older Kafka
/// Streams used `i32::MAX`) are still admitted, but one silent member cannot hold its whole group in a
/// rebalance for longer than this.
pub const CLASSIC_REBALANCE_TIMEOUT_MS_MAX: u64 = 600_000;
/// Members of one classic-protocol group (Kafka's `group.max.size`, unbounded there). Far more consumers than
/// any topic has partitions for, small enough that the leader's JoinGroup answer, which carries every member's
/// metadata, stays a bounded size.
pub const CLASSIC_GROUP_MEMBERS_MAX: usize = 1_000;
/// Protocol metadata bytes one member may send, over all its protocols. A consumer's subscription with
/// cooperative-sticky's owned partitions is about 100 KiB for 1,000 topics and 10,000 partitions, so this is
/// generous, while the leader's answer stays within `CLASSIC_GROUP_MEMBERS_MAX` times this.
pub const CLASSIC_MEMBER_METADATA_BYTES_MAX: usize = 1 << 20;
const _: () = assert!(CLASSIC_INITIAL_REBALANCE_DELAY_MS_DEFAULT <= CLASSIC_REBALANCE_TIMEOUT_MS_MAX);

/// Longest SCRAM user name, in bytes: names appear in every ACL and log line about the user.
pub const USER_NAME_BYTES_MAX: usize = 256;

/// Most ACLs the cluster holds: every broker keeps them all in memory and checks them on each request.
pub const ACLS_MAX: usize = 100_000;

/// How long a gRPC session token from a SCRAM login stays valid; clients log in again after it.
pub const SESSION_TOKEN_LIFETIME_MS: u64 = 24 * 60 * 60 * 1000;

/// Most keys (user names, client addresses) with recent failed logins a broker remembers.
pub const SESSIONS_MAX: usize = 100_000;

/// Most SCRAM exchanges waiting for their final message, and how long one may wait: a login is two round
/// trips, so anything slower is abandoned.
pub const PENDING_LOGINS_MAX: usize = 1024;
pub const PENDING_LOGIN_MS_MAX: u64 = 30_000;

/// Failed logins allowed per user name within the window, before further attempts for it are refused until
/// the window passes: slows guessing one user's password to a few tries a minute.
pub const FAILED_LOGINS_MAX: usize = 5;
/// The same per client address, higher because many clients may share one address (NAT, a proxy, one host's
/// services): slows sweeping many user names from one place.
pub const FAILED_LOGINS_PER_ADDRESS_MAX: usize = 50;
pub const FAILED_LOGIN_WINDOW_MS: u64 = 60_000;

/// A TLS handshake (gRPC or Kafka listener) that has not finished in this long is dropped: a client that
/// connects and sends nothing, or a plaintext client on a TLS port waiting for an answer, must not hold a
/// connection slot. Generous for a handshake across a slow WAN link, which takes two round trips.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// After a failed TLS handshake the broker reads and drops what the client still sends for up to this long,
/// so that its alert (why the handshake failed) is not lost to a TCP reset; the client, having read the alert,
/// closes sooner. Short: the connection's slot is held meanwhile.
pub const TLS_REFUSED_LINGER_MS: u64 = 1_000;
/// Bytes read and dropped from a refused client at most (a client's first HTTP/2 frames are a few hundred).
pub const TLS_REFUSED_DRAIN_BYTES_MAX: usize = 64 * 1024;
/// TLS handshakes of the gRPC listener in progress at once; further connections wait in the kernel's
/// backlog. Each costs a task and a few KiB of buffers, and the handshake timeout frees a slot held by a
/// silent client, so this bounds what half-open connections can pin.
pub const TLS_HANDSHAKES_MAX: usize = 1_024;
/// Accepted gRPC connections queued for the HTTP/2 server after their handshake (a bounded channel between
/// the accept loop and tonic).
pub const GRPC_ACCEPTED_QUEUE_MAX: usize = 64;
/// Pause after a failed accept on the gRPC listener before the next, as for the Kafka listener.
pub const GRPC_ACCEPT_BACKOFF_MS: u64 = 100;
/// How often the broker checks its certificate, key and CA files for changes by default (their modification
/// time, size and inode), besides SIGHUP: renewed certificates are picked up within about this long, at the
/// cost of three `stat` calls a second.
pub const TLS_RELOAD_POLL_MS_DEFAULT: u64 = 1_000;
/// Largest certificate, key or CA bundle file read: a CA bundle of every public root is about 200 KiB, so a
/// larger file is a mistake (a log file named by accident), not key material.
pub const TLS_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;
const _: () = assert!(TLS_HANDSHAKE_TIMEOUT_MS <= KAFKA_CONNECTION_IDLE_MS_MAX);

/// Longest a quota holds back one answer, in ms: well inside clients' request timeouts (Kafka's default is
/// 30 s), so a throttled client waits rather than failing. A larger debt stays owed and holds the next
/// answers too.
pub const QUOTA_THROTTLE_MS_MAX: u64 = 10_000;

/// Most quota buckets (one per key and user or client id seen) a broker keeps before it forgets the idle
/// ones: bounds the memory of clients that come and go.
pub const QUOTA_BUCKETS_MAX: usize = 100_000;

/// Most quota entities the cluster holds: every broker keeps them in memory.
pub const QUOTA_ENTITIES_MAX: usize = 100_000;
