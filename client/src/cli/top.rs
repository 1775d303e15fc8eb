//! `rill top`: live produce and fetch rates per topic and per broker, request latency, leaderships, disk use
//! and consumer-group lag, refreshed every interval like `top`. Rates are the difference of two readings of
//! each broker's counters (`Admin::broker_stats`) over the broker's own clock.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use rill_client::{Admin, BrokerStats, ClientConfig};

use super::output::{print, table};
use super::watch::Repeat;

/// Rates between two readings of one broker.
#[derive(Debug, Default, Clone, PartialEq)]
struct Rates {
    produced_bytes: f64,
    produced_records: f64,
    fetched_bytes: f64,
}

/// Per-second rates per topic of one broker between `before` and `after`, and the mean latency of each
/// operation over the requests answered in between.
fn rates(before: &BrokerStats, after: &BrokerStats) -> (BTreeMap<String, Rates>, BTreeMap<String, Option<f64>>) {
    let seconds = ((after.now_ms - before.now_ms) as f64 / 1000.0).max(0.001);
    let per_second = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
    let mut topics = BTreeMap::new();
    for t in &after.topics {
        let then = before.topics.iter().find(|b| b.topic == t.topic);
        let rate = Rates {
            produced_bytes: per_second(t.produced_bytes, then.map_or(0, |b| b.produced_bytes)),
            produced_records: per_second(t.produced_records, then.map_or(0, |b| b.produced_records)),
            fetched_bytes: per_second(t.fetched_bytes, then.map_or(0, |b| b.fetched_bytes)),
        };
        topics.insert(t.topic.clone(), rate);
    }
    let mut latencies = BTreeMap::new();
    for (api, count, sum) in &after.latencies {
        let (count_then, sum_then) =
            before.latencies.iter().find(|(a, ..)| a == api).map_or((0, 0.0), |(_, c, s)| (*c, *s));
        let answered = count.saturating_sub(count_then);
        let mean_ms = (answered > 0).then(|| (sum - sum_then) / answered as f64 * 1000.0);
        latencies.insert(api.clone(), mean_ms);
    }
    (topics, latencies)
}

fn mb(bytes_per_second: f64) -> String {
    format!("{:.2}", bytes_per_second / 1e6)
}

fn ms(mean: Option<f64>) -> String {
    mean.map_or_else(|| "-".to_string(), |m| format!("{m:.1}"))
}

/// One screen: rates between the readings `before` and `after`, and each group's lag now.
async fn screen(
    admin: &Admin,
    before: &BTreeMap<u32, BrokerStats>,
    after: &BTreeMap<u32, BrokerStats>,
    unreachable: &[String],
) -> String {
    let mut by_topic: BTreeMap<String, Rates> = BTreeMap::new();
    let mut broker_rows = Vec::new();
    for (id, now) in after {
        let Some(then) = before.get(id) else { continue };
        let (topics, latencies) = rates(then, now);
        let mut total = Rates::default();
        for (topic, r) in topics {
            let sum = by_topic.entry(topic).or_default();
            sum.produced_bytes += r.produced_bytes;
            sum.produced_records += r.produced_records;
            sum.fetched_bytes += r.fetched_bytes;
            total.produced_bytes += r.produced_bytes;
            total.fetched_bytes += r.fetched_bytes;
        }
        broker_rows.push(vec![
            id.to_string(),
            mb(total.produced_bytes),
            mb(total.fetched_bytes),
            ms(latencies.get("produce").copied().flatten()),
            ms(latencies.get("fetch").copied().flatten()),
            now.leaderships.to_string(),
            format!("{:.1}", now.disk_bytes as f64 / 1e6),
        ]);
    }
    let topic_rows: Vec<Vec<String>> = by_topic
        .iter()
        .filter(|(topic, _)| !topic.starts_with("__"))
        .map(|(topic, r)| {
            vec![topic.clone(), mb(r.produced_bytes), format!("{:.0}", r.produced_records), mb(r.fetched_bytes)]
        })
        .collect();
    let mut group_rows = Vec::new();
    if let Ok(groups) = admin.list_groups().await {
        for g in groups {
            let lag = match admin.describe_group(&g.group).await {
                Ok(d) => d.offsets.iter().filter_map(|o| o.lag).sum::<u64>().to_string(),
                Err(_) => "-".to_string(),
            };
            group_rows.push(vec![g.group, g.state, g.members.to_string(), lag]);
        }
    }
    let mut text = table(&["TOPIC", "PRODUCE_MB/S", "PRODUCE_REC/S", "FETCH_MB/S"], &topic_rows);
    text.push('\n');
    text.push_str(&table(
        &["BROKER", "PRODUCE_MB/S", "FETCH_MB/S", "PRODUCE_MS", "FETCH_MS", "LEADERSHIPS", "DISK_MB"],
        &broker_rows,
    ));
    text.push('\n');
    text.push_str(&table(&["GROUP", "STATE", "MEMBERS", "LAG"], &group_rows));
    for problem in unreachable {
        text.push_str(&format!("{problem}\n"));
    }
    text
}

