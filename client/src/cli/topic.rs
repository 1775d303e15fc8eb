//! `rill topic create|list|describe|delete|alter-config|add-partitions|elect-leaders`.

use rill_client::{Admin, ClientConfig, TopicDescription};
use serde::Serialize;

use super::output::{ids, print, print_json, table};
use super::{Format, TopicCommand};

pub async fn run(client: ClientConfig, command: TopicCommand) -> anyhow::Result<()> {
    let admin = Admin::connect(client).await?;
    match command {
        TopicCommand::Create(args) => {
            let config = args.config_map()?;
            admin.create_topic(&args.name, args.partitions, args.replication_factor, config).await?;
            eprintln!("created topic {} with {} partitions", args.name, args.partitions);
            Ok(())
        }
        TopicCommand::List { format } => list(&admin, format).await,
        TopicCommand::Describe { name, format } => {
            let description = admin.describe_topic(&name).await?;
            match format {
                Format::Json => print_json(&description),
                Format::Text => print(&describe_text(&description)),
            }
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await?;
            eprintln!("deleted topic {name}");
            Ok(())
        }
        TopicCommand::AlterConfig(args) => {
            let config = admin.alter_topic_config(&args.name, args.set_map()?, args.delete.clone()).await?;
            super::output::print_config(&format!("topic {}", args.name), &config, args.format)
        }
        TopicCommand::AddPartitions { name, partitions, validate_only } => {
            let now = admin.create_partitions(&name, partitions, validate_only).await?;
            if validate_only {
                eprintln!("topic {name} can grow to {partitions} partitions (it has {now}; nothing changed)");
            } else {
                eprintln!("topic {name} now has {now} partitions");
            }
            Ok(())
        }
        TopicCommand::ElectLeaders { topics, format } => {
            let elections = admin.elect_leaders(&topics).await?;
            match format {
                Format::Json => print_json(&elections),
                Format::Text => {
                    let rows: Vec<Vec<String>> = elections
                        .iter()
                        .map(|e| {
                            let outcome = if e.reason.is_empty() {
                                e.outcome.clone()
                            } else {
                                format!("{} ({})", e.outcome, e.reason)
                            };
                            vec![e.topic.clone(), e.partition.to_string(), e.preferred.to_string(), outcome]
                        })
                        .collect();
                    print(&table(&["TOPIC", "PARTITION", "PREFERRED", "OUTCOME"], &rows))
                }
            }
        }
    }
}

async fn list(admin: &Admin, format: Format) -> anyhow::Result<()> {
    let topics = admin.list_topics().await?;
    match format {
        Format::Json => {
            #[derive(Serialize)]
            struct Listing<'a> {
                topics: &'a [rill_client::TopicSummary],
            }
            print_json(&Listing { topics: &topics })
        }
        Format::Text => {
            let rows: Vec<Vec<String>> = topics
                .iter()
                .map(|t| vec![t.name.clone(), t.partitions.to_string(), t.replication_factor.to_string()])
                .collect();
            print(&table(&["NAME", "PARTITIONS", "REPLICATION_FACTOR"], &rows))
        }
    }
}

fn describe_text(description: &TopicDescription) -> String {
    let mut text = format!("topic: {}\n", description.name);
    if description.config.is_empty() {
        text.push_str("config: (defaults)\n");
    } else {
        let pairs: Vec<String> = description.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        text.push_str(&format!("config: {}\n", pairs.join(", ")));
    }
    let rows: Vec<Vec<String>> = description
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.leader.to_string(),
                p.leader_epoch.to_string(),
                ids(&p.replicas),
                ids(&p.isr),
                p.log_start_offset.to_string(),
                p.high_watermark.to_string(),
                p.log_end_offset.to_string(),
            ]
        })
        .collect();
    text.push_str(&table(
        &["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "LOG_START", "HIGH_WATERMARK", "LOG_END"],
        &rows,
    ));
    text
}
