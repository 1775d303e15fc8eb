//! Specification tests of the raft log files: what survives a reopen, what a torn tail, a truncation and a
//! purge leave behind. The quorum itself is tested end to end in broker/tests/metadata_quorum.rs.

use std::path::Path;

use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};

use super::segments::LogFiles;
use super::types::{Entry, Proposal};
use crate::metadata::records::MetadataRecord;

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry {
    let record =
        MetadataRecord::RegisterBroker { broker_id: index as u32, address: format!("h:{index}"), kafka_address: None };
    Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(Proposal { records: vec![record] }) }
}

fn entries(term: u64, indexes: std::ops::Range<u64>) -> Vec<Entry> {
    indexes.map(|i| entry(term, i)).collect()
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.log_id.index).collect()
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("log-"))
        .collect();
    names.sort();
    names
}

/// Small segments, so a handful of entries spans several files.
const SEGMENT_BYTES_MAX: u64 = 300;

#[test]
fn entries_and_durable_state_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut files, recovered) = LogFiles::open(dir.path(), SEGMENT_BYTES_MAX).unwrap();
    assert!(recovered.is_empty());
    files.append(&entries(1, 1..4)).unwrap();
    files.append(&entries(1, 4..9)).unwrap();
    let vote = Vote::new_committed(1, 1);
    files.save_state(|s| s.vote = Some(vote)).unwrap();
    files.save_state(|s| s.committed = Some(log_id(1, 6))).unwrap();
    assert!(files.segment_count() > 1, "entries span several segments");
    drop(files);

    let (files, recovered) = LogFiles::open(dir.path(), SEGMENT_BYTES_MAX).unwrap();
    assert_eq!(recovered, entries(1, 1..9));
    assert_eq!(files.state().vote, Some(vote));
    assert_eq!(files.state().committed, Some(log_id(1, 6)));
    assert_eq!(files.next_index(), Some(9));
}

#[test]
fn a_torn_or_corrupt_tail_is_cut_on_open_and_appends_continue_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut files, _) = LogFiles::open(dir.path(), u64::MAX).unwrap();
    files.append(&entries(1, 1..4)).unwrap();
    drop(files);
    let path = dir.path().join(&segment_files(dir.path())[0]);
    let intact = std::fs::read(&path).unwrap();

    // A torn frame header after the last entry.
    let mut bytes = intact.clone();
    bytes.extend_from_slice(&[0, 0, 1]);
    std::fs::write(&path, &bytes).unwrap();
    let (files, recovered) = LogFiles::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(indexes(&recovered), vec![1, 2, 3]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), intact.len() as u64, "the torn bytes are cut off");
    drop(files);

    // A corrupt last entry and a half-written one after it: both go, the rest stays.
    let mut bytes = intact.clone();
    let last = bytes.len() - 2;
    bytes[last] ^= 0xff;
    bytes.extend_from_slice(&intact[..20]);
    std::fs::write(&path, &bytes).unwrap();
    let (mut files, recovered) = LogFiles::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(indexes(&recovered), vec![1, 2]);
    files.append(&entries(2, 3..5)).unwrap();
    drop(files);
    let (_, recovered) = LogFiles::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(recovered, [entries(1, 1..3), entries(2, 3..5)].concat());
}

#[test]
fn a_corrupt_sealed_segment_is_an_error_not_a_silent_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES_MAX).unwrap();
    for i in 1..8 {
        files.append(&entries(1, i..i + 1)).unwrap();
    }
    drop(files);
    let first = dir.path().join(&segment_files(dir.path())[0]);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();
    let err = LogFiles::open(dir.path(), SEGMENT_BYTES_MAX).unwrap_err();
    assert!(err.to_string().contains("sealed segment"), "{err}");
}

#[test]
fn truncate_removes_entries_from_an_index_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES_MAX).unwrap();
    for i in 1..10 {
        files.append(&entries(1, i..i + 1)).unwrap();
    }
    let segments_before = files.segment_count();
    files.truncate(4).unwrap();
    assert!(files.segment_count() < segments_before, "whole newer segments are deleted");
    assert_eq!(files.next_index(), Some(4));
    files.append(&entries(2, 4..6)).unwrap();
    drop(files);
    let (_, recovered) = LogFiles::open(dir.path(), SEGMENT_BYTES_MAX).unwrap();
    assert_eq!(recovered, [entries(1, 1..4), entries(2, 4..6)].concat());
}

