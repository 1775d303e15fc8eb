//! Consumer groups on the client side: finding a group's coordinator and calling it (re-discovering it when
//! it moves), and a member's background loop that joins, heartbeats the partitions the consumer holds, and
//! publishes the assignment each answer grants. The [`Consumer`](crate::Consumer) applies assignments between
//! polls: it commits and lets go of partitions taken from it before its next heartbeat says so, which is
//! what allows the coordinator to hand them to their new owner.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_proto::v1::rill_client::RillClient;
use rill_proto::v1::{self};
use tokio::sync::{Notify, watch};
use tonic::transport::Channel;

use crate::cluster::Cluster;
use crate::error::{BrokerError, Error, ErrorCode, Result};
use crate::types::TopicPartition;

/// How often a member heartbeats while some partition of its group waits to be handed over.
const REBALANCING_HEARTBEAT_MS: u64 = 100;

/// A response of a group call, with its application error.
pub(crate) trait GroupAnswer {
    fn error(&self) -> Option<&v1::Error>;
}

macro_rules! group_answer {
    ($($t:ty),*) => {$(
        impl GroupAnswer for $t {
            fn error(&self) -> Option<&v1::Error> {
                self.error.as_ref()
            }
        }
    )*};
}

group_answer!(
    v1::JoinGroupResponse,
    v1::HeartbeatResponse,
    v1::LeaveGroupResponse,
    v1::CommitOffsetsResponse,
    v1::FetchOffsetsResponse,
    v1::DescribeGroupResponse,
    v1::ResetOffsetsResponse
);

/// Calls to one group's coordinator, with the coordinator's address cached until it moves.
pub(crate) struct GroupClient {
    pub cluster: Arc<Cluster>,
    pub group_id: String,
    coordinator: Mutex<Option<String>>,
}

impl GroupClient {
    pub fn new(cluster: Arc<Cluster>, group_id: &str) -> GroupClient {
        GroupClient { cluster, group_id: group_id.to_string(), coordinator: Mutex::new(None) }
    }

    /// The coordinator's address, asking any broker when it is not known.
    async fn coordinator(&self) -> Result<String> {
        if let Some(address) = self.coordinator.lock().expect("coordinator cache poisoned").clone() {
            return Ok(address);
        }
        let request = v1::FindCoordinatorRequest { group_id: self.group_id.clone() };
        let response = self
            .cluster
            .call_any(|mut client| {
                let request = self.cluster.request(request.clone(), Duration::ZERO);
                async move { client.find_coordinator(request).await.map(tonic::Response::into_inner) }
            })
            .await?;
        if let Some(e) = BrokerError::from_proto(response.error.as_ref()) {
            return Err(Error::Broker(e));
        }
        *self.coordinator.lock().expect("coordinator cache poisoned") = Some(response.address.clone());
        Ok(response.address)
    }

    fn forget_coordinator(&self) {
        *self.coordinator.lock().expect("coordinator cache poisoned") = None;
    }

    /// Sends a request to the coordinator, finding it again and retrying while it moves, loads, or cannot be
    /// reached, until the request timeout. Other refusals are returned as they are.
    pub async fn call<Resp, F, Fut>(&self, call: F) -> Result<Resp>
    where
        Resp: GroupAnswer,
        F: Fn(RillClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.cluster.config().request_timeout();
        loop {
            let error = match self.coordinator().await {
                Ok(address) => match call(self.cluster.client(&address)?).await {
                    Ok(response) => {
                        let response = response.into_inner();
                        match BrokerError::from_proto(response.error()) {
                            None => return Ok(response),
                            Some(e) => Error::Broker(e),
                        }
                    }
                    Err(status) => Error::from_status(&address, &status),
                },
                Err(e) => e,
            };
            if !error.is_retriable() || Instant::now() >= deadline {
                return Err(error);
            }
            tracing::debug!(group = %self.group_id, %error, "group call failed; finding the coordinator again");
            self.forget_coordinator();
            self.cluster.backoff().await;
        }
    }

    /// The committed offsets of `partitions`, asked as `member` (id and generation) when given.
    pub async fn fetch_offsets(
        &self,
        partitions: &[TopicPartition],
        member: Option<(&str, u32)>,
    ) -> Result<BTreeMap<TopicPartition, u64>> {
        let (member_id, generation) = member.unwrap_or(("", 0));
        let request = v1::FetchOffsetsRequest {
            group_id: self.group_id.clone(),
            partitions: partitions.iter().map(to_proto).collect(),
            member_id: member_id.to_owned(),
            generation,
        };
        let response = self
            .call(|mut c| {
                let request = self.cluster.request(request.clone(), Duration::ZERO);
                async move { c.fetch_offsets(request).await }
            })
            .await?;
        Ok(response.offsets.into_iter().map(|o| (TopicPartition::new(o.topic, o.partition), o.offset)).collect())
    }

