//! Open-loop send schedules and the split of a message count across workers.
//!
//! At `--rate R` message `i` (counted across all producers) is due `i / R` seconds after the start, whether
//! or not earlier ones were acknowledged. Producer `p` of `P` sends the messages `i ≡ p (mod P)`, so the
//! producers interleave evenly instead of bursting together. A late send is still timed from its due
//! time: otherwise a stall would delay the very sends that should have observed it, and the histogram
//! would hide it ("coordinated omission").

use std::time::{Duration, Instant};

/// When each of one producer's messages is due.
#[derive(Debug, Clone, Copy)]
pub struct RateSchedule {
    start: Instant,
    rate_per_sec: u64,
    worker: u64,
    workers: u64,
}

impl RateSchedule {
    /// The schedule of producer `worker` of `workers` sharing `rate_per_sec`, all starting at `start`.
    ///
    /// # Panics
    ///
    /// If `rate_per_sec` or `workers` is zero, or `worker >= workers`: the caller builds schedules only for
    /// a positive rate and existing workers.
    pub fn new(start: Instant, rate_per_sec: u64, worker: usize, workers: usize) -> RateSchedule {
        assert!(rate_per_sec > 0 && worker < workers, "a schedule needs a rate and a valid worker");
        RateSchedule { start, rate_per_sec, worker: worker as u64, workers: workers as u64 }
    }

    /// The global index of this worker's `k`-th message.
    pub fn global_index(&self, k: u64) -> u64 {
        k.saturating_mul(self.workers).saturating_add(self.worker)
    }

    /// When this worker's `k`-th message (from 0) is due.
    pub fn due(&self, k: u64) -> Instant {
        self.start + offset_of(self.global_index(k), self.rate_per_sec)
    }
}

/// Time from the start to message `index` at `rate_per_sec`: `index / rate` seconds, rounded down to the
/// nanosecond. Computed in u128 so that neither the product nor a long run overflows.
pub fn offset_of(index: u64, rate_per_sec: u64) -> Duration {
    let nanos = u128::from(index) * 1_000_000_000 / u128::from(rate_per_sec);
    // u64 nanoseconds last 584 years; the settings cap a run at a day.
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// How many of `total` messages worker `worker` of `workers` handles: an even split, the first
/// `total % workers` workers taking one more. Matches the `i ≡ worker (mod workers)` assignment.
pub fn share_of(total: u64, worker: usize, workers: usize) -> u64 {
    let (worker, workers) = (worker as u64, workers as u64);
    total / workers + u64::from(worker < total % workers)
}

/// The partitions consumer `worker` of `workers` reads: every `workers`-th one, starting at `worker`.
pub fn partitions_of(worker: usize, workers: usize, partitions: u32) -> Vec<u32> {
    (0..partitions).filter(|p| *p as usize % workers == worker).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_the_rate_exactly() {
        assert_eq!(offset_of(0, 1000), Duration::ZERO);
        assert_eq!(offset_of(1, 1000), Duration::from_millis(1));
        assert_eq!(offset_of(1000, 1000), Duration::from_secs(1));
        assert_eq!(offset_of(1, 3), Duration::from_nanos(333_333_333), "rounded down to the nanosecond");
        assert_eq!(offset_of(3, 3), Duration::from_secs(1), "no drift accumulates over many messages");
    }

    #[test]
    fn long_runs_do_not_overflow() {
        // A day at 100 million messages/s.
        let index = 86_400 * 100_000_000u64;
        assert_eq!(offset_of(index, 100_000_000), Duration::from_secs(86_400));
        assert_eq!(offset_of(u64::MAX, 1), Duration::from_nanos(u64::MAX), "saturates instead of wrapping");
    }

    #[test]
    fn producers_interleave_on_one_timeline() {
        let start = Instant::now();
        let first = RateSchedule::new(start, 1000, 0, 2);
        let second = RateSchedule::new(start, 1000, 1, 2);
        assert_eq!(first.due(0) - start, Duration::ZERO);
        assert_eq!(second.due(0) - start, Duration::from_millis(1));
        assert_eq!(first.due(1) - start, Duration::from_millis(2));
        assert_eq!(second.due(1) - start, Duration::from_millis(3));
        // Each producer runs at half the total rate.
        assert_eq!(first.due(500) - first.due(0), Duration::from_secs(1));
    }

    #[test]
    fn shares_add_up_to_the_total() {
        for (total, workers) in [(10u64, 3usize), (2, 5), (0, 4), (1_000_001, 7)] {
            let sum: u64 = (0..workers).map(|w| share_of(total, w, workers)).sum();
            assert_eq!(sum, total, "{total} over {workers}");
            let shares: Vec<u64> = (0..workers).map(|w| share_of(total, w, workers)).collect();
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        }
        assert_eq!(share_of(10, 0, 3), 4);
        assert_eq!(share_of(10, 2, 3), 3);
    }

    #[test]
    fn partitions_are_dealt_round_robin() {
        assert_eq!(partitions_of(0, 2, 5), vec![0, 2, 4]);
        assert_eq!(partitions_of(1, 2, 5), vec![1, 3]);
        assert_eq!(partitions_of(3, 4, 2), Vec::<u32>::new(), "more consumers than partitions leaves some idle");
    }
}
