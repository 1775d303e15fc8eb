//! Kafka's classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, and offset commits
//! of its members) over the coordinator's classic groups (`group::classic`). A group is used either by
//! Kafka clients through this protocol or by Rill's own clients through theirs, never both at once; their
//! committed offsets live in the same group state in `__consumer_offsets` either way.

use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::Decodable;

use super::{BrokerCore, Error, ErrorKind, OffsetCommit};
use crate::clock::now_ms;
use crate::group::TopicPartition;
use crate::group::check_group_id;
use crate::group::classic::{ClassicJoin, Completion, JoinAnswer, Reply, SyncAnswer};
use crate::group::coordinator::{ClassicOutcome, CoordinatorError, Parking};
use crate::limits::{CLASSIC_PARKED_SLACK_MS, CLASSIC_REBALANCE_TIMEOUT_MS_MAX, CLIENT_ID_BYTES_MAX};
use crate::security::{Operation, Principal, Resource};

/// The protocol type Kafka's consumers use; only its metadata and assignments are read (for descriptions).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

#[derive(Debug, Clone)]
pub struct ClassicJoinRequest {
    pub group_id: String,
    /// Empty for a new member.
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
}

fn checked(group_id: &str, client_id: &str) -> Result<(), Error> {
    check_group_id(group_id).map_err(Error::invalid)?;
    if client_id.len() > CLIENT_ID_BYTES_MAX {
        return Err(Error::invalid(format!("the client id is longer than {CLIENT_ID_BYTES_MAX} bytes")));
    }
    Ok(())
}

fn timeout_ms(value: i32) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn coordinator_error(e: CoordinatorError) -> Error {
    Error::from_coordinator(&e)
}

/// A parked request's answer, waited for at most `wait_ms`.
async fn parked(outcome: ClassicOutcome<impl Sized>, wait_ms: u64) -> Result<Completion, Error> {
    let ClassicOutcome::Parked(receiver) = outcome else { unreachable!("only a parked outcome waits") };
    match tokio::time::timeout(Duration::from_millis(wait_ms), receiver).await {
        Ok(Ok(completion)) => Ok(completion),
        // The shard went away (leadership moved) or a newer request of the member replaced this one.
        Ok(Err(_)) => Err(Error::new(ErrorKind::NotCoordinator, "the group's coordinator moved; find it again")),
        Err(_) => Err(Error::new(ErrorKind::RebalanceInProgress, "the rebalance did not complete in time")),
    }
}

impl BrokerCore {
    /// Joins a classic group and waits until its join phase completes (every member joined, or the rebalance
    /// timeout passed).
    pub async fn join_classic_group(&self, who: &Principal, request: ClassicJoinRequest) -> Result<JoinAnswer, Error> {
        checked(&request.group_id, &request.client_id)?;
        self.authorize(who, Operation::Read, Resource::group(&request.group_id))?;
        let group_id = request.group_id.clone();
        let own_members = self.groups.read(&group_id, |g| g.is_some_and(|g| !g.members.is_empty())).await;
        if own_members.map_err(coordinator_error)? {
            let why = format!("group '{group_id}' has members using Rill's own group protocol");
            return Err(Error::new(ErrorKind::InconsistentGroupProtocol, why));
        }
        let rebalance_timeout_ms = timeout_ms(request.rebalance_timeout_ms).min(CLASSIC_REBALANCE_TIMEOUT_MS_MAX);
        let join = ClassicJoin {
            member_id: request.member_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout_ms: timeout_ms(request.session_timeout_ms),
            rebalance_timeout_ms,
            protocol_type: request.protocol_type,
            protocols: request.protocols,
        };
        let member_id = join.member_id.clone();
        let outcome = self.groups.classic(&group_id, &member_id, Parking::Join, true, |g, now| g.join(join, now));
        match outcome.map_err(coordinator_error)? {
            ClassicOutcome::Now(answer) => answer.map_err(|e| coordinator_error(CoordinatorError::Classic(e))),
            waiting => match parked(waiting, rebalance_timeout_ms + CLASSIC_PARKED_SLACK_MS).await? {
                Completion::Join { answer, .. } => {
                    let answer = answer.map_err(|e| coordinator_error(CoordinatorError::Classic(e)))?;
                    tracing::info!(group = %group_id, member_id = %answer.member_id, generation = answer.generation, "classic member joined");
                    Ok(answer)
                }
                Completion::Sync { .. } => unreachable!("a join is parked for a join's completion"),
            },
        }
    }

