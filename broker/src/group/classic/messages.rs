//! The requests, answers and errors of Kafka's classic group protocol as [`super::ClassicGroup`] takes and
//! gives them: Rill's own types, which the Kafka handlers translate to and from the wire.

use std::fmt;

use bytes::Bytes;

use crate::limits::{
    CLASSIC_GROUP_MEMBERS_MAX, CLASSIC_MEMBER_METADATA_BYTES_MAX, GROUP_SESSION_TIMEOUT_MS_MAX,
    GROUP_SESSION_TIMEOUT_MS_MIN,
};

/// A JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicJoin {
    /// Empty for a new member.
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    /// How long the member may take to join again once a rebalance starts (`max.poll.interval.ms`); JoinGroup
    /// v0 has none, and the shell passes the session timeout then.
    pub rebalance_timeout_ms: u64,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAnswer {
    pub member_id: String,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: String,
    /// The leader gets every member with its metadata for the chosen protocol, in member id order; the others
    /// get none.
    pub members: Vec<(String, Bytes)>,
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAnswer {
    pub protocol_type: String,
    pub protocol_name: String,
    pub assignment: Bytes,
}

/// What the shell does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// Answer it now.
    Now(Result<T, ClassicError>),
    /// Park it under `member_id` (for a new member, the id just given to it): its answer comes later as a
    /// [`Completion`] for that member. A parked request of the same kind for the same member is replaced by
    /// this one, and the shell answers the older one as it sees fit (Kafka drops it).
    Wait { member_id: String },
}

/// The answer to a parked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Join { member_id: String, answer: Result<JoinAnswer, ClassicError> },
    Sync { member_id: String, answer: Result<SyncAnswer, ClassicError> },
}

impl Completion {
    pub fn member_id(&self) -> &str {
        match self {
            Completion::Join { member_id, .. } | Completion::Sync { member_id, .. } => member_id,
        }
    }
}

/// Why a request was refused. Each variant is one Kafka error code ([`ClassicError::code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassicError {
    UnknownMemberId { group: String, member: String },
    IllegalGeneration { group: String, member: String, given: i32, current: i32 },
    RebalanceInProgress { group: String, member: String },
    InconsistentGroupProtocol { group: String, member: String, reason: String },
    InvalidSessionTimeout { group: String, member: String, timeout_ms: u64 },
    GroupMaxSizeReached { group: String },
    MetadataTooLarge { group: String, member: String, bytes: usize },
}

impl ClassicError {
    /// The Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            ClassicError::IllegalGeneration { .. } => 22,
            ClassicError::InconsistentGroupProtocol { .. } => 23,
            ClassicError::UnknownMemberId { .. } => 25,
            ClassicError::InvalidSessionTimeout { .. } => 26,
            ClassicError::RebalanceInProgress { .. } => 27,
            // INVALID_REQUEST: Kafka sets no such limit, so it has no dedicated code.
            ClassicError::MetadataTooLarge { .. } => 42,
            ClassicError::GroupMaxSizeReached { .. } => 81,
        }
    }
}

/// Names a member in a message; a request without a member id is a new member (or a standalone commit).
struct Who<'a>(&'a str);

impl fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() { write!(f, "a client without a member id") } else { write!(f, "member '{}'", self.0) }
    }
}

impl fmt::Display for ClassicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassicError::UnknownMemberId { group, member } => {
                write!(f, "{} is not a member of group '{group}'; join again without a member id", Who(member))
            }
            ClassicError::IllegalGeneration { group, member, given, current } => write!(
                f,
                "{} of group '{group}' is in generation {given}, but the group is in generation {current}; join again",
                Who(member)
            ),
            ClassicError::RebalanceInProgress { group, member } => {
                write!(f, "group '{group}' is rebalancing; {} must join again", Who(member))
            }
            ClassicError::InconsistentGroupProtocol { group, member, reason } => {
                write!(f, "{} cannot join group '{group}': {reason}", Who(member))
            }
            ClassicError::InvalidSessionTimeout { group, member, timeout_ms } => write!(
                f,
                "session timeout {timeout_ms} ms of {} of group '{group}' is outside \
                 [{GROUP_SESSION_TIMEOUT_MS_MIN}, {GROUP_SESSION_TIMEOUT_MS_MAX}] ms",
                Who(member)
            ),
            ClassicError::GroupMaxSizeReached { group } => {
                write!(f, "group '{group}' already has {CLASSIC_GROUP_MEMBERS_MAX} members, its maximum")
            }
            ClassicError::MetadataTooLarge { group, member, bytes } => write!(
                f,
                "{} of group '{group}' sent {bytes} bytes of protocol metadata, more than the \
                 {CLASSIC_MEMBER_METADATA_BYTES_MAX} allowed",
                Who(member)
            ),
        }
    }
}

impl std::error::Error for ClassicError {}
