//! The material's start-up checks, principal mapping, reload, and handshakes over loopback.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::security::Principal;

/// A CA and what it signed, as PEM.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { pem, issuer: Issuer::new(params, key) }
}

/// A leaf certificate and key usable as server and client certificate.
fn leaf(ca: &Ca, cn: &str, sans: Vec<SanType>) -> (String, String) {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn localhost() -> Vec<SanType> {
    vec![SanType::DnsName("localhost".try_into().unwrap()), SanType::IpAddress([127, 0, 0, 1].into())]
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn settings(dir: &Path, ca: &Ca, client_auth: ClientAuth) -> TlsConfig {
    let (cert, key) = leaf(ca, "broker", localhost());
    TlsConfig {
        cert: write(dir, "broker.pem", &cert),
        key: write(dir, "broker-key.pem", &key),
        ca: Some(write(dir, "ca.pem", &ca.pem)),
        client_auth,
        principal_from: PrincipalFrom::CommonName,
        reload_poll_ms: 0,
    }
}

fn der(pem: &str) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

#[test]
fn the_principal_comes_from_the_name_the_rule_reads() {
    let ca = new_ca("test CA");
    let sans = vec![
        SanType::DnsName("app.example.com".try_into().unwrap()),
        SanType::Rfc822Name("alice@example.com".try_into().unwrap()),
        SanType::URI("spiffe://example.com/alice".try_into().unwrap()),
    ];
    let cert = der(&leaf(&ca, "alice", sans).0);
    let of = |rule| principal_of(&cert, rule);
    assert_eq!(of(PrincipalFrom::CommonName), Some(Principal::user("alice")));
    assert_eq!(of(PrincipalFrom::SanDns), Some(Principal::user("app.example.com")));
    assert_eq!(of(PrincipalFrom::SanEmail), Some(Principal::user("alice@example.com")));
    assert_eq!(of(PrincipalFrom::SanUri), Some(Principal::user("spiffe://example.com/alice")));
    let bare = der(&leaf(&ca, "bob", Vec::new()).0);
    assert_eq!(principal_of(&bare, PrincipalFrom::SanUri), None, "no URI name: no principal");
}

#[test]
fn start_up_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("test CA");
    let good = settings(dir.path(), &ca, ClientAuth::Require);
    Tls::load(good.clone()).unwrap();

    let missing = TlsConfig { cert: dir.path().join("absent.pem"), ..good.clone() };
    let err = Tls::load(missing).unwrap_err().to_string();
    assert!(err.contains("cannot read tls-cert") && err.contains("absent.pem"), "{err}");

    let garbage = TlsConfig { key: write(dir.path(), "garbage.pem", "not a key"), ..good.clone() };
    let err = Tls::load(garbage).unwrap_err().to_string();
    assert!(err.contains("tls-key") && err.contains("no PEM private key"), "{err}");

    let (_, other_key) = leaf(&ca, "other", Vec::new());
    let mismatched = TlsConfig { key: write(dir.path(), "other-key.pem", &other_key), ..good.clone() };
    let err = Tls::load(mismatched).unwrap_err().to_string();
    assert!(err.contains("does not belong to the certificate"), "{err}");

    let empty_ca = TlsConfig { ca: Some(write(dir.path(), "empty.pem", "")), ..good };
    let err = Tls::load(empty_ca).unwrap_err().to_string();
    assert!(err.contains("tls-ca") && err.contains("no PEM CERTIFICATE"), "{err}");
}

#[test]
fn a_bad_file_on_reload_keeps_the_previous_material() {
    let dir = tempfile::tempdir().unwrap();
    let tls = Tls::load(settings(dir.path(), &new_ca("test CA"), ClientAuth::None)).unwrap();
    let before = tls.current();
    std::fs::write(&tls.config().cert, "-----BEGIN CERTIFICATE-----\ntruncated").unwrap();
    assert!(tls.reload().is_err());
    assert!(Arc::ptr_eq(&before, &tls.current()), "the old material stays in force");
    let (cert, key) = leaf(&new_ca("another CA"), "broker", localhost());
    std::fs::write(&tls.config().cert, cert).unwrap();
    std::fs::write(&tls.config().key, key).unwrap();
    tls.reload().unwrap();
    assert!(!Arc::ptr_eq(&before, &tls.current()), "good files replace it");
}

/// Dials the gRPC-side acceptor at `address` with `client` and writes and reads one byte.
async fn exchange(address: std::net::SocketAddr, client: Arc<rustls::ClientConfig>) -> std::io::Result<u8> {
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(client).connect(name, tcp).await?;
    stream.write_all(&[7]).await?;
    let mut answer = [0];
    stream.read_exact(&mut answer).await?;
    Ok(answer[0])
}

fn client_config(ca_pem: &str, identity: Option<(String, String)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    roots.add(der(ca_pem)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![der(&cert)], PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap())
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// Serves one connection at a time: handshake, then echo one byte plus one and report the identity.
async fn serve(tls: Arc<Tls>) -> (std::net::SocketAddr, tokio::sync::mpsc::Receiver<crate::security::PeerIdentity>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (identities_tx, identities) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = listener.accept().await.unwrap();
            match handshake(tcp, remote, Some(&tls), Listener::Kafka).await {
                Ok(mut accepted) => {
                    let mut byte = [0];
                    if accepted.read_exact(&mut byte).await.is_ok() {
                        let _ = accepted.write_all(&[byte[0] + 1]).await;
                        let _ = accepted.flush().await;
                    }
                    identities_tx.send(accepted.identity).await.unwrap();
                }
                Err(_) => continue,
            }
        }
    });
    (address, identities)
}

