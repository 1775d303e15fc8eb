//! `rill produce`: one record per stdin line, batched and pipelined by the library's producer.

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures::{FutureExt, StreamExt, stream::FuturesUnordered};
use rill_client::{Acks, ClientConfig, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
use tokio::sync::mpsc;

use super::{AcksArg, OnOff, ProduceArgs};

/// Lines per message from the stdin thread: large enough that channel overhead is negligible per line.
const LINES_PER_CHUNK: usize = 1024;
/// Chunks buffered between the stdin thread and the producer; bounded so a fast stdin cannot outrun memory.
const CHUNKS_BUFFERED_MAX: usize = 16;

pub async fn run(client: ClientConfig, args: ProduceArgs) -> anyhow::Result<()> {
    let producer = Producer::connect(client, producer_config(&args)).await?;
    let partitions = producer.partition_count(&args.topic).await?;
    if let Some(partition) = args.partition
        && partition >= partitions
    {
        bail!("topic '{}' has no partition {partition} (it has {partitions})", args.topic);
    }
    let mut lines = spawn_stdin_reader();
    let mut written = Written::default();
    let mut pending = FuturesUnordered::new();
    let mut line_number = 0u64;
    while let Some(chunk) = lines.recv().await {
        for line in chunk.context("cannot read stdin")? {
            line_number += 1;
            let record = record_for_line(&args, line, line_number)?;
            let delivery = producer.send(record).await?;
            let number = line_number;
            pending.push(async move { (number, delivery.await) });
            // Account for what is already acknowledged, so memory stays bounded by what is in flight.
            while let Some(Some((number, outcome))) = pending.next().now_or_never() {
                written.add(number, outcome)?;
            }
        }
    }
    producer.flush().await;
    while let Some((number, outcome)) = pending.next().await {
        written.add(number, outcome)?;
    }
    producer.close().await;
    eprintln!("{}", written.summary(&args.topic, args.acks.into()));
    Ok(())
}

fn producer_config(args: &ProduceArgs) -> ProducerConfig {
    let defaults = ProducerConfig::default();
    let batch_bytes_max = args.batch_bytes as usize;
    ProducerConfig {
        linger_ms: args.linger_ms,
        batch_bytes_max,
        acks: args.acks.into(),
        compression: args.compression,
        idempotence: match args.idempotence {
            Some(choice) => choice == OnOff::On,
            None => args.acks == AcksArg::All,
        },
        // Keep the other limits consistent with a batch size above their defaults.
        buffer_bytes_max: defaults.buffer_bytes_max.max(4 * batch_bytes_max),
        request_bytes_max: defaults.request_bytes_max.max(batch_bytes_max),
        ..defaults
    }
}

/// Reads stdin on a plain thread (blocking reads do not belong on the runtime) and hands over chunks of
/// lines without their line terminator.
fn spawn_stdin_reader() -> mpsc::Receiver<std::io::Result<Vec<Vec<u8>>>> {
    let (sender, receiver) = mpsc::channel(CHUNKS_BUFFERED_MAX);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut chunk = Vec::with_capacity(LINES_PER_CHUNK);
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    strip_line_end(&mut line);
                    chunk.push(line);
                    if chunk.len() == LINES_PER_CHUNK && sender.blocking_send(Ok(std::mem::take(&mut chunk))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = sender.blocking_send(Err(e));
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = sender.blocking_send(Ok(chunk));
        }
    });
    receiver
}

