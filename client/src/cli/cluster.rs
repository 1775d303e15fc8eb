//! `rill cluster status [--watch]`.

use rill_client::{Admin, ClientConfig, ClusterDescription};
use serde::Serialize;

use std::io::IsTerminal;

use super::Format;
use super::output::{ids, print, table};
use super::watch::Repeat;

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

/// Prints the cluster's brokers and controller once, or with `repeat` again and again (`--watch`).
pub async fn status(client: ClientConfig, format: Format, repeat: Option<Repeat>) -> anyhow::Result<()> {
    let admin = Admin::connect(client).await?;
    let Some(repeat) = repeat else {
        return print(&render(admin.describe_cluster().await?, format)?);
    };
    let terminal = std::io::stdout().is_terminal();
    let mut shown = 0;
    loop {
        let text = match admin.describe_cluster().await {
            Ok(cluster) => render(cluster, format)?,
            // A watched cluster may be briefly unreachable (a restart): say so and keep watching.
            Err(e) => format!("cannot describe the cluster: {e}\n"),
        };
        print(&repeat.frame(terminal, &text))?;
        shown += 1;
        if repeat.iterations.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(repeat.interval_ms)).await;
    }
}

fn render(cluster: ClusterDescription, format: Format) -> anyhow::Result<String> {
    match format {
        Format::Json => Ok(serde_json::to_string(&to_json(cluster))? + "\n"),
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
            Ok(text)
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
