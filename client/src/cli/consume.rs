//! `rill consume`: prints records one per line, from the end (default), the beginning or an offset, and
//! stops at the end seen at start unless following.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::time::Duration;

use rill_client::{ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, TopicPartition};
use serde::Serialize;

use super::output::ignore_closed_pipe;
use super::{ConsumeArgs, RecordFormat};

/// How long one poll waits before the loop checks its stop conditions again.
const POLL_MS: u64 = 500;
/// Stdout buffer: large writes keep 100,000 short lines fast.
const STDOUT_BUFFER_BYTES: usize = 256 * 1024;

pub async fn run(client: ClientConfig, args: ConsumeArgs) -> anyhow::Result<()> {
    if let Some(group) = &args.group {
        return consume_in_group(client, &args, group).await;
    }
    let mut consumer = Consumer::connect(client, ConsumerConfig::default()).await?;
    let partitions = match args.partition {
        Some(partition) => vec![TopicPartition::new(args.topic.clone(), partition)],
        None => consumer.partitions_of(&args.topic).await?,
    };
    consumer.assign(partitions.clone()).await?;
    if args.from_beginning {
        consumer.seek_to_beginning(&partitions).await?;
    } else if let Some(offset) = args.offset {
        for tp in &partitions {
            consumer.seek(tp, offset)?;
        }
    } else {
        consumer.seek_to_end(&partitions).await?;
    }
    // Without --follow, each partition is read up to the high watermark it had now.
    let ends = if args.follow { None } else { Some(consumer.end_offsets(&partitions).await?) };
    let mut stdout = BufWriter::with_capacity(STDOUT_BUFFER_BYTES, std::io::stdout().lock());
    ignore_closed_pipe(copy_records(&mut consumer, &args, ends, &mut stdout).await?)
}

/// `--group`: reads as a member of `group` until `--max-messages` records are printed or a stop signal,
/// flushing every batch to stdout before its offsets can be committed (at-least-once), then commits what
/// was printed and leaves the group.
async fn consume_in_group(client: ClientConfig, args: &ConsumeArgs, group: &str) -> anyhow::Result<()> {
    let mut config = ConsumerConfig {
        group_id: Some(group.to_owned()),
        client_id: "rill-cli".to_owned(),
        offset_reset: if args.from_beginning { OffsetReset::Earliest } else { OffsetReset::Latest },
        ..ConsumerConfig::default()
    };
    if let Some(session_timeout_ms) = args.session_timeout_ms {
        config.session_timeout_ms = session_timeout_ms;
        config.heartbeat_interval_ms = config.heartbeat_interval_ms.min(session_timeout_ms / 4);
    }
    if let Some(interval_ms) = args.commit_interval_ms {
        config.auto_commit_interval_ms = interval_ms;
    }
    let mut consumer = Consumer::connect(client, config).await?;
    consumer.subscribe(&[args.topic.as_str()]).await?;
    let mut stdout = BufWriter::with_capacity(STDOUT_BUFFER_BYTES, std::io::stdout().lock());
    let mut remaining = args.max_messages.unwrap_or(u64::MAX);
    let mut stop = std::pin::pin!(stop_signal());
    let mut line = Vec::new();
    let mut output = Ok(());
    while remaining > 0 && output.is_ok() {
        let records = tokio::select! {
            records = consumer.poll(Duration::from_millis(POLL_MS)) => records?,
            _ = &mut stop => break,
        };
        let mut unprinted: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        for record in records {
            if remaining == 0 || output.is_err() {
                let tp = TopicPartition::new(record.topic.to_string(), record.partition);
                unprinted.entry(tp).or_insert(record.offset);
                continue;
            }
            line.clear();
            format_record(&record, args.format, &mut line);
            output = stdout.write_all(&line);
            remaining -= 1;
        }
        output = output.and_then(|()| stdout.flush());
        // Records handed out but not printed are read again by whoever reads the partition next.
        for (tp, offset) in unprinted {
            consumer.seek(&tp, offset)?;
        }
    }
    consumer.close().await?;
    ignore_closed_pipe(output)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated => {}
    }
}

