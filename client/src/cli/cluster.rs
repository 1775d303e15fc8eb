//! `rill cluster status [--watch]` and `rill broker drain`.

use rill_client::{Admin, ClientConfig, ClusterDescription};
use serde::Serialize;

use std::io::IsTerminal;

use super::output::{ids, print, print_json, table};
use super::watch::Repeat;
use super::{BrokerCommand, Format};

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
                    vec![b.id.to_string(), b.address.clone(), kafka, b.state().into(), b.broker_epoch.to_string()]
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
                state: b.state(),
                id: b.id,
                address: b.address,
                kafka_address: b.kafka_address,
                broker_epoch: b.broker_epoch,
            })
            .collect(),
        controller: ControllerJson { active: cluster.active_controller, voters: cluster.voters },
    }
}

/// `rill broker drain ID [--cancel]`.
pub async fn broker(client: ClientConfig, command: BrokerCommand) -> anyhow::Result<()> {
    let admin = Admin::connect(client).await?;
    let (id, cancel, format) = match command {
        BrokerCommand::Drain { id, cancel, format } => (id, cancel, format),
        BrokerCommand::AlterConfig(args) => {
            let config = admin.alter_broker_config(args.name, args.set_map()?, args.delete.clone()).await?;
            return super::output::print_config(&format!("broker {}", args.name), &config, args.format);
        }
    };
    let outcome = admin.drain_broker(id, cancel).await?;
    if format == Format::Json {
        return print_json(&outcome);
    }
    if cancel {
        eprintln!("broker {id} may lead again; `rill topic elect-leaders` moves its preferred leaderships back");
        return Ok(());
    }
    let list = |partitions: &[rill_client::TopicPartition]| {
        partitions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    };
    if outcome.stuck.is_empty() && outcome.unmovable.is_empty() {
        eprintln!("broker {id} is drained: it leads no partition");
    }
    if !outcome.stuck.is_empty() {
        eprintln!(
            "broker {id} still leads {} (their other replicas are not in sync yet; drain again later)",
            list(&outcome.stuck)
        );
    }
    if !outcome.unmovable.is_empty() {
        eprintln!("broker {id} still leads {} (no other replica is alive)", list(&outcome.unmovable));
    }
    Ok(())
}
