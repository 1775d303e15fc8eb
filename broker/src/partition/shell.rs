//! Carrying out the replication state machine's commands for one partition.

use crate::replication::{Command, Replica, Warning};

use super::{Offline, Partition, storage_epochs};

impl Partition {
    /// Runs `commands` in order, with the replica lock held by the caller, then publishes the new offsets.
    pub(super) fn execute(&self, replica: &mut Replica, commands: Vec<Command>) {
        for command in commands {
            match command {
                Command::PersistEpochHistory { entries } => {
                    if let Err(e) = self.read_log().write_leader_epochs(&storage_epochs(&entries)) {
                        self.fail(Offline::StorageFailed(format!("leader-epoch checkpoint: {e}")));
                    }
                }
                // Published below; acks=all waiters and consumers watch the published offsets, and the HW
                // is checkpointed by the periodic upkeep.
                Command::HighWatermarkAdvanced { .. } => {}
                Command::Warn(warning) => self.warn(&warning),
                Command::ReplyFetch { .. }
                | Command::SendFetch(_)
                | Command::AppendReplicated { .. }
                | Command::Truncate { .. }
                | Command::TruncateFully { .. }
                | Command::ProposeIsr { .. } => {
                    // Replication between brokers arrives with the cluster step; a single node leads every
                    // partition with itself as the whole ISR, so its replica never asks for these.
                    tracing::error!(partition = %self.name(), ?command, "replication command without a cluster");
                }
            }
        }
        self.publish(replica);
    }

    fn warn(&self, warning: &Warning) {
        match warning {
            Warning::AcknowledgedRecordsLost { .. } => {
                tracing::error!(partition = %self.name(), ?warning, "acknowledged records lost (allowed by topic settings)")
            }
            _ => tracing::warn!(partition = %self.name(), ?warning, "replication"),
        }
    }
}