/// The counters of every broker that answered, and a line for each that did not.
async fn read_all(admin: &Admin) -> anyhow::Result<(BTreeMap<u32, BrokerStats>, Vec<String>)> {
    let mut stats = BTreeMap::new();
    let mut unreachable = Vec::new();
    for (id, answer) in admin.broker_stats().await? {
        match answer {
            Ok(s) => {
                stats.insert(id, s);
            }
            Err(e) => unreachable.push(format!("broker {id}: no answer: {e}")),
        }
    }
    Ok((stats, unreachable))
}

pub async fn run(client: ClientConfig, repeat: Repeat) -> anyhow::Result<()> {
    let admin = Admin::connect(client).await?;
    let interval = Duration::from_millis(repeat.interval_ms.max(100));
    let (mut before, _) = read_all(&admin).await?;
    let terminal = std::io::stdout().is_terminal();
    let mut shown = 0;
    loop {
        tokio::time::sleep(interval).await;
        let (after, unreachable) = read_all(&admin).await?;
        let text = screen(&admin, &before, &after, &unreachable).await;
        let heading = format!("rill top: rates over the last {:.1} s\n", interval.as_secs_f64());
        print(&repeat.frame(terminal, &format!("{heading}{text}")))?;
        before = after;
        shown += 1;
        if repeat.iterations.is_some_and(|n| shown >= n) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_client::TopicTraffic;

    fn stats(now_ms: i64, produced: u64, records: u64, fetched: u64, latency: (u64, f64)) -> BrokerStats {
        BrokerStats {
            broker: 1,
            now_ms,
            topics: vec![TopicTraffic {
                topic: "t".into(),
                produced_bytes: produced,
                produced_records: records,
                fetched_bytes: fetched,
            }],
            latencies: vec![("produce".into(), latency.0, latency.1)],
            disk_bytes: 0,
            leaderships: 1,
        }
    }

    #[test]
    fn rates_are_differences_over_the_brokers_clock() {
        let before = stats(1_000, 1_000, 10, 0, (4, 0.4));
        let after = stats(3_000, 5_000_000, 20_010, 2_000_000, (14, 0.5));
        let (topics, latencies) = rates(&before, &after);
        let t = &topics["t"];
        assert!((t.produced_bytes - 2_499_500.0).abs() < 1e-6, "{t:?}");
        assert!((t.produced_records - 10_000.0).abs() < 1e-6);
        assert!((t.fetched_bytes - 1_000_000.0).abs() < 1e-6);
        // 10 requests took 0.1 s together: 10 ms each.
        assert!((latencies["produce"].unwrap() - 10.0).abs() < 1e-6);
    }

    #[test]
    fn no_requests_means_no_latency_and_a_restarted_broker_never_goes_negative() {
        let before = stats(1_000, 9_000, 90, 9_000, (5, 0.5));
        let after = stats(2_000, 100, 1, 100, (5, 0.5));
        let (topics, latencies) = rates(&before, &after);
        assert_eq!(topics["t"], Rates::default());
        assert_eq!(latencies["produce"], None);
    }
}