    pub async fn commit(
        &self,
        member_id: &str,
        generation: u32,
        offsets: &BTreeMap<TopicPartition, u64>,
        metadata: &str,
    ) -> Result<()> {
        let request = v1::CommitOffsetsRequest {
            group_id: self.group_id.clone(),
            member_id: member_id.to_string(),
            generation,
            offsets: offset_commits(offsets, metadata),
        };
        self.call(|mut c| {
            let request = self.cluster.request(request.clone(), Duration::ZERO);
            async move { c.commit_offsets(request).await }
        })
        .await?;
        Ok(())
    }
}

pub(crate) fn to_proto(tp: &TopicPartition) -> v1::GroupPartition {
    v1::GroupPartition { topic: tp.topic.clone(), partition: tp.partition }
}

/// What the coordinator last granted this member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Assignment {
    /// Counts the member's incarnations: it changes when the member was removed from the group and joined
    /// again, in which case its old partitions may already be read by others and must not be committed.
    pub incarnation: u64,
    pub member_id: String,
    pub generation: u32,
    pub partitions: BTreeSet<TopicPartition>,
    /// The coordinator's number for this assignment, reported back with the partitions held once applied.
    pub seq: u32,
}

/// The partitions the consumer holds, as of the assignment numbered `seq`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Held {
    pub partitions: BTreeSet<TopicPartition>,
    pub seq: u32,
}

/// How a member joins and heartbeats.
#[derive(Debug, Clone)]
pub(crate) struct MemberSettings {
    pub client_id: String,
    pub topics: Vec<String>,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
}

