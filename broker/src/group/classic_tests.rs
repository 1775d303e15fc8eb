//! The classic consumer-group protocol as a specification: a rebalance end to end, the initial rebalance delay,
//! protocol selection, refused joins, stale generations, sessions and the rebalance and sync deadlines, leaving,
//! member ids across coordinator incarnations, and when offsets may be committed.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::classic::{
    ClassicError, ClassicGroup, ClassicJoin, ClassicState, Completion, JoinAnswer, Reply, SyncAnswer,
};

const SESSION_MS: u64 = 10_000;
const REBALANCE_MS: u64 = 30_000;
const DELAY_MS: u64 = 3_000;

/// A join of `client` (a new member when `member_id` is empty) offering `protocols`, each with the metadata
/// `{client}:{protocol}`.
fn join_with(member_id: &str, client: &str, protocols: &[&str]) -> ClassicJoin {
    ClassicJoin {
        member_id: member_id.to_string(),
        client_id: client.to_string(),
        client_host: format!("/10.0.0.1:{}", client.len()),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".to_string(),
        protocols: protocols.iter().map(|p| (p.to_string(), Bytes::from(format!("{client}:{p}")))).collect(),
    }
}

/// A new consumer offering the range assignor.
fn consumer(client: &str) -> ClassicJoin {
    join_with("", client, &["range"])
}

/// The member id a request was parked under; fails if it was answered.
fn parked<T: std::fmt::Debug>(reply: Reply<T>) -> String {
    match reply {
        Reply::Wait { member_id } => member_id,
        Reply::Now(answer) => panic!("expected the request to wait, it was answered {answer:?}"),
    }
}

/// The answer to a request answered at once.
fn answered<T>(reply: Reply<T>) -> Result<T, ClassicError> {
    match reply {
        Reply::Now(answer) => answer,
        Reply::Wait { member_id } => panic!("expected an answer, the request of '{member_id}' waits"),
    }
}

fn join_answers(completions: &[Completion]) -> BTreeMap<String, Result<JoinAnswer, ClassicError>> {
    let mut answers = BTreeMap::new();
    for completion in completions {
        if let Completion::Join { member_id, answer } = completion {
            assert!(answers.insert(member_id.clone(), answer.clone()).is_none(), "one answer per member");
        }
    }
    answers
}

fn sync_answers(completions: &[Completion]) -> BTreeMap<String, Result<SyncAnswer, ClassicError>> {
    let mut answers = BTreeMap::new();
    for completion in completions {
        if let Completion::Sync { member_id, answer } = completion {
            assert!(answers.insert(member_id.clone(), answer.clone()).is_none(), "one answer per member");
        }
    }
    answers
}

/// `clients` join a new group at time 0 and the initial delay passes: the group is `CompletingRebalance` in
/// generation 1. Returns the member ids in the order they joined.
fn formed(clients: &[&str]) -> (ClassicGroup, Vec<String>) {
    let mut group = ClassicGroup::new("g", "inc1", DELAY_MS);
    let ids: Vec<String> = clients.iter().map(|c| parked(group.join(consumer(c), 0).0)).collect();
    let answers = join_answers(&group.tick(DELAY_MS));
    assert_eq!(answers.len(), ids.len(), "every join is answered when the delay ends");
    assert_eq!(group.state(), ClassicState::CompletingRebalance);
    (group, ids)
}

/// A formed group whose leader (the first id) assigned `to:{member}` to each member, and every member synced:
/// `Stable` in generation 1 at time `DELAY_MS`.
fn stable(clients: &[&str]) -> (ClassicGroup, Vec<String>) {
    let (mut group, ids) = formed(clients);
    let assignments: Vec<(String, Bytes)> =
        ids.iter().map(|id| (id.clone(), Bytes::from(format!("to:{id}")))).collect();
    for follower in &ids[1..] {
        parked(group.sync(follower, 1, Vec::new(), DELAY_MS).0);
    }
    let (reply, completions) = group.sync(&ids[0], 1, assignments, DELAY_MS);
    answered(reply).unwrap();
    assert_eq!(sync_answers(&completions).len(), ids.len() - 1);
    assert_eq!(group.state(), ClassicState::Stable);
    (group, ids)
}

