use super::*;

fn policy() -> TopicPolicy {
    TopicPolicy {
        defaults: BTreeMap::new(),
        batch_bytes_max: 1 << 20,
        default_replication_factor: 3,
        encryption_key_loaded: false,
    }
}

/// Plans against the state and applies the plan.
fn step(state: &mut MetadataState, plan: impl FnOnce(&MetadataState) -> Vec<MetadataRecord>) {
    let records = plan(state);
    apply(state, &records);
}

/// Applies records at consecutive offsets after the state's current one.
fn apply(state: &mut MetadataState, records: &[MetadataRecord]) {
    for record in records {
        let offset = state.next_offset;
        state.apply(offset, record).unwrap();
    }
}

/// Three registered brokers and topic "t" with one partition on all three (leader 1).
fn cluster() -> MetadataState {
    let mut state = MetadataState::default();
    for id in 1..=3 {
        let records = register_broker(&state, id, &format!("h:{id}"), None);
        apply(&mut state, &records);
    }
    let records = create_topic(&state, &policy(), "t", 1, 3, BTreeMap::new()).unwrap();
    apply(&mut state, &records);
    state
}

fn partition(state: &MetadataState) -> PartitionRecord {
    state.topic("t").unwrap().partitions[0].clone()
}

#[test]
fn broker_epoch_is_the_offset_of_its_registration_and_grows_on_restart() {
    let mut state = cluster();
    let first = state.brokers[&2].broker_epoch;
    step(&mut state, |s| register_broker(s, 2, "h:2", None));
    assert!(state.brokers[&2].broker_epoch > first);
}

#[test]
fn a_restarted_leader_gets_a_new_leader_epoch() {
    let mut state = cluster();
    let before = partition(&state);
    step(&mut state, |s| register_broker(s, before.leader, "h:1", None));
    let after = partition(&state);
    assert_eq!(after.leader, before.leader);
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert_eq!(after.partition_epoch, before.partition_epoch + 1);
}

#[test]
fn placement_spreads_replicas_and_leaders_across_live_brokers() {
    let state = cluster();
    let records = create_topic(&state, &policy(), "wide", 6, 2, BTreeMap::new()).unwrap();
    let MetadataRecord::CreateTopic { partitions, .. } = &records[0] else { panic!() };
    let mut leaders = BTreeMap::new();
    for p in partitions {
        assert_eq!(p.replicas.len(), 2);
        assert_ne!(p.replicas[0], p.replicas[1]);
        *leaders.entry(p.leader).or_insert(0) += 1;
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "{leaders:?}");
}

#[test]
fn replication_factor_above_live_brokers_is_refused() {
    let mut state = cluster();
    step(&mut state, |s| fence_broker(s, 3, &policy()));
    let err = create_topic(&state, &policy(), "u", 1, 3, BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("exceeds the 2 live broker(s)"), "{err}");
}

#[test]
fn fencing_the_leader_elects_the_next_isr_member_in_a_new_epoch() {
    let mut state = cluster();
    let before = partition(&state);
    step(&mut state, |s| fence_broker(s, before.leader, &policy()));
    let after = partition(&state);
    assert!(state.brokers[&before.leader].fenced);
    assert_ne!(after.leader, before.leader);
    assert!(before.isr.contains(&after.leader), "clean election picks from the ISR");
    assert!(!after.isr.contains(&before.leader));
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert!(after.partition_epoch > before.partition_epoch);
}

#[test]
fn fencing_a_follower_only_shrinks_the_isr() {
    let mut state = cluster();
    let before = partition(&state);
    let follower = *before.isr.iter().find(|id| **id != before.leader).unwrap();
    step(&mut state, |s| fence_broker(s, follower, &policy()));
    let after = partition(&state);
    assert_eq!((after.leader, after.leader_epoch), (before.leader, before.leader_epoch));
    assert!(!after.isr.contains(&follower));
}

