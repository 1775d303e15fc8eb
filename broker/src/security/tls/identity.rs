//! The principal a verified client certificate names, by the rule of `--tls-principal-from`.

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use crate::config::PrincipalFrom;
use crate::security::Principal;

/// The principal of `certificate` (a client's end-entity certificate, already verified by the handshake), or
/// `None` if it has no name of the kind the rule reads: such a client connects, as anonymous.
pub fn principal_of(certificate: &CertificateDer<'_>, rule: PrincipalFrom) -> Option<Principal> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let name = match rule {
        PrincipalFrom::CommonName => parsed.subject().iter_common_name().next()?.as_str().ok()?.to_string(),
        PrincipalFrom::SanDns | PrincipalFrom::SanEmail | PrincipalFrom::SanUri => {
            let names = parsed.subject_alternative_name().ok()??;
            names.value.general_names.iter().find_map(|name| match (rule, name) {
                (PrincipalFrom::SanDns, GeneralName::DNSName(n))
                | (PrincipalFrom::SanEmail, GeneralName::RFC822Name(n))
                | (PrincipalFrom::SanUri, GeneralName::URI(n)) => Some(n.to_string()),
                _ => None,
            })?
        }
    };
    (!name.is_empty()).then(|| Principal::user(name))
}