#[test]
fn three_members_form_a_generation_and_the_leaders_assignment_reaches_every_member() {
    let mut group = ClassicGroup::new("g", "inc1", DELAY_MS);
    let a = parked(group.join(join_with("", "a", &["range"]), 0).0);
    let b = parked(group.join(join_with("", "b", &["range"]), 10).0);
    let (reply, completions) = group.join(join_with("", "c", &["range"]), 20);
    let c = parked(reply);
    assert!(completions.is_empty(), "joins wait for the initial delay");
    assert_eq!(group.state(), ClassicState::PreparingRebalance);

    let answers = join_answers(&group.tick(DELAY_MS + 20));
    assert_eq!(group.generation(), 1);
    assert_eq!(group.state(), ClassicState::CompletingRebalance);
    let leader = answers[&a].clone().unwrap();
    assert_eq!((leader.leader.as_str(), leader.protocol_name.as_str()), (a.as_str(), "range"));
    assert_eq!(leader.protocol_type, "consumer");
    let expected: Vec<(String, Bytes)> =
        [(&a, "a:range"), (&b, "b:range"), (&c, "c:range")].map(|(id, m)| (id.clone(), Bytes::from(m))).into();
    assert_eq!(leader.members, expected, "the leader gets every member's metadata for the chosen protocol");
    for follower in [&b, &c] {
        let answer = answers[follower].clone().unwrap();
        assert_eq!((answer.generation, answer.leader.as_str()), (1, a.as_str()));
        assert!(answer.members.is_empty(), "followers get no metadata");
    }

    parked(group.sync(&b, 1, Vec::new(), 3_100).0);
    parked(group.sync(&c, 1, Vec::new(), 3_100).0);
    let assignments = vec![(b.clone(), Bytes::from("b's")), (c.clone(), Bytes::from("c's"))];
    let (reply, completions) = group.sync(&a, 1, assignments, 3_200);
    assert_eq!(answered(reply).unwrap().assignment, Bytes::new(), "a member the leader assigns nothing gets none");
    let syncs = sync_answers(&completions);
    assert_eq!(syncs[&b].clone().unwrap().assignment, Bytes::from("b's"));
    assert_eq!(syncs[&c].clone().unwrap().assignment, Bytes::from("c's"));
    assert_eq!(syncs[&c].clone().unwrap().protocol_name, "range");
    assert_eq!(group.state(), ClassicState::Stable);
    let described: Vec<(&str, &str)> =
        group.members().map(|m| (m.member_id.as_str(), std::str::from_utf8(&m.assignment).unwrap())).collect();
    assert_eq!(described, vec![(a.as_str(), ""), (b.as_str(), "b's"), (c.as_str(), "c's")]);
}

#[test]
fn in_a_rebalance_the_last_member_to_join_again_completes_everyones_join() {
    let (mut group, ids) = stable(&["a", "b", "c"]);
    parked(group.join(join_with(&ids[1], "b", &["range"]), 4_000).0);
    assert_eq!(group.state(), ClassicState::PreparingRebalance);
    parked(group.join(join_with(&ids[0], "a", &["range"]), 4_100).0);
    let (reply, completions) = group.join(join_with(&ids[2], "c", &["range"]), 4_200);
    assert_eq!(answered(reply).unwrap().generation, 2);
    let answers = join_answers(&completions);
    assert_eq!(answers.keys().collect::<Vec<_>>(), vec![&ids[0], &ids[1]]);
    assert_eq!(answers[&ids[0]].clone().unwrap().members.len(), 3, "the leader stays the leader");
    assert_eq!(group.state(), ClassicState::CompletingRebalance);
}

#[test]
fn the_initial_delay_gathers_consumers_started_together_up_to_the_rebalance_timeout() {
    let mut group = ClassicGroup::new("g", "inc1", DELAY_MS);
    parked(group.join(consumer("a"), 0).0);
    assert!(group.tick(DELAY_MS - 1).is_empty());
    parked(group.join(consumer("b"), 2_000).0);
    assert!(group.tick(DELAY_MS).is_empty(), "a new member extends the delay");
    assert_eq!(join_answers(&group.tick(2_000 + DELAY_MS)).len(), 2);
    assert_eq!(group.generation(), 1);

    let mut group = ClassicGroup::new("g", "inc1", DELAY_MS);
    let mut short = consumer("a");
    short.rebalance_timeout_ms = 5_000;
    parked(group.join(short, 0).0);
    parked(group.join(consumer("b"), 2_000).0);
    parked(group.join(consumer("c"), 4_000).0);
    assert!(group.tick(4_999).is_empty());
    assert_eq!(join_answers(&group.tick(5_000)).len(), 3, "the delay never outlasts the rebalance timeout");

    let mut group = ClassicGroup::new("g", "inc1", DELAY_MS);
    parked(group.join(consumer("a"), 0).0);
    let (reply, completions) = group.join(consumer("b"), DELAY_MS + 50);
    assert_eq!(answered(reply).unwrap().generation, 1, "a newcomer after the delay (before the tick) completes it");
    assert_eq!(join_answers(&completions).len(), 1);

    let mut group = ClassicGroup::new("g", "inc1", 0);
    let (reply, _) = group.join(consumer("a"), 0);
    assert_eq!(answered(reply).unwrap().generation, 1, "without a delay a lone first member is answered at once");
}

