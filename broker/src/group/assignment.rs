//! The sticky, balanced assignment of a group's partitions to its members: a pure function of the members'
//! subscriptions, the previous assignment and the partition counts.

use std::collections::{BTreeMap, BTreeSet};

use super::TopicPartition;

/// Assigns every partition of every subscribed topic to exactly one member subscribed to its topic.
///
/// Sticky: a member keeps each partition it had that it is still subscribed to, unless that leaves another
/// eligible member with two or more partitions fewer. Balanced: afterwards no partition could move to an
/// eligible member with two or more fewer partitions than its owner, so with equal subscriptions every
/// member's count is within one of every other's. Deterministic: ties go to the smaller member id.
pub fn assign(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    previous: &BTreeMap<String, BTreeSet<TopicPartition>>,
    partition_counts: &BTreeMap<String, u32>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut result: BTreeMap<String, BTreeSet<TopicPartition>> =
        subscriptions.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    let topics: BTreeSet<&String> = subscriptions.values().flatten().collect();
    let partitions: Vec<TopicPartition> = topics
        .into_iter()
        .flat_map(|topic| {
            let count = partition_counts.get(topic).copied().unwrap_or(0);
            (0..count).map(move |p| TopicPartition::new(topic.clone(), p))
        })
        .collect();
    let eligible = |member: &str, tp: &TopicPartition| subscriptions.get(member).is_some_and(|t| t.contains(&tp.topic));

    // Keep what each member had.
    let mut unassigned = Vec::new();
    for tp in &partitions {
        let keeper = previous.iter().find(|(m, had)| had.contains(tp) && eligible(m, tp)).map(|(m, _)| m.clone());
        match keeper {
            Some(member) => {
                result.get_mut(&member).expect("eligible members are subscribed").insert(tp.clone());
            }
            None => unassigned.push(tp.clone()),
        }
    }
    // Hand out the rest, each to the least loaded eligible member.
    for tp in unassigned {
        let least = result.iter().filter(|(m, _)| eligible(m, &tp)).min_by_key(|(m, had)| (had.len(), (*m).clone()));
        if let Some((member, _)) = least {
            let member = member.clone();
            result.get_mut(&member).expect("member exists").insert(tp);
        }
    }
    // Move partitions from the most loaded members to eligible ones with at least two fewer, one at a time.
    // Each move lowers the sum of squared counts, so this ends.
    while let Some((from, to, tp)) = find_move(&result, &eligible) {
        result.get_mut(&from).expect("member exists").remove(&tp);
        result.get_mut(&to).expect("member exists").insert(tp);
    }
    result
}