#[test]
fn with_no_live_isr_member_the_partition_goes_leaderless_and_returns_with_its_last_member() {
    let mut state = cluster();
    for id in [2, 3, 1] {
        step(&mut state, |s| fence_broker(s, id, &policy()));
    }
    let offline = partition(&state);
    assert_eq!(offline.leader, NO_LEADER);
    assert_eq!(offline.isr.len(), 1, "the ISR keeps its last member: {offline:?}");
    let last = offline.isr[0];
    // Another replica coming back cannot lead: it may lack acknowledged records.
    let other = if last == 2 { 3 } else { 2 };
    step(&mut state, |s| unfence_broker(s, other));
    assert_eq!(partition(&state).leader, NO_LEADER);
    step(&mut state, |s| unfence_broker(s, last));
    let back = partition(&state);
    assert_eq!(back.leader, last);
    assert!(back.leader_epoch > offline.leader_epoch);
}

#[test]
fn unclean_election_is_an_opt_in() {
    let mut state = cluster();
    let config: BTreeMap<_, _> = [("unclean.leader.election.enable".to_string(), "true".to_string())].into();
    step(&mut state, |s| create_topic(s, &policy(), "u", 1, 3, config).unwrap());
    for id in [2, 3] {
        step(&mut state, |s| fence_broker(s, id, &policy()));
    }
    step(&mut state, |s| unfence_broker(s, 2));
    step(&mut state, |s| fence_broker(s, 1, &policy()));
    let u = state.topic("u").unwrap().partitions[0].clone();
    assert_eq!(u.leader, 2, "unclean: a live replica outside the ISR leads");
    assert_eq!(partition(&state).leader, NO_LEADER, "clean topic stays offline");
}

#[test]
fn alter_partition_checks_leader_epoch_partition_epoch_and_eligibility() {
    let mut state = cluster();
    let p = partition(&state);
    let shrunk: Vec<u32> = vec![p.leader];
    assert_eq!(
        alter_partition(&state, "t", 0, p.leader, p.leader_epoch + 1, p.partition_epoch, shrunk.clone()).unwrap_err(),
        AlterPartitionError::FencedLeaderEpoch
    );
    assert_eq!(
        alter_partition(&state, "t", 0, p.leader, p.leader_epoch, p.partition_epoch + 1, shrunk.clone()).unwrap_err(),
        AlterPartitionError::StalePartitionEpoch
    );
    let (records, accepted) =
        alter_partition(&state, "t", 0, p.leader, p.leader_epoch, p.partition_epoch, shrunk).unwrap();
    apply(&mut state, &records);
    assert_eq!(partition(&state).isr, accepted.isr);
    // Adding back a fenced broker is refused.
    let out = *p.replicas.iter().find(|id| **id != p.leader).unwrap();
    step(&mut state, |s| fence_broker(s, out, &policy()));
    let now = partition(&state);
    assert_eq!(
        alter_partition(&state, "t", 0, now.leader, now.leader_epoch, now.partition_epoch, vec![now.leader, out])
            .unwrap_err(),
        AlterPartitionError::IneligibleReplica
    );
}

#[test]
fn min_insync_replicas_defaults_to_two_from_three_replicas_on() {
    let state = cluster();
    let min_isr = |rf: u32| {
        let records = create_topic(&state, &policy(), "m", 1, rf, BTreeMap::new()).unwrap();
        let MetadataRecord::CreateTopic { config, .. } = &records[0] else { panic!() };
        config["min.insync.replicas"].clone()
    };
    assert_eq!((min_isr(1), min_isr(2), min_isr(3)), ("1".to_string(), "1".to_string(), "2".to_string()));
    let explicit: BTreeMap<_, _> = [("min.insync.replicas".to_string(), "3".to_string())].into();
    let records = create_topic(&state, &policy(), "m", 1, 3, explicit).unwrap();
    let MetadataRecord::CreateTopic { config, .. } = &records[0] else { panic!() };
    assert_eq!(config["min.insync.replicas"], "3");
}

#[test]
fn an_encrypted_topic_needs_a_key_on_the_controller() {
    let state = cluster();
    let config: BTreeMap<_, _> = [("encryption".to_string(), "aes-256-gcm".to_string())].into();
    let err = create_topic(&state, &policy(), "secret", 1, 3, config.clone()).unwrap_err();
    assert!(matches!(&err, ControllerError::InvalidConfig(m) if m.contains("no encryption key")), "{err:?}");
    let keyed = TopicPolicy { encryption_key_loaded: true, ..policy() };
    assert!(create_topic(&state, &keyed, "secret", 1, 3, config).is_ok());
}

