//! TLS for tests of TLS brokers: certificates written by the real `rill dev-certs`, a foreign CA's made with
//! rcgen in the same layout, the flags that hand them to `rill-broker`, the CLI and Kafka clients, a readiness
//! probe over TLS, and a raw handshake that reports the certificate a listener serves.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::broker::run_rill;

/// A directory of certificates as `rill dev-certs` lays it out.
#[derive(Debug, Clone)]
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    /// Runs `rill dev-certs DIR --client NAME...` (with `--force` when `force`).
    ///
    /// # Panics
    ///
    /// If the command fails.
    pub fn dev_certs(dir: &Path, clients: &[&str], force: bool) -> Certs {
        let dir_text = dir.to_str().expect("UTF-8 path");
        let mut args = vec!["dev-certs", dir_text];
        for client in clients {
            args.extend(["--client", client]);
        }
        if force {
            args.push("--force");
        }
        run_rill("127.0.0.1:1", &args, b"").success();
        Certs { dir: dir.to_path_buf() }
    }

    /// A CA other than any `dev-certs` made, with a broker certificate for loopback and client certificates
    /// for `clients`, in the same file layout.
    pub fn foreign(dir: &Path, clients: &[&str]) -> Certs {
        std::fs::create_dir_all(dir).expect("create the foreign CA's directory");
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Foreign CA");
        let ca_key = KeyPair::generate().expect("CA key");
        std::fs::write(dir.join("ca.pem"), params.self_signed(&ca_key).expect("CA").pem()).expect("write ca.pem");
        let issuer = Issuer::new(params, ca_key);
        let loopback =
            vec![SanType::DnsName("localhost".try_into().expect("name")), SanType::IpAddress([127, 0, 0, 1].into())];
        let mut leaves = vec![("broker", loopback)];
        leaves.extend(clients.iter().map(|name| (*name, Vec::new())));
        for (name, sans) in leaves {
            let mut params = CertificateParams::new(Vec::new()).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, name);
            params.subject_alt_names = sans;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &issuer).expect("leaf");
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write certificate");
            std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).expect("write key");
        }
        Certs { dir: dir.to_path_buf() }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-key.pem"))
    }

    /// `--tls-cert`, `--tls-key`, `--tls-ca` and `--tls-client-auth CLIENT_AUTH` for `rill-broker`.
    pub fn broker_args(&self, client_auth: &str) -> Vec<String> {
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        vec![
            "--tls-cert".into(),
            path(self.cert("broker")),
            "--tls-key".into(),
            path(self.key("broker")),
            "--tls-ca".into(),
            path(self.ca()),
            "--tls-client-auth".into(),
            client_auth.into(),
        ]
    }

    /// `--tls-ca`, and `--tls-cert`/`--tls-key` of `client` if given, for the CLI.
    pub fn cli_args(&self, client: Option<&str>) -> Vec<String> {
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut args = vec!["--tls-ca".to_owned(), path(self.ca())];
        if let Some(name) = client {
            args.extend(["--tls-cert".to_owned(), path(self.cert(name)), "--tls-key".to_owned(), path(self.key(name))]);
        }
        args
    }

    /// The client library's TLS settings for `client`.
    pub fn client_tls(&self, client: &str) -> rill_client::TlsConfig {
        rill_client::TlsConfig { ca: Some(self.ca()), cert: Some(self.cert(client)), key: Some(self.key(client)) }
    }

    /// librdkafka's (kcat's) `-X` settings for TLS with `client`'s certificate.
    pub fn kcat_args(&self, client: &str) -> Vec<String> {
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        [
            "security.protocol=SSL".to_owned(),
            format!("ssl.ca.location={}", path(self.ca())),
            format!("ssl.certificate.location={}", path(self.cert(client))),
            format!("ssl.key.location={}", path(self.key(client))),
        ]
        .into_iter()
        .flat_map(|setting| ["-X".to_owned(), setting])
        .collect()
    }
}

/// Whether the TLS broker `node_id` at `address` is ready: it answers DescribeCluster over TLS with `tls`,
/// knows an active controller and lists itself as registered and unfenced.
pub fn is_ready(address: &str, node_id: u32, tls: &rill_client::TlsConfig) -> bool {
    let config = rill_client::ClientConfig {
        tls: Some(tls.clone()),
        connect_timeout_ms: 1_000,
        request_timeout_ms: 2_000,
        ..rill_client::ClientConfig::new(address).expect("address")
    };
    crate::rpc::block_on(async {
        let Ok(admin) = rill_client::Admin::connect(config).await else { return false };
        let Ok(cluster) = admin.describe_cluster().await else { return false };
        cluster.active_controller != 0 && cluster.brokers.iter().any(|b| b.id == node_id && !b.fenced)
    })
}

/// Runs a TLS handshake with the listener at `address` (trusting `ca`, presenting `client`'s certificate from
/// `certs` if given) and returns the certificate it served.
///
/// # Errors
///
/// The handshake failed, with rustls's reason.
pub fn served_certificate(
    address: &str,
    ca: &Path,
    client: Option<(&Certs, &str)>,
) -> anyhow::Result<CertificateDer<'static>> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca)? {
        roots.add(certificate?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((certs, name)) => {
            let chain = CertificateDer::pem_file_iter(certs.cert(name))?.collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(certs.key(name))?)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let address = address.to_owned();
    crate::rpc::block_on(async move {
        let tcp = tokio::net::TcpStream::connect(&address).await?;
        let name = ServerName::try_from("localhost")?;
        let connecting = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp);
        let stream = tokio::time::timeout(Duration::from_secs(5), connecting).await??;
        let served = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).cloned();
        served.map(|c| c.into_owned()).ok_or_else(|| anyhow::anyhow!("no certificate served"))
    })
}

/// The first certificate in the PEM file at `path`.
pub fn first_certificate(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
