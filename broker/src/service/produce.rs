//! Produce over gRPC: the proto request as the core's `ProduceRequest`, and its outcomes back.

use rill_proto::v1::{self as proto, PartitionProduceResult, ProduceResponse};

use super::errors::{self, invalid};
use crate::requests::{Acks, BrokerCore, PartitionRecords, ProduceRequest, Usage};
use crate::security::Principal;

fn acks(value: i32) -> Option<Acks> {
    match proto::Acks::try_from(value).ok()? {
        proto::Acks::All => Some(Acks::All),
        proto::Acks::Leader => Some(Acks::Leader),
        proto::Acks::None => Some(Acks::None),
    }
}

/// A Produce, measured against the caller's quotas once it is answered and held back as they ask.
pub async fn produce(
    core: &BrokerCore,
    who: &Principal,
    client_id: &str,
    request: proto::ProduceRequest,
) -> ProduceResponse {
    let Some(acks) = acks(request.acks) else {
        let refuse = |p: proto::PartitionRecords| PartitionProduceResult {
            topic: p.topic,
            partition: p.partition,
            error: invalid(format!("unknown acks value {}", request.acks)),
            ..Default::default()
        };
        return ProduceResponse { results: request.partitions.into_iter().map(refuse).collect(), throttle_time_ms: 0 };
    };
    let request = ProduceRequest {
        acks,
        timeout_ms: (request.timeout_ms != 0).then_some(u64::from(request.timeout_ms)),
        partitions: request
            .partitions
            .into_iter()
            .map(|p| PartitionRecords { topic: p.topic, partition: p.partition, records: p.records })
            .collect(),
    };
    let produced = core.produce(who, &request).await;
    let throttle_ms = core.throttle_ms(who, client_id, Usage::Produce(&request));
    super::hold(throttle_ms).await;
    let results = produced.into_iter().map(|p| {
        let mut result = PartitionProduceResult { topic: p.topic, partition: p.partition, ..Default::default() };
        match p.result {
            Ok(produced) => {
                result.base_offset = produced.base_offset;
                result.last_offset = produced.last_offset;
                result.log_start_offset = produced.log_start_offset;
            }
            Err(e) => result.error = Some(errors::to_proto(&e)),
        }
        result
    });
    ProduceResponse { results: results.collect(), throttle_time_ms: throttle_ms as u32 }
}