#[test]
fn invalid_topics_are_refused_with_their_reason() {
    let state = cluster();
    assert!(matches!(
        create_topic(&state, &policy(), "t", 1, 1, BTreeMap::new()),
        Err(ControllerError::TopicExists(_))
    ));
    assert!(matches!(
        create_topic(&state, &policy(), "a/b", 1, 1, BTreeMap::new()),
        Err(ControllerError::InvalidTopicName { .. })
    ));
    assert!(matches!(
        create_topic(&state, &policy(), "u", 0, 1, BTreeMap::new()),
        Err(ControllerError::InvalidPartitions(_))
    ));
    let config: BTreeMap<_, _> = [("min.insync.replicas".to_string(), "3".to_string())].into();
    assert!(matches!(create_topic(&state, &policy(), "u", 1, 2, config), Err(ControllerError::InvalidConfig(_))));
    assert!(matches!(delete_topic(&state, "nope"), Err(ControllerError::UnknownTopic(_))));
}

#[test]
fn producer_ids_are_unique_and_epochs_only_grow() {
    let mut state = cluster();
    let (records, first) = init_producer_id(&state, -1, -1).unwrap();
    apply(&mut state, &records);
    let (records, second) = init_producer_id(&state, -1, -1).unwrap();
    apply(&mut state, &records);
    assert_eq!((first, second), ((0, 0), (1, 0)));
    let (records, bumped) = init_producer_id(&state, 0, 0).unwrap();
    apply(&mut state, &records);
    assert_eq!(bumped, (0, 1));
    // The older producer cannot take the id back.
    assert!(matches!(init_producer_id(&state, 0, 0), Err(ControllerError::ProducerFenced { current_epoch: 1, .. })));
    assert!(matches!(init_producer_id(&state, 7, 0), Err(ControllerError::UnknownProducerId { .. })));
}

#[test]
fn an_exhausted_epoch_gets_a_new_producer_id() {
    let mut state = cluster();
    step(&mut state, |s| init_producer_id(s, -1, -1).unwrap().0);
    apply(&mut state, &[MetadataRecord::BumpProducerEpoch { producer_id: 0, producer_epoch: i16::MAX }]);
    let (_, granted) = init_producer_id(&state, 0, i16::MAX).unwrap();
    assert_eq!(granted, (1, 0));
}

fn drain(state: &mut MetadataState, broker: u32, shutdown: bool) -> ClusterChangeOutcome {
    let change = ClusterChange::Drain { broker_id: broker, broker_epoch: None, shutdown };
    let (records, outcome) = alter_cluster(state, &policy(), &change).unwrap();
    apply(state, &records);
    outcome
}

#[test]
fn a_drained_broker_hands_its_leaderships_to_in_sync_replicas_and_stays_in_sync() {
    let mut state = cluster();
    let before = partition(&state);
    let outcome = drain(&mut state, before.leader, false);
    let after = partition(&state);
    assert!(outcome.stuck.is_empty() && outcome.unmovable.is_empty());
    assert_ne!(after.leader, before.leader);
    assert!(before.isr.contains(&after.leader));
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert_eq!(after.isr, before.isr, "an on-demand drain keeps the broker in sync");
    assert!(state.brokers[&before.leader].draining);
    // Draining again changes nothing; the leadership comes back once the drain is called off.
    assert!(
        alter_cluster(&state, &policy(), &ClusterChange::Drain { broker_id: 1, broker_epoch: None, shutdown: false })
            .unwrap()
            .0
            .is_empty()
    );
    let (records, elections) = elect_preferred_leaders(&state, &[], &[]).unwrap();
    assert!(records.is_empty(), "a draining preferred leader is not elected");
    assert!(matches!(elections[0].outcome, ElectionOutcome::NotEligible(_)));
    step(&mut state, |s| undrain_broker(s, before.leader).unwrap());
    let (records, elections) = elect_preferred_leaders(&state, &["t".to_string()], &[]).unwrap();
    apply(&mut state, &records);
    assert_eq!(elections[0].outcome, ElectionOutcome::Elected);
    assert_eq!(partition(&state).leader, before.replicas[0]);
    assert_eq!(partition(&state).leader_epoch, before.leader_epoch + 2);
}

