//! `rill group list|describe|reset-offsets`.

use rill_client::{Admin, ClientConfig, GroupDescription, OffsetResetTarget};
use serde::Serialize;

use super::output::{print, print_json, table};
use super::{Format, GroupCommand};

pub async fn run(client: ClientConfig, command: GroupCommand) -> anyhow::Result<()> {
    let admin = Admin::connect(client).await?;
    match command {
        GroupCommand::List { format } => {
            let groups = admin.list_groups().await?;
            match format {
                Format::Json => {
                    #[derive(Serialize)]
                    struct Listing<'a> {
                        groups: &'a [rill_client::GroupSummary],
                    }
                    print_json(&Listing { groups: &groups })
                }
                Format::Text => {
                    let rows: Vec<Vec<String>> = groups
                        .iter()
                        .map(|g| {
                            vec![g.group.clone(), g.state.clone(), g.generation.to_string(), g.members.to_string()]
                        })
                        .collect();
                    print(&table(&["GROUP", "STATE", "GENERATION", "MEMBERS"], &rows))
                }
            }
        }
        GroupCommand::Describe { group, format } => {
            let description = admin.describe_group(&group).await?;
            match format {
                Format::Json => print_json(&description),
                Format::Text => print(&describe_text(&description)),
            }
        }
        GroupCommand::ResetOffsets(args) => {
            let target = match (args.to_earliest, args.to_latest, args.to_offset) {
                (true, _, _) => OffsetResetTarget::Earliest,
                (_, true, _) => OffsetResetTarget::Latest,
                (_, _, Some(n)) => OffsetResetTarget::Offset(n),
                _ => anyhow::bail!("give one of --to-earliest, --to-latest or --to-offset"),
            };
            let offsets = admin.reset_group_offsets(&args.group, &args.topic, target).await?;
            let rows: Vec<Vec<String>> =
                offsets.iter().map(|(tp, o)| vec![tp.topic.clone(), tp.partition.to_string(), o.to_string()]).collect();
            eprintln!("reset the offsets of group {} on {}", args.group, args.topic);
            print(&table(&["TOPIC", "PARTITION", "OFFSET"], &rows))
        }
    }
}

fn describe_text(d: &GroupDescription) -> String {
    let mut text = format!("group: {}\nstate: {}\ngeneration: {}\n", d.group, d.state, d.generation);
    let owner = |topic: &str, partition: u32| {
        d.members
            .iter()
            .find(|m| m.partitions.iter().any(|p| p.topic == topic && p.partition == partition))
            .map_or_else(|| "-".to_owned(), |m| m.member_id.clone())
    };
    let rows: Vec<Vec<String>> = d
        .offsets
        .iter()
        .map(|o| {
            vec![
                o.topic.clone(),
                o.partition.to_string(),
                o.committed_offset.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                o.log_end_offset.to_string(),
                o.lag.map_or_else(|| "-".to_owned(), |l| l.to_string()),
                owner(&o.topic, o.partition),
            ]
        })
        .collect();
    text.push_str(&table(&["TOPIC", "PARTITION", "COMMITTED", "LOG_END", "LAG", "MEMBER"], &rows));
    let members: Vec<Vec<String>> = d
        .members
        .iter()
        .map(|m| {
            let partitions: Vec<String> = m.partitions.iter().map(|p| format!("{}/{}", p.topic, p.partition)).collect();
            vec![m.member_id.clone(), m.client_id.clone(), partitions.join(",")]
        })
        .collect();
    text.push_str(&table(&["MEMBER", "CLIENT_ID", "PARTITIONS"], &members));
    text
}
