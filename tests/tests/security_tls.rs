//! TLS everywhere, with real `rill-broker` processes: a cluster whose brokers require client certificates
//! forms, elects and replicates over TLS; clients and brokers without the cluster's CA are refused at the
//! handshake with a message that says what to pass; Kafka clients use `security.protocol=SSL`; renewed files
//! are served to new connections after SIGHUP or a change on disk; and bytes of the wrong protocol on either
//! port never crash a broker. Certificates come from `rill dev-certs` (and rcgen for a foreign CA).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use rill_tests::cluster::wait_until;
use rill_tests::kafka_clients::run_kcat;
use rill_tests::tls::{Certs, first_certificate, is_ready, served_certificate};
use rill_tests::{BrokerOptions, BrokerProcess, CliOutput, free_port, lines_input, run_rill};
use serde_json::Value;

/// How long a cluster may take to elect and register every broker, or a client run to finish.
const READY_MS_MAX: u64 = 60_000;
/// How long a reload may take to show: the poll interval the tests set plus slack for a loaded machine.
const RELOAD_MS_MAX: u64 = 20_000;

/// Runs the CLI at `bootstrap` with TLS `tls_args` before `args`.
fn rill(bootstrap: &str, tls_args: &[String], args: &[&str]) -> CliOutput {
    let all: Vec<&str> = tls_args.iter().map(String::as_str).chain(args.iter().copied()).collect();
    run_rill(bootstrap, &all, b"")
}

/// Spawns a TLS broker (not waiting for it) with `extra` flags after the TLS ones.
fn spawn_tls_broker(node_id: u32, port: u16, certs: &Certs, client_auth: &str, extra: &[String]) -> BrokerProcess {
    let mut extra_args = certs.broker_args(client_auth);
    extra_args.extend(extra.iter().cloned());
    BrokerProcess::spawn(BrokerOptions { node_id, port: Some(port), extra_args, ..BrokerOptions::default() })
}

fn wait_ready_tls(broker: &mut BrokerProcess, certs: &Certs, client: &str) {
    let (id, tls) = (broker.node_id(), certs.client_tls(client));
    broker.wait_ready_by(|address| is_ready(address, id, &tls));
}

fn brokers_listed(bootstrap: &str, tls_args: &[String]) -> Vec<u64> {
    let status = rill(bootstrap, tls_args, &["cluster", "status", "--format", "json"]).success();
    let status: Value = serde_json::from_str(&status.stdout).expect("cluster status prints JSON");
    let brokers = status["brokers"].as_array().expect("a broker list");
    brokers.iter().map(|b| b["id"].as_u64().expect("a broker id")).collect()
}

#[test]
fn a_cluster_requiring_client_certificates_replicates_and_refuses_everyone_without_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::dev_certs(&dir.path().join("certs"), &["admin"], false);
    let foreign = Certs::foreign(&dir.path().join("foreign"), &["mallory"]);
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let voters: String = (0..3).map(|i| format!("{}@127.0.0.1:{}", i + 1, ports[i])).collect::<Vec<_>>().join(",");
    // Handshake failures are logged at debug level by the listener's module.
    let cluster_args = vec![
        "--controller-voters".to_owned(),
        voters.clone(),
        "--log".to_owned(),
        "info,openraft=warn,rill_broker::security=debug".to_owned(),
    ];
    let mut nodes: Vec<BrokerProcess> =
        (0..3).map(|i| spawn_tls_broker(i as u32 + 1, ports[i], &certs, "require", &cluster_args)).collect();
    for node in &mut nodes {
        wait_ready_tls(node, &certs, "admin");
    }
    let bootstrap = nodes.iter().map(BrokerProcess::addr).collect::<Vec<_>>().join(",");
    let admin = certs.cli_args(Some("admin"));

    // Forms, elects and replicates: acks=all (the CLI's default) needs every ISR member's copy.
    rill(&bootstrap, &admin, &["topic", "create", "secure", "--partitions", "2", "--replication-factor", "3"])
        .success();
    let lines: Vec<String> = (0..50).map(|i| format!("secret-{i}")).collect();
    let all: Vec<&str> = admin.iter().map(String::as_str).chain(["produce", "secure", "--acks", "all"]).collect();
    run_rill(&bootstrap, &all, &lines_input(&lines)).success();
    let read = rill(&bootstrap, &admin, &["consume", "secure", "--from-beginning", "--max-messages", "50"]).success();
    let mut got: Vec<String> = read.stdout.lines().map(str::to_owned).collect();
    let mut want = lines.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every acknowledged record reads back");
    let described = rill(&bootstrap, &admin, &["topic", "describe", "secure", "--format", "json"]).success();
    let described: Value = serde_json::from_str(&described.stdout).unwrap();
    for partition in described["partitions"].as_array().unwrap() {
        assert_eq!(partition["isr"].as_array().unwrap().len(), 3, "replicated to all three: {partition}");
    }

    plaintext_clients_are_told_to_pass_the_ca(&nodes[0]);
    clients_that_do_not_trust_the_broker_are_told_why(&nodes[0], &foreign);
    clients_without_an_accepted_certificate_are_refused(&nodes[0], &certs, &foreign);
    a_broker_with_a_foreign_certificate_cannot_join(&nodes, ports[3], &voters, &foreign, &bootstrap, &admin);
}