    /// The leader sends every member's assignment; each member waits for its own.
    pub async fn sync_classic_group(
        &self,
        who: &Principal,
        group_id: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<SyncAnswer, Error> {
        checked(group_id, "")?;
        self.authorize(who, Operation::Read, Resource::group(group_id))?;
        let wait_ms = self
            .groups
            .read_classic(group_id, |g| {
                g.and_then(|g| g.members().find(|m| m.member_id == member_id).map(|m| m.rebalance_timeout_ms))
            })
            .map_err(coordinator_error)?
            .unwrap_or(0);
        let outcome = self.groups.classic(group_id, member_id, Parking::Sync, false, |g, now| {
            g.sync(member_id, generation, assignments, now)
        });
        match outcome.map_err(coordinator_error)? {
            ClassicOutcome::Now(answer) => answer.map_err(|e| coordinator_error(CoordinatorError::Classic(e))),
            waiting => match parked(waiting, wait_ms + CLASSIC_PARKED_SLACK_MS).await? {
                Completion::Sync { answer, .. } => answer.map_err(|e| coordinator_error(CoordinatorError::Classic(e))),
                Completion::Join { .. } => unreachable!("a sync is parked for a sync's completion"),
            },
        }
    }

    pub fn heartbeat_classic(
        &self,
        who: &Principal,
        group_id: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<(), Error> {
        checked(group_id, "")?;
        self.authorize(who, Operation::Read, Resource::group(group_id))?;
        let outcome = self.groups.classic(group_id, member_id, Parking::Join, false, |g, now| {
            (Reply::Now(g.heartbeat(member_id, generation, now)), Vec::new())
        });
        match outcome.map_err(coordinator_error)? {
            ClassicOutcome::Now(answer) => answer.map_err(|e| coordinator_error(CoordinatorError::Classic(e))),
            ClassicOutcome::Parked(_) => unreachable!("a heartbeat never waits"),
        }
    }

    /// Removes members; one outcome per member named.
    pub fn leave_classic_group(
        &self,
        who: &Principal,
        group_id: &str,
        member_ids: &[String],
    ) -> Result<Vec<Result<(), Error>>, Error> {
        checked(group_id, "")?;
        self.authorize(who, Operation::Read, Resource::group(group_id))?;
        let mut results = Vec::new();
        let first = member_ids.first().map_or("", String::as_str);
        let outcome = self.groups.classic(group_id, first, Parking::Join, false, |g, now| {
            let (left, completions) = g.leave(member_ids, now);
            results = left;
            (Reply::Now(Ok(())), completions)
        });
        if let ClassicOutcome::Now(Err(e)) = outcome.map_err(coordinator_error)? {
            // No classic state: every member named is unknown.
            let unknown = Error::from_coordinator(&CoordinatorError::Classic(e));
            return Ok(member_ids.iter().map(|_| Err(unknown.clone())).collect());
        }
        tracing::info!(group = %group_id, ?member_ids, "classic members left");
        Ok(results.into_iter().map(|r| r.map_err(|e| coordinator_error(CoordinatorError::Classic(e)))).collect())
    }

    /// Commits offsets for a classic member of the current generation, or for a standalone consumer (empty
    /// member id, generation -1) of a group without members.
    pub async fn commit_classic_offsets(
        &self,
        who: &Principal,
        group_id: &str,
        member_id: &str,
        generation: i32,
        offsets: &[OffsetCommit],
    ) -> Result<(), Error> {
        checked(group_id, "")?;
        self.authorize_offsets(who, group_id, offsets)?;
        let offsets = super::group::offsets_to_write(offsets)?;
        let outcome = self.groups.commit_classic(group_id, member_id, generation, offsets, now_ms()).await;
        outcome.map_err(coordinator_error)
    }
}

/// The topics a consumer-protocol member subscribes to, from its metadata (none if unreadable).
pub fn consumer_topics(metadata: &Bytes) -> Vec<String> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut buf, version)
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

/// The partitions a consumer-protocol assignment gives a member (none if unreadable).
pub fn consumer_assignment(assignment: &Bytes) -> Vec<TopicPartition> {
    let mut buf = assignment.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    let Ok(decoded) = ConsumerProtocolAssignment::decode(&mut buf, version) else { return Vec::new() };
    decoded
        .assigned_partitions
        .iter()
        .flat_map(|t| {
            let topic = t.topic.to_string();
            t.partitions
                .iter()
                .filter_map(move |p| u32::try_from(*p).ok().map(|p| TopicPartition::new(topic.clone(), p)))
        })
        .collect()
}
