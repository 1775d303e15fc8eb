//! Seeded runs of three replicas under crashes that lose unflushed data, restarts, isolation, clean elections,
//! and shuffled and duplicated deliveries. Whatever happens, no acknowledged record is lost, replicas agree
//! below their HW at every round, and once the faults stop every replica converges on one log. A failing seed
//! replays exactly: rerun with it alone.

use super::network::{BROKERS, Cluster, Coverage, Rng};

const SEEDS: u64 = 40;
const STEPS: usize = 200;
/// Rounds without faults at the end: enough for a replica cut off for the whole run to catch up and rejoin.
const SETTLE_ROUNDS: usize = 400;

#[test]
fn seeded_faults_never_lose_an_acknowledged_record_and_replicas_converge() {
    let mut total = Coverage::default();
    for seed in 0..SEEDS {
        let coverage = run_seed(seed);
        total.truncations += coverage.truncations;
        total.isr_shrinks += coverage.isr_shrinks;
        total.isr_expansions += coverage.isr_expansions;
        total.elections += coverage.elections;
        total.crashes += coverage.crashes;
        total.refused_fetches += coverage.refused_fetches;
    }
    // The faults must have exercised the paths they are meant to: divergent tails, ISR movement, failover.
    let Coverage { truncations, isr_shrinks, isr_expansions, elections, crashes, refused_fetches } = total;
    eprintln!("{total:?}");
    assert!(truncations >= SEEDS / 4, "{total:?}");
    assert!(isr_shrinks >= SEEDS && isr_expansions >= SEEDS, "{total:?}");
    assert!(elections >= 2 * SEEDS && crashes >= SEEDS && refused_fetches >= SEEDS, "{total:?}");
}

fn run_seed(seed: u64) -> Coverage {
    let mut cluster = Cluster::new();
    cluster.chaos = Some(Rng::new(seed));
    // Long rounds, so that an isolation of a few dozen rounds outlasts `replica_lag_ms_max` and the ISR moves.
    cluster.round_ms = 250;
    let mut faults = Rng::new(seed ^ 0xFA17);
    for _ in 0..STEPS {
        match faults.below(100) {
            0..45 => {
                cluster.produce(1 + faults.below(3));
            }
            45..48 => cluster.crash_and_restart(BROKERS[faults.below(3) as usize]),
            48..51 => {
                let candidates: Vec<u32> = cluster.controller.isr.iter().copied().collect();
                cluster.elect(candidates[faults.below(candidates.len() as u64) as usize]);
            }
            51..54 if cluster.isolated.is_empty() => {
                cluster.isolated.insert(BROKERS[faults.below(3) as usize]);
            }
            54..60 => cluster.isolated.clear(),
            _ => {}
        }
        cluster.run(1 + faults.below(4) as usize);
    }
    cluster.isolated.clear();
    cluster.run(SETTLE_ROUNDS);

    let logs: Vec<_> = cluster.nodes.values().map(|node| node.records()).collect();
    assert!(logs.iter().all(|log| *log == logs[0]), "seed {seed}: replicas did not converge");
    cluster.check_acknowledged_everywhere();
    assert!(!cluster.acknowledged.is_empty(), "seed {seed}: nothing was ever committed");
    assert_eq!(cluster.controller.isr.len(), 3, "seed {seed}: every replica is back in the ISR");
    for node in cluster.nodes.values() {
        assert_eq!(node.replica.high_watermark(), logs[0].len() as u64, "seed {seed}: HW reached the log end");
    }
    cluster.coverage
}