#[test]
fn the_protocol_most_members_prefer_among_those_all_support_is_chosen() {
    let choose = |offers: &[&[&str]]| {
        let mut group = ClassicGroup::new("g", "inc1", DELAY_MS);
        for (i, protocols) in offers.iter().enumerate() {
            parked(group.join(join_with("", &format!("m{i}"), protocols), 0).0);
        }
        let answers = join_answers(&group.tick(DELAY_MS));
        let leader = answers.values().find_map(|a| a.clone().ok().filter(|a| !a.members.is_empty())).unwrap();
        assert_eq!(group.protocol_name(), Some(leader.protocol_name.as_str()));
        assert!(leader.members.iter().all(|(_, m)| m.ends_with(leader.protocol_name.as_bytes())));
        leader.protocol_name
    };
    assert_eq!(
        choose(&[&["cooperative-sticky", "range"], &["range", "cooperative-sticky"], &["range", "cooperative-sticky"]]),
        "range"
    );
    assert_eq!(choose(&[&["roundrobin", "range"], &["roundrobin", "range"], &["range"]]), "range", "only a common one");
    assert_eq!(
        choose(&[&["range", "cooperative-sticky"], &["cooperative-sticky", "range"]]),
        "cooperative-sticky",
        "a tie goes to the first name"
    );
}

#[test]
fn a_join_without_a_protocol_in_common_or_of_another_type_is_refused() {
    let (mut group, ids) = stable(&["a", "b"]);
    let refused = |group: &mut ClassicGroup, join: ClassicJoin| answered(group.join(join, 5_000).0).unwrap_err();

    let error = refused(&mut group, join_with("", "x", &["roundrobin"]));
    assert!(matches!(error, ClassicError::InconsistentGroupProtocol { .. }), "{error}");
    assert_eq!(error.code(), 23);
    let mut connect = consumer("x");
    connect.protocol_type = "connect".into();
    let error = refused(&mut group, connect);
    assert!(error.to_string().contains("'connect' is not the group's 'consumer'"), "{error}");
    let error = refused(&mut group, join_with(&ids[0], "a", &["roundrobin"]));
    assert!(matches!(error, ClassicError::InconsistentGroupProtocol { .. }), "a member cannot leave the others behind");
    assert!(matches!(refused(&mut group, join_with("", "x", &[])), ClassicError::InconsistentGroupProtocol { .. }));
    assert_eq!((group.state(), group.members().count()), (ClassicState::Stable, 2), "refused joins change nothing");

    let mut alone = ClassicGroup::new("g", "inc1", 0);
    let id = answered(alone.join(join_with("", "a", &["range"]), 0).0).unwrap().member_id;
    let answer = answered(alone.join(join_with(&id, "a", &["roundrobin"]), 1).0).unwrap();
    assert_eq!(answer.protocol_name, "roundrobin", "a lone member may switch protocols");
}

#[test]
fn bad_session_timeouts_oversized_metadata_and_a_full_group_are_refused() {
    let mut group = ClassicGroup::new("g", "inc1", DELAY_MS);
    let mut join = consumer("a");
    join.session_timeout_ms = 500;
    let error = answered(group.join(join, 0).0).unwrap_err();
    assert_eq!(error.code(), 26, "{error}");
    let mut join = consumer("a");
    join.protocols = vec![("range".into(), Bytes::from(vec![0; crate::limits::CLASSIC_MEMBER_METADATA_BYTES_MAX]))];
    assert!(matches!(answered(group.join(join, 0).0), Err(ClassicError::MetadataTooLarge { .. })));
    assert!(group.is_empty());

    for i in 0..crate::limits::CLASSIC_GROUP_MEMBERS_MAX {
        parked(group.join(consumer(&format!("c{i}")), 0).0);
    }
    let error = answered(group.join(consumer("one-too-many"), 0).0).unwrap_err();
    assert_eq!(error.code(), 81, "{error}");
}

