//! `rill user create|delete|list`, `rill acl add|remove|list` and `rill quota set|list`.

use clap::{Args, Subcommand};
use rill_client::{Acl, Admin, ClientConfig};

use super::output::{print, table};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a SCRAM user, or set a new password for one.
    Create {
        name: String,
        /// The password; the broker stores only a salted hash of it.
        #[arg(long, env = "RILL_NEW_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "SCRAM-SHA-256", value_name = "SCRAM-SHA-256|SCRAM-SHA-512")]
        mechanism: String,
        /// PBKDF2 iterations (4096 to 16384) [default: 4096].
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        iterations: u32,
    },
    /// Delete a user; its sessions end.
    Delete { name: String },
    /// List the users and their mechanisms.
    List,
}

/// Which resource an ACL names: exactly one of `--topic`, `--group`, `--cluster`.
#[derive(Debug, Args)]
pub struct AclArgs {
    /// `User:NAME`, or `*` for everyone.
    #[arg(long)]
    pub principal: Option<String>,
    /// read, write, create, delete, alter, describe, cluster_action or all.
    #[arg(long)]
    pub operation: Option<String>,
    #[arg(long, conflicts_with_all = ["group", "cluster"])]
    pub topic: Option<String>,
    #[arg(long, conflicts_with_all = ["topic", "cluster"])]
    pub group: Option<String>,
    #[arg(long, conflicts_with_all = ["topic", "group"])]
    pub cluster: bool,
    /// The name is a prefix: the ACL covers every resource whose name starts with it.
    #[arg(long)]
    pub prefixed: bool,
    /// A deny ACL (deny wins over any allow).
    #[arg(long)]
    pub deny: bool,
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Allow (or with --deny, deny) a principal an operation on a resource.
    Add(AclArgs),
    /// Remove the ACLs matching the options given (unset options match anything).
    Remove(AclArgs),
    /// List the ACLs matching the options given.
    List(AclArgs),
}

pub async fn users(client: ClientConfig, command: UserCommand) -> anyhow::Result<()> {
    let admin = Admin::connect(client).await?;
    match command {
        UserCommand::Create { name, password, mechanism, iterations } => {
            admin.upsert_user(&name, &password, &mechanism, iterations).await?;
            print(&format!("user {name} has a {mechanism} credential\n"))
        }
        UserCommand::Delete { name } => {
            admin.delete_user(&name).await?;
            print(&format!("deleted user {name}\n"))
        }
        UserCommand::List => {
            let rows: Vec<Vec<String>> = admin
                .list_users()
                .await?
                .into_iter()
                .map(|u| {
                    let credentials: Vec<String> = u.credentials.iter().map(|(m, i)| format!("{m}({i})")).collect();
                    vec![u.user, credentials.join(",")]
                })
                .collect();
            print(&table(&["USER", "CREDENTIALS"], &rows))
        }
    }
}

/// The ACL (or filter) the options describe; `complete` requires every field, as `add` does.
fn acl(args: &AclArgs, complete: bool) -> anyhow::Result<Acl> {
    let (resource_type, resource_name) = match (&args.topic, &args.group, args.cluster) {
        (Some(topic), _, _) => ("topic", topic.clone()),
        (_, Some(group), _) => ("group", group.clone()),
        (_, _, true) => ("cluster", "cluster".to_string()),
        _ if complete => anyhow::bail!("name the resource: --topic NAME, --group NAME or --cluster"),
        _ => ("", String::new()),
    };
    if complete {
        anyhow::ensure!(args.principal.is_some(), "--principal User:NAME (or '*') is required");
        anyhow::ensure!(args.operation.is_some(), "--operation is required");
    }
    let filtering = !complete;
    Ok(Acl {
        resource_type: resource_type.to_string(),
        pattern_type: if args.prefixed {
            "prefixed"
        } else if filtering && resource_type.is_empty() {
            ""
        } else {
            "literal"
        }
        .to_string(),
        resource_name,
        principal: args.principal.clone().unwrap_or_default(),
        operation: args.operation.clone().unwrap_or_default(),
        permission: if args.deny {
            "deny"
        } else if filtering {
            ""
        } else {
            "allow"
        }
        .to_string(),
    })
}

fn rows(acls: Vec<Acl>) -> Vec<Vec<String>> {
    acls.into_iter()
        .map(|a| vec![a.principal, a.permission, a.operation, a.resource_type, a.pattern_type, a.resource_name])
        .collect()
}

const HEADER: [&str; 6] = ["PRINCIPAL", "PERMISSION", "OPERATION", "RESOURCE", "PATTERN", "NAME"];

pub async fn acls(client: ClientConfig, command: AclCommand) -> anyhow::Result<()> {
    match command {
        AclCommand::Add(args) => {
            let acl = acl(&args, true)?;
            Admin::connect(client).await?.create_acls(std::slice::from_ref(&acl)).await?;
            print(&table(&HEADER, &rows(vec![acl])))
        }
        AclCommand::Remove(args) => {
            let filter = acl(&args, false)?;
            let removed = Admin::connect(client).await?.delete_acls(&filter).await?;
            print(&format!("removed {} ACLs\n{}", removed.len(), table(&HEADER, &rows(removed))))
        }
        AclCommand::List(args) => {
            let filter = acl(&args, false)?;
            let listed = Admin::connect(client).await?.list_acls(&filter).await?;
            print(&table(&HEADER, &rows(listed)))
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Set or remove an entity's quotas: `rill quota set user=alice producer_byte_rate=1048576`. Entities:
    /// user=NAME, user=<default>, client-id=ID, client-id=<default>. Keys (per second): producer_byte_rate,
    /// consumer_byte_rate, request_rate. VALUE `none` removes the key.
    Set {
        entity: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        values: Vec<String>,
    },
    /// List every quota set.
    List,
}

/// `KEY=VALUE` with a rate, or `KEY=none` to remove the key.
fn quota_value(text: &str) -> anyhow::Result<(String, Option<u64>)> {
    let (key, value) = text.split_once('=').ok_or_else(|| anyhow::anyhow!("'{text}' is not KEY=VALUE"))?;
    let value = match value {
        "none" => None,
        rate => Some(rate.parse().map_err(|_| anyhow::anyhow!("{key}={rate}: not a rate (a whole number) or none"))?),
    };
    Ok((key.to_string(), value))
}

pub async fn quotas(client: ClientConfig, command: QuotaCommand) -> anyhow::Result<()> {
    let admin = Admin::connect(client).await?;
    match command {
        QuotaCommand::Set { entity, values } => {
            let values = values.iter().map(|v| quota_value(v)).collect::<anyhow::Result<Vec<_>>>()?;
            admin.set_quotas(&entity, &values).await?;
            let set: Vec<String> = values
                .iter()
                .map(|(key, value)| format!("{key}={}", value.map_or("none".to_string(), |v| v.to_string())))
                .collect();
            print(&format!("{entity}: {}\n", set.join(" ")))
        }
        QuotaCommand::List => {
            let rows: Vec<Vec<String>> = admin
                .list_quotas()
                .await?
                .into_iter()
                .flat_map(|q| {
                    let entity = q.entity;
                    q.values.into_iter().map(move |(key, rate)| vec![entity.clone(), key, rate.to_string()])
                })
                .collect();
            print(&table(&["ENTITY", "KEY", "RATE_PER_SECOND"], &rows))
        }
    }
}