#[test]
fn purge_forgets_entries_durably_and_deletes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES_MAX).unwrap();
    for i in 1..10 {
        files.append(&entries(1, i..i + 1)).unwrap();
    }
    let before = segment_files(dir.path());
    files.purge(log_id(1, 5)).unwrap();
    let after = segment_files(dir.path());
    assert!(after.len() < before.len(), "segments holding only purged entries are deleted: {before:?} -> {after:?}");
    drop(files);
    let (mut files, recovered) = LogFiles::open(dir.path(), SEGMENT_BYTES_MAX).unwrap();
    assert_eq!(indexes(&recovered), vec![6, 7, 8, 9], "entries up to the purged id are gone after reopen");
    assert_eq!(files.state().last_purged, Some(log_id(1, 5)));

    // Purging past the last entry (a follower that installed a snapshot) empties the log; appends continue
    // after the purged index.
    files.purge(log_id(3, 20)).unwrap();
    assert_eq!(files.segment_count(), 0);
    assert_eq!(files.next_index(), Some(21));
    files.append(&entries(3, 21..23)).unwrap();
    drop(files);
    let (_, recovered) = LogFiles::open(dir.path(), SEGMENT_BYTES_MAX).unwrap();
    assert_eq!(indexes(&recovered), vec![21, 22]);
}

#[test]
fn appends_out_of_sequence_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut files, _) = LogFiles::open(dir.path(), SEGMENT_BYTES_MAX).unwrap();
    files.append(&entries(1, 1..3)).unwrap();
    assert!(files.append(&entries(1, 4..5)).is_err(), "a gap");
    assert!(files.append(&entries(1, 2..3)).is_err(), "an overlap");
    files.append(&entries(1, 3..4)).unwrap();
}

mod transport {
    use std::time::{Duration, Instant};

    use openraft::error::RPCError;
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::VoteRequest;
    use openraft::{BasicNode, Vote};

    use crate::metadata::raft::network::{NetworkConfig, PeerNetworkFactory};

    fn config() -> NetworkConfig {
        NetworkConfig {
            connect_timeout: Duration::from_millis(500),
            keepalive_interval: Duration::from_millis(500),
            keepalive_timeout: Duration::from_millis(500),
            rpc_timeout: Duration::from_millis(300),
            tls: None,
        }
    }

    fn vote() -> VoteRequest<u64> {
        VoteRequest { vote: Vote::new(1, 1), last_log_id: None }
    }

    #[tokio::test]
    async fn a_peer_that_refuses_connections_is_unreachable() {
        // A port that was just free: nothing listens there.
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let mut factory = PeerNetworkFactory::new(1, config());
        let mut client = factory.new_client(2, &BasicNode::new(address)).await;
        let result = client.vote(vote(), RPCOption::new(Duration::from_secs(5))).await;
        assert!(matches!(result, Err(RPCError::Unreachable(_))), "{result:?}");
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_times_out_at_the_rpc_deadline() {
        // Accepts connections and then says nothing, like a stopped (SIGSTOP) process.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                held.push(socket);
            }
        });
        let mut factory = PeerNetworkFactory::new(1, config());
        let mut client = factory.new_client(2, &BasicNode::new(address)).await;
        let started = Instant::now();
        let result = client.vote(vote(), RPCOption::new(Duration::from_secs(5))).await;
        assert!(result.is_err(), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "the 300 ms RPC deadline applies: {:?}", started.elapsed());
        silent.abort();
    }

    #[tokio::test]
    async fn an_invalid_address_makes_rpcs_fail_instead_of_the_factory() {
        let mut factory = PeerNetworkFactory::new(1, config());
        let mut client = factory.new_client(2, &BasicNode::new("not a host:port")).await;
        let result = client.vote(vote(), RPCOption::new(Duration::from_secs(1))).await;
        assert!(matches!(result, Err(RPCError::Unreachable(_))), "{result:?}");
    }
}