#[test]
fn requests_naming_an_unknown_member_are_refused() {
    let (mut group, _) = stable(&["a", "b"]);
    let error = answered(group.join(join_with("ghost", "a", &["range"]), 5_000).0).unwrap_err();
    assert_eq!(error, ClassicError::UnknownMemberId { group: "g".into(), member: "ghost".into() });
    assert_eq!(error.to_string(), "member 'ghost' is not a member of group 'g'; join again without a member id");
    assert_eq!(error.code(), 25);
    assert!(matches!(answered(group.sync("ghost", 1, Vec::new(), 5_000).0), Err(ClassicError::UnknownMemberId { .. })));
    assert!(matches!(group.heartbeat("ghost", 1, 5_000), Err(ClassicError::UnknownMemberId { .. })));
    let (results, _) = group.leave(&["ghost".to_string()], 5_000);
    assert!(matches!(results.as_slice(), [Err(ClassicError::UnknownMemberId { .. })]));
    assert_eq!(group.state(), ClassicState::Stable, "nothing changed");
}

#[test]
fn a_stale_generation_is_refused_on_sync_and_heartbeat() {
    let (mut group, ids) = stable(&["a"]);
    let error = group.heartbeat(&ids[0], 0, 4_000).unwrap_err();
    let expected = ClassicError::IllegalGeneration { group: "g".into(), member: ids[0].clone(), given: 0, current: 1 };
    assert_eq!(error, expected);
    assert_eq!(error.code(), 22);
    assert!(error.to_string().contains("generation 0, but the group is in generation 1"), "{error}");
    assert_eq!(
        answered(group.sync(&ids[0], 2, Vec::new(), 4_000).0),
        Err(ClassicError::IllegalGeneration { group: "g".into(), member: ids[0].clone(), given: 2, current: 1 })
    );
    assert_eq!(group.heartbeat(&ids[0], 1, 4_000), Ok(()));
}

#[test]
fn during_a_rebalance_heartbeats_say_join_again_but_keep_the_session() {
    let (mut group, ids) = stable(&["a", "b"]);
    parked(group.join(join_with(&ids[0], "a", &["range"]), 4_000).0);
    let error = group.heartbeat(&ids[1], 1, 12_000).unwrap_err();
    assert_eq!(error.code(), 27, "{error}");
    assert!(matches!(
        answered(group.sync(&ids[1], 1, Vec::new(), 12_000).0),
        Err(ClassicError::RebalanceInProgress { .. })
    ));
    assert!(group.tick(DELAY_MS + SESSION_MS + 1).is_empty(), "the heartbeat renewed b's session");
    assert_eq!(group.members().count(), 2);
}

#[test]
fn a_member_that_misses_the_rebalance_deadline_is_removed() {
    let (mut group, ids) = stable(&["a", "b"]);
    parked(group.join(join_with(&ids[0], "a", &["range"]), 4_000).0);
    for now_ms in (5_000..=4_000 + REBALANCE_MS).step_by(5_000) {
        let _ = group.heartbeat(&ids[1], 1, now_ms);
        assert!(group.tick(now_ms).is_empty(), "b is alive, and has time to join until the deadline");
    }
    let answers = join_answers(&group.tick(4_000 + REBALANCE_MS + 1));
    let answer = answers[&ids[0]].clone().unwrap();
    assert_eq!((answer.generation, answer.members.len()), (2, 1), "a forms generation 2 alone");
    assert!(matches!(group.heartbeat(&ids[1], 1, 40_000), Err(ClassicError::UnknownMemberId { .. })));
}

