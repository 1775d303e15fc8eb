//! The coordinator's shell around Kafka classic-protocol groups (`group::classic`): runs an operation on a
//! shard's classic group, parks JoinGroup and SyncGroup requests until the state machine completes them,
//! delivers completions (also those of the periodic tick), and commits offsets for classic members under
//! the same lock as every other write of the group.

use tokio::sync::oneshot;

use super::{CoordinatorError, GroupCoordinator, Shard};
use crate::clock::monotonic_ms;
use crate::group::TopicPartition;
use crate::group::classic::{ClassicError, ClassicGroup, Completion, Reply};
use crate::group::state::{GroupError, GroupState};
use crate::limits::CLASSIC_INITIAL_REBALANCE_DELAY_MS_DEFAULT;

/// Which kind of parked request a completion answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Parking {
    Join,
    Sync,
}

/// An operation's answer: now, or later through the receiver (dropped if the shard goes away or a newer
/// request of the member replaces this one).
pub enum ClassicOutcome<T> {
    Now(Result<T, ClassicError>),
    Parked(oneshot::Receiver<Completion>),
}

fn parking_of(completion: &Completion) -> Parking {
    match completion {
        Completion::Join { .. } => Parking::Join,
        Completion::Sync { .. } => Parking::Sync,
    }
}

impl Shard {
    fn lock_classic(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, ClassicGroup>> {
        self.classic.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers the parked requests that `completions` complete.
    fn deliver(&self, group_id: &str, completions: Vec<Completion>) {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        for completion in completions {
            let key = (group_id.to_string(), completion.member_id().to_string(), parking_of(&completion));
            if let Some(waiter) = parked.remove(&key) {
                // The request may have given up meanwhile; its member learns the outcome on its next request.
                let _ = waiter.send(completion);
            }
        }
    }
}

impl GroupCoordinator {
    /// Runs `operation` on the group's classic state; parks the request as `parking` when the operation says
    /// it waits, and delivers the completions it returns. A group without classic state gets a new, empty one
    /// if `create` (a join), and otherwise the answer that `member_id` is unknown.
    pub fn classic<T>(
        &self,
        group_id: &str,
        member_id: &str,
        parking: Parking,
        create: bool,
        operation: impl FnOnce(&mut ClassicGroup, u64) -> (Reply<T>, Vec<Completion>),
    ) -> Result<ClassicOutcome<T>, CoordinatorError> {
        let shard = self.shard_of(group_id)?;
        let (reply, completions) = {
            let mut groups = shard.lock_classic();
            if !create && !groups.contains_key(group_id) {
                let unknown =
                    ClassicError::UnknownMemberId { group: group_id.to_string(), member: member_id.to_string() };
                return Ok(ClassicOutcome::Now(Err(unknown)));
            }
            let group = groups.entry(group_id.to_string()).or_insert_with(|| {
                let n = shard.classic_created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let incarnation = format!("{}.{n}", shard.incarnation);
                ClassicGroup::new(group_id, &incarnation, CLASSIC_INITIAL_REBALANCE_DELAY_MS_DEFAULT)
            });
            operation(group, monotonic_ms())
        };
        let outcome = match reply {
            Reply::Now(answer) => ClassicOutcome::Now(answer),
            Reply::Wait { member_id } => {
                let (tx, rx) = oneshot::channel();
                let key = (group_id.to_string(), member_id, parking);
                // A newer request of the member replaces an older parked one, whose client gave up on it.
                shard.parked.lock().unwrap_or_else(|p| p.into_inner()).insert(key, tx);
                ClassicOutcome::Parked(rx)
            }
        };
        shard.deliver(group_id, completions);
        Ok(outcome)
    }

    /// Reads the group's classic state (`None` if it has none).
    pub fn read_classic<T>(
        &self,
        group_id: &str,
        view: impl FnOnce(Option<&ClassicGroup>) -> T,
    ) -> Result<T, CoordinatorError> {
        let shard = self.shard_of(group_id)?;
        let groups = shard.lock_classic();
        Ok(view(groups.get(group_id)))
    }

    /// Every classic group of every loaded shard.
    pub fn list_classic(&self) -> Vec<ClassicGroup> {
        let shards: Vec<std::sync::Arc<Shard>> = self.lock_shards().values().cloned().collect();
        shards.iter().flat_map(|s| s.lock_classic().values().cloned().collect::<Vec<_>>()).collect()
    }

    /// Commits offsets for a classic member of the current generation, or (empty member id, generation -1)
    /// for a standalone consumer of a group without members, checked and written under the group's lock.
    pub async fn commit_classic(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        offsets: Vec<(TopicPartition, u64, String)>,
        now_ms: i64,
    ) -> Result<(), CoordinatorError> {
        let shard = self.shard_of(group_id)?;
        let mut groups = shard.groups.lock().await;
        let mut next = groups.get(group_id).cloned().unwrap_or_else(|| GroupState::new(group_id));
        let unknown = || ClassicError::UnknownMemberId { group: group_id.to_string(), member: member_id.to_string() };
        let checked = match shard.lock_classic().get(group_id) {
            Some(classic) => classic.check_commit(member_id, generation),
            None if member_id.is_empty() && generation < 0 => Ok(()),
            None => Err(unknown()),
        };
        checked.map_err(CoordinatorError::Classic)?;
        // A standalone commit must not overwrite what members of Rill's own protocol are committing.
        if !next.members.is_empty() {
            return Err(CoordinatorError::Classic(unknown()));
        }
        let records = next.commit_checked(offsets, now_ms);
        self.write(&shard, &records).await?;
        groups.insert(group_id.to_string(), next);
        Ok(())
    }

    /// Deletes a group that has no members of either protocol, with its committed offsets; `Ok(false)` if
    /// the coordinator knows no such group.
    pub async fn delete_group(&self, group_id: &str) -> Result<bool, CoordinatorError> {
        let shard = self.shard_of(group_id)?;
        let mut groups = shard.groups.lock().await;
        let classic_members = shard.lock_classic().get(group_id).map(|c| c.members().count());
        if let Some(members) = classic_members.filter(|n| *n > 0) {
            return Err(CoordinatorError::Group(GroupError::NonEmpty { group: group_id.to_string(), members }));
        }
        let Some(mut next) = groups.get(group_id).cloned() else {
            return Ok(shard.lock_classic().remove(group_id).is_some());
        };
        let records = next.delete().map_err(CoordinatorError::Group)?;
        self.write(&shard, &records).await?;
        groups.remove(group_id);
        shard.lock_classic().remove(group_id);
        Ok(true)
    }

    /// Session expiry and rebalance deadlines of every classic group, with their completions delivered.
    pub(super) fn tick_classic(&self) {
        let shards: Vec<std::sync::Arc<Shard>> = self
            .lock_shards()
            .values()
            .filter(|s| s.loaded.load(std::sync::atomic::Ordering::SeqCst))
            .cloned()
            .collect();
        let now = monotonic_ms();
        for shard in shards {
            let due: Vec<(String, Vec<Completion>)> = {
                let mut groups = shard.lock_classic();
                groups.iter_mut().map(|(id, g)| (id.clone(), g.tick(now))).filter(|(_, c)| !c.is_empty()).collect()
            };
            for (group_id, completions) in due {
                shard.deliver(&group_id, completions);
            }
        }
    }
}
