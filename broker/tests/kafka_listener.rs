//! The Kafka listener's transport end to end: a real broker in this process, raw TCP connections, and
//! requests and responses encoded and decoded with the `kafka-protocol` crate (the client side of the codec
//! the broker uses). Covers ApiVersions (v0, v3, and the KIP-511 downgrade), answers in arrival order, and
//! malformed input, after which the broker must still serve a fresh connection.

use std::path::Path;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rill_broker::{Args, BrokerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// How long a test waits for the broker to answer or close before failing (a guard, not a synchronisation).
const ANSWER_WAIT_MS: u64 = 10_000;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_REQUEST: i16 = 42;

struct TestBroker {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    kafka: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TestBroker {
    async fn start(dir: &Path) -> TestBroker {
        let listen = format!("127.0.0.1:{}", free_port());
        let kafka = loop {
            let kafka = format!("127.0.0.1:{}", free_port());
            if kafka != listen {
                break kafka;
            }
        };
        let argv = [
            "rill-broker",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            &listen,
            "--kafka-listen",
            &kafka,
            "--http-listen",
            "none",
        ];
        let config = BrokerConfig::resolve(<Args as clap::Parser>::parse_from(argv)).unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(rill_broker::run(config, async {
            let _ = stopped.await;
        }));
        let broker = TestBroker { stop: Some(stop), task, kafka };
        // The listener is bound early in `run`; wait until it accepts.
        for _ in 0..400 {
            if TcpStream::connect(&broker.kafka).await.is_ok() {
                return broker;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the Kafka listener on {} never accepted", broker.kafka);
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(&self.kafka).await.unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A request frame: size, header (at the version the API and version imply), body.
fn request_frame(api_key: ApiKey, version: i16, correlation_id: i32, body: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("kafka-listener-test")));
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header.encode(&mut frame, api_key.request_header_version(version)).unwrap();
    body(&mut frame);
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    frame.to_vec()
}

fn api_versions_frame(version: i16, correlation_id: i32) -> Vec<u8> {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("rill-tests"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"));
    let encode_version = version.clamp(0, 3);
    request_frame(ApiKey::ApiVersions, version, correlation_id, |b| request.encode(b, encode_version).unwrap())
}

/// The next response frame, or `None` once the broker closed the connection.
async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let read = async {
        let size = match stream.read_i32().await {
            Ok(size) => size,
            Err(_) => return None,
        };
        let mut body = vec![0; size as usize];
        stream.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    };
    tokio::time::timeout(Duration::from_millis(ANSWER_WAIT_MS), read)
        .await
        .expect("the broker neither answered nor closed")
}

/// Decodes an ApiVersions response frame (always response header v0) read at `version`.
fn decode_api_versions(mut frame: Bytes, version: i16) -> (i32, ApiVersionsResponse) {
    let header = ResponseHeader::decode(&mut frame, ApiKey::ApiVersions.response_header_version(version)).unwrap();
    let response = ApiVersionsResponse::decode(&mut frame, version).unwrap();
    assert!(!frame.has_remaining(), "{} bytes after the response", frame.remaining());
    (header.correlation_id, response)
}

fn served_versions(response: &ApiVersionsResponse) -> Vec<(i16, i16, i16)> {
    response.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect()
}

fn expected_versions() -> Vec<(i16, i16, i16)> {
    rill_broker::kafka::SUPPORTED_APIS.iter().map(|a| (a.api_key as i16, a.versions.min, a.versions.max)).collect()
}

/// Sends an ApiVersions v3 on a fresh connection and checks the answer: the broker is still serving.
async fn assert_serving(broker: &TestBroker) {
    let mut stream = broker.connect().await;
    stream.write_all(&api_versions_frame(3, 99)).await.unwrap();
    let (correlation_id, response) = decode_api_versions(read_frame(&mut stream).await.expect("an answer"), 3);
    assert_eq!((correlation_id, response.error_code), (99, 0));
}

#[tokio::test]
async fn api_versions_v0_and_v3_list_the_version_table() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut stream = broker.connect().await;
    for (version, correlation_id) in [(0, 1), (1, 2), (2, 3), (3, 4)] {
        stream.write_all(&api_versions_frame(version, correlation_id)).await.unwrap();
        let frame = read_frame(&mut stream).await.expect("an answer");
        let (answered_id, response) = decode_api_versions(frame, version);
        assert_eq!((answered_id, response.error_code), (correlation_id, 0), "v{version}");
        assert_eq!(served_versions(&response), expected_versions(), "v{version}");
        assert!(served_versions(&response).contains(&(ApiKey::ApiVersions as i16, 0, 3)));
    }
    broker.stop().await;
}

#[tokio::test]
async fn api_versions_of_an_unserved_version_is_answered_at_v0_with_unsupported_version() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    for version in [4, 99, -1] {
        let mut stream = broker.connect().await;
        // A newer client encodes a body the broker cannot know; the broker must not need to read it.
        let frame = request_frame(ApiKey::ApiVersions, version, 7, |b| b.put_slice(b"\x05newer\x01\0"));
        stream.write_all(&frame).await.unwrap();
        let (correlation_id, response) = decode_api_versions(read_frame(&mut stream).await.expect("an answer"), 0);
        assert_eq!((correlation_id, response.error_code), (7, UNSUPPORTED_VERSION), "v{version}");
        assert_eq!(served_versions(&response), expected_versions(), "v{version}");
        // The client then asks again at a version it shares, on the same connection.
        stream.write_all(&api_versions_frame(3, 8)).await.unwrap();
        let (correlation_id, response) = decode_api_versions(read_frame(&mut stream).await.expect("an answer"), 3);
        assert_eq!((correlation_id, response.error_code), (8, 0));
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_client_software_name_kafka_refuses_gets_invalid_request() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut stream = broker.connect().await;
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("has spaces"))
        .with_client_software_version(StrBytes::from_static_str("1.0"));
    stream.write_all(&request_frame(ApiKey::ApiVersions, 3, 5, |b| request.encode(b, 3).unwrap())).await.unwrap();
    let (correlation_id, response) = decode_api_versions(read_frame(&mut stream).await.expect("an answer"), 3);
    assert_eq!((correlation_id, response.error_code), (5, INVALID_REQUEST));
    broker.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut stream = broker.connect().await;
    // Three requests in one write, before reading anything; different versions, so different answer sizes.
    let sent = [(3, 30), (0, 10), (2, 20)];
    let bytes: Vec<u8> = sent.iter().flat_map(|(version, id)| api_versions_frame(*version, *id)).collect();
    stream.write_all(&bytes).await.unwrap();
    for (version, correlation_id) in sent {
        let (answered_id, response) = decode_api_versions(read_frame(&mut stream).await.expect("an answer"), version);
        assert_eq!((answered_id, response.error_code), (correlation_id, 0));
    }
    broker.stop().await;
}

#[tokio::test]
async fn malformed_frames_close_the_connection_and_leave_the_broker_serving() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let metadata = MetadataRequest::default();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative size", (-1i32).to_be_bytes().to_vec()),
        ("zero size", 0i32.to_be_bytes().to_vec()),
        ("2 GiB size", 0x8000_0000u32.to_be_bytes().to_vec()),
        ("2 GiB - 1 size", i32::MAX.to_be_bytes().to_vec()),
        ("request limit + 1 size", (64 * 1024 * 1024 + 1i32).to_be_bytes().to_vec()),
        ("too short for a header", b"\0\0\0\x03\0\x12\0".to_vec()),
        (
            "unknown API key",
            request_frame(ApiKey::ApiVersions, 0, 1, |_| ())
                .iter()
                .enumerate()
                .map(|(i, b)| if i == 4 { 0x7f } else { *b })
                .collect(),
        ),
        ("API not served", request_frame(ApiKey::AlterReplicaLogDirs, 1, 1, |b| b.put_slice(b"\0\0\0\0\0"))),
        (
            "served API at a version not served",
            request_frame(ApiKey::Metadata, 13, 1, |b| metadata.encode(b, 13).unwrap()),
        ),
        // A list that claims more items than its frame could hold: refused before anything is allocated for it.
        ("a list of 2^31 - 1 topics", request_frame(ApiKey::Metadata, 1, 1, |b| b.put_i32(i32::MAX))),
        (
            "a compact list of 2^32 - 2 topics",
            request_frame(ApiKey::Metadata, 9, 1, |b| b.put_slice(b"\xff\xff\xff\xff\x0f")),
        ),
        (
            "a string longer than its frame",
            request_frame(ApiKey::Metadata, 1, 1, |b| {
                b.put_i32(1);
                b.put_i16(i16::MAX);
            }),
        ),
        ("version beyond the codec", request_frame(ApiKey::Produce, 99, 1, |b| b.put_slice(b"\0\0\0\0"))),
        ("garbage body", request_frame(ApiKey::ApiVersions, 3, 1, |b| b.put_slice(b"\x05a"))),
        ("garbage header", b"\0\0\0\x0c\0\x12\0\x03\0\0\0\x01\xff\xff\xff\xff".to_vec()),
    ];
    for (case, bytes) in cases {
        let mut stream = broker.connect().await;
        stream.write_all(&bytes).await.unwrap();
        assert!(read_frame(&mut stream).await.is_none(), "{case}: the broker answered instead of closing");
        assert_serving(&broker).await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_truncated_frame_then_close_leaves_the_broker_serving() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut stream = broker.connect().await;
    let frame = api_versions_frame(3, 1);
    stream.write_all(&frame[..frame.len() / 2]).await.unwrap();
    stream.shutdown().await.unwrap();
    assert!(read_frame(&mut stream).await.is_none());
    assert_serving(&broker).await;
    broker.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_kafka_connections() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut idle = broker.connect().await;
    idle.write_all(&api_versions_frame(0, 1)).await.unwrap();
    assert!(read_frame(&mut idle).await.is_some());
    broker.stop().await;
    assert!(read_frame(&mut idle).await.is_none(), "the connection outlived the broker");
}

/// A request of `api_key` with enough in it that its answer fills the fields each version has: about topic
/// `t`, partition 0, and group `g`. `None` for the group-membership APIs, which long-poll (real clients cover
/// them in rill-tests' kafka_clients).
fn sample_request(api_key: ApiKey, version: i16, records: &Bytes) -> Option<kafka_protocol::messages::RequestKind> {
    use kafka_protocol::messages::*;
    let topic = || TopicName(StrBytes::from_static_str("t"));
    let group = || GroupId(StrBytes::from_static_str("g"));
    Some(match api_key {
        ApiKey::Produce => {
            RequestKind::Produce(ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
                produce_request::TopicProduceData::default().with_name(topic()).with_partition_data(vec![
                    produce_request::PartitionProduceData::default().with_records(Some(records.clone())),
                ]),
            ]))
        }
        ApiKey::Fetch => {
            RequestKind::Fetch(FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
                fetch_request::FetchTopic::default().with_topic(topic()).with_partitions(vec![
                    fetch_request::FetchPartition::default().with_partition_max_bytes(1 << 20),
                ]),
            ]))
        }
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic())
                .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1)]),
        ])),
        // Every topic: an empty list at v0, a null one later.
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics((version == 0).then(Vec::new)))
        }
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default().with_group_id(group()).with_generation_id_or_member_epoch(-1).with_topics(
                vec![offset_commit_request::OffsetCommitRequestTopic::default().with_name(topic()).with_partitions(
                    vec![offset_commit_request::OffsetCommitRequestPartition::default().with_committed_offset(1)],
                )],
            ),
        ),
        ApiKey::OffsetFetch => {
            RequestKind::OffsetFetch(OffsetFetchRequest::default().with_group_id(group()).with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic())
                    .with_partition_indexes(vec![0]),
            ])))
        }
        // One key until v3, a batch of keys from v4.
        ApiKey::FindCoordinator if version < 4 => {
            RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")))
        }
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default().with_coordinator_keys(vec![StrBytes::from_static_str("g")]),
        ),
        ApiKey::DescribeGroups => {
            RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![group()]))
        }
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        // The first deletes the group OffsetCommit made; later ones find none.
        ApiKey::DeleteGroups => {
            RequestKind::DeleteGroups(DeleteGroupsRequest::default().with_groups_names(vec![group()]))
        }
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(topic())
                    .with_num_partitions(1)
                    .with_replication_factor(-1),
            ])),
        // Names until v5, name-or-id entries from v6.
        ApiKey::DeleteTopics if version < 6 => RequestKind::DeleteTopics(
            DeleteTopicsRequest::default().with_topic_names(vec![TopicName(StrBytes::from_static_str("absent"))]),
        ),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default().with_topics(vec![
            delete_topics_request::DeleteTopicState::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("absent")))),
        ])),
        // Every partition (a null list): the test topic's leader is preferred already.
        ApiKey::ElectLeaders => RequestKind::ElectLeaders(
            kafka_protocol::messages::ElectLeadersRequest::default().with_topic_partitions(None),
        ),
        // Unknown topics: refused with UNKNOWN_TOPIC_OR_PARTITION, which must decode too.
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(kafka_protocol::messages::AlterConfigsRequest::default().with_resources(vec![
                kafka_protocol::messages::alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("absent")),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            kafka_protocol::messages::IncrementalAlterConfigsRequest::default().with_resources(vec![
                kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("absent"))
                    .with_configs(vec![
                        kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_value(Some(StrBytes::from_static_str("1000"))),
                    ]),
            ]),
        ),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(
            kafka_protocol::messages::CreatePartitionsRequest::default().with_topics(vec![
                kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("absent")))
                    .with_count(1),
            ]),
        ),
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1),
        ),
        ApiKey::OffsetForLeaderEpoch => {
            RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default().with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default().with_topic(topic()).with_partitions(
                    vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_leader_epoch(0)
                            .with_current_leader_epoch(-1),
                    ],
                ),
            ]))
        }
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t")),
        ]))
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::SaslHandshake => RequestKind::SaslHandshake(
            kafka_protocol::messages::SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str("SCRAM-SHA-256")),
        ),
        // Answered with an error (an empty SCRAM message, or no handshake before it), which must decode too.
        ApiKey::SaslAuthenticate => {
            RequestKind::SaslAuthenticate(kafka_protocol::messages::SaslAuthenticateRequest::default())
        }
        _ => return None,
    })
}