/// Polls and prints until a stop condition. The outer `Result` carries client errors; the inner one stdout
/// errors, so the caller can tell a closed pipe (a normal end) from a failure.
async fn copy_records(
    consumer: &mut Consumer,
    args: &ConsumeArgs,
    mut ends: Option<BTreeMap<TopicPartition, u64>>,
    out: &mut impl Write,
) -> anyhow::Result<std::io::Result<()>> {
    let mut remaining = args.max_messages.unwrap_or(u64::MAX);
    let mut line = Vec::new();
    loop {
        if let Some(ends) = &mut ends {
            let done: Vec<TopicPartition> = ends
                .iter()
                .filter(|(tp, end)| consumer.position(tp).is_some_and(|position| position >= **end))
                .map(|(tp, _)| tp.clone())
                .collect();
            if !done.is_empty() {
                for tp in &done {
                    ends.remove(tp);
                }
                // Finished partitions leave the assignment so no fetch waits on them.
                consumer.assign(ends.keys().cloned().collect()).await?;
            }
            if ends.is_empty() {
                break;
            }
        }
        if remaining == 0 {
            break;
        }
        let records = consumer.poll(Duration::from_millis(POLL_MS)).await?;
        for record in records {
            let end = ends
                .as_ref()
                .and_then(|ends| ends.get(&TopicPartition::new(record.topic.to_string(), record.partition)));
            if end.is_some_and(|end| record.offset >= *end) {
                continue;
            }
            line.clear();
            format_record(&record, args.format, &mut line);
            if let Err(e) = out.write_all(&line) {
                return Ok(Err(e));
            }
            remaining -= 1;
            if remaining == 0 {
                break;
            }
        }
        if let Err(e) = out.flush() {
            return Ok(Err(e));
        }
    }
    Ok(out.flush())
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    partition: u32,
    offset: u64,
    timestamp: i64,
    key: Option<Cow<'a, str>>,
    value: Option<Cow<'a, str>>,
    /// `[key, value]` pairs in record order (a key may repeat; a value may be null).
    headers: Vec<(&'a str, Option<Cow<'a, str>>)>,
}

/// Appends one output line for `record`: its raw value, or a JSON object with lossily decoded key and value.
fn format_record(record: &ConsumerRecord, format: RecordFormat, line: &mut Vec<u8>) {
    match format {
        RecordFormat::Value => {
            if let Some(value) = &record.value {
                line.extend_from_slice(value);
            }
        }
        RecordFormat::Json => {
            let json = JsonRecord {
                partition: record.partition,
                offset: record.offset,
                timestamp: record.timestamp_ms,
                key: record.key.as_deref().map(String::from_utf8_lossy),
                value: record.value.as_deref().map(String::from_utf8_lossy),
                headers: record
                    .headers
                    .iter()
                    .map(|h| (h.key.as_str(), h.value.as_deref().map(String::from_utf8_lossy)))
                    .collect(),
            };
            serde_json::to_writer(&mut *line, &json).expect("serialising to a Vec cannot fail");
        }
    }
    line.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(key: Option<&'static [u8]>, value: Option<&'static [u8]>) -> ConsumerRecord {
        ConsumerRecord {
            topic: "demo".into(),
            partition: 1,
            offset: 42,
            timestamp_ms: 1_700_000_000_000,
            key: key.map(Bytes::from_static),
            value: value.map(Bytes::from_static),
            headers: Vec::new(),
        }
    }

    #[test]
    fn value_format_prints_the_raw_value() {
        let mut line = Vec::new();
        format_record(&record(Some(b"k"), Some(b"hello")), RecordFormat::Value, &mut line);
        assert_eq!(line, b"hello\n");
    }

    #[test]
    fn json_format_has_the_documented_fields_in_order() {
        let mut line = Vec::new();
        format_record(&record(None, Some(b"caf\xc3\xa9 \xff")), RecordFormat::Json, &mut line);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"partition\":1,\"offset\":42,\"timestamp\":1700000000000,\"key\":null,\"value\":\"caf\u{e9} \u{fffd}\",\"headers\":[]}\n"
        );
    }

    #[test]
    fn json_format_lists_headers_as_pairs() {
        let mut with_headers = record(Some(b"k"), Some(b"v"));
        with_headers.headers = vec![
            rill_client::Header { key: "a".into(), value: Some(Bytes::from_static(b"1")) },
            rill_client::Header { key: "b".into(), value: None },
        ];
        let mut line = Vec::new();
        format_record(&with_headers, RecordFormat::Json, &mut line);
        assert!(String::from_utf8(line).unwrap().ends_with(",\"headers\":[[\"a\",\"1\"],[\"b\",null]]}\n"));
    }
}
