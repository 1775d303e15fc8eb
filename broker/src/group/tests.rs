//! The group state machine as a specification: generations, balance and stickiness, revocation before
//! hand-off, session and release timeouts, offset commits from stale generations and non-members, and the
//! record codec (round trip, rebuild, garbage).

use std::collections::{BTreeMap, BTreeSet};

use super::TopicPartition;
use super::records::GroupRecord;
use super::state::{GroupError, GroupPhase, GroupState, JoinRequest};

const SESSION_MS: u64 = 3_000;
const REBALANCE_MS: u64 = 10_000;

fn counts(n: u32) -> BTreeMap<String, u32> {
    BTreeMap::from([("t".to_string(), n)])
}

fn join(group: &mut GroupState, client: &str, now_ms: u64) -> (String, Vec<GroupRecord>) {
    let request = JoinRequest {
        member_id: None,
        client_id: client.into(),
        topics: BTreeSet::from(["t".to_string()]),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
    };
    let ((id, _), records) = group.join(request, &counts(6), now_ms).unwrap();
    (id, records)
}

/// The sequence of the latest assignment sent to `member`: a heartbeat sent after applying it reports this.
fn latest(group: &GroupState, member: &str) -> u32 {
    group.members[member].assignment_seq
}

/// A member that acts on every answer at once: reports what it was granted last time.
struct Sim {
    owned: BTreeMap<String, BTreeSet<TopicPartition>>,
}

impl Sim {
    fn new() -> Sim {
        Sim { owned: BTreeMap::new() }
    }

    fn beat(&mut self, group: &mut GroupState, member: &str, now_ms: u64) -> BTreeSet<TopicPartition> {
        let owned = self.owned.get(member).cloned().unwrap_or_default();
        let (reply, _) =
            group.heartbeat(member, group.generation, &owned, latest(group, member), &counts(6), now_ms).unwrap();
        self.owned.insert(member.to_string(), reply.assignment.clone());
        reply.assignment
    }

    /// Heartbeats every member in turn until nothing changes.
    fn settle(&mut self, group: &mut GroupState, now_ms: u64) {
        for _ in 0..10 {
            let members: Vec<String> = group.members.keys().cloned().collect();
            for m in members {
                self.beat(group, &m, now_ms);
            }
        }
    }

    fn assert_disjoint(&self) {
        let mut seen = BTreeSet::new();
        for (member, owned) in &self.owned {
            for tp in owned {
                assert!(seen.insert(tp.clone()), "{tp} read by two members, one of them {member}: {:?}", self.owned);
            }
        }
    }
}

#[test]
fn every_join_and_leave_starts_a_generation() {
    let mut group = GroupState::new("g");
    let (a, records) = join(&mut group, "c", 0);
    assert_eq!(group.generation, 1);
    assert!(matches!(records.as_slice(), [GroupRecord::Snapshot { .. }]), "membership changes are persisted");
    let (b, _) = join(&mut group, "c", 0);
    assert_ne!(a, b, "member ids are unique");
    assert_eq!(group.generation, 2);
    group.leave(&a, &counts(6), 0).unwrap();
    assert_eq!(group.generation, 3);
    assert!(matches!(group.leave(&a, &counts(6), 0), Err(GroupError::UnknownMember { .. })));
}

#[test]
fn three_members_over_six_partitions_settle_on_two_each() {
    let mut group = GroupState::new("g");
    let mut sim = Sim::new();
    for client in ["a", "b", "c"] {
        join(&mut group, client, 0);
        sim.settle(&mut group, 0);
        sim.assert_disjoint();
    }
    assert_eq!(group.phase(), GroupPhase::Stable);
    assert!(sim.owned.values().all(|owned| owned.len() == 2), "{:?}", sim.owned);
}

