//! Client quotas in the request core: setting and listing them (through the active controller, like ACLs),
//! and measuring each request against the ones that apply to its caller (`security::quota`).
//!
//! Every client request is measured once, by the transport that carried it: a Produce for its request and
//! its record bytes, a Fetch for its request and the record bytes it returns, anything else for the request.
//! The answer says how long it is to be held back; the transport holds it back as its protocol expects (the
//! Kafka listener answers and then reads nothing more from the connection for that long, as Kafka does; gRPC
//! holds the answer) and reports the time to the client. Changing quotas needs `alter` on the cluster,
//! listing them `describe` on the cluster.

use super::{BrokerCore, Error, PartitionFetched, ProduceRequest};
use crate::clock::monotonic_ms;
use crate::metadata::SecurityChange;
use crate::security::quota::{self, QuotaEntity, QuotaKey, QuotaTable};
use crate::security::{Operation, Principal, Resource};

/// What a request used.
#[derive(Debug, Clone, Copy)]
pub enum Usage<'a> {
    /// A request that is neither a Produce nor a Fetch.
    Request,
    Produce(&'a ProduceRequest),
    /// A fetch's answer, partition by partition.
    Fetched(&'a [PartitionFetched]),
}

impl BrokerCore {
    /// Records what a request of `who` (sent with `client_id`, empty when the transport has none) used
    /// against the quotas that apply to it, and returns how long to hold back its answer, in ms: the longest
    /// any of its quotas asks for, 0 when none applies.
    pub fn throttle_ms(&self, who: &Principal, client_id: &str, usage: Usage<'_>) -> u64 {
        let bytes = match usage {
            Usage::Request => None,
            Usage::Produce(request) => {
                let bytes = request.partitions.iter().map(|p| p.records.len() as u64).sum();
                Some((QuotaKey::ProducerByteRate, bytes))
            }
            Usage::Fetched(results) => {
                let bytes = results.iter().map(|p| p.records.len() as u64).sum();
                Some((QuotaKey::ConsumerByteRate, bytes))
            }
        };
        let state = self.metadata.borrow();
        if state.quotas.is_empty() {
            return 0;
        }
        let uses = std::iter::once((QuotaKey::RequestRate, 1)).chain(bytes.filter(|(_, amount)| *amount > 0));
        let now_ms = monotonic_ms();
        let mut buckets = self.quota_buckets.lock().expect("quota buckets lock");
        let throttle_ms = uses
            .filter_map(|(key, amount)| {
                let (holder, rate) = quota::resolve(&state.quotas, &who.name, client_id, key)?;
                Some(buckets.record(key, holder, rate, amount, now_ms))
            })
            .max()
            .unwrap_or(0);
        if throttle_ms > 0 {
            tracing::debug!(%who, client_id, throttle_ms, "over quota: holding the answer back");
        }
        throttle_ms
    }

    /// Sets (`Some`) or removes (`None`) the quotas of `entity`, key by key; in force on every broker as soon
    /// as its metadata has the change.
    pub async fn set_quotas(
        &self,
        who: &Principal,
        entity: QuotaEntity,
        values: Vec<(QuotaKey, Option<u64>)>,
    ) -> Result<(), Error> {
        self.authorize(who, Operation::Alter, Resource::cluster())?;
        let change = SecurityChange::SetQuotas { entity: entity.clone(), values: values.clone() };
        self.alter_security(&change).await?;
        tracing::info!(%who, %entity, ?values, "quotas set");
        Ok(())
    }

    pub fn list_quotas(&self, who: &Principal) -> Result<QuotaTable, Error> {
        self.authorize(who, Operation::Describe, Resource::cluster())?;
        Ok(self.metadata.borrow().quotas.clone())
    }
}
