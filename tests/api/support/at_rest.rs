//! Keys at rest as the tests see them: the sealed rows read raw, and opened with the test's
//! key-encryption key by an implementation of its own (ChaCha20-Poly1305 with the README's
//! associated data: prefix, table, row name and KEK id), so the format is checked from outside the service; the real
//! `aidlc-auth` CLI run on a test's database with its keys.

use std::process::{Output, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::app::{TestApp, TestEnv};
use super::process::service_binary;

/// A fresh key-encryption key: 32 random bytes in base64, as the setting takes it.
pub fn random_kek() -> SecretString {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    SecretString::from(STANDARD.encode(key))
}

fn kek_bytes(kek: &SecretString) -> [u8; 32] {
    STANDARD
        .decode(kek.expose_secret())
        .expect("a KEK is base64")
        .try_into()
        .expect("a KEK is 32 bytes")
}

/// The id rows sealed under `kek` carry: the first 8 bytes of its SHA-256, hex.
pub fn kek_id(kek: &SecretString) -> String {
    Sha256::digest(kek_bytes(kek))[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One row of `signing_keys` or `server_secrets`, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRow {
    /// `signing_keys` or `server_secrets`.
    pub table: &'static str,
    /// The kid or the secret's name.
    pub name: String,
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The KEK id stored with them (None: in clear).
    pub kek_id: Option<String>,
}

impl SealedRow {
    /// The value opened with `kek`; None when it does not open (wrong key, row or bytes).
    pub fn open(&self, kek: &SecretString) -> Option<Vec<u8>> {
        let mut context = b"aidlc-auth key at rest".to_vec();
        let kek_id = kek_id(kek);
        for part in [
            self.table.as_bytes(),
            self.name.as_bytes(),
            kek_id.as_bytes(),
        ] {
            context.push(0);
            context.extend_from_slice(part);
        }
        if self.value.len() < 12 {
            return None;
        }
        let (nonce, body) = self.value.split_at(12);
        ChaCha20Poly1305::new_from_slice(&kek_bytes(kek))
            .ok()?
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &context,
                },
            )
            .ok()
    }
}

impl TestEnv {
    /// The real `aidlc-auth <args>` on this environment's database and key-encryption keys,
    /// from `cwd` (the crate's directory when None); at most 30 s.
    pub async fn cli_in(&self, args: &[&str], cwd: Option<&std::path::Path>) -> Output {
        let mut command = tokio::process::Command::new(service_binary());
        command
            .args(args)
            .env_clear()
            .env("DATABASE_URL", &self.db.direct_url)
            .env("RUST_LOG", "warn")
            // A loaded test machine must not turn a slow statement into a failed command.
            .env("AIDLC_DEPENDENCY_TIMEOUT_MS", "5000")
            .env("AIDLC_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let keys = [
            (
                "AIDLC_KEY_ENCRYPTION_KEY",
                &self.settings.key_encryption_key,
            ),
            (
                "AIDLC_KEY_ENCRYPTION_KEY_PREVIOUS",
                &self.settings.key_encryption_key_previous,
            ),
        ];
        for (variable, kek) in keys {
            if let Some(kek) = kek {
                command.env(variable, kek.expose_secret());
            }
        }
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        tokio::time::timeout(Duration::from_secs(30), command.output())
            .await
            .unwrap_or_else(|_| panic!("`aidlc-auth {args:?}` did not finish within 30 s"))
            .unwrap_or_else(|e| panic!("running `aidlc-auth {args:?}`: {e}"))
    }

    /// [`TestEnv::cli_in`] from the crate's directory.
    pub async fn cli(&self, args: &[&str]) -> Output {
        self.cli_in(args, None).await
    }
}

impl TestApp {
    /// The PKCS#8 private key of signing key `kid`, read raw and opened with the test's KEK
    /// (asserting it is sealed under it).
    pub async fn signing_key(&self, kid: &str) -> Option<Vec<u8>> {
        let kek = self
            .env
            .settings
            .key_encryption_key
            .as_ref()
            .expect("the test app has a key-encryption key");
        let row = self
            .db()
            .sealed_rows()
            .await
            .into_iter()
            .find(|r| r.table == "signing_keys" && r.name == kid)?;
        assert_eq!(
            row.kek_id,
            Some(kek_id(kek)),
            "{kid} is sealed under the KEK"
        );
        Some(
            row.open(kek)
                .expect("the signing key opens with the test's KEK"),
        )
    }
}
