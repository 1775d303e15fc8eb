//! Raw gRPC calls to one chosen node, bypassing the client library's routing, metadata cache and retries.
//! Fault tests need them to ask a specific node what it believes (is it still the leader? what is its high
//! watermark?) and to send a write to a node the client would no longer route to.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};
use rill_proto::v1;
use rill_proto::v1::rill_client::RillClient;
use tonic::transport::{Channel, Endpoint};

/// Connecting to one node; short, because a dead or isolated node should be noticed quickly.
pub const CONNECT_MS_MAX: u64 = 1_000;
/// Deadline of one call, on top of any server-side wait the request asks for.
pub const CALL_MS_MAX: u64 = 5_000;
/// Largest response accepted; fetch responses are asked to stay well below it.
const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Bytes one fetch asks for.
const FETCH_BYTES_MAX: u32 = 1024 * 1024;

/// A client for the node at `address` (`host:port`), connected now.
///
/// # Errors
///
/// If the address is malformed or the node does not accept the connection in time.
pub async fn connect(address: &str) -> anyhow::Result<RillClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .with_context(|| format!("bad address '{address}'"))?
        .connect_timeout(Duration::from_millis(CONNECT_MS_MAX))
        .timeout(Duration::from_millis(CALL_MS_MAX))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connect to {address}"))?;
    Ok(RillClient::new(channel).max_decoding_message_size(RESPONSE_BYTES_MAX))
}

/// Runs `future` to completion on a fresh runtime on its own thread, so synchronous harness code can make
/// async calls whether or not the calling thread is already inside a runtime.
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(future)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The node's view of the cluster metadata for `topics` (every topic when empty).
///
/// # Errors
///
/// Transport failures.
pub async fn metadata(address: &str, topics: &[&str]) -> anyhow::Result<v1::MetadataResponse> {
    let request = v1::MetadataRequest { topics: topics.iter().map(|t| (*t).to_owned()).collect() };
    let response = connect(address).await?.metadata(request).await.with_context(|| format!("Metadata at {address}"))?;
    Ok(response.into_inner())
}

/// The node's view of the brokers and the controller quorum.
///
/// # Errors
///
/// Transport failures.
pub async fn describe_cluster(address: &str) -> anyhow::Result<v1::DescribeClusterResponse> {
    let response = connect(address)
        .await?
        .describe_cluster(v1::DescribeClusterRequest {})
        .await
        .with_context(|| format!("DescribeCluster at {address}"))?;
    Ok(response.into_inner())
}

/// The node's description of one partition: leader, epoch and ISR from its metadata, offsets from its own
/// replica.
///
/// # Errors
///
/// Transport failures, an error answer, or no such partition.
pub async fn describe_partition(
    address: &str,
    topic: &str,
    partition: u32,
) -> anyhow::Result<v1::PartitionDescription> {
    let request = v1::DescribeTopicRequest { name: topic.to_owned(), local_only: true };
    let response = connect(address)
        .await?
        .describe_topic(request)
        .await
        .with_context(|| format!("DescribeTopic at {address}"))?
        .into_inner();
    if let Some(error) = response.error.filter(|e| e.code != v1::ErrorCode::None as i32) {
        bail!("DescribeTopic {topic} at {address}: {error:?}");
    }
    response
        .partitions
        .into_iter()
        .find(|p| p.partition == partition)
        .with_context(|| format!("{address} describes no partition {topic}-{partition}"))
}

/// The partition's metadata as the node at `address` knows it.
///
/// # Errors
///
/// Transport failures or a node that does not know the partition.
pub async fn partition_metadata(address: &str, topic: &str, partition: u32) -> anyhow::Result<v1::PartitionMetadata> {
    let response = metadata(address, &[topic]).await?;
    response
        .topics
        .into_iter()
        .find(|t| t.name == topic)
        .and_then(|t| t.partitions.into_iter().find(|p| p.partition == partition))
        .with_context(|| format!("{address} has no metadata for {topic}-{partition}"))
}

/// Sends one produce request holding one batch with `values` straight to the node at `address`, whether or
/// not it leads the partition, and returns its answer for the partition.
///
/// # Errors
///
/// Transport failures (an application error is inside the returned result).
pub async fn produce_values(
    address: &str,
    topic: &str,
    partition: u32,
    acks: v1::Acks,
    timeout_ms: u32,
    values: &[String],
) -> anyhow::Result<v1::PartitionProduceResult> {
    let mut builder = rill_proto::batch::BatchBuilder::new();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    for value in values {
        builder.push(now_ms, None, Some(value.as_bytes()), &[]);
    }
    let request = v1::ProduceRequest {
        acks: acks as i32,
        timeout_ms,
        partitions: vec![v1::PartitionRecords { topic: topic.to_owned(), partition, records: builder.finish() }],
    };
    let mut grpc = tonic::Request::new(request);
    grpc.set_timeout(Duration::from_millis(CALL_MS_MAX + u64::from(timeout_ms)));
    let response = connect(address).await?.produce(grpc).await.with_context(|| format!("Produce at {address}"))?;
    response.into_inner().results.into_iter().next().with_context(|| format!("{address} answered no produce result"))
}

/// One fetch of `topic`-`partition` from `offset` at the node at `address`, without waiting for data.
///
/// # Errors
///
/// Transport failures (an application error is inside the returned result).
pub async fn fetch(
    address: &str,
    topic: &str,
    partition: u32,
    offset: u64,
) -> anyhow::Result<v1::PartitionFetchResult> {
    let request = v1::FetchRequest {
        partitions: vec![v1::PartitionFetch { topic: topic.to_owned(), partition, offset, max_bytes: FETCH_BYTES_MAX }],
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: FETCH_BYTES_MAX,
    };
    let response = connect(address).await?.fetch(request).await.with_context(|| format!("Fetch at {address}"))?;
    response.into_inner().results.into_iter().next().with_context(|| format!("{address} answered no fetch result"))
}

/// The code of an optional application error, `NONE` when absent.
pub fn error_code(error: Option<&v1::Error>) -> v1::ErrorCode {
    error.map_or(v1::ErrorCode::None, |e| v1::ErrorCode::try_from(e.code).unwrap_or(v1::ErrorCode::Unknown))
}
