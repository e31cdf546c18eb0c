//! Certificates for the suite's TLS servers, generated per run: a CA, a server certificate it
//! signed for `localhost` and 127.0.0.1 only, and a second CA that signed nothing (the wrong
//! CA a client must refuse), as PEM files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use super::server::Account;

/// The names the server certificate holds; any other (e.g. 127.0.0.2) must be refused.
pub const CERTIFIED_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// A TLS server's PEM files.
pub struct TlsFiles {
    /// The CA that signed the server certificate.
    pub ca: PathBuf,
    /// A CA that signed nothing here: verifying against it fails.
    pub other_ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// Its private key (0600, owned by the server's account).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Generates the files into `dir`; the key is readable by `owner` only (PostgreSQL refuses a
    /// key others can read).
    pub fn generate(dir: &Path, owner: Option<Account>) -> Result<Self, String> {
        let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
        let ca = ca("aidlc-auth test CA").map_err(|e| fail("generating the test CA", &e))?;
        let other = ca_certificate("aidlc-auth other CA")
            .map_err(|e| fail("generating the other CA", &e))?;
        let key = KeyPair::generate().map_err(|e| fail("generating the server key", &e))?;
        let mut params = CertificateParams::new(CERTIFIED_NAMES.map(str::to_owned).to_vec())
            .map_err(|e| fail("server certificate names", &e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params
            .signed_by(&key, &ca)
            .map_err(|e| fail("signing the server certificate", &e))?;

        fs::create_dir_all(dir).map_err(|e| fail(&format!("creating {}", dir.display()), &e))?;
        let files = Self {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        };
        let write = |path: &Path, pem: &str, mode: u32| -> Result<(), String> {
            let at = |e: std::io::Error| format!("writing {}: {e}", path.display());
            fs::write(path, pem).map_err(at)?;
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(at)?;
            if let Some(account) = owner {
                std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid)).map_err(at)?;
            }
            Ok(())
        };
        write(&files.ca, &ca.pem(), 0o644)?;
        write(&files.other_ca, &other, 0o644)?;
        write(&files.cert, &cert.pem(), 0o644)?;
        write(&files.key, &key.serialize_pem(), 0o600)?;
        Ok(files)
    }
}

fn ca_params(name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    CertifiedIssuer::self_signed(ca_params(name)?, KeyPair::generate()?)
}

fn ca_certificate(name: &str) -> Result<String, rcgen::Error> {
    Ok(ca(name)?.pem())
}