#[test]
fn a_partition_moves_only_after_its_old_owner_released_it() {
    let mut group = GroupState::new("g");
    let (a, _) = join(&mut group, "a", 0);
    let mut sim = Sim::new();
    let all = sim.beat(&mut group, &a, 0);
    assert_eq!(all.len(), 6, "a lone member reads everything");
    let (b, _) = join(&mut group, "b", 0);
    // b's assignment is three partitions a still holds: b gets none of them yet.
    let (reply, _) =
        group.heartbeat(&b, group.generation, &BTreeSet::new(), latest(&group, &b), &counts(6), 0).unwrap();
    assert!(reply.assignment.is_empty() && reply.rebalancing);
    assert_eq!(group.phase(), GroupPhase::Rebalancing);
    // a learns its smaller assignment, still holding all six while it releases three.
    let (reply_a, _) = group.heartbeat(&a, group.generation, &all, latest(&group, &a), &counts(6), 0).unwrap();
    assert_eq!(reply_a.assignment.len(), 3);
    let (reply, _) =
        group.heartbeat(&b, group.generation, &BTreeSet::new(), latest(&group, &b), &counts(6), 0).unwrap();
    assert!(reply.assignment.is_empty(), "a has not released yet");
    // a's next heartbeat lists only its three: now b gets the other three.
    group.heartbeat(&a, group.generation, &reply_a.assignment, latest(&group, &a), &counts(6), 0).unwrap();
    let (reply, _) =
        group.heartbeat(&b, group.generation, &BTreeSet::new(), latest(&group, &b), &counts(6), 0).unwrap();
    assert_eq!(reply.assignment.len(), 3);
    assert!(reply.assignment.is_disjoint(&reply_a.assignment));
    assert_eq!(group.phase(), GroupPhase::Stable);
}

#[test]
fn a_list_sent_before_the_latest_answer_releases_nothing() {
    let mut group = GroupState::new("g");
    let (a, _) = join(&mut group, "a", 0);
    let (granted, _) = group.heartbeat(&a, group.generation, &BTreeSet::new(), 0, &counts(6), 0).unwrap();
    assert_eq!((granted.assignment.len(), granted.assignment_seq), (6, 1));
    // The answer granting six is still on its way when a sends its next heartbeat, listing nothing as of
    // assignment 0: a may yet start reading all six, so it still holds them and b gets none.
    group.heartbeat(&a, group.generation, &BTreeSet::new(), 0, &counts(6), 0).unwrap();
    assert_eq!(group.members[&a].held.len(), 6);
    let (b, _) = join(&mut group, "b", 0);
    let (reply, _) = group.heartbeat(&b, group.generation, &BTreeSet::new(), 0, &counts(6), 0).unwrap();
    assert!(reply.assignment.is_empty(), "{reply:?}");
    // A list as of the latest answer does release.
    let (reply_a, _) = group.heartbeat(&a, group.generation, &granted.assignment, 1, &counts(6), 0).unwrap();
    assert_eq!((reply_a.assignment.len(), reply_a.assignment_seq), (3, 2));
    group.heartbeat(&a, group.generation, &reply_a.assignment, 2, &counts(6), 0).unwrap();
    let (reply, _) = group.heartbeat(&b, group.generation, &BTreeSet::new(), 0, &counts(6), 0).unwrap();
    assert_eq!(reply.assignment.len(), 3);
}

#[test]
fn rebalancing_keeps_what_it_can() {
    let mut group = GroupState::new("g");
    let mut sim = Sim::new();
    let (a, _) = join(&mut group, "a", 0);
    let (b, _) = join(&mut group, "b", 0);
    sim.settle(&mut group, 0);
    let before = sim.owned.clone();
    join(&mut group, "c", 0);
    sim.settle(&mut group, 0);
    sim.assert_disjoint();
    for m in [&a, &b] {
        assert_eq!(sim.owned[m].len(), 2);
        assert!(sim.owned[m].is_subset(&before[m]), "{m} kept two of its own three");
    }
}

#[test]
fn a_silent_member_is_removed_after_its_session_timeout() {
    let mut group = GroupState::new("g");
    let mut sim = Sim::new();
    let (a, _) = join(&mut group, "a", 0);
    let (b, _) = join(&mut group, "b", 0);
    sim.settle(&mut group, 0);
    let generation = group.generation;
    // b keeps heartbeating, a goes silent.
    let (expired, records) = group.expire(&counts(6), SESSION_MS);
    assert!(expired.is_empty() && records.is_empty(), "not expired at exactly the deadline");
    sim.beat(&mut group, &b, SESSION_MS);
    let (expired, records) = group.expire(&counts(6), SESSION_MS + 1);
    assert_eq!(expired, vec![a.clone()]);
    assert_eq!(records.len(), 1);
    assert_eq!(group.generation, generation + 1);
    let all = sim.beat(&mut group, &b, SESSION_MS + 2);
    assert_eq!(all.len(), 6, "the dead member's partitions go to the live one at once");
    assert!(matches!(
        group.heartbeat(&a, generation, &BTreeSet::new(), 0, &counts(6), SESSION_MS + 3),
        Err(GroupError::UnknownMember { .. })
    ));
}