fn plaintext_clients_are_told_to_pass_the_ca(node: &BrokerProcess) {
    let out = rill(&node.addr(), &[], &["topic", "list"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("speaks TLS") && out.stderr.contains("pass --tls-ca") && out.stderr.contains(&node.addr()),
        "{}",
        out.stderr
    );
}

fn clients_that_do_not_trust_the_broker_are_told_why(node: &BrokerProcess, foreign: &Certs) {
    let out = rill(&node.addr(), &foreign.cli_args(None), &["topic", "list"]);
    assert!(!out.status.success());
    let expected = format!("TLS handshake with {} failed: certificate not trusted", node.addr());
    assert!(out.stderr.contains(&expected) && out.stderr.contains("--tls-ca"), "{}", out.stderr);
}

fn clients_without_an_accepted_certificate_are_refused(node: &BrokerProcess, certs: &Certs, foreign: &Certs) {
    let out = rill(&node.addr(), &certs.cli_args(None), &["topic", "list"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("requires a client certificate"), "{}", out.stderr);

    let path = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    let mallory = vec![
        "--tls-ca".to_owned(),
        path(certs.ca()),
        "--tls-cert".to_owned(),
        path(foreign.cert("mallory")),
        "--tls-key".to_owned(),
        path(foreign.key("mallory")),
    ];
    let out = rill(&node.addr(), &mallory, &["topic", "list"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("refused this client's certificate"), "{}", out.stderr);
}

/// A fourth broker whose certificate comes from another CA lists itself and the cluster as voters: the
/// cluster refuses its connections at the handshake (client auth is required) and it cannot verify theirs,
/// so it never registers, while the cluster goes on serving.
fn a_broker_with_a_foreign_certificate_cannot_join(
    nodes: &[BrokerProcess],
    port: u16,
    voters: &str,
    foreign: &Certs,
    bootstrap: &str,
    admin: &[String],
) {
    let logs_before: Vec<usize> = nodes.iter().map(|n| handshake_failures(&n.log())).collect();
    let args = vec!["--controller-voters".to_owned(), format!("{voters},4@127.0.0.1:{port}")];
    let mut intruder = spawn_tls_broker(4, port, foreign, "require", &args);
    wait_until(Duration::from_millis(READY_MS_MAX), "the cluster refuses the intruder's handshakes", || {
        nodes.iter().zip(&logs_before).all(|(n, before)| handshake_failures(&n.log()) > *before)
    });
    wait_until(Duration::from_millis(READY_MS_MAX), "the intruder finds no controller to register with", || {
        intruder.log().contains("cannot register yet")
    });
    assert!(!intruder.has_exited(), "it keeps trying, so its absence below is the cluster's doing");
    assert_eq!(brokers_listed(bootstrap, admin), vec![1, 2, 3], "the intruder is never registered");
    let all: Vec<&str> = admin.iter().map(String::as_str).chain(["produce", "secure"]).collect();
    run_rill(bootstrap, &all, b"after-the-intruder\n").success();
    let read = rill(bootstrap, admin, &["consume", "secure", "--from-beginning", "--max-messages", "51"]).success();
    assert!(read.stdout.lines().any(|l| l == "after-the-intruder"), "the cluster keeps working");
    intruder.kill9();
}

fn handshake_failures(log: &str) -> usize {
    log.matches("TLS handshake on the gRPC listener failed").count()
}

#[test]
fn kafka_clients_produce_and_consume_over_ssl_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::dev_certs(dir.path(), &["admin"], false);
    let mut broker = spawn_tls_broker(1, free_port(), &certs, "require", &[]);
    wait_ready_tls(&mut broker, &certs, "admin");
    let kafka = broker.kafka_addr();
    let ssl = certs.kcat_args("admin");
    let kcat = |args: &[&str], stdin: Option<&Path>| {
        let mut all: Vec<&str> = ssl.iter().map(String::as_str).collect();
        all.extend_from_slice(&["-b", &kafka]);
        all.extend_from_slice(args);
        if let Some(path) = stdin {
            all.extend_from_slice(&["-l", path.to_str().unwrap()]);
        }
        run_kcat(&all, READY_MS_MAX)
    };
    let input = dir.path().join("lines.txt");
    std::fs::write(&input, lines_input((0..20).map(|i| format!("kafka-{i}")))).unwrap();
    rill(&broker.addr(), &certs.cli_args(Some("admin")), &["topic", "create", "over-ssl", "--partitions", "1"])
        .success();
    kcat(&["-P", "-t", "over-ssl"], Some(&input)).success();
    let read = kcat(&["-C", "-t", "over-ssl", "-o", "beginning", "-e", "-q"], None).success();
    let got: Vec<&str> = read.stdout.lines().collect();
    let want: Vec<String> = (0..20).map(|i| format!("kafka-{i}")).collect();
    assert_eq!(got, want);

    // Without a client certificate the Kafka listener refuses the handshake too.
    let anonymous: Vec<String> = vec![
        "-X".into(),
        "security.protocol=SSL".into(),
        "-X".into(),
        format!("ssl.ca.location={}", certs.ca().display()),
        "-b".into(),
        kafka.clone(),
        "-L".into(),
        "-m".into(),
        "3".into(),
    ];
    let refused = run_kcat(&anonymous.iter().map(String::as_str).collect::<Vec<_>>(), READY_MS_MAX);
    assert!(!refused.status.success(), "metadata without a client certificate: {}", refused.stdout);
}

#[test]
fn sighup_serves_new_certificate_files_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::dev_certs(dir.path(), &["admin"], false);
    // Polling off: only the signal can reload.
    let extra = vec!["--tls-reload-poll-ms".to_owned(), "0".to_owned()];
    let mut broker = spawn_tls_broker(1, free_port(), &certs, "request", &extra);
    wait_ready_tls(&mut broker, &certs, "admin");
    let old = first_certificate(&certs.cert("broker"));
    assert_eq!(served_certificate(&broker.addr(), &certs.ca(), None).unwrap(), old);

    let old_ca = dir.path().join("old-ca.pem");
    std::fs::copy(certs.ca(), &old_ca).unwrap();
    Certs::dev_certs(dir.path(), &["admin"], true);
    let new = first_certificate(&certs.cert("broker"));
    assert_ne!(old, new);
    // A connection made now, before the signal, still gets the old certificate.
    assert_eq!(served_certificate(&broker.addr(), &old_ca, None).unwrap(), old, "no reload without SIGHUP");

    broker.sighup();
    wait_until(Duration::from_millis(RELOAD_MS_MAX), "new connections get the new certificate", || {
        served_certificate(&broker.addr(), &certs.ca(), None).is_ok_and(|served| served == new)
    });
    assert!(served_certificate(&broker.addr(), &old_ca, None).is_err(), "the old CA no longer verifies it");
    let listed = rill(&broker.addr(), &certs.cli_args(Some("admin")), &["cluster", "status"]).success();
    assert!(listed.stdout.contains("127.0.0.1"), "{}", listed.stdout);
    assert!(!broker.has_exited(), "SIGHUP does not stop a TLS broker");
}

#[test]
fn changed_files_are_reloaded_and_a_bad_one_keeps_the_previous_material() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::dev_certs(dir.path(), &["admin"], false);
    let extra = vec!["--tls-reload-poll-ms".to_owned(), "100".to_owned()];
    let mut broker = spawn_tls_broker(1, free_port(), &certs, "request", &extra);
    wait_ready_tls(&mut broker, &certs, "admin");
    let old = first_certificate(&certs.cert("broker"));

    let good_cert = std::fs::read(certs.cert("broker")).unwrap();
    std::fs::write(certs.cert("broker"), b"-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    wait_until(Duration::from_millis(RELOAD_MS_MAX), "the broker reports the bad file", || {
        broker.log().contains("TLS files not reloaded")
    });
    assert_eq!(served_certificate(&broker.addr(), &certs.ca(), None).unwrap(), old, "the old material stays");
    std::fs::write(certs.cert("broker"), good_cert).unwrap();

    Certs::dev_certs(dir.path(), &["admin"], true);
    let new = first_certificate(&certs.cert("broker"));
    wait_until(Duration::from_millis(RELOAD_MS_MAX), "the changed files are served", || {
        served_certificate(&broker.addr(), &certs.ca(), None).is_ok_and(|served| served == new)
    });
    rill(&broker.addr(), &certs.cli_args(Some("admin")), &["cluster", "status"]).success();
}

