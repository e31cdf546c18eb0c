//! TLS trust: the CA bundle the service ships (Amazon RDS) and the PEM bundles it reads.

use std::path::Path;

use anyhow::Context;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The Amazon RDS root CAs (`certs/rds-global-bundle.pem`, its source and expiry dates in
/// `certs/README.md`), compiled in so the CA PostgreSQL is verified against cannot go missing
/// or drift on a task.
pub const RDS_CA_BUNDLE: &[u8] = include_bytes!("../certs/rds-global-bundle.pem");

/// Reads the PEM CA bundle at `path`, named by `setting` in errors, and checks it holds at
/// least one certificate, so a wrong path or file fails at start-up rather than at each
/// connection.
pub fn read_ca_file(path: &Path, setting: &str) -> anyhow::Result<Vec<u8>> {
    let pem =
        std::fs::read(path).with_context(|| format!("{setting}: reading {}", path.display()))?;
    let count = certificates(&pem)
        .with_context(|| format!("{setting}: {} is not a PEM bundle", path.display()))?
        .len();
    if count == 0 {
        anyhow::bail!(
            "{setting}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(pem)
}

/// The certificates of a PEM bundle (other PEM sections are skipped).
pub fn certificates(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Makes ring the process's rustls crypto provider, once. The Redis client asks rustls for the
/// process default, which rustls can choose alone only while a single provider is compiled in;
/// a build that also links aws-lc-rs (the AWS SDK's) would otherwise fail every `rediss://`
/// connect. (sqlx names its provider itself.)
pub fn install_crypto_provider() {
    // An error means one is installed already (an earlier call): what is wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;
    use crate::clock::{Clock, SystemClock};

    /// The bundle is renewed a year ahead of its first expiry, not the day RDS connections fail.
    const RENEWAL_MARGIN: time::Duration = time::Duration::days(365);

    #[test]
    fn rds_bundle_is_valid_for_another_year() {
        let certs = certificates(RDS_CA_BUNDLE).unwrap();
        assert!(certs.len() >= 20, "only {} certificates", certs.len());
        let deadline = (SystemClock.now() + RENEWAL_MARGIN).unix_timestamp();
        for der in &certs {
            let (_, cert) = X509Certificate::from_der(der).unwrap();
            let subject = cert.subject().to_string();
            assert!(subject.contains("Amazon RDS"), "{subject}");
            assert!(cert.is_ca(), "{subject} is not a CA");
            let expires = cert.validity().not_after;
            assert!(
                expires.timestamp() > deadline,
                "{subject} expires {expires}: refresh certs/rds-global-bundle.pem (certs/README.md)"
            );
        }
    }

    #[test]
    fn a_file_without_certificates_is_refused_naming_the_setting() {
        let dir = std::env::temp_dir().join(format!("aidlc-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = read_ca_file(&path, "AIDLC_DATABASE_CA_FILE").unwrap_err();
        assert!(err.to_string().contains("AIDLC_DATABASE_CA_FILE"), "{err}");
        let err = read_ca_file(&dir.join("missing.pem"), "AIDLC_REDIS_CA_FILE").unwrap_err();
        assert!(
            format!("{err:#}").contains("AIDLC_REDIS_CA_FILE"),
            "{err:#}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