/// Every version the broker announces is answered with a response that decodes at that version: no field
/// the broker sets is missing from an older version's layout.
#[tokio::test]
async fn every_served_version_of_every_api_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut builder = rill_proto::batch::BatchBuilder::new();
    builder.push(1_700_000_000_000, Some(b"k"), Some(b"v"), &[("h", Some(b"1"))]);
    let records = builder.finish();
    let mut stream = broker.connect().await;
    let mut correlation_id = 0;
    let mut answered = Vec::new();
    // CreateTopics first, so the topic the others ask about exists.
    let mut apis: Vec<_> = rill_broker::kafka::SUPPORTED_APIS.iter().collect();
    apis.sort_by_key(|a| a.api_key != ApiKey::CreateTopics);
    for api in apis {
        for version in api.versions.min..=api.versions.max {
            let Some(request) = sample_request(api.api_key, version, &records) else { continue };
            correlation_id += 1;
            let mut body = BytesMut::new();
            request.encode(&mut body, version).unwrap_or_else(|e| panic!("{:?} v{version}: {e}", api.api_key));
            stream
                .write_all(&request_frame(api.api_key, version, correlation_id, |b| b.put_slice(&body)))
                .await
                .unwrap();
            let mut frame = read_frame(&mut stream)
                .await
                .unwrap_or_else(|| panic!("{:?} v{version}: the broker closed the connection", api.api_key));
            let header = ResponseHeader::decode(&mut frame, api.api_key.response_header_version(version)).unwrap();
            assert_eq!(header.correlation_id, correlation_id);
            kafka_protocol::messages::ResponseKind::decode(api.api_key, &mut frame, version)
                .unwrap_or_else(|e| panic!("{:?} v{version}: the answer does not decode: {e}", api.api_key));
            answered.push((api.api_key, version));
        }
    }
    let covered: std::collections::BTreeSet<i16> = answered.iter().map(|(key, _)| *key as i16).collect();
    let long_polling = [ApiKey::JoinGroup, ApiKey::SyncGroup, ApiKey::Heartbeat, ApiKey::LeaveGroup];
    let expected: std::collections::BTreeSet<i16> = rill_broker::kafka::SUPPORTED_APIS
        .iter()
        .filter(|a| !long_polling.contains(&a.api_key))
        .map(|a| a.api_key as i16)
        .collect();
    assert_eq!(covered, expected, "every API but group membership was asked at each of its versions");
    broker.stop().await;
}