#[test]
fn a_heartbeat_noted_on_arrival_keeps_the_session_while_it_waits() {
    let mut group = GroupState::new("g");
    let (a, _) = join(&mut group, "a", 0);
    // a's heartbeat arrived at 2000 but waits behind a slow write; expiry runs at 3500.
    group.renew_session(&a, 2_000);
    let (expired, _) = group.expire(&counts(6), 3_500);
    assert!(expired.is_empty());
    group.renew_session("nobody", 2_000);
    assert!(group.expiry_due(2_000 + SESSION_MS + 1));
}

#[test]
fn a_member_that_never_releases_is_removed_after_its_rebalance_timeout() {
    let mut group = GroupState::new("g");
    let (a, _) = join(&mut group, "a", 0);
    let mut sim = Sim::new();
    let all = sim.beat(&mut group, &a, 0);
    let (b, _) = join(&mut group, "b", 0);
    // a heartbeats in time but keeps reporting all six.
    let mut now = 0;
    while now <= REBALANCE_MS {
        now += 1_000;
        group.heartbeat(&a, group.generation, &all, latest(&group, &a), &counts(6), now).unwrap();
        group.heartbeat(&b, group.generation, &BTreeSet::new(), latest(&group, &b), &counts(6), now).unwrap();
        group.expire(&counts(6), now);
    }
    assert!(!group.members.contains_key(&a), "a kept revoked partitions too long");
    let (reply, _) =
        group.heartbeat(&b, group.generation, &BTreeSet::new(), latest(&group, &b), &counts(6), now).unwrap();
    assert_eq!(reply.assignment.len(), 6);
}

#[test]
fn commits_are_refused_from_stale_generations_non_members_and_non_owners() {
    let mut group = GroupState::new("g");
    let mut sim = Sim::new();
    let (a, _) = join(&mut group, "a", 0);
    let mine = sim.beat(&mut group, &a, 0);
    let tp = mine.iter().next().unwrap().clone();
    let old = group.generation;
    let records = group.commit(&a, old, vec![(tp.clone(), 10, "m".into())], 5).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(group.offsets[&tp].offset, 10);
    assert_eq!(group.offsets[&tp].metadata, "m");
    let (b, _) = join(&mut group, "b", 0);
    assert!(matches!(
        group.commit(&a, old, vec![(tp.clone(), 11, String::new())], 6),
        Err(GroupError::StaleGeneration { given, current, .. }) if given == old && current == old + 1
    ));
    assert!(matches!(
        group.commit("nobody", group.generation, vec![(tp.clone(), 11, String::new())], 6),
        Err(GroupError::UnknownMember { .. })
    ));
    // b holds nothing yet, so it may not commit a's partition even in the current generation.
    assert!(matches!(
        group.commit(&b, group.generation, vec![(tp.clone(), 11, String::new())], 6),
        Err(GroupError::NotOwner { .. })
    ));
    assert_eq!(group.offsets[&tp].offset, 10, "refused commits change nothing");
    // Reading committed offsets as a member follows the same rules.
    assert!(matches!(group.check_member(&a, old), Err(GroupError::StaleGeneration { .. })));
    assert!(matches!(group.check_member("nobody", group.generation), Err(GroupError::UnknownMember { .. })));
    assert_eq!(group.check_member(&b, group.generation), Ok(()));
    // a, in the new generation, may still commit the partition it holds while it hands it over.
    group.commit(&a, group.generation, vec![(tp.clone(), 12, String::new())], 7).unwrap();
    assert_eq!(group.offsets[&tp].offset, 12);
}

#[test]
fn offsets_are_reset_only_without_members() {
    let mut group = GroupState::new("g");
    let (a, _) = join(&mut group, "a", 0);
    let tp = TopicPartition::new("t", 0);
    assert!(matches!(group.reset_offsets(vec![(tp.clone(), 0, String::new())], 0), Err(GroupError::NonEmpty { .. })));
    group.leave(&a, &counts(6), 0).unwrap();
    assert_eq!(group.phase(), GroupPhase::Empty);
    group.reset_offsets(vec![(tp.clone(), 3, String::new())], 0).unwrap();
    assert_eq!(group.offsets[&tp].offset, 3);
}

