//! Keys at rest: the private keys and server secrets the SQL stores hold are sealed under a
//! key-encryption key (KEK), so a database dump alone mints no token and opens no code. Two
//! KEKs at once for a rotation: the current one seals every write, the previous one only opens.
//!
//! A sealed value is ChaCha20-Poly1305 ([`crate::crypto::seal`]: nonce, ciphertext, tag) with
//! the row's identity and its KEK's id (`aidlc-auth key at rest`, table, row name, KEK id,
//! NUL-separated) as associated data, so a value copied to another row does not open. Each row
//! names its KEK by id: the first 8 bytes of the KEK's SHA-256, in hex.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::Settings;
use crate::crypto;

/// The setting that holds the current KEK.
pub(crate) const KEK_VARIABLE: &str = "AIDLC_KEY_ENCRYPTION_KEY";
/// The setting that holds the previous KEK during a rotation.
pub(crate) const PREVIOUS_KEK_VARIABLE: &str = "AIDLC_KEY_ENCRYPTION_KEY_PREVIOUS";
/// The development KEK's file, in the data directory.
pub(crate) const KEK_FILE: &str = "aidlc-auth.kek";

/// What starts every sealed value's associated data (the rest names the row).
const CONTEXT_PREFIX: &[u8] = b"aidlc-auth key at rest";

/// A key-encryption key and its id. It has no `Debug`: nothing prints it.
pub(crate) struct Kek {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl Kek {
    /// The KEK that `raw` (32 bytes in standard base64) encodes; None for anything else.
    pub(crate) fn from_base64(raw: &str) -> Option<Self> {
        let bytes = Zeroizing::new(STANDARD.decode(raw.trim()).ok()?);
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() != key.len() {
            return None;
        }
        key.copy_from_slice(&bytes);
        Some(Self::from_bytes(key))
    }

    fn from_bytes(key: Zeroizing<[u8; 32]>) -> Self {
        let digest = Sha256::digest(key.as_slice());
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self { id, key }
    }

    /// The id stored with every row sealed under this KEK.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

/// The two tables whose key material is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// `signing_keys.private_key`, named by `kid`.
    SigningKeys,
    /// `server_secrets.value`, named by `name`.
    ServerSecrets,
}

impl Table {
    /// Both, in the order they are checked.
    pub(crate) const ALL: [Self; 2] = [Self::SigningKeys, Self::ServerSecrets];

    /// The table's name, also part of the associated data.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::SigningKeys => "signing_keys",
            Self::ServerSecrets => "server_secrets",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::SigningKeys => "signing key",
            Self::ServerSecrets => "server secret",
        }
    }
}

/// A value sealed under the current KEK, as stored.
pub(crate) struct Sealed {
    /// The KEK's id.
    pub kek_id: String,
    /// Nonce, ciphertext and tag.
    pub value: Vec<u8>,
}

/// Why a stored row could not be opened. The messages name the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum AtRestError {
    /// The row names a KEK the settings do not hold.
    #[error(
        "the {noun} {name:?} is sealed under key-encryption key {kek_id}, but {current} \
         {previous}: set AIDLC_KEY_ENCRYPTION_KEY (or AIDLC_KEY_ENCRYPTION_KEY_PREVIOUS during a \
         rotation) to the key this database was sealed with"
    )]
    UnknownKek {
        /// What the row holds.
        noun: &'static str,
        /// The row's kid or name.
        name: String,
        /// The KEK the row names.
        kek_id: String,
        /// Where the current KEK came from, and its id.
        current: String,
        /// The previous KEK's id, or that it is unset.
        previous: String,
    },
    /// The row names one of our KEKs but does not open: altered, or copied from another row.
    #[error(
        "the {noun} {name:?} does not open under key-encryption key {kek_id} ({variable}): \
         the row was altered or copied from another row"
    )]
    Altered {
        /// What the row holds.
        noun: &'static str,
        /// The row's kid or name.
        name: String,
        /// The KEK the row names.
        kek_id: String,
        /// The setting that holds that KEK.
        variable: &'static str,
    },
    /// The row was stored in clear after this instance started (by an earlier version).
    #[error(
        "the {noun} {name:?} is stored in clear (written by an earlier version); a restart \
         seals it"
    )]
    Clear {
        /// What the row holds.
        noun: &'static str,
        /// The row's kid or name.
        name: String,
    },
}

/// The current KEK (seals every write) and the previous one (opens rows not yet rewrapped).
#[derive(Clone)]
pub(crate) struct Keks {
    current: Arc<Kek>,
    previous: Option<Arc<Kek>>,
    /// Where the current KEK came from, for messages: the setting, or the development file.
    source: Arc<str>,
}

