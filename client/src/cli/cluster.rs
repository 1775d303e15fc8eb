//! `rill cluster status`.

use rill_client::{Admin, ClientConfig, ClusterDescription};
use serde::Serialize;

use super::Format;
use super::output::{ids, print, print_json, table};

#[derive(Serialize)]
struct StatusJson {
    brokers: Vec<BrokerJson>,
    controller: ControllerJson,
}

#[derive(Serialize)]
struct BrokerJson {
    id: u32,
    address: String,
    kafka_address: Option<String>,
    state: &'static str,
    broker_epoch: u64,
}

#[derive(Serialize)]
struct ControllerJson {
    active: u32,
    voters: Vec<u32>,
}

fn state(fenced: bool) -> &'static str {
    if fenced { "fenced" } else { "alive" }
}

pub async fn status(client: ClientConfig, format: Format) -> anyhow::Result<()> {
    let admin = Admin::connect(client).await?;
    let cluster = admin.describe_cluster().await?;
    match format {
        Format::Json => print_json(&to_json(cluster)),
        Format::Text => {
            let rows: Vec<Vec<String>> = cluster
                .brokers
                .iter()
                .map(|b| {
                    let kafka = b.kafka_address.clone().unwrap_or_else(|| "-".into());
                    vec![b.id.to_string(), b.address.clone(), kafka, state(b.fenced).into(), b.broker_epoch.to_string()]
                })
                .collect();
            let mut text = table(&["ID", "ADDRESS", "KAFKA_ADDRESS", "STATE", "BROKER_EPOCH"], &rows);
            text.push_str(&format!(
                "controller: active {}, voters {}\n",
                cluster.active_controller,
                ids(&cluster.voters)
            ));
            print(&text)
        }
    }
}

fn to_json(cluster: ClusterDescription) -> StatusJson {
    StatusJson {
        brokers: cluster
            .brokers
            .into_iter()
            .map(|b| BrokerJson {
                id: b.id,
                address: b.address,
                kafka_address: b.kafka_address,
                state: state(b.fenced),
                broker_epoch: b.broker_epoch,
            })
            .collect(),
        controller: ControllerJson { active: cluster.active_controller, voters: cluster.voters },
    }
}
