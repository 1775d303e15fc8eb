//! Small conversions every handler shares: names and strings as the codec's types, Kafka's signed fields as
//! the core's unsigned ones, broker endpoints, and Kafka topic ids for Rill's numeric ones.

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::metadata::{BrokerRegistration, MetadataState, TopicState};

/// The high half of every Kafka topic id this broker hands out ("RILL" and a version), so a Rill topic id
/// (a counter from 0) never becomes the all-zero id, which Kafka reserves for "no id".
const TOPIC_ID_HIGH: u64 = 0x5249_4c4c_0000_0001;

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub fn topic_name(s: impl Into<String>) -> TopicName {
    TopicName(str_bytes(s))
}

/// A partition index from the wire; a negative one names no partition (`u32::MAX` is never one).
pub fn partition_index(index: i32) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// Kafka's "no epoch" is -1.
pub fn epoch_from_wire(epoch: i32) -> Option<u32> {
    u32::try_from(epoch).ok()
}

pub fn epoch_to_wire(epoch: Option<u32>) -> i32 {
    epoch.and_then(|e| i32::try_from(e).ok()).unwrap_or(-1)
}

/// The signed 64-bit offset Kafka carries.
pub fn offset_to_wire(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

pub fn topic_id(topic: &TopicState) -> Uuid {
    Uuid::from_u64_pair(TOPIC_ID_HIGH, topic.topic_id)
}

/// The topic a Kafka topic id names, if it exists.
pub fn topic_by_id(state: &MetadataState, id: Uuid) -> Option<&TopicState> {
    let (high, low) = id.as_u64_pair();
    if high != TOPIC_ID_HIGH {
        return None;
    }
    state.topics.values().find(|t| t.topic_id == low)
}

/// A broker's Kafka endpoint: host and port of its advertised Kafka address, if it has a listener.
pub fn kafka_endpoint(broker: &BrokerRegistration) -> Option<(String, i32)> {
    let address = broker.kafka_address.as_deref()?;
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    Some((host.trim_start_matches('[').trim_end_matches(']').to_string(), i32::from(port)))
}

/// Kafka's "authorized operations not asked for" (i32::MIN).
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// The cluster id this broker reports to Kafka clients. A Rill cluster has no id of its own yet; clients only
/// show it.
pub const CLUSTER_ID: &str = "rill";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_round_trip_and_are_never_the_zero_id() {
        let mut state = MetadataState::default();
        let topic = TopicState { name: "t".into(), topic_id: 0, config: Default::default(), partitions: Vec::new() };
        state.topics.insert("t".into(), topic.clone());
        assert_ne!(topic_id(&topic), Uuid::nil());
        assert_eq!(topic_by_id(&state, topic_id(&topic)).map(|t| t.name.as_str()), Some("t"));
        assert!(topic_by_id(&state, Uuid::from_u64_pair(7, 0)).is_none());
    }

    #[test]
    fn endpoints_and_wire_fields() {
        let broker = |address: Option<&str>| BrokerRegistration {
            broker_id: 1,
            broker_epoch: 0,
            address: "h:1".into(),
            kafka_address: address.map(str::to_string),
            fenced: false,
            draining: false,
            shutting_down: false,
        };
        assert_eq!(kafka_endpoint(&broker(Some("kafka-1:9092"))), Some(("kafka-1".into(), 9092)));
        assert_eq!(kafka_endpoint(&broker(Some("[::1]:9093"))), Some(("::1".into(), 9093)));
        assert_eq!(kafka_endpoint(&broker(None)), None);
        assert_eq!(partition_index(-1), u32::MAX);
        assert_eq!(epoch_from_wire(-1), None);
        assert_eq!(epoch_to_wire(Some(3)), 3);
    }
}
