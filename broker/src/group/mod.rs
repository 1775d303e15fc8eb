//! Consumer groups: the coordinator of group G is the leader of partition `hash(G) % N` of the internal topic
//! `__consumer_offsets`. `state.rs` is the pure state machine of one group (members, generation, sticky
//! assignment with revocation before hand-off, committed offsets), `assignment.rs` the assignor,
//! `records.rs` the records it writes, and `coordinator.rs` the tokio shell that writes those records with
//! acks=all, rebuilds the state from the partition when this broker becomes its leader, and expires sessions.
//! `classic.rs` is the pure state machine of one group of Kafka's classic protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), whose leader member computes the assignment.

pub mod assignment;
pub mod classic;
#[cfg(test)]
mod classic_tests;
pub mod coordinator;
pub mod records;
pub mod state;
#[cfg(test)]
mod tests;

pub use coordinator::GroupCoordinator;

/// The internal topic holding every group's membership snapshots and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// A partition of a topic, ordered by topic then partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// The `__consumer_offsets` partition of `group_id` among `partitions`: FNV-1a (32 bit) of the group id's
/// UTF-8 bytes, modulo the partition count. Fixed forever: changing it would move every group's state.
pub fn offsets_partition_for(group_id: &str, partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in group_id.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions.max(1)
}

/// Checks a group id: non-empty, bounded, printable.
pub fn check_group_id(group_id: &str) -> Result<(), String> {
    if group_id.is_empty() {
        return Err("the group id is empty".into());
    }
    if group_id.len() > crate::limits::GROUP_ID_BYTES_MAX {
        return Err(format!("the group id is longer than {} bytes", crate::limits::GROUP_ID_BYTES_MAX));
    }
    if group_id.chars().any(char::is_control) {
        return Err("the group id contains control characters".into());
    }
    Ok(())
}
