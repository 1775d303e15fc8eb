//! Authentication and authorization with real `rill-broker` processes: a three-node TLS cluster started with
//! `--authorizer on` checks every request against the ACLs in its metadata. A SCRAM user logs in through the
//! CLI (gRPC) and through librdkafka (Kafka SASL over TLS), may do what its ACLs allow and nothing else, a
//! wrong password is refused, and a new ACL is in force on every broker within a second of being granted.

use std::time::{Duration, Instant};

use rill_client::{Acl, AclFilter, Admin, ClientConfig};
use rill_tests::kafka_clients::run_python;
use rill_tests::tls::{Certs, is_ready};
use rill_tests::{BrokerOptions, BrokerProcess, CliOutput, free_port, lines_input, run_rill};
use serde_json::Value;

/// How long a client run may take on a loaded machine.
const CLIENT_MS_MAX: u64 = 60_000;
/// The bound on an ACL change reaching every broker.
const ACL_PROPAGATION_MS_MAX: u128 = 1_000;

fn rill(bootstrap: &str, auth: &[String], args: &[&str], stdin: &[u8]) -> CliOutput {
    let all: Vec<&str> = auth.iter().map(String::as_str).chain(args.iter().copied()).collect();
    run_rill(bootstrap, &all, stdin)
}

fn scram(certs: &Certs, user: &str, password: &str) -> Vec<String> {
    let mut args = certs.cli_args(None);
    args.extend(["--user".to_owned(), user.to_owned(), "--password".to_owned(), password.to_owned()]);
    args
}

fn refused(out: &CliOutput, code: &str, names: &str) {
    assert!(!out.status.success(), "expected a refusal, got: {}", out.stdout);
    assert!(out.stderr.contains(code) && out.stderr.contains(names), "{}", out.stderr);
}

#[test]
fn acls_allow_each_principal_what_they_grant_and_nothing_else_on_every_broker() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::dev_certs(&dir.path().join("certs"), &["admin"], false);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let voters: String = (0..3).map(|i| format!("{}@127.0.0.1:{}", i + 1, ports[i])).collect::<Vec<_>>().join(",");
    let mut nodes: Vec<BrokerProcess> = (0..3)
        .map(|i| {
            let mut extra_args = certs.broker_args("request");
            extra_args.extend(
                ["--controller-voters", &voters, "--authorizer", "on", "--super-users", "User:admin,User:broker"]
                    .map(String::from),
            );
            BrokerProcess::spawn(BrokerOptions {
                node_id: i as u32 + 1,
                port: Some(ports[i]),
                extra_args,
                ..Default::default()
            })
        })
        .collect();
    for node in &mut nodes {
        let (id, tls) = (node.node_id(), certs.client_tls("admin"));
        node.wait_ready_by(|address| is_ready(address, id, &tls));
    }
    let bootstrap = nodes.iter().map(BrokerProcess::addr).collect::<Vec<_>>().join(",");
    let admin = certs.cli_args(Some("admin"));
    for topic in ["orders", "payments"] {
        rill(&bootstrap, &admin, &["topic", "create", topic, "--partitions", "2", "--replication-factor", "3"], b"")
            .success();
    }
    rill(&bootstrap, &admin, &["user", "create", "alice", "--password", "alice-secret"], b"").success();
    let users = rill(&bootstrap, &admin, &["user", "list"], b"").success();
    assert!(users.stdout.contains("alice") && users.stdout.contains("SCRAM-SHA-256(4096)"), "{}", users.stdout);
    assert!(!users.stdout.contains("alice-secret"), "listings never show a password");
    rill(
        &bootstrap,
        &admin,
        &["acl", "add", "--principal", "User:alice", "--operation", "write", "--topic", "orders"],
        b"",
    )
    .success();

    // Alice writes `orders` through gRPC, acknowledged by every in-sync replica.
    let alice = scram(&certs, "alice", "alice-secret");
    let lines: Vec<String> = (0..20).map(|i| format!("order-{i}")).collect();
    rill(&bootstrap, &alice, &["produce", "orders", "--acks", "all"], &lines_input(&lines)).success();
    // ...but may not read it yet, nor touch `payments`, nor delete anything.
    refused(
        &rill(&bootstrap, &alice, &["consume", "orders", "--from-beginning", "--max-messages", "1"], b""),
        "TOPIC_AUTHORIZATION_FAILED",
        "User:alice is not authorized to read topic 'orders'",
    );
    refused(
        &rill(&bootstrap, &alice, &["consume", "payments", "--from-beginning", "--max-messages", "1"], b""),
        "TOPIC_AUTHORIZATION_FAILED",
        "payments",
    );
    refused(
        &rill(&bootstrap, &alice, &["topic", "delete", "orders"], b""),
        "TOPIC_AUTHORIZATION_FAILED",
        "delete topic 'orders'",
    );
    refused(
        &rill(&bootstrap, &alice, &["acl", "add", "--principal", "User:alice", "--operation", "all", "--cluster"], b""),
        "CLUSTER_AUTHORIZATION_FAILED",
        "alter cluster",
    );
    // A wrong password, and no login at all.
    refused(
        &rill(&bootstrap, &scram(&certs, "alice", "guess"), &["topic", "list"], b""),
        "AUTHENTICATION_FAILED",
        "alice",
    );
    let anonymous = rill(&bootstrap, &certs.cli_args(None), &["topic", "list"], b"").success();
    assert!(!anonymous.stdout.contains("orders"), "an anonymous client sees no topic: {}", anonymous.stdout);

    kafka_clients_log_in_with_sasl_and_meet_the_same_acls(&nodes[0], &certs);
    a_grant_is_in_force_on_every_broker_within_a_second(&nodes, &certs, &bootstrap, &alice, &lines);
}

