//! Bugs planted on purpose (the `planted-bugs` feature), each one a known way to break replication, so that
//! the simulator's tests can show that its history checker catches every anomaly it names. Without the
//! feature there is no way to set them: `Replica::planted` answers "none" and the compiler drops the branches.

/// Which planted bugs a replica runs with. Every field is a bug; the default is none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// The leader answers a fetch with records without checking the follower's last fetched epoch against its
    /// own history, so a follower keeps a diverged tail (`inconsistent-offsets`).
    pub skip_divergence_check: bool,
    /// The HW is the leader's log end: acks=all completes as soon as the leader appended, before any replica
    /// fsynced or copied the records (`lost-write`).
    pub high_watermark_at_log_end: bool,
    /// An ISR follower that has not fetched yet in this leader epoch does not hold the HW back
    /// (`acked-unreplicated`).
    pub high_watermark_skips_unfetched_followers: bool,
    /// A leader takes produce requests without a valid controller lease (`split-brain`).
    pub produce_without_lease: bool,
    /// A follower takes its leader's HW even when it is lower than its own (`hw-regression`).
    pub follower_adopts_lower_high_watermark: bool,
}

impl PlantedBugs {
    pub fn any(&self) -> bool {
        *self != PlantedBugs::default()
    }
}