/// Produce requests pipelined on one connection are appended in the order sent and answered in that order,
/// while each waits for its acknowledgement; a request of another API after them is answered after them.
#[tokio::test]
async fn pipelined_produce_requests_are_appended_and_answered_in_order() {
    use kafka_protocol::messages::{CreateTopicsRequest, ProduceResponse, create_topics_request};
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut stream = broker.connect().await;
    let create = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(kafka_protocol::messages::TopicName(StrBytes::from_static_str("t")))
            .with_num_partitions(1)
            .with_replication_factor(-1),
    ]);
    stream.write_all(&request_frame(ApiKey::CreateTopics, 7, 1, |b| create.encode(b, 7).unwrap())).await.unwrap();
    read_frame(&mut stream).await.expect("CreateTopics answered");
    const PIPELINED: i32 = 8;
    let mut frames = Vec::new();
    for n in 0..PIPELINED {
        let mut builder = rill_proto::batch::BatchBuilder::new();
        builder.push(1_700_000_000_000, None, Some(format!("v{n}").as_bytes()), &[]);
        let request = sample_request(ApiKey::Produce, 9, &builder.finish()).unwrap();
        let mut body = BytesMut::new();
        request.encode(&mut body, 9).unwrap();
        frames.extend(request_frame(ApiKey::Produce, 9, 100 + n, |b| b.put_slice(&body)));
    }
    frames.extend(api_versions_frame(3, 200));
    stream.write_all(&frames).await.unwrap();
    for n in 0..PIPELINED {
        let mut frame = read_frame(&mut stream).await.expect("a Produce answer");
        let header = ResponseHeader::decode(&mut frame, ApiKey::Produce.response_header_version(9)).unwrap();
        assert_eq!(header.correlation_id, 100 + n, "answers in the order sent");
        let response = ProduceResponse::decode(&mut frame, 9).unwrap();
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!((partition.error_code, partition.base_offset), (0, i64::from(n)), "appended in the order sent");
    }
    let (correlation_id, _) = decode_api_versions(read_frame(&mut stream).await.expect("ApiVersions answered"), 3);
    assert_eq!(correlation_id, 200, "the request after the Produces is answered after them");
    broker.stop().await;
}