fn strip_line_end(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

fn record_for_line(args: &ProduceArgs, line: Vec<u8>, line_number: u64) -> anyhow::Result<ProducerRecord> {
    let line = Bytes::from(line);
    let mut record = match &args.key_separator {
        Some(separator) => {
            let at = find(&line, separator.as_bytes())
                .ok_or_else(|| anyhow!("line {line_number} has no key separator '{separator}'"))?;
            ProducerRecord::new(args.topic.clone(), line.slice(at + separator.len()..)).key(line.slice(..at))
        }
        None => ProducerRecord::new(args.topic.clone(), line),
    };
    if let Some(key) = &args.key {
        record = record.key(key.clone());
    }
    for (key, value) in &args.headers {
        record = record.header(key.clone(), value.clone().into_bytes());
    }
    if let Some(partition) = args.partition {
        record = record.partition(partition);
    }
    Ok(record)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Offsets written per partition.
#[derive(Default)]
struct Written {
    records: u64,
    /// First and last offset per partition.
    partitions: BTreeMap<u32, (u64, u64)>,
}

impl Written {
    fn add(&mut self, line_number: u64, outcome: rill_client::Result<RecordMetadata>) -> anyhow::Result<()> {
        let metadata = outcome.map_err(|e| anyhow!("record from line {line_number} was not written: {e}"))?;
        self.records += 1;
        let range = self.partitions.entry(metadata.partition).or_insert((metadata.offset, metadata.offset));
        range.0 = range.0.min(metadata.offset);
        range.1 = range.1.max(metadata.offset);
        Ok(())
    }

    /// `wrote N records to T: partition P offsets FIRST..END, ...` with END exclusive.
    fn summary(&self, topic: &str, acks: Acks) -> String {
        let mut text = format!("wrote {} records to {topic}", self.records);
        if acks == Acks::None {
            text.push_str(" (acks=none: offsets not confirmed)");
        } else if !self.partitions.is_empty() {
            let ranges: Vec<String> = self
                .partitions
                .iter()
                .map(|(partition, (first, last))| format!("partition {partition} offsets {first}..{}", last + 1))
                .collect();
            text.push_str(": ");
            text.push_str(&ranges.join(", "));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(key_separator: Option<&str>) -> ProduceArgs {
        ProduceArgs {
            topic: "demo".into(),
            key: None,
            key_separator: key_separator.map(str::to_owned),
            headers: Vec::new(),
            partition: None,
            acks: AcksArg::All,
            idempotence: None,
            linger_ms: 5,
            batch_bytes: 1 << 20,
            compression: rill_client::Compression::None,
        }
    }

    #[test]
    fn every_record_carries_the_headers_given() {
        let with = ProduceArgs { headers: vec![("h".into(), "v".into()), ("h".into(), String::new())], ..args(None) };
        let record = record_for_line(&with, b"x".to_vec(), 1).unwrap();
        let headers: Vec<(&str, Option<&[u8]>)> =
            record.headers.iter().map(|h| (h.key.as_str(), h.value.as_deref())).collect();
        assert_eq!(headers, [("h", Some(&b"v"[..])), ("h", Some(&b""[..]))]);
    }

    #[test]
    fn the_compression_flag_reaches_the_producer() {
        let zstd = ProduceArgs { compression: rill_client::Compression::Zstd, ..args(None) };
        assert_eq!(producer_config(&zstd).compression, rill_client::Compression::Zstd);
        assert_eq!(producer_config(&args(None)).compression, rill_client::Compression::None);
    }

    #[test]
    fn idempotence_follows_acks_unless_chosen() {
        assert!(producer_config(&args(None)).idempotence);
        let leader = ProduceArgs { acks: AcksArg::Leader, ..args(None) };
        assert!(!producer_config(&leader).idempotence);
        let off = ProduceArgs { idempotence: Some(OnOff::Off), ..args(None) };
        assert!(!producer_config(&off).idempotence);
        let forced = ProduceArgs { acks: AcksArg::Leader, idempotence: Some(OnOff::On), ..args(None) };
        assert!(producer_config(&forced).validate().is_err(), "idempotence with leader acks is refused");
    }

    #[test]
    fn line_ends_are_stripped() {
        for (input, expected) in [(&b"a\n"[..], &b"a"[..]), (b"a\r\n", b"a"), (b"a", b"a"), (b"\n", b"")] {
            let mut line = input.to_vec();
            strip_line_end(&mut line);
            assert_eq!(line, expected);
        }
    }

    #[test]
    fn key_separator_splits_at_the_first_occurrence() {
        let record = record_for_line(&args(Some("::")), b"user::a::b".to_vec(), 1).unwrap();
        assert_eq!(record.key.as_deref(), Some(&b"user"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"a::b"[..]));
        let error = record_for_line(&args(Some(":")), b"nokey".to_vec(), 7).unwrap_err();
        assert_eq!(error.to_string(), "line 7 has no key separator ':'");
    }

    #[test]
    fn summary_names_each_partition_range() {
        let mut written = Written::default();
        for (partition, offset) in [(0, 5), (0, 6), (2, 0)] {
            let metadata = RecordMetadata { topic: "demo".into(), partition, offset, timestamp_ms: 0 };
            written.add(1, Ok(metadata)).unwrap();
        }
        assert_eq!(
            written.summary("demo", Acks::All),
            "wrote 3 records to demo: partition 0 offsets 5..7, partition 2 offsets 0..1"
        );
    }
}
