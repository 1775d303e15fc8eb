//! `rill dev-certs DIR`: a local CA and the certificates a development cluster needs, so trying TLS takes one
//! command. Not for production: the CA key sits beside the certificates and nothing expires soon.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

use super::DevCertsArgs;

/// The broker certificate's common name: brokers authenticate to each other as `User:broker` under the
/// default `--tls-principal-from cn`.
const BROKER_NAME: &str = "broker";

pub fn run(args: DevCertsArgs) -> anyhow::Result<()> {
    let clients = if args.clients.is_empty() { vec!["admin".to_owned()] } else { args.clients.clone() };
    for name in &clients {
        check_client_name(name)?;
    }
    let dir = &args.dir;
    let mut files =
        vec!["ca.pem", "ca-key.pem", "broker.pem", "broker-key.pem"].into_iter().map(String::from).collect::<Vec<_>>();
    for name in &clients {
        files.push(format!("{name}.pem"));
        files.push(format!("{name}-key.pem"));
    }
    if !args.force
        && let Some(existing) = files.iter().map(|f| dir.join(f)).find(|p| p.exists())
    {
        anyhow::bail!("{} exists; pass --force to overwrite the certificates in {}", existing.display(), dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let (ca_pem, ca_key, issuer) = certificate_authority()?;
    write(dir, "ca.pem", &ca_pem, false)?;
    write(dir, "ca-key.pem", &ca_key, true)?;
    let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    hosts.extend(args.hosts.iter().filter(|h| !hosts.contains(h)).cloned().collect::<Vec<_>>());
    let (broker_pem, broker_key) = leaf(&issuer, BROKER_NAME, &hosts, true)?;
    write(dir, "broker.pem", &broker_pem, false)?;
    write(dir, "broker-key.pem", &broker_key, true)?;
    for name in &clients {
        let (pem, key) = leaf(&issuer, name, &[], false)?;
        write(dir, &format!("{name}.pem"), &pem, false)?;
        write(dir, &format!("{name}-key.pem"), &key, true)?;
    }
    print!("{}", summary(dir, &hosts, &clients));
    Ok(())
}

/// Client names become file names and principals: keep them to characters safe in both.
fn check_client_name(name: &str) -> anyhow::Result<()> {
    let safe = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    anyhow::ensure!(safe && !name.starts_with('.'), "client name '{name}' must be letters, digits, '.', '_' or '-'");
    anyhow::ensure!(!["ca", "broker"].contains(&name), "client name '{name}' would overwrite the {name} files");
    Ok(())
}

fn certificate_authority() -> anyhow::Result<(String, String, Issuer<'static, KeyPair>)> {
    let mut params = CertificateParams::new(Vec::new())?;
    params.distinguished_name.push(DnType::CommonName, "Rill development CA");
    // It signs leaf certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let pem = params.self_signed(&key)?.pem();
    let key_pem = key.serialize_pem();
    Ok((pem, key_pem, Issuer::new(params, key)))
}

/// A certificate named `name` (its CN), for the `hosts` given as SANs. A broker's certificate serves both
/// ends: it is the server certificate of its listeners and the client certificate it presents to peers.
fn leaf(issuer: &Issuer<'_, KeyPair>, name: &str, hosts: &[String], broker: bool) -> anyhow::Result<(String, String)> {
    let mut params = CertificateParams::new(Vec::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = hosts
        .iter()
        .map(|host| match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(host.clone().try_into().with_context(|| format!("bad host name '{host}'"))?)),
        })
        .collect::<anyhow::Result<_>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = if broker {
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    let key = KeyPair::generate()?;
    let pem = params.signed_by(&key, issuer)?.pem();
    Ok((pem, key.serialize_pem()))
}

/// Writes `name` in `dir` through a temporary file and a rename, so a broker reloading its files never reads
/// half of one; keys get mode 0600.
fn write(dir: &Path, name: &str, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all())?;
    // The mode of `open` applies only to a new file; a leftover temporary file keeps its own.
    std::fs::set_permissions(&temporary, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    std::fs::rename(&temporary, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn summary(dir: &Path, hosts: &[String], clients: &[String]) -> String {
    let d = |file: &str| -> PathBuf { dir.join(file) };
    let first = &clients[0];
    let mut text = format!("Wrote a development CA and certificates to {}:\n", dir.display());
    text += "  ca.pem, ca-key.pem          the CA; ca-key.pem signs everything, keep it private\n";
    text += &format!(
        "  broker.pem, broker-key.pem  the brokers' certificate (User:{BROKER_NAME}), for {}\n",
        hosts.join(", ")
    );
    for name in clients {
        text += &format!("  {name}.pem, {name}-key.pem  a client certificate of User:{name}\n");
    }
    text += &format!(
        "\nStart each broker with:\n  rill-broker --tls-cert {} --tls-key {} --tls-ca {} --tls-client-auth require\n",
        d("broker.pem").display(),
        d("broker-key.pem").display(),
        d("ca.pem").display()
    );
    text += &format!(
        "\nThen the CLI (or set RILL_TLS_CA, RILL_TLS_CERT and RILL_TLS_KEY):\n  rill --tls-ca {} --tls-cert {} --tls-key {} cluster status\n",
        d("ca.pem").display(),
        d(&format!("{first}.pem")).display(),
        d(&format!("{first}-key.pem")).display()
    );
    text += &format!(
        "\nKafka clients (kcat, librdkafka, confluent-kafka) on the Kafka port:\n  -X security.protocol=SSL -X ssl.ca.location={} \\\n  -X ssl.certificate.location={} -X ssl.key.location={}\n",
        d("ca.pem").display(),
        d(&format!("{first}.pem")).display(),
        d(&format!("{first}-key.pem")).display()
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path, force: bool) -> DevCertsArgs {
        DevCertsArgs { dir: dir.to_path_buf(), hosts: vec!["rill-1".into()], clients: vec![], force }
    }

    #[test]
    fn writes_a_ca_broker_and_default_client_with_private_keys() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        run(args(dir.path(), false)).unwrap();
        for file in ["ca.pem", "ca-key.pem", "broker.pem", "broker-key.pem", "admin.pem", "admin-key.pem"] {
            let metadata = std::fs::metadata(dir.path().join(file)).unwrap();
            let mode = metadata.permissions().mode() & 0o777;
            assert_eq!(mode, if file.ends_with("-key.pem") { 0o600 } else { 0o644 }, "{file}");
        }
        let refused = run(args(dir.path(), false)).unwrap_err().to_string();
        assert!(refused.contains("--force"), "{refused}");
        let before = std::fs::read(dir.path().join("ca.pem")).unwrap();
        run(args(dir.path(), true)).unwrap();
        assert_ne!(before, std::fs::read(dir.path().join("ca.pem")).unwrap(), "--force writes a new CA");
    }

    #[test]
    fn client_names_must_be_safe_file_names() {
        for bad in ["", "../x", "a/b", "ca", "broker", ".hidden"] {
            assert!(check_client_name(bad).is_err(), "{bad}");
        }
        check_client_name("alice-1.test").unwrap();
    }
}