/// The next balancing move: a partition of the most loaded possible owner, to the least loaded eligible member
/// with at least two fewer partitions.
fn find_move(
    result: &BTreeMap<String, BTreeSet<TopicPartition>>,
    eligible: &impl Fn(&str, &TopicPartition) -> bool,
) -> Option<(String, String, TopicPartition)> {
    let mut owners: Vec<(&String, &BTreeSet<TopicPartition>)> = result.iter().collect();
    owners.sort_by_key(|(m, had)| (std::cmp::Reverse(had.len()), (*m).clone()));
    for (from, had) in owners {
        // The highest partitions move first, so the lower ones stay where they are.
        for tp in had.iter().rev() {
            let target = result
                .iter()
                .filter(|(m, theirs)| *m != from && eligible(m, tp) && theirs.len() + 2 <= had.len())
                .min_by_key(|(m, theirs)| (theirs.len(), (*m).clone()));
            if let Some((to, _)) = target {
                return Some((from.clone(), to.clone(), tp.clone()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        members.iter().map(|(m, topics)| (m.to_string(), topics.iter().map(|t| t.to_string()).collect())).collect()
    }

    fn counts(topics: &[(&str, u32)]) -> BTreeMap<String, u32> {
        topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn sizes(a: &BTreeMap<String, BTreeSet<TopicPartition>>) -> Vec<usize> {
        a.values().map(BTreeSet::len).collect()
    }

    fn assert_exactly_once(a: &BTreeMap<String, BTreeSet<TopicPartition>>, total: usize) {
        let all: Vec<&TopicPartition> = a.values().flatten().collect();
        let distinct: BTreeSet<&TopicPartition> = all.iter().copied().collect();
        assert_eq!(all.len(), distinct.len(), "a partition assigned twice: {a:?}");
        assert_eq!(all.len(), total, "every partition assigned: {a:?}");
    }

    #[test]
    fn three_members_over_six_partitions_get_two_each() {
        let a = assign(&subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]), &BTreeMap::new(), &counts(&[("t", 6)]));
        assert_eq!(sizes(&a), vec![2, 2, 2]);
        assert_exactly_once(&a, 6);
    }

    #[test]
    fn uneven_counts_differ_by_at_most_one() {
        for members in 1..=7 {
            for partitions in 0..=20 {
                let names: Vec<String> = (0..members).map(|i| format!("m{i}")).collect();
                let s: BTreeMap<String, BTreeSet<String>> =
                    names.iter().map(|m| (m.clone(), BTreeSet::from(["t".to_string()]))).collect();
                let a = assign(&s, &BTreeMap::new(), &counts(&[("t", partitions)]));
                assert_exactly_once(&a, partitions as usize);
                let (min, max) = (sizes(&a).into_iter().min().unwrap(), sizes(&a).into_iter().max().unwrap());
                assert!(max - min <= 1, "{members} members, {partitions} partitions: {a:?}");
            }
        }
    }

    #[test]
    fn a_joining_member_takes_only_what_balance_needs() {
        let s2 = subs(&[("a", &["t"]), ("b", &["t"])]);
        let before = assign(&s2, &BTreeMap::new(), &counts(&[("t", 6)]));
        let s3 = subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let after = assign(&s3, &before, &counts(&[("t", 6)]));
        assert_eq!(sizes(&after), vec![2, 2, 2]);
        for member in ["a", "b"] {
            assert!(after[member].is_subset(&before[member]), "{member} keeps two of its three: {before:?} {after:?}");
        }
    }

    #[test]
    fn a_leaving_members_partitions_go_to_the_others_who_keep_theirs() {
        let s3 = subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let before = assign(&s3, &BTreeMap::new(), &counts(&[("t", 6)]));
        let s2 = subs(&[("a", &["t"]), ("c", &["t"])]);
        let after = assign(&s2, &before, &counts(&[("t", 6)]));
        assert_eq!(sizes(&after), vec![3, 3]);
        assert!(before["a"].is_subset(&after["a"]) && before["c"].is_subset(&after["c"]));
    }

    #[test]
    fn members_get_only_topics_they_subscribe_to() {
        let s = subs(&[("a", &["x"]), ("b", &["x", "y"])]);
        let a = assign(&s, &BTreeMap::new(), &counts(&[("x", 2), ("y", 3)]));
        assert_exactly_once(&a, 5);
        assert!(a["a"].iter().all(|tp| tp.topic == "x"));
        assert_eq!(a["b"].iter().filter(|tp| tp.topic == "y").count(), 3);
    }

    #[test]
    fn unknown_topics_and_an_unsubscribed_previous_owner_are_handled() {
        let previous = BTreeMap::from([("a".to_string(), BTreeSet::from([TopicPartition::new("x", 0)]))]);
        let s = subs(&[("a", &["y"]), ("b", &["x", "missing"])]);
        let a = assign(&s, &previous, &counts(&[("x", 1), ("y", 1)]));
        assert_eq!(a["b"], BTreeSet::from([TopicPartition::new("x", 0)]));
        assert_eq!(a["a"], BTreeSet::from([TopicPartition::new("y", 0)]));
    }
}