#[test]
fn a_stable_member_whose_session_expires_is_removed_and_the_others_rebalance() {
    let (mut group, ids) = stable(&["a", "b", "c"]);
    let (a, b) = (&ids[0], &ids[1]);
    for id in [a, b] {
        group.heartbeat(id, 1, 8_000).unwrap();
    }
    assert!(group.tick(DELAY_MS + SESSION_MS).is_empty(), "c's session lasts to its deadline");
    assert!(group.tick(DELAY_MS + SESSION_MS + 1).is_empty(), "nothing was parked");
    assert_eq!(group.members().count(), 2);
    assert_eq!(group.state(), ClassicState::PreparingRebalance);
    assert!(matches!(group.heartbeat(a, 1, 13_100), Err(ClassicError::RebalanceInProgress { .. })));
    assert!(matches!(group.heartbeat(b, 1, 13_100), Err(ClassicError::RebalanceInProgress { .. })));
    parked(group.join(join_with(b, "b", &["range"]), 13_200).0);
    let (reply, completions) = group.join(join_with(a, "a", &["range"]), 13_300);
    let answer = answered(reply).unwrap();
    assert_eq!((answer.generation, answer.leader.as_str(), answer.members.len()), (2, a.as_str(), 2));
    assert_eq!(join_answers(&completions)[b].clone().unwrap().generation, 2);
}

#[test]
fn parked_joins_and_syncs_keep_their_member_alive() {
    let (mut group, ids) = stable(&["a", "b"]);
    parked(group.join(join_with(&ids[0], "a", &["range"]), 4_000).0);
    group.heartbeat(&ids[1], 1, 12_000).unwrap_err();
    assert!(group.tick(4_000 + SESSION_MS + 1).is_empty(), "a's join is parked: its session does not run out");
    assert_eq!(group.members().count(), 2);

    let (mut group, ids) = formed(&["a", "b"]);
    parked(group.sync(&ids[1], 1, Vec::new(), DELAY_MS).0);
    group.heartbeat(&ids[0], 1, 10_000).unwrap();
    assert!(group.tick(DELAY_MS + SESSION_MS + 1).is_empty(), "b's sync is parked: its session does not run out");
    assert_eq!(group.members().count(), 2);
}

#[test]
fn a_leader_that_never_syncs_is_removed_at_the_sync_deadline() {
    let (mut group, ids) = formed(&["a", "b"]);
    parked(group.sync(&ids[1], 1, Vec::new(), DELAY_MS).0);
    for now_ms in (5_000..=DELAY_MS + REBALANCE_MS).step_by(5_000) {
        group.heartbeat(&ids[0], 1, now_ms).unwrap();
        assert!(group.tick(now_ms).is_empty());
    }
    let completions = group.tick(DELAY_MS + REBALANCE_MS + 1);
    assert!(matches!(sync_answers(&completions)[&ids[1]], Err(ClassicError::RebalanceInProgress { .. })));
    assert_eq!(group.members().map(|m| m.member_id.clone()).collect::<Vec<_>>(), vec![ids[1].clone()]);
    assert_eq!(group.state(), ClassicState::PreparingRebalance);
}

#[test]
fn a_join_while_completing_answers_the_parked_syncs_rebalance_in_progress() {
    let (mut group, ids) = formed(&["a", "b"]);
    parked(group.sync(&ids[1], 1, Vec::new(), DELAY_MS).0);
    let (reply, completions) = group.join(consumer("c"), 3_500);
    parked(reply);
    assert!(matches!(sync_answers(&completions)[&ids[1]], Err(ClassicError::RebalanceInProgress { .. })));
    assert_eq!(group.state(), ClassicState::PreparingRebalance);
    assert!(group.members().all(|m| m.assignment.is_empty()));
}

#[test]
fn a_second_join_replaces_the_first_and_is_counted_once() {
    let (mut group, ids) = stable(&["a", "b"]);
    parked(group.join(join_with(&ids[0], "a", &["range"]), 4_000).0);
    let id = parked(group.join(join_with(&ids[0], "a", &["range"]), 4_100).0);
    assert_eq!(id, ids[0]);
    assert_eq!(group.state(), ClassicState::PreparingRebalance, "b has not joined yet");
    let (reply, completions) = group.join(join_with(&ids[1], "b", &["range"]), 4_200);
    assert_eq!(answered(reply).unwrap().generation, 2);
    assert_eq!(join_answers(&completions).len(), 1, "one answer for a");
}

#[test]
fn a_follower_that_syncs_after_the_leader_gets_its_assignment_at_once() {
    let (mut group, ids) = formed(&["a", "b"]);
    let (reply, completions) = group.sync(&ids[0], 1, vec![(ids[1].clone(), Bytes::from("b's"))], DELAY_MS);
    answered(reply).unwrap();
    assert!(completions.is_empty());
    assert_eq!(answered(group.sync(&ids[1], 1, Vec::new(), 3_100).0).unwrap().assignment, Bytes::from("b's"));
}