#[tokio::test]
async fn required_client_certificates_are_verified_and_name_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("test CA");
    let tls = Tls::load(settings(dir.path(), &ca, ClientAuth::Require)).unwrap();
    let (address, mut identities) = serve(tls).await;

    let alice = client_config(&ca.pem, Some(leaf(&ca, "alice", Vec::new())));
    assert_eq!(exchange(address, alice).await.unwrap(), 8);
    let identity = identities.recv().await.unwrap();
    assert!(identity.tls);
    assert_eq!(identity.certificate_principal, Some(Principal::user("alice")));

    let anonymous = client_config(&ca.pem, None);
    assert!(exchange(address, anonymous).await.is_err(), "no client certificate: refused");
    let foreign = new_ca("foreign CA");
    let mallory = client_config(&ca.pem, Some(leaf(&foreign, "mallory", Vec::new())));
    assert!(exchange(address, mallory).await.is_err(), "a certificate of another CA: refused");
}

#[tokio::test]
async fn requested_client_certificates_are_optional() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("test CA");
    let tls = Tls::load(settings(dir.path(), &ca, ClientAuth::Request)).unwrap();
    let (address, mut identities) = serve(tls).await;
    assert_eq!(exchange(address, client_config(&ca.pem, None)).await.unwrap(), 8);
    let identity = identities.recv().await.unwrap();
    assert_eq!((identity.tls, identity.certificate_principal), (true, None));
}

#[tokio::test]
async fn garbage_and_plaintext_on_a_tls_port_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let tls = Tls::load(settings(dir.path(), &new_ca("test CA"), ClientAuth::None)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, remote) = listener.accept().await.unwrap();
        handshake(tcp, remote, Some(&tls), Listener::Grpc).await.map(|_| ())
    });
    let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
    client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    // The server answers with at most an alert and closes: the read ends instead of hanging.
    let _ = client.read_to_end(&mut answer).await;
    assert!(answer.len() < 64, "{answer:?}");
    assert!(server.await.unwrap().is_err(), "the handshake fails");
}

/// A gRPC service that answers every call with the `PeerIdentity` tonic found in the request's extensions.
struct Echo;

#[tonic::async_trait]
impl rill_proto::raft_v1::controller_raft_server::ControllerRaft for Echo {
    async fn append_entries(
        &self,
        request: tonic::Request<rill_proto::raft_v1::RaftMessage>,
    ) -> Result<tonic::Response<rill_proto::raft_v1::RaftReply>, tonic::Status> {
        let identity = request.extensions().get::<crate::security::PeerIdentity>().cloned();
        let text = match identity {
            None => "none".to_string(),
            Some(identity) => format!(
                "tls={} principal={} remote={}",
                identity.tls,
                identity.certificate_principal.map_or("-".to_string(), |p| p.to_string()),
                identity.remote_addr.is_some()
            ),
        };
        Ok(tonic::Response::new(rill_proto::raft_v1::RaftReply { result_json: text.into_bytes().into() }))
    }

    async fn vote(
        &self,
        request: tonic::Request<rill_proto::raft_v1::RaftMessage>,
    ) -> Result<tonic::Response<rill_proto::raft_v1::RaftReply>, tonic::Status> {
        self.append_entries(request).await
    }

    async fn install_snapshot(
        &self,
        _: tonic::Request<rill_proto::raft_v1::SnapshotChunk>,
    ) -> Result<tonic::Response<rill_proto::raft_v1::RaftReply>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }
}

/// Serves `Echo` through `grpc_incoming` and asks it once through `peer_channel`, as brokers dial each other.
async fn identity_seen_by_grpc(server_tls: Option<Arc<Tls>>, dialer_tls: Option<Arc<Tls>>) -> String {
    use rill_proto::raft_v1::controller_raft_client::ControllerRaftClient;
    use rill_proto::raft_v1::controller_raft_server::ControllerRaftServer;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(ControllerRaftServer::new(Echo))
        .serve_with_incoming(grpc_incoming(listener, server_tls));
    let server = tokio::spawn(server);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://localhost:{}", address.port())).unwrap();
    let mut client = ControllerRaftClient::new(peer_channel(endpoint, dialer_tls.as_ref()));
    let request = rill_proto::raft_v1::RaftMessage { request_json: Vec::new().into() };
    let reply = client.vote(request).await.map(|r| r.into_inner().result_json);
    server.abort();
    String::from_utf8(reply.expect("the call succeeds").to_vec()).unwrap()
}

#[tokio::test]
async fn every_grpc_request_carries_the_peer_identity_with_and_without_tls() {
    assert_eq!(identity_seen_by_grpc(None, None).await, "tls=false principal=- remote=true");
    let dir = tempfile::tempdir().unwrap();
    let tls = Tls::load(settings(dir.path(), &new_ca("test CA"), ClientAuth::Require)).unwrap();
    // A broker dialling another presents its own certificate (CN broker) as its client certificate.
    let seen = identity_seen_by_grpc(Some(tls.clone()), Some(tls)).await;
    assert_eq!(seen, "tls=true principal=User:broker remote=true");
}

/// The limit is `TLS_HANDSHAKE_TIMEOUT_MS` in the broker; a short one here keeps the test fast.
#[tokio::test]
async fn a_silent_client_loses_its_handshake_at_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let tls = Tls::load(settings(dir.path(), &new_ca("test CA"), ClientAuth::None)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _silent = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (tcp, remote) = listener.accept().await.unwrap();
    let started = std::time::Instant::now();
    let limit = Duration::from_millis(200);
    let outcome = accept::handshake_within(tcp, remote, Some(&tls), Listener::Kafka, limit).await;
    let error = outcome.err().expect("no handshake without a ClientHello");
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert!(started.elapsed() >= limit && started.elapsed() < limit * 10, "{:?}", started.elapsed());
}