impl Keks {
    /// The KEKs the settings name. In development an unset current KEK comes from
    /// `aidlc-auth.kek` in `data_dir`, which is generated (mode 0600) when it does not exist
    /// and the database holds no sealed row yet (`database_sealed` false): a missing file for a
    /// sealed database is refused rather than replaced by a key that opens nothing.
    pub(crate) fn resolve(
        settings: &Settings,
        data_dir: &Path,
        database_sealed: bool,
    ) -> anyhow::Result<Self> {
        let previous = match &settings.key_encryption_key_previous {
            Some(raw) => Some(Arc::new(
                Kek::from_base64(raw.expose_secret()).with_context(|| {
                    format!("{PREVIOUS_KEK_VARIABLE} must be 32 bytes in base64")
                })?,
            )),
            None => None,
        };
        let (current, source) = match &settings.key_encryption_key {
            Some(raw) => (
                Kek::from_base64(raw.expose_secret())
                    .with_context(|| format!("{KEK_VARIABLE} must be 32 bytes in base64"))?,
                KEK_VARIABLE.to_owned(),
            ),
            // Settings::validate refuses this when deployed; this is a second line.
            None if settings.environment.is_deployed() => {
                anyhow::bail!("{KEK_VARIABLE} is required in staging and production")
            }
            None => (
                development_kek(data_dir, !database_sealed)?,
                format!(
                    "{KEK_VARIABLE} is unset and the development key in {}",
                    data_dir.join(KEK_FILE).display()
                ),
            ),
        };
        Ok(Self {
            current: Arc::new(current),
            previous,
            source: source.into(),
        })
    }

    /// The current KEK's id.
    pub(crate) fn current_id(&self) -> &str {
        self.current.id()
    }

    /// The previous KEK's id, when one is set.
    pub(crate) fn previous_id(&self) -> Option<&str> {
        self.previous.as_deref().map(Kek::id)
    }

    /// Seals `plain`, the key material of row `name` of `table`, under the current KEK.
    pub(crate) fn seal(&self, table: Table, name: &str, plain: &[u8]) -> Sealed {
        let context = context(table, name, &self.current.id);
        let value = crypto::seal(self.current.key.as_slice(), &context, plain)
            .unwrap_or_else(|| unreachable!("a 32-byte key always seals"));
        Sealed {
            kek_id: self.current.id.clone(),
            value,
        }
    }

    /// Opens `value`, the key material of row `name` of `table` as stored with `kek_id` (None:
    /// stored in clear, refused here; only the start-up check seals such rows).
    pub(crate) fn open(
        &self,
        table: Table,
        name: &str,
        kek_id: Option<&str>,
        value: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, AtRestError> {
        let Some(kek_id) = kek_id else {
            return Err(AtRestError::Clear {
                noun: table.noun(),
                name: name.to_owned(),
            });
        };
        let (kek, variable) = if kek_id == self.current.id {
            (&self.current, KEK_VARIABLE)
        } else if let Some(previous) = self.previous.as_ref().filter(|p| p.id == kek_id) {
            (previous, PREVIOUS_KEK_VARIABLE)
        } else {
            return Err(AtRestError::UnknownKek {
                noun: table.noun(),
                name: name.to_owned(),
                kek_id: kek_id.to_owned(),
                current: format!("{} is key {}", self.source, self.current.id),
                previous: self.previous_id().map_or_else(
                    || format!("and {PREVIOUS_KEK_VARIABLE} is unset"),
                    |id| format!("and {PREVIOUS_KEK_VARIABLE} is key {id}"),
                ),
            });
        };
        crypto::open(kek.key.as_slice(), &context(table, name, kek_id), value)
            .map(Zeroizing::new)
            .map_err(|_| AtRestError::Altered {
                noun: table.noun(),
                name: name.to_owned(),
                kek_id: kek_id.to_owned(),
                variable,
            })
    }
}

/// The associated data of row `name` of `table`, sealed under KEK `kek_id`.
fn context(table: Table, name: &str, kek_id: &str) -> Vec<u8> {
    let mut context = CONTEXT_PREFIX.to_vec();
    for part in [table.name().as_bytes(), name.as_bytes(), kek_id.as_bytes()] {
        context.push(0);
        context.extend_from_slice(part);
    }
    context
}

/// The development KEK in `dir`: read, or generated when `may_create`.
fn development_kek(dir: &Path, may_create: bool) -> anyhow::Result<Kek> {
    let path = dir.join(KEK_FILE);
    match read_kek_file(&path) {
        Ok(kek) => Ok(kek),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => create_kek_file(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "the database holds keys sealed under a key-encryption key, but {KEK_VARIABLE} is \
             unset and {} does not exist: restore that file or set {KEK_VARIABLE} (nothing was \
             changed)",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn read_kek_file(path: &Path) -> std::io::Result<Kek> {
    let text = Zeroizing::new(std::fs::read_to_string(path)?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777),
                "the key-encryption key file is readable by others; chmod 600 it");
        }
    }
    Kek::from_base64(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} does not hold 32 bytes in base64", path.display()),
        )
    })
}

