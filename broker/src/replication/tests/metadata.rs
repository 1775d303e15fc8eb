//! Metadata transitions (BecomeLeader, BecomeFollower), recovery, the lease, and produce admission.

use super::*;

#[test]
fn a_new_replica_has_no_role_until_metadata_arrives() {
    let replica = replica_with_log(2, true, 5);
    assert_eq!(replica.role(), Role::Unassigned);
    assert_eq!(replica.leader_epoch(), None);
    assert_eq!(replica.check_produce(false), Err(ProduceError::NotLeader));
}

#[test]
fn recovery_clamps_the_checkpointed_hw_to_the_log_and_trims_epochs_of_a_lost_tail() {
    let epochs = EpochHistory::from_entries(entries(&[(0, 0), (2, 8)])).unwrap();
    let recovered =
        RecoveredLog { log_start_offset: 0, log_end_offset: 6, flushed_offset: 6, high_watermark: 9, epochs };
    let (replica, commands) = Replica::new(config(2, true), recovered);
    assert_eq!(replica.high_watermark(), 6);
    assert_eq!(commands, vec![Command::PersistEpochHistory { entries: entries(&[(0, 0)]) }]);
}

#[test]
fn become_leader_starts_a_new_epoch_at_the_log_end_and_persists_it() {
    let mut replica = replica_with_log(LEADER, true, 5);
    let commands = replica.step(become_leader(3, 4, &[1, 2, 3], 0));
    assert_eq!(replica.role(), Role::Leader);
    assert_eq!(replica.leader_epoch(), Some(3));
    assert_eq!(replica.partition_epoch(), Some(4));
    assert_eq!(replica.isr().iter().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(replica.epoch_history().entries(), entries(&[(0, 0), (3, 5)]));
    assert_eq!(commands, vec![Command::PersistEpochHistory { entries: entries(&[(0, 0), (3, 5)]) }]);
}

#[test]
fn a_sole_isr_leader_commits_its_durable_log_at_once() {
    let mut replica = replica_with_log(LEADER, true, 5);
    let commands = replica.step(become_leader(1, 1, &[1], 0));
    assert_eq!(hw_advances(&commands), vec![5]);
}

#[test]
fn stale_become_leader_is_ignored() {
    let mut replica = leader(true, 5, &[1, 2, 3]);
    replica.step(become_leader(2, 2, &[1, 2, 3], 0));
    let commands = replica.step(become_leader(1, 3, &[1], 0));
    assert_eq!(replica.leader_epoch(), Some(2));
    assert_eq!(replica.isr().len(), 3);
    assert_eq!(
        commands,
        vec![Command::Warn(Warning::StaleMetadata {
            leader_epoch: 1,
            partition_epoch: 3,
            current_leader_epoch: 2,
            current_partition_epoch: 2,
        })]
    );
}

#[test]
fn stale_become_follower_is_ignored() {
    let mut replica = leader(true, 5, &[1, 2, 3]);
    replica.step(become_leader(2, 2, &[1, 2, 3], 0));
    let commands = replica.step(become_follower(3, 1, 1));
    assert_eq!(replica.role(), Role::Leader);
    assert!(matches!(commands[..], [Command::Warn(Warning::StaleMetadata { .. })]));
}

#[test]
fn become_leader_for_an_epoch_older_than_the_log_is_ignored() {
    let epochs = EpochHistory::from_entries(entries(&[(4, 0)])).unwrap();
    let recovered =
        RecoveredLog { log_start_offset: 0, log_end_offset: 3, flushed_offset: 3, high_watermark: 0, epochs };
    let (mut replica, _) = Replica::new(config(LEADER, true), recovered);
    let commands = replica.step(become_leader(3, 9, &[1, 2, 3], 0));
    assert_eq!(replica.role(), Role::Unassigned);
    assert!(matches!(commands[..], [Command::Warn(Warning::StaleMetadata { .. })]));
}

#[test]
fn metadata_repeating_the_applied_partition_epoch_is_silently_ignored() {
    let mut replica = leader(true, 5, &[1, 2, 3]);
    assert_eq!(replica.step(become_leader(1, 1, &[1, 2, 3], 0)), vec![]);
}

#[test]
fn a_new_partition_epoch_updates_the_isr_of_a_leader_in_the_same_epoch() {
    let mut replica = leader(true, 5, &[1, 2, 3]);
    let commands = replica.step(become_leader(1, 2, &[1, 2], 0));
    assert_eq!(replica.isr().iter().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(replica.epoch_history().entries(), entries(&[(0, 0), (1, 5)]), "no new epoch entry");
    assert!(commands.is_empty());
}

#[test]
fn a_restarted_leader_refuses_to_lead_its_old_epoch_again() {
    let epochs = EpochHistory::from_entries(entries(&[(0, 0), (2, 4)])).unwrap();
    let recovered =
        RecoveredLog { log_start_offset: 0, log_end_offset: 6, flushed_offset: 6, high_watermark: 4, epochs };
    let (mut replica, _) = Replica::new(config(LEADER, true), recovered);
    let commands = replica.step(become_leader(2, 5, &[1, 2, 3], 0));
    assert_eq!(replica.role(), Role::Unassigned);
    assert!(matches!(commands[..], [Command::Warn(Warning::InvalidMetadata { .. })]));
    replica.step(become_leader(3, 6, &[1, 2, 3], 0));
    assert_eq!(replica.role(), Role::Leader);
    assert_eq!(replica.epoch_history().entries(), entries(&[(0, 0), (2, 4), (3, 6)]));
}

#[test]
fn become_follower_starts_fetching_from_the_leader() {
    let mut replica = replica_with_log(2, true, 5);
    let commands = replica.step(become_follower(1, 1, 1));
    assert_eq!(replica.role(), Role::Follower { leader: 1 });
    assert_eq!(
        commands,
        vec![Command::SendFetch(FetchRequest {
            fetch_id: 0,
            leader: 1,
            current_leader_epoch: 1,
            fetch_offset: 5,
            last_fetched_epoch: Some(0),
            flushed_offset: 5,
        })]
    );
}

#[test]
fn a_deposed_leader_forgets_the_epoch_it_wrote_nothing_in() {
    let mut replica = leader(true, 5, &[1, 2, 3]);
    let commands = replica.step(become_follower(2, 2, 2));
    assert_eq!(replica.epoch_history().entries(), entries(&[(0, 0)]));
    assert_eq!(commands[0], Command::PersistEpochHistory { entries: entries(&[(0, 0)]) });
    assert_eq!(sent_fetch(&commands).last_fetched_epoch, Some(0));
}

#[test]
fn a_new_isr_for_the_same_leader_does_not_restart_fetching() {
    let mut replica = replica_with_log(2, true, 5);
    replica.step(become_follower(1, 1, 1));
    let commands = replica.step(Event::BecomeFollower {
        leader: 1,
        leader_epoch: 1,
        partition_epoch: 2,
        replicas: vec![1, 2, 3],
        isr: vec![1, 2],
    });
    assert!(commands.is_empty());
    assert_eq!(replica.partition_epoch(), Some(2));
}

#[test]
fn metadata_naming_this_broker_its_own_leader_as_follower_is_refused() {
    let mut replica = replica_with_log(2, true, 5);
    let commands = replica.step(become_follower(2, 1, 1));
    assert_eq!(replica.role(), Role::Unassigned);
    assert!(matches!(commands[..], [Command::Warn(Warning::InvalidMetadata { .. })]));
}

#[test]
fn lease_expiry_stops_leadership() {
    let mut replica = leader(true, 5, &[1, 2]);
    replica.step(Event::LeaseExpired);
    assert!(!replica.is_acting_leader());
    assert_eq!(replica.check_produce(false), Err(ProduceError::NotLeader));
    let commands = replica.step(fetch_event(2, 5, 1));
    assert_eq!(reply_of(&commands), FetchReply::Error(FetchError::NotLeader));
    assert_eq!(replica.high_watermark(), 0, "no commitment without a lease");
    assert!(proposals(&replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX * 3 })).is_empty());
}

