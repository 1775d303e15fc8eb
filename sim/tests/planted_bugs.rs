//! Proof that the checker bites: for each anomaly it names, a bug that causes it is planted (in the
//! replication core through rill-broker's `planted-bugs` feature, or in the simulated shell and clients) and
//! the simulator must report that anomaly within a bounded number of seeds.

use rill_broker::replication::{PlantedBugs, Replica};
use rill_sim::{Options, Planted, run};
use rill_tests::checker::jepsen;

/// Every planted bug must be caught within this many seeds (each is found far sooner; see ARCHITECTURE.md).
const SEEDS_MAX: u64 = 200;

/// Runs seeds from 0 until one reports `anomaly`; returns that seed.
fn first_seed_reporting(anomaly: &str, configure: impl Fn(&mut Options)) -> u64 {
    for seed in 0..SEEDS_MAX {
        let mut options = Options::new(seed);
        configure(&mut options);
        let outcome = run(options);
        if outcome.report.count(anomaly) > 0 {
            eprintln!("{anomaly} found by seed {seed}:\n{}", outcome.describe(0));
            return seed;
        }
    }
    panic!("no seed below {SEEDS_MAX} reported {anomaly}");
}

/// Plants core bugs through `Options::replica_hook`, a plain function pointer so that `Options` needs no
/// feature-gated type.
fn core(hook: fn(&mut Replica)) -> impl Fn(&mut Options) {
    move |options: &mut Options| options.replica_hook = Some(hook)
}

fn shell(planted: Planted) -> impl Fn(&mut Options) {
    move |options: &mut Options| options.planted = planted
}

#[test]
fn the_checker_runs_clean_without_planted_bugs() {
    for seed in 0..20 {
        let outcome = run(Options::new(seed));
        assert!(outcome.passed(), "{}", outcome.describe(40));
    }
}

#[test]
fn acknowledging_on_the_leaders_append_is_a_lost_write() {
    first_seed_reporting(
        jepsen::LOST_WRITE,
        core(|r| r.plant(PlantedBugs { high_watermark_at_log_end: true, ..Default::default() })),
    );
}

#[test]
fn skipping_the_divergence_check_gives_inconsistent_offsets() {
    first_seed_reporting(
        jepsen::INCONSISTENT_OFFSETS,
        core(|r| r.plant(PlantedBugs { skip_divergence_check: true, ..Default::default() })),
    );
}

#[test]
fn a_hw_that_ignores_followers_yet_to_fetch_acknowledges_unreplicated_writes() {
    first_seed_reporting(
        jepsen::ACKED_UNREPLICATED,
        core(|r| r.plant(PlantedBugs { high_watermark_skips_unfetched_followers: true, ..Default::default() })),
    );
}

#[test]
fn producing_without_a_lease_is_split_brain() {
    first_seed_reporting(
        jepsen::SPLIT_BRAIN,
        core(|r| r.plant(PlantedBugs { produce_without_lease: true, ..Default::default() })),
    );
}

#[test]
fn a_follower_adopting_a_lower_hw_is_a_hw_regression() {
    first_seed_reporting(
        jepsen::HW_REGRESSION,
        core(|r| r.plant(PlantedBugs { follower_adopts_lower_high_watermark: true, ..Default::default() })),
    );
}

#[test]
fn forgetting_producer_state_on_leader_change_duplicates_idempotent_writes() {
    first_seed_reporting(
        jepsen::DUPLICATE,
        shell(Planted { forget_producer_state_on_leader_change: true, ..Default::default() }),
    );
}

#[test]
fn serving_reads_beyond_the_hw_makes_consumers_skip() {
    first_seed_reporting(jepsen::POLL_SKIP, shell(Planted { read_beyond_high_watermark: true, ..Default::default() }));
}

#[test]
fn a_consumer_rewinding_on_a_leader_change_reads_backwards() {
    first_seed_reporting(
        jepsen::NONMONOTONIC,
        shell(Planted { consumer_rewinds_on_leader_change: true, ..Default::default() }),
    );
}
