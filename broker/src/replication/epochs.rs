//! The leader-epoch history of one replica's log: which leader epoch wrote which range of offsets.
//!
//! Each entry says "records from `start_offset` on were written in leader `epoch`", until the next entry. It is
//! how a leader tells a follower where their logs part ways (KIP-101/KIP-279): the end of epoch E in a log is
//! the start of the first later epoch, or the log end offset when E is the latest. The shell checkpoints it to
//! a file after every change (`Command::PersistEpochHistory`).

/// One entry of the history: records from `start_offset` on belong to `epoch`, up to the next entry's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: u32,
    pub start_offset: u64,
}

/// Where an epoch ends in a log, as answered by [`EpochHistory::end_offset_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    /// The largest epoch in the history that is at most the one asked about; `None` when every known epoch is
    /// later. A follower compares it with its own history, so it must not be a later epoch.
    pub epoch: Option<u32>,
    /// The start offset of the first epoch later than the one asked about, or the log end offset if none is.
    pub end_offset: u64,
}

/// Epochs strictly increasing, start offsets strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochHistory {
    entries: Vec<EpochEntry>,
}

impl EpochHistory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a history read back from its checkpoint file.
    ///
    /// # Errors
    ///
    /// A file whose epochs or start offsets do not strictly increase is corrupt; the shell decides what to do
    /// (typically rebuild the history from the batch headers of the log).
    pub fn from_entries(entries: Vec<EpochEntry>) -> Result<Self, String> {
        for pair in entries.windows(2) {
            if pair[1].epoch <= pair[0].epoch || pair[1].start_offset <= pair[0].start_offset {
                return Err(format!("epoch history out of order: {:?} then {:?}", pair[0], pair[1]));
            }
        }
        Ok(EpochHistory { entries })
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub fn latest_epoch(&self) -> Option<u32> {
        self.latest().map(|entry| entry.epoch)
    }

    /// Where `epoch` starts, if this log holds it.
    pub fn start_offset_of(&self, epoch: u32) -> Option<u64> {
        self.entries.iter().find(|entry| entry.epoch == epoch).map(|entry| entry.start_offset)
    }

    /// Records that `epoch` starts at `start_offset`. An epoch that started at the same offset wrote nothing
    /// and is replaced, so that every entry but possibly the last covers at least one record and a follower's
    /// last fetched epoch always names an epoch that wrote something.
    pub fn append(&mut self, epoch: u32, start_offset: u64) {
        if let Some(last) = self.entries.last() {
            assert!(
                epoch > last.epoch,
                "leader epoch {epoch} appended after epoch {}: epochs go backwards",
                last.epoch
            );
            assert!(
                start_offset >= last.start_offset,
                "epoch {epoch} starts at {start_offset}, before epoch {} at {}",
                last.epoch,
                last.start_offset
            );
            if start_offset == last.start_offset {
                self.entries.pop();
            }
        }
        self.entries.push(EpochEntry { epoch, start_offset });
    }

    /// Forgets the epochs that start at or after `offset`, because the log was truncated to end there. Returns
    /// whether anything changed (and so needs persisting).
    pub fn truncate_from(&mut self, offset: u64) -> bool {
        let kept = self.entries.partition_point(|entry| entry.start_offset < offset);
        let changed = kept < self.entries.len();
        self.entries.truncate(kept);
        changed
    }

    /// Where `epoch` ends in a log whose end offset is `log_end_offset`: the start of the first later epoch,
    /// or the log end when no later epoch is known. See [`EpochEnd`].
    pub fn end_offset_for(&self, epoch: u32, log_end_offset: u64) -> EpochEnd {
        let later = self.entries.partition_point(|entry| entry.epoch <= epoch);
        let found = later.checked_sub(1).map(|index| self.entries[index].epoch);
        let end_offset = self.entries.get(later).map_or(log_end_offset, |entry| entry.start_offset);
        EpochEnd { epoch: found, end_offset }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(entries: &[(u32, u64)]) -> EpochHistory {
        let entries = entries.iter().map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset }).collect();
        EpochHistory::from_entries(entries).unwrap()
    }

    #[test]
    fn an_empty_history_has_no_latest_epoch_and_ends_at_the_log_end() {
        let empty = EpochHistory::new();
        assert!(empty.is_empty());
        assert_eq!(empty.latest(), None);
        assert_eq!(empty.end_offset_for(3, 17), EpochEnd { epoch: None, end_offset: 17 });
    }

    #[test]
    fn append_records_epoch_starts_in_order() {
        let mut h = EpochHistory::new();
        h.append(1, 0);
        h.append(3, 10);
        assert_eq!(h, history(&[(1, 0), (3, 10)]));
        assert_eq!(h.latest(), Some(EpochEntry { epoch: 3, start_offset: 10 }));
        assert_eq!(h.start_offset_of(3), Some(10));
        assert_eq!(h.start_offset_of(2), None);
    }

    #[test]
    fn append_at_the_same_offset_replaces_an_epoch_that_wrote_nothing() {
        let mut h = history(&[(1, 0), (2, 10)]);
        h.append(4, 10);
        assert_eq!(h, history(&[(1, 0), (4, 10)]));
    }

    #[test]
    #[should_panic(expected = "epochs go backwards")]
    fn append_refuses_an_epoch_going_backwards() {
        let mut h = history(&[(5, 0)]);
        h.append(4, 10);
    }

    #[test]
    #[should_panic(expected = "before epoch")]
    fn append_refuses_a_start_offset_going_backwards() {
        let mut h = history(&[(5, 10)]);
        h.append(6, 9);
    }

    #[test]
    fn end_offset_of_an_epoch_is_the_start_of_the_next_one() {
        let h = history(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(h.end_offset_for(1, 40), EpochEnd { epoch: Some(1), end_offset: 10 });
        assert_eq!(h.end_offset_for(3, 40), EpochEnd { epoch: Some(3), end_offset: 25 });
    }

    #[test]
    fn end_offset_of_the_latest_epoch_is_the_log_end() {
        let h = history(&[(1, 0), (3, 10)]);
        assert_eq!(h.end_offset_for(3, 40), EpochEnd { epoch: Some(3), end_offset: 40 });
        assert_eq!(h.end_offset_for(9, 40), EpochEnd { epoch: Some(3), end_offset: 40 });
    }

    #[test]
    fn end_offset_of_an_unknown_epoch_answers_with_the_largest_epoch_below_it() {
        let h = history(&[(1, 0), (3, 10)]);
        assert_eq!(h.end_offset_for(2, 40), EpochEnd { epoch: Some(1), end_offset: 10 });
    }

    #[test]
    fn end_offset_of_an_epoch_before_the_first_is_the_first_start() {
        let h = history(&[(3, 5), (4, 10)]);
        assert_eq!(h.end_offset_for(2, 40), EpochEnd { epoch: None, end_offset: 5 });
    }

    #[test]
    fn truncate_from_forgets_epochs_starting_at_or_after_the_offset() {
        let mut h = history(&[(1, 0), (3, 10), (4, 25)]);
        assert!(h.truncate_from(25));
        assert_eq!(h, history(&[(1, 0), (3, 10)]));
        assert!(!h.truncate_from(11), "epoch 3 still has records below 11");
        assert!(h.truncate_from(3));
        assert_eq!(h, history(&[(1, 0)]));
    }

    #[test]
    fn from_entries_refuses_a_history_out_of_order() {
        let entries = |pairs: &[(u32, u64)]| {
            pairs.iter().map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset }).collect::<Vec<_>>()
        };
        assert!(EpochHistory::from_entries(entries(&[(2, 0), (2, 5)])).is_err());
        assert!(EpochHistory::from_entries(entries(&[(2, 5), (3, 5)])).is_err());
        assert!(EpochHistory::from_entries(entries(&[(2, 5), (3, 4)])).is_err());
        assert!(EpochHistory::from_entries(entries(&[(2, 0), (3, 5)])).is_ok());
    }
}