#[test]
fn new_partitions_of_a_subscribed_topic_start_a_generation() {
    let mut group = GroupState::new("g");
    let (a, _) = join(&mut group, "a", 0);
    let generation = group.generation;
    let (reply, _) = group.heartbeat(&a, generation, &BTreeSet::new(), latest(&group, &a), &counts(8), 0).unwrap();
    assert_eq!(reply.generation, generation + 1);
    assert_eq!(reply.assignment.len(), 8);
}

#[test]
fn records_rebuild_the_same_group_on_a_new_coordinator() {
    let mut group = GroupState::new("g");
    let mut sim = Sim::new();
    let mut log: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut write = |records: Vec<GroupRecord>| log.extend(records.iter().map(GroupRecord::encode));
    let (a, r) = join(&mut group, "a", 0);
    write(r);
    let (b, r) = join(&mut group, "b", 0);
    write(r);
    for _ in 0..3 {
        for m in [&a, &b] {
            let owned = sim.owned.get(m).cloned().unwrap_or_default();
            let (reply, r) = group.heartbeat(m, group.generation, &owned, latest(&group, m), &counts(6), 0).unwrap();
            sim.owned.insert(m.clone(), reply.assignment);
            write(r);
        }
    }
    let tp = sim.owned[&a].iter().next().unwrap().clone();
    write(group.commit(&a, group.generation, vec![(tp.clone(), 7, "meta".into())], 42).unwrap());

    let mut rebuilt = GroupState::new("g");
    for (key, value) in &log {
        let record = GroupRecord::decode(key, value).unwrap();
        assert_eq!(record.group_id(), "g");
        rebuilt.apply(record, 1_000);
    }
    assert_eq!(rebuilt.generation, group.generation);
    assert_eq!(rebuilt.offsets, group.offsets);
    assert_eq!(rebuilt.snapshot(), group.snapshot());
    for (id, member) in &rebuilt.members {
        assert_eq!(member.held, group.members[id].held, "what each member holds survives, so nothing moves early");
        assert_eq!(member.session_deadline_ms, 1_000 + SESSION_MS, "sessions restart on the new coordinator");
    }
}

#[test]
fn garbage_records_are_errors_not_panics() {
    let (key, value) = GroupRecord::Snapshot { group_id: "g".into(), snapshot: Default::default() }.encode();
    assert!(GroupRecord::decode(&key, &value).is_ok());
    for cut in 0..key.len() {
        assert!(GroupRecord::decode(&key[..cut], &value).is_err());
    }
    for cut in 0..value.len() {
        assert!(GroupRecord::decode(&key, &value[..cut]).is_err());
    }
    let mut huge_count = value.clone();
    huge_count[14..18].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(GroupRecord::decode(&key, &huge_count).is_err());
    let mut bad_version = key.clone();
    bad_version[1] = 9;
    assert!(GroupRecord::decode(&bad_version, &value).is_err());
    // Pseudo-random bytes never panic.
    let mut x: u32 = 12345;
    for len in 0..200 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect();
        let _ = GroupRecord::decode(&bytes, &bytes);
        let mut with_header = vec![0, 0, 0];
        with_header.extend_from_slice(&bytes);
        let _ = GroupRecord::decode(&with_header, &with_header);
    }
}

#[test]
fn offsets_partition_is_stable_and_in_range() {
    assert_eq!(super::offsets_partition_for("g", 8), super::offsets_partition_for("g", 8));
    for n in 1..20 {
        assert!(super::offsets_partition_for("some-group", n) < n);
    }
    // FNV-1a of "a" is 0xe40c292c: pinned, since moving a group's partition would lose its state.
    assert_eq!(super::offsets_partition_for("a", 1_000), 0xe40c_292c % 1_000);
}

/// A seeded pseudo-random sequence (no entropy in tests either: a failing seed replays exactly).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// A simulated consumer: what it reads (as of which assignment), the answer on its way, the answer it has
/// received but not applied yet.
#[derive(Debug, Default)]
struct SimMember {
    reading: BTreeSet<TopicPartition>,
    reading_seq: u32,
    in_flight: Option<(BTreeSet<TopicPartition>, u32)>,
    received: Option<(BTreeSet<TopicPartition>, u32)>,
}