#[test]
fn lease_renewal_restores_leadership_without_counting_the_outage_as_lag() {
    let mut replica = leader(true, 5, &[1, 2]);
    replica.step(Event::LeaseExpired);
    let renewed_ms = REPLICA_LAG_MS_MAX * 3;
    replica.step(Event::LeaseRenewed { now_ms: renewed_ms });
    assert!(replica.is_acting_leader());
    assert!(proposals(&replica.step(Event::Tick { now_ms: renewed_ms + 1 })).is_empty());
    let commands = replica.step(fetch_event(2, 5, renewed_ms + 2));
    assert_eq!(hw_advances(&commands), vec![5]);
}

#[test]
fn lease_expiry_does_not_affect_a_follower() {
    let mut replica = replica_with_log(2, true, 5);
    replica.step(become_follower(1, 1, 1));
    replica.step(Event::LeaseExpired);
    let answer = FetchAnswer::Records { batches: vec![batch(5, 6, 1)], high_watermark: 5, log_start_offset: 0 };
    let commands = replica.step(Event::FetchResponse { fetch_id: 0, answer, now_ms: 1 });
    assert!(commands.contains(&Command::AppendReplicated { fetch_id: 0, batches: vec![batch(5, 6, 1)] }));
}

#[test]
fn acks_all_is_refused_when_the_isr_is_below_min_insync_replicas() {
    let replica = leader(true, 5, &[1]);
    assert_eq!(
        replica.check_produce(true),
        Err(ProduceError::NotEnoughReplicas { isr_size: 1, min_insync_replicas: 2 })
    );
    assert_eq!(replica.check_produce(false), Ok(()), "acks=leader does not need the ISR");
    assert_eq!(leader(true, 5, &[1, 2]).check_produce(true), Ok(()));
}

#[test]
fn appends_are_ignored_unless_leading() {
    let mut replica = replica_with_log(2, true, 5);
    replica.step(become_follower(1, 1, 1));
    replica.step(Event::Appended { log_end_offset: 9 });
    assert_eq!(replica.log_end_offset(), 5);
}

#[test]
#[should_panic(expected = "flushed offset 9 reported above the log end 5")]
fn a_flush_report_beyond_the_log_end_is_a_broken_shell_contract() {
    let mut replica = leader(true, 5, &[1, 2]);
    replica.step(Event::Flushed { flushed_offset: 9 });
}