/// The foreground's side of a running membership.
pub(crate) struct Membership {
    pub client: Arc<GroupClient>,
    pub assignment: watch::Receiver<Assignment>,
    /// The partitions the consumer holds, reported in every heartbeat.
    pub owned: Arc<Mutex<Held>>,
    /// Wakes the loop for an early heartbeat (after the consumer let go of partitions).
    pub wake: Arc<Notify>,
    /// When the last answered heartbeat was sent (before its first attempt), and by which incarnation.
    answered: Arc<Mutex<Option<(Instant, u64)>>>,
    session_timeout: Duration,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Membership {
    pub fn start(client: Arc<GroupClient>, settings: MemberSettings) -> Membership {
        let (assignment_tx, assignment) = watch::channel(Assignment::default());
        let owned = Arc::new(Mutex::new(Held::default()));
        let wake = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(false);
        let answered = Arc::new(Mutex::new(None));
        let session_timeout = Duration::from_millis(settings.session_timeout_ms);
        let shared =
            Shared { assignment: assignment_tx, owned: owned.clone(), wake: wake.clone(), answered: answered.clone() };
        let task = tokio::spawn(member_loop(client.clone(), settings, shared, stop_rx));
        Membership { client, assignment, owned, wake, answered, session_timeout, stop, task }
    }

    /// Whether a heartbeat of `incarnation` (the one whose partitions the consumer reads) sent less than a
    /// session timeout ago was answered. Otherwise the coordinator may already have removed this member and
    /// handed its partitions to others, so the consumer stops reading until a heartbeat is answered again (the
    /// member's lease, measured like a broker's). An answer to a later incarnation does not count: the
    /// consumer has not dropped the old incarnation's partitions yet.
    pub fn lease_valid(&self, incarnation: u64) -> bool {
        self.answered
            .lock()
            .expect("lease poisoned")
            .is_some_and(|(sent, by)| by == incarnation && sent.elapsed() < self.session_timeout)
    }

    /// Stops heartbeating and leaves the group, so its partitions move at once rather than after the session
    /// timeout.
    pub async fn leave(mut self) -> Result<()> {
        // A heartbeat in flight may be retrying against an unreachable coordinator: abandon it.
        let _ = self.stop.send(true);
        self.task.abort();
        let _ = (&mut self.task).await;
        let member_id = self.assignment.borrow().member_id.clone();
        if member_id.is_empty() {
            return Ok(());
        }
        let request = v1::LeaveGroupRequest { group_id: self.client.group_id.clone(), member_id };
        let outcome = self
            .client
            .call(|mut c| {
                let request = self.client.cluster.request(request.clone(), Duration::ZERO);
                async move { c.leave_group(request).await }
            })
            .await;
        match outcome {
            Ok(_) => Ok(()),
            Err(Error::Broker(e)) if e.code == ErrorCode::UnknownMemberId => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the member loop shares with the consumer.
struct Shared {
    assignment: watch::Sender<Assignment>,
    owned: Arc<Mutex<Held>>,
    wake: Arc<Notify>,
    answered: Arc<Mutex<Option<(Instant, u64)>>>,
}

/// Joins, then heartbeats until stopped, publishing every assignment; joins again after being removed.
async fn member_loop(
    client: Arc<GroupClient>,
    settings: MemberSettings,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    let Shared { assignment, owned, wake, answered } = shared;
    let mut member_id = String::new();
    let mut generation = 0;
    let mut incarnation = 0;
    let mut rebalancing = false;
    while !*stop.borrow() {
        if member_id.is_empty() {
            match join(&client, &settings).await {
                Ok((id, joined_generation)) => {
                    tracing::info!(group = %client.group_id, member_id = %id, generation = joined_generation, "joined");
                    member_id = id;
                    generation = joined_generation;
                    assignment.send_modify(|a| {
                        a.member_id = member_id.clone();
                        a.generation = generation;
                    });
                }
                Err(e) => tracing::warn!(group = %client.group_id, error = %e, "cannot join the group yet"),
            }
        }
        if !member_id.is_empty() {
            let held = owned.lock().expect("owned set poisoned").clone();
            let request = v1::HeartbeatRequest {
                group_id: client.group_id.clone(),
                member_id: member_id.clone(),
                generation,
                owned: held.partitions.iter().map(to_proto).collect(),
                assignment_seq: held.seq,
            };
            let sent = Instant::now();
            let answer = client
                .call(|mut c| {
                    let request = client.cluster.request(request.clone(), Duration::ZERO);
                    async move { c.heartbeat(request).await }
                })
                .await;
            match answer {
                Ok(reply) => {
                    *answered.lock().expect("lease poisoned") = Some((sent, incarnation));
                    generation = reply.generation;
                    rebalancing = reply.rebalancing;
                    let partitions: BTreeSet<TopicPartition> =
                        reply.assignment.into_iter().map(|p| TopicPartition::new(p.topic, p.partition)).collect();
                    assignment.send_if_modified(|a| {
                        let next = Assignment {
                            incarnation,
                            member_id: member_id.clone(),
                            generation,
                            partitions,
                            seq: reply.assignment_seq,
                        };
                        let changed = *a != next;
                        *a = next;
                        changed
                    });
                }
                Err(Error::Broker(e)) if e.code == ErrorCode::UnknownMemberId => {
                    tracing::warn!(group = %client.group_id, %member_id, "removed from the group; joining again");
                    member_id.clear();
                    generation = 0;
                    incarnation += 1;
                    *answered.lock().expect("lease poisoned") = None;
                    // A new member starts with nothing granted; the consumer drops what it held when it
                    // applies the new incarnation.
                    *owned.lock().expect("owned set poisoned") = Held::default();
                    assignment.send_replace(Assignment { incarnation, ..Assignment::default() });
                    continue;
                }
                Err(e) => tracing::warn!(group = %client.group_id, error = %e, "heartbeat failed"),
            }
        }
        let pause = if rebalancing { REBALANCING_HEARTBEAT_MS } else { settings.heartbeat_interval_ms };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
            _ = wake.notified() => {}
            _ = stop.changed() => {}
        }
    }
}

async fn join(client: &GroupClient, settings: &MemberSettings) -> Result<(String, u32)> {
    let request = v1::JoinGroupRequest {
        group_id: client.group_id.clone(),
        member_id: String::new(),
        client_id: settings.client_id.clone(),
        topics: settings.topics.clone(),
        session_timeout_ms: u32::try_from(settings.session_timeout_ms).unwrap_or(u32::MAX),
        rebalance_timeout_ms: u32::try_from(settings.rebalance_timeout_ms).unwrap_or(u32::MAX),
    };
    let response = client
        .call(|mut c| {
            let request = client.cluster.request(request.clone(), Duration::ZERO);
            async move { c.join_group(request).await }
        })
        .await?;
    Ok((response.member_id, response.generation))
}

/// `offsets` as the wire's offset commits, each with `metadata`.
pub(crate) fn offset_commits(offsets: &BTreeMap<TopicPartition, u64>, metadata: &str) -> Vec<v1::OffsetCommit> {
    offsets
        .iter()
        .map(|(tp, offset)| v1::OffsetCommit {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: *offset,
            metadata: metadata.to_owned(),
        })
        .collect()
}