/// Writes `bytes` to `address`, then reads until the broker closes the connection (bounded by a timeout).
fn send_and_read_to_close(address: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    stream.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    let outcome = stream.read_to_end(&mut answer);
    assert!(outcome.is_ok() || !answer.is_empty(), "the broker closes the connection: {outcome:?}");
    answer
}

#[test]
fn the_wrong_protocol_on_either_port_closes_the_connection_and_never_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::dev_certs(dir.path(), &["admin"], false);
    let mut tls_broker = spawn_tls_broker(1, free_port(), &certs, "require", &[]);
    let mut plain_broker = BrokerProcess::spawn(BrokerOptions::default());
    wait_ready_tls(&mut tls_broker, &certs, "admin");
    plain_broker.wait_ready();

    // A Kafka ApiVersions request in plaintext, and garbage, on both TLS ports: at most an alert comes back.
    let api_versions = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0];
    for address in [tls_broker.kafka_addr(), tls_broker.addr()] {
        for bytes in [&api_versions[..], b"\x16\x03\x01\xff\xffgarbage", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"] {
            let answer = send_and_read_to_close(&address, bytes);
            assert!(answer.len() <= 7, "{address}: no more than a TLS alert: {answer:?}");
        }
    }
    // TLS clients at a plaintext broker are told it does not speak TLS.
    let out = rill(&plain_broker.addr(), &certs.cli_args(Some("admin")), &["topic", "list"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("TLS handshake with") && out.stderr.contains("without TLS"), "{}", out.stderr);
    let tls_hello = send_and_read_to_close(&plain_broker.kafka_addr(), b"\x16\x03\x01\x00\x05hello");
    assert!(tls_hello.is_empty(), "the plaintext Kafka listener closes on a TLS hello: {tls_hello:?}");

    // Both still serve.
    rill(&tls_broker.addr(), &certs.cli_args(Some("admin")), &["cluster", "status"]).success();
    plain_broker.rill(&["cluster", "status"], b"").success();
    assert!(!tls_broker.has_exited() && !plain_broker.has_exited());
}

#[test]
fn bad_tls_files_stop_the_broker_at_start_up_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::dev_certs(dir.path(), &["admin"], false);
    use rill_tests::broker_start_refusal as start;
    let mut missing = certs.broker_args("require");
    missing[1] = dir.path().join("absent.pem").to_string_lossy().into_owned();
    let err = start(&missing);
    assert!(err.contains("cannot read tls-cert") && err.contains("absent.pem"), "{err}");

    let mut mismatched = certs.broker_args("require");
    mismatched[3] = certs.key("admin").to_string_lossy().into_owned();
    let err = start(&mismatched);
    assert!(err.contains("does not belong to the certificate"), "{err}");

    let only_cert = vec!["--tls-cert".to_owned(), certs.cert("broker").to_string_lossy().into_owned()];
    assert!(start(&only_cert).contains("tls-cert is set without tls-key"));
}