fn kafka_clients_log_in_with_sasl_and_meet_the_same_acls(node: &BrokerProcess, certs: &Certs) {
    let ca = certs.ca().to_string_lossy().into_owned();
    let kafka = node.kafka_addr();
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let args = [kafka.as_str(), &ca, mechanism, "alice", "alice-secret", "orders", "payments"];
        let out = run_python("sasl_produce.py", &args, CLIENT_MS_MAX);
        let results: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).expect("JSON lines")).collect();
        let result = |topic: &str| results.iter().find(|r| r["topic"] == topic).map(|r| r["result"].clone());
        assert_eq!(result("orders"), Some(Value::from("ok")), "{mechanism}: {}{}", out.stdout, out.stderr);
        assert_eq!(result("payments"), Some(Value::from("TOPIC_AUTHORIZATION_FAILED")), "{mechanism}: {}", out.stdout);
    }
    let args = [kafka.as_str(), &ca, "SCRAM-SHA-256", "alice", "guess", "orders"];
    let out = run_python("sasl_produce.py", &args, CLIENT_MS_MAX);
    assert!(
        out.stdout.contains("login_error") && out.stdout.contains("SASL authentication error"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

fn a_grant_is_in_force_on_every_broker_within_a_second(
    nodes: &[BrokerProcess],
    certs: &Certs,
    bootstrap: &str,
    alice: &[String],
    lines: &[String],
) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // One admin per broker, each reading that broker's own copy of the ACLs.
        let mut admins = Vec::new();
        for node in nodes {
            let config =
                ClientConfig { tls: Some(certs.client_tls("admin")), ..ClientConfig::new(&node.addr()).unwrap() };
            admins.push(Admin::connect(config).await.unwrap());
        }
        let grant = Acl {
            resource_type: "topic".into(),
            pattern_type: "literal".into(),
            resource_name: "orders".into(),
            principal: "User:alice".into(),
            operation: "read".into(),
            permission: "allow".into(),
        };
        admins[0].create_acls(std::slice::from_ref(&grant)).await.unwrap();
        let granted = Instant::now();
        let filter = AclFilter { principal: "User:alice".into(), operation: "read".into(), ..Default::default() };
        for (node, admin) in nodes.iter().zip(&admins) {
            while !admin.list_acls(&filter).await.unwrap().contains(&grant) {
                assert!(
                    granted.elapsed().as_millis() <= ACL_PROPAGATION_MS_MAX,
                    "broker {} did not have the grant within {ACL_PROPAGATION_MS_MAX} ms",
                    node.node_id()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        eprintln!("the grant was in force on all {} brokers after {:?}", nodes.len(), granted.elapsed());
    });
    // And reading works now, through any broker.
    // `orders` holds alice's gRPC lines and one record from each Kafka login (SCRAM, PLAIN).
    let mut want: Vec<&str> = lines.iter().map(String::as_str).chain(["from alice"; 2]).collect();
    want.sort();
    let count = want.len().to_string();
    let read =
        rill(bootstrap, alice, &["consume", "orders", "--from-beginning", "--max-messages", &count], b"").success();
    let mut got: Vec<&str> = read.stdout.lines().collect();
    got.sort();
    assert_eq!(got, want);
}