#[test]
fn a_stopping_broker_leaves_every_isr_and_may_not_rejoin_until_it_registers_again() {
    let mut state = cluster();
    let before = partition(&state);
    let stopping = before.replicas[1];
    drain(&mut state, stopping, true);
    let after = partition(&state);
    assert_eq!(after.leader, before.leader, "a follower's drain moves no leadership");
    assert!(!after.isr.contains(&stopping));
    let mut rejoin = after.isr.clone();
    rejoin.push(stopping);
    let refused =
        alter_partition(&state, "t", 0, after.leader, after.leader_epoch, after.partition_epoch, rejoin.clone());
    assert!(matches!(refused, Err(AlterPartitionError::IneligibleReplica)));
    assert!(undrain_broker(&state, stopping).is_err(), "a stopping broker's drain ends only with a restart");
    step(&mut state, |s| register_broker(s, stopping, "h:2", None));
    assert!(!state.brokers[&stopping].draining && !state.brokers[&stopping].shutting_down);
    let after = partition(&state);
    assert!(alter_partition(&state, "t", 0, after.leader, after.leader_epoch, after.partition_epoch, rejoin).is_ok());
}

#[test]
fn leaderships_without_another_live_replica_in_sync_stay_and_are_reported() {
    let mut state = cluster();
    let leader = partition(&state).leader;
    let followers: Vec<u32> = partition(&state).replicas.into_iter().filter(|id| *id != leader).collect();
    // One follower fell out of the ISR, the other is fenced: nobody can take over yet.
    let p = partition(&state);
    let isr = vec![leader, followers[1]];
    let (records, _) = alter_partition(&state, "t", 0, leader, p.leader_epoch, p.partition_epoch, isr).unwrap();
    apply(&mut state, &records);
    step(&mut state, |s| fence_broker(s, followers[1], &policy()));
    let outcome = drain(&mut state, leader, true);
    assert_eq!(outcome.stuck, vec![("t".to_string(), 0)], "the out-of-sync follower may still catch up");
    assert_eq!(partition(&state).leader, leader);
    assert_eq!(partition(&state).isr, vec![leader], "the leader stays in its own ISR");
    // A single-replica topic has nobody to move to at all.
    let records = create_topic(&state, &policy(), "single", 1, 1, BTreeMap::new()).unwrap();
    apply(&mut state, &records);
    let single_leader = state.topic("single").unwrap().partitions[0].leader;
    let outcome = drain(&mut state, single_leader, false);
    assert!(outcome.unmovable.contains(&("single".to_string(), 0)));
}

#[test]
fn a_fenced_leader_is_replaced_by_an_in_sync_replica_that_is_not_draining() {
    let mut state = cluster();
    let p = partition(&state);
    let (leader, second, third) = (p.leader, p.replicas[1], p.replicas[2]);
    step(&mut state, |s| {
        alter_cluster(s, &policy(), &ClusterChange::Drain { broker_id: second, broker_epoch: None, shutdown: false })
            .unwrap()
            .0
    });
    step(&mut state, |s| fence_broker(s, leader, &policy()));
    assert_eq!(partition(&state).leader, third);
    // New topics do not get a draining broker as leader either.
    let records = create_topic(&state, &policy(), "new", 3, 2, BTreeMap::new()).unwrap();
    let MetadataRecord::CreateTopic { partitions, .. } = &records[0] else { panic!() };
    assert!(partitions.iter().all(|p| p.leader != second || p.replicas.iter().all(|r| *r == second)));
}

#[test]
fn drains_of_unknown_or_old_incarnations_are_refused() {
    let state = cluster();
    let unknown = ClusterChange::Drain { broker_id: 9, broker_epoch: None, shutdown: false };
    assert!(matches!(alter_cluster(&state, &policy(), &unknown), Err(ControllerError::UnknownBroker(9))));
    let old =
        ClusterChange::Drain { broker_id: 1, broker_epoch: Some(state.brokers[&1].broker_epoch + 100), shutdown: true };
    assert!(matches!(alter_cluster(&state, &policy(), &old), Err(ControllerError::StaleBrokerEpoch { .. })));
    let missing = ClusterChange::ElectLeaders { topics: vec!["nope".into()], partitions: Vec::new() };
    assert!(matches!(alter_cluster(&state, &policy(), &missing), Err(ControllerError::UnknownTopic(_))));
}