/// Generates a KEK into `path`. It is written under a temporary name and linked into place, so
/// two processes starting at once never read a half-written file and agree on one key (the
/// second link fails and that process reads the first one's).
fn create_kek_file(path: &Path) -> anyhow::Result<Kek> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(key.as_mut());
    let encoded = Zeroizing::new(format!("{}\n", STANDARD.encode(key.as_slice())));
    let temporary = dir.join(format!(
        ".{KEK_FILE}.{}.{:016x}",
        std::process::id(),
        rand::rng().next_u64()
    ));
    let written = write_private(&temporary, encoded.as_bytes())
        .and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match written {
        Ok(()) => {
            tracing::warn!(path = %path.display(),
                "generated a development key-encryption key: keep this file with the database \
                 (the keys in it cannot be read without it); set AIDLC_KEY_ENCRYPTION_KEY instead \
                 outside development");
            Ok(Kek::from_bytes(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_kek_file(path).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

/// Writes `bytes` to a new file at `path` readable by its owner only, and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keks(current: &Kek, previous: Option<&Kek>) -> Keks {
        let copy = |k: &Kek| Arc::new(Kek::from_bytes(k.key.clone()));
        Keks {
            current: copy(current),
            previous: previous.map(copy),
            source: KEK_VARIABLE.into(),
        }
    }

    #[test]
    fn kek_ids_are_the_first_8_bytes_of_the_sha256_and_bad_keys_are_refused() {
        let kek = Kek::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let digest = Sha256::digest([7u8; 32]);
        assert_eq!(kek.id().len(), 16);
        assert!(format!("{digest:x}").starts_with(kek.id()));
        for bad in [
            "",
            "not base64!",
            &STANDARD.encode([7u8; 31]),
            &STANDARD.encode([7u8; 33]),
        ] {
            assert!(Kek::from_base64(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_sealed_value_opens_only_in_its_row_and_under_a_kek_we_hold() {
        let old = Kek::from_base64(&STANDARD.encode([1u8; 32])).unwrap();
        let new = Kek::from_base64(&STANDARD.encode([2u8; 32])).unwrap();
        let sealed = keks(&old, None).seal(Table::ServerSecrets, "code-key", b"secret");
        assert_eq!(sealed.kek_id, old.id());
        assert!(!sealed.value.windows(6).any(|w| w == b"secret"));
        let rotating = keks(&new, Some(&old));
        let id = Some(sealed.kek_id.as_str());
        let opened = rotating.open(Table::ServerSecrets, "code-key", id, &sealed.value);
        assert_eq!(opened.unwrap().as_slice(), b"secret");
        assert!(matches!(
            rotating.open(Table::ServerSecrets, "refresh-key", id, &sealed.value),
            Err(AtRestError::Altered { .. })
        ));
        assert!(matches!(
            rotating.open(Table::SigningKeys, "code-key", id, &sealed.value),
            Err(AtRestError::Altered { .. })
        ));
        let err = keks(&new, None)
            .open(Table::ServerSecrets, "code-key", id, &sealed.value)
            .unwrap_err();
        assert!(matches!(err, AtRestError::UnknownKek { .. }));
        assert!(err.to_string().contains(KEK_VARIABLE), "{err}");
        assert!(matches!(
            rotating.open(Table::ServerSecrets, "code-key", None, b"secret"),
            Err(AtRestError::Clear { .. })
        ));
    }

    #[test]
    fn the_development_file_is_created_private_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("aidlc-kek-{:016x}", rand::rng().next_u64()));
        let sealed_database = development_kek(&dir, false);
        assert!(
            sealed_database.is_err(),
            "a sealed database never gets a new file"
        );
        assert!(!dir.join(KEK_FILE).exists());
        let first = development_kek(&dir, true).unwrap();
        let again = development_kek(&dir, true).unwrap();
        assert_eq!(first.id(), again.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEK_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
