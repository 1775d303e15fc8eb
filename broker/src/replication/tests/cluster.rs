//! Three replicas over the in-memory network: after leader changes with divergent tails every replica
//! converges on one log and no acknowledged (below-HW) record is lost.

use super::network::{Cluster, Node};
use super::*;

#[test]
fn replicas_converge_after_leader_changes_with_divergent_tails_and_keep_every_acknowledged_record() {
    let mut cluster = Cluster::new();
    assert!(cluster.produce(3));
    assert!(cluster.produce(2));
    cluster.run(20);
    assert_eq!(cluster.acknowledged.len(), 5, "both batches committed on all three replicas");

    // Broker 3 falls behind; broker 1 writes a tail that only broker 2 copies (uncommitted: 3 is in the ISR).
    cluster.isolated.insert(3);
    assert!(cluster.produce(4));
    cluster.run(10);
    assert_eq!(cluster.nodes[&2].log_end_offset(), 9);
    assert_eq!(cluster.acknowledged.len(), 5);
    // Then broker 1 is cut off too and writes a tail no one copies.
    cluster.isolated.insert(1);
    assert!(cluster.produce(2));
    cluster.run(5);

    // The controller elects broker 3, still in the ISR, which lacks both tails; it writes its own.
    cluster.isolated.clear();
    cluster.elect(3);
    assert!(cluster.produce(3));
    cluster.run(40);
    let logs: Vec<_> = cluster.nodes.values().map(Node::records).collect();
    assert_eq!(logs[0], logs[2], "broker 1 dropped its divergent tail");
    assert_eq!(logs[1], logs[2], "broker 2 dropped its divergent tail");
    assert_eq!(logs[2].len(), 8);
    assert_eq!(cluster.acknowledged.len(), 8);

    // Another election, this time of a replica that was once diverged.
    cluster.elect(2);
    assert!(cluster.produce(2));
    cluster.run(40);

    let logs: Vec<_> = cluster.nodes.values().map(Node::records).collect();
    assert!(logs.iter().all(|log| *log == logs[0]), "one log on every replica");
    for node in cluster.nodes.values() {
        assert_eq!(node.replica.high_watermark(), 10);
        assert_eq!(node.persisted_epochs, node.replica.epoch_history().entries(), "the shell's copy is current");
        assert_eq!(node.replica.epoch_history().entries(), entries(&[(1, 0), (2, 5), (3, 8)]));
    }
    for record in &cluster.acknowledged {
        assert_eq!(logs[0].get(record.0 as usize), Some(record), "acknowledged record {record:?} lost");
    }
    assert_eq!(cluster.acknowledged.len(), 10);
    assert!(cluster.unacknowledged.is_empty());
    assert_eq!(cluster.failed.len(), 6, "only the two divergent tails failed");
}