#[test]
fn config_changes_are_checked_like_creations_and_replace_the_overrides() {
    let mut state = cluster();
    let set = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (records, config) = alter_topic_config(
        &state,
        &policy(),
        "t",
        &set(&[("retention.ms", "1000"), ("min.insync.replicas", "2")]),
        &[],
    )
    .unwrap();
    apply(&mut state, &records);
    assert_eq!(state.topic("t").unwrap().config, config);
    let (records, config) =
        alter_topic_config(&state, &policy(), "t", &BTreeMap::new(), &["retention.ms".into()]).unwrap();
    apply(&mut state, &records);
    assert_eq!(config, set(&[("min.insync.replicas", "2")]));
    for refused in [
        alter_topic_config(&state, &policy(), "t", &set(&[("no.such.key", "1")]), &[]),
        alter_topic_config(&state, &policy(), "t", &set(&[("retention.ms", "soon")]), &[]),
        alter_topic_config(&state, &policy(), "t", &set(&[("min.insync.replicas", "4")]), &[]),
        alter_topic_config(&state, &policy(), "t", &set(&[("encryption", "aes-256-gcm")]), &[]),
        alter_topic_config(&state, &policy(), "t", &BTreeMap::new(), &[]),
    ] {
        assert!(matches!(refused, Err(ControllerError::InvalidConfig(_))), "{refused:?}");
    }
    assert!(matches!(
        alter_topic_config(&state, &policy(), "nope", &set(&[("retention.ms", "1")]), &[]),
        Err(ControllerError::UnknownTopic(_))
    ));
    let (records, config) =
        alter_broker_config(&state, &policy(), 2, &set(&[("retention.bytes", "1048576")]), &[]).unwrap();
    apply(&mut state, &records);
    assert_eq!(state.broker_configs[&2], config);
    assert!(alter_broker_config(&state, &policy(), 2, &set(&[("segment.bytes", "1")]), &[]).is_err());
    assert!(alter_broker_config(&state, &policy(), 9, &set(&[("retention.ms", "1")]), &[]).is_err());
    let (records, _) =
        alter_broker_config(&state, &policy(), 2, &BTreeMap::new(), &["retention.bytes".into()]).unwrap();
    apply(&mut state, &records);
    assert!(!state.broker_configs.contains_key(&2));
}

#[test]
fn added_partitions_keep_the_existing_ones_and_take_the_topic_replication_factor() {
    let mut state = cluster();
    step(&mut state, |s| create_topic(s, &policy(), "grow", 2, 2, BTreeMap::new()).unwrap());
    let before = state.topic("grow").unwrap().partitions.clone();
    step(&mut state, |s| create_partitions(s, "grow", 5).unwrap());
    let after = &state.topic("grow").unwrap().partitions;
    assert_eq!(after.len(), 5);
    assert_eq!(&after[..2], &before[..], "existing partitions are untouched");
    let mut leaders = std::collections::BTreeSet::new();
    for p in &after[2..] {
        assert_eq!(p.replicas.len(), 2);
        assert_eq!(p.isr, p.replicas);
        assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
        leaders.insert(p.leader);
    }
    assert_eq!(leaders.len(), 3, "the new leaders spread over the three brokers");
}

#[test]
fn partitions_never_shrink_and_need_enough_live_brokers() {
    let mut state = cluster();
    let refused = |s: &MetadataState, n| create_partitions(s, "t", n).unwrap_err();
    assert!(matches!(refused(&state, 1), ControllerError::InvalidPartitions(_)), "the same count");
    assert!(matches!(refused(&state, 0), ControllerError::InvalidPartitions(_)), "fewer");
    assert!(matches!(refused(&state, TOPIC_PARTITIONS_MAX + 1), ControllerError::InvalidPartitions(_)));
    assert!(matches!(create_partitions(&state, "nope", 2).unwrap_err(), ControllerError::UnknownTopic(_)));
    step(&mut state, |s| fence_broker(s, 3, &policy()));
    assert!(
        matches!(refused(&state, 2), ControllerError::InvalidReplicationFactor(_)),
        "replication factor 3 with two live brokers"
    );
}