#[test]
fn leaving_members_get_their_parked_requests_refused_and_the_rest_rebalance() {
    let (mut group, ids) = stable(&["a", "b", "c"]);
    parked(group.join(join_with(&ids[1], "b", &["range"]), 4_000).0);
    let (results, completions) = group.leave(&[ids[0].clone(), ids[1].clone(), "ghost".into()], 4_100);
    assert!(matches!(results.as_slice(), [Ok(()), Ok(()), Err(ClassicError::UnknownMemberId { .. })]));
    assert!(matches!(join_answers(&completions)[&ids[1]], Err(ClassicError::UnknownMemberId { .. })));
    assert_eq!(group.leader(), None, "the leader left");
    let (reply, _) = group.join(join_with(&ids[2], "c", &["range"]), 4_200);
    let answer = answered(reply).unwrap();
    assert_eq!((answer.generation, answer.leader.as_str()), (2, ids[2].as_str()), "the remaining member leads");

    let (results, _) = group.leave(&[ids[2].clone()], 5_000);
    assert_eq!(results, vec![Ok(())]);
    assert_eq!((group.state(), group.generation(), group.protocol_name()), (ClassicState::Empty, 3, None));
    assert!(group.is_empty());
    assert_eq!(group.protocol_type(), Some("consumer"), "kept for DescribeGroups");
}

#[test]
fn member_ids_differ_across_coordinator_incarnations() {
    let mut before = ClassicGroup::new("g", "inc1", 0);
    let mut after = ClassicGroup::new("g", "inc2", 0);
    let old = answered(before.join(consumer("app"), 0).0).unwrap().member_id;
    let new = answered(after.join(consumer("app"), 0).0).unwrap().member_id;
    assert_eq!((old.as_str(), new.as_str()), ("app-inc1-0", "app-inc2-0"));
    let error = answered(after.join(join_with(&old, "app", &["range"]), 1).0).unwrap_err();
    assert!(matches!(error, ClassicError::UnknownMemberId { .. }), "a zombie of the old coordinator must join anew");
    assert_eq!(parked(after.join(consumer("app"), 2).0), "app-inc2-1", "ids are numbered within the incarnation");
}

#[test]
fn offsets_may_be_committed_by_members_of_the_current_generation_except_while_completing() {
    let mut group = ClassicGroup::new("g", "inc1", DELAY_MS);
    assert_eq!(group.check_commit("", -1), Ok(()), "a standalone commit to a group without members");
    let (mut group_formed, ids) = formed(&["a", "b"]);
    let (a, b) = (ids[0].clone(), ids[1].clone());
    assert!(matches!(group_formed.check_commit(&a, 1), Err(ClassicError::RebalanceInProgress { .. })));
    group_formed.sync(&a, 1, Vec::new(), DELAY_MS);
    assert_eq!(group_formed.check_commit(&a, 1), Ok(()), "stable");
    assert!(matches!(group_formed.check_commit(&a, 0), Err(ClassicError::IllegalGeneration { .. })));
    assert!(matches!(group_formed.check_commit("ghost", 1), Err(ClassicError::UnknownMemberId { .. })));
    let error = group_formed.check_commit("", -1).unwrap_err();
    assert!(matches!(error, ClassicError::UnknownMemberId { .. }), "no standalone commits while there are members");
    assert!(error.to_string().starts_with("a client without a member id"), "{error}");
    parked(group_formed.join(join_with(&b, "b", &["range"]), 4_000).0);
    assert_eq!(group_formed.check_commit(&a, 1), Ok(()), "eager members commit while revoking, before joining");

    parked(group.join(consumer("a"), 0).0);
    assert!(matches!(group.check_commit("", -1), Err(ClassicError::UnknownMemberId { .. })));
}

#[test]
fn the_same_inputs_give_the_same_outputs() {
    let run = || {
        let mut group = ClassicGroup::new("g", "inc1", DELAY_MS);
        let mut outputs = Vec::new();
        for (i, client) in ["z", "y", "x"].iter().enumerate() {
            outputs.push(format!("{:?}", group.join(join_with("", client, &["roundrobin", "range"]), i as u64)));
        }
        outputs.push(format!("{:?}", group.tick(DELAY_MS + 2)));
        outputs
    };
    assert_eq!(run(), run());
}