/// Random joins, leaves, heartbeats, answers delayed or lost, late applications, silences and expiries,
/// against members that read exactly what they last applied. After every step no two live members read the
/// same partition, and the coordinator's view of what each holds covers what it reads; at the end, once
/// everyone has caught up, every partition is read by exactly one member and the counts are balanced.
#[test]
fn no_two_members_ever_read_the_same_partition() {
    for seed in 0..300 {
        let mut rng = Lcg(seed);
        let mut group = GroupState::new("g");
        let mut members: BTreeMap<String, SimMember> = BTreeMap::new();
        let mut now = 0;
        for step in 0..300 {
            now += 100;
            let ids: Vec<String> = members.keys().cloned().collect();
            let picked = ids.get(rng.below(ids.len() as u64) as usize).cloned();
            match (rng.below(12), picked) {
                (0, _) if members.len() < 5 => {
                    let (id, _) = join(&mut group, "c", now);
                    members.insert(id, SimMember::default());
                }
                (1, Some(id)) => {
                    members.remove(&id);
                    group.leave(&id, &counts(6), now).unwrap();
                }
                // A heartbeat reports what the member reads; its answer is on its way.
                (2..=4, Some(id)) if members[&id].in_flight.is_none() => {
                    let m = &members[&id];
                    let (owned, seq) = (m.reading.clone(), m.reading_seq);
                    let (reply, _) = group.heartbeat(&id, group.generation, &owned, seq, &counts(6), now).unwrap();
                    members.get_mut(&id).unwrap().in_flight = Some((reply.assignment, reply.assignment_seq));
                }
                // The answer arrives, or is lost.
                (5..=6, Some(id)) => {
                    let m = members.get_mut(&id).unwrap();
                    if let Some(answer) = m.in_flight.take()
                        && rng.below(5) > 0
                    {
                        m.received = Some(answer);
                    }
                }
                // The consumer applies the latest answer it received.
                (7..=9, Some(id)) => {
                    let m = members.get_mut(&id).unwrap();
                    if let Some((assignment, seq)) = m.received.take() {
                        m.reading = assignment;
                        m.reading_seq = seq;
                    }
                }
                (10, _) => now += 1_000,
                _ => {}
            }
            let (expired, _) = group.expire(&counts(6), now);
            for id in expired {
                members.remove(&id);
            }
            let mut seen = BTreeSet::new();
            for (id, m) in &members {
                assert!(
                    m.reading.is_subset(&group.members[id].held),
                    "seed {seed} step {step}: {id} reads beyond held"
                );
                for tp in &m.reading {
                    assert!(seen.insert(tp.clone()), "seed {seed} step {step}: {tp} read twice: {members:?}");
                }
            }
        }
        // Everyone catches up: heartbeat, receive and apply, repeatedly.
        for _ in 0..6 {
            let ids: Vec<String> = members.keys().cloned().collect();
            for id in ids {
                let m = &members[&id];
                let (owned, seq) = (m.reading.clone(), m.reading_seq);
                let (reply, _) = group.heartbeat(&id, group.generation, &owned, seq, &counts(6), now).unwrap();
                let m = members.get_mut(&id).unwrap();
                m.reading = reply.assignment;
                m.reading_seq = reply.assignment_seq;
            }
        }
        if !members.is_empty() {
            let sizes: Vec<usize> = members.values().map(|m| m.reading.len()).collect();
            assert_eq!(sizes.iter().sum::<usize>(), 6, "seed {seed}: every partition read once settled: {members:?}");
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "seed {seed}: {sizes:?}");
            assert_eq!(group.phase(), GroupPhase::Stable);
        }
    }
}

#[test]
fn a_group_is_deleted_only_without_members_and_its_deletion_voids_what_came_before() {
    let mut group = GroupState::new("g");
    let (member, _) = join(&mut group, "c", 0);
    assert!(matches!(group.delete(), Err(GroupError::NonEmpty { members: 1, .. })));
    group.leave(&member, &counts(4), 10).unwrap();
    let commit = group.reset_offsets(vec![(TopicPartition::new("t", 0), 7, String::new())], 20).unwrap();
    let deleted = group.delete().unwrap();
    assert_eq!(deleted, [GroupRecord::Deleted { group_id: "g".into() }]);
    assert!(group.offsets.is_empty(), "committed offsets go with the group");
    let (key, value) = deleted[0].encode();
    assert_eq!(GroupRecord::decode(&key, &value).unwrap(), deleted[0], "the record round-trips");
    // Read back in log order, the deletion voids the commit before it.
    let mut rebuilt = GroupState::new("g");
    for record in commit.into_iter().chain(deleted) {
        rebuilt.apply(record, 30);
    }
    assert_eq!(rebuilt, GroupState::new("g"));
}
