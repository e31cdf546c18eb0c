//! The key ring: the current signing key and the published ones, loaded from the shared key
//! store, re-read every `reload_interval` (and at once on an unknown `kid`), and rotated when
//! the current key is older than the rotation interval.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use time::OffsetDateTime;
use tokio::sync::{Mutex, RwLock};

use super::access::MAX_LEEWAY;
use super::{AccessClaims, AccessTokenIssuer, AccessTokenVerifier, Jwks, SigningKey, TokenError};
use crate::clock::Clock;
use crate::store::{KeyStore, StoreError, StoredKey};

/// How the ring signs, verifies and rotates.
#[derive(Debug, Clone)]
pub struct KeyRingConfig {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Access-token lifetime.
    pub access_token_ttl: Duration,
    /// How often the keys are re-read.
    pub reload_interval: Duration,
    /// Age at which the current key is replaced; None: never automatically.
    pub rotation_interval: Option<Duration>,
}

impl KeyRingConfig {
    /// How long a retired key must stay published: an instance may sign with it until its next
    /// reload, and a token it signed then lives for the access-token lifetime plus leeway.
    pub fn retired_key_window(&self) -> Duration {
        self.reload_interval + self.access_token_ttl + MAX_LEEWAY
    }
}

struct Loaded {
    issuer: AccessTokenIssuer,
    verifier: AccessTokenVerifier,
    jwks: Jwks,
    loaded_at: OffsetDateTime,
}

/// The shared signing keys, cached.
pub struct KeyRing {
    store: Arc<dyn KeyStore>,
    clock: Arc<dyn Clock>,
    config: KeyRingConfig,
    loaded: RwLock<Arc<Loaded>>,
    reloading: Mutex<()>,
}

/// Why the ring could not serve.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// The key store did not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored key could not be used, or signing failed.
    #[error("signing keys unusable: {0:#}")]
    Keys(anyhow::Error),
}

impl KeyRing {
    /// Loads the keys, creating the first one if the store has none.
    pub async fn load(
        store: Arc<dyn KeyStore>,
        clock: Arc<dyn Clock>,
        config: KeyRingConfig,
    ) -> anyhow::Result<Self> {
        let loaded = load_keys(store.as_ref(), clock.as_ref(), &config)
            .await
            .context("loading signing keys")?;
        Ok(Self {
            store,
            clock,
            config,
            loaded: RwLock::new(Arc::new(loaded)),
            reloading: Mutex::new(()),
        })
    }

    async fn fresh(&self) -> Result<Arc<Loaded>, KeyRingError> {
        let now = self.clock.now();
        let current = self.loaded.read().await.clone();
        if current.loaded_at + self.config.reload_interval > now {
            return Ok(current);
        }
        self.reload(Some(current.loaded_at)).await
    }

    /// Re-reads the keys unless another task did so since `seen` (then uses its result).
    async fn reload(&self, seen: Option<OffsetDateTime>) -> Result<Arc<Loaded>, KeyRingError> {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.loaded.read().await.clone();
        if seen.is_some_and(|seen| current.loaded_at > seen) {
            return Ok(current);
        }
        let loaded =
            Arc::new(load_keys(self.store.as_ref(), self.clock.as_ref(), &self.config).await?);
        *self.loaded.write().await = loaded.clone();
        Ok(loaded)
    }

    /// Signs an access token with the current key.
    pub async fn issue(
        &self,
        sub: &str,
        sid: &str,
        email: &str,
        email_verified: bool,
    ) -> Result<(String, AccessClaims), KeyRingError> {
        let loaded = self.fresh().await?;
        loaded
            .issuer
            .issue(sub, sid, email, email_verified, self.clock.now())
            .map_err(|e| KeyRingError::Keys(e.into()))
    }

    /// Verifies an access token against the published keys; an unknown `kid` triggers one
    /// reload (another instance may have rotated).
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let loaded = self.fresh().await?;
        match loaded.verifier.verify(token, self.clock.now()) {
            Err(TokenError::UnknownKey) => {
                let reloaded = self.reload(Some(loaded.loaded_at)).await?;
                Ok(reloaded.verifier.verify(token, self.clock.now())?)
            }
            other => Ok(other?),
        }
    }

    /// The published public keys.
    pub async fn jwks(&self) -> Result<Jwks, KeyRingError> {
        Ok(self.fresh().await?.jwks.clone())
    }
}

/// Verification failed because of the token, or because the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token is not acceptable.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The keys could not be loaded.
    #[error(transparent)]
    Ring(#[from] KeyRingError),
}

impl From<StoreError> for VerifyError {
    fn from(e: StoreError) -> Self {
        Self::Ring(e.into())
    }
}

/// Replaces the current signing key with a new one now (`aidlc-auth keys rotate`). Returns the
/// new key id.
pub async fn rotate_now(
    store: &dyn KeyStore,
    clock: &dyn Clock,
    config: &KeyRingConfig,
) -> anyhow::Result<String> {
    for _ in 0..3 {
        let now = clock.now();
        let keys = store.published(now - config.retired_key_window()).await?;
        let current = keys
            .iter()
            .find(|k| k.retired_at.is_none())
            .map(|k| k.kid.clone());
        let new = new_stored_key(now)?;
        if store.rotate(current.as_deref(), &new, now).await? {
            tracing::info!(kid = %new.kid, retired = ?current, "signing key rotated");
            return Ok(new.kid);
        }
    }
    anyhow::bail!("another instance kept rotating the signing key; try again")
}

fn new_stored_key(now: OffsetDateTime) -> anyhow::Result<StoredKey> {
    let key = SigningKey::generate().context("generating a signing key")?;
    Ok(StoredKey {
        kid: key.kid().to_owned(),
        private_key: key.to_stored_bytes().to_vec(),
        created_at: now,
        retired_at: None,
    })
}

async fn load_keys(
    store: &dyn KeyStore,
    clock: &dyn Clock,
    config: &KeyRingConfig,
) -> Result<Loaded, KeyRingError> {
    for _ in 0..3 {
        let now = clock.now();
        let stored = store.published(now - config.retired_key_window()).await?;
        let current = stored.iter().find(|k| k.retired_at.is_none());
        let due = match (current, config.rotation_interval) {
            (None, _) => true,
            (Some(k), Some(every)) => k.created_at + every <= now,
            (Some(_), None) => false,
        };
        if due {
            let new = new_stored_key(now).map_err(KeyRingError::Keys)?;
            // Losing the race to another instance is fine: the next pass loads its key.
            if store
                .rotate(current.map(|k| k.kid.as_str()), &new, now)
                .await?
            {
                tracing::info!(kid = %new.kid, "signing key created");
            }
            continue;
        }
        let Some(current) = current else { continue };
        return build(&stored, current, config, now).map_err(KeyRingError::Keys);
    }
    Err(KeyRingError::Keys(anyhow::anyhow!(
        "no current signing key after three attempts"
    )))
}

fn build(
    stored: &[StoredKey],
    current: &StoredKey,
    config: &KeyRingConfig,
    now: OffsetDateTime,
) -> anyhow::Result<Loaded> {
    let keys = stored
        .iter()
        .map(|k| {
            SigningKey::from_stored_bytes(k.kid.clone(), &k.private_key)
                .with_context(|| format!("stored key {}", k.kid))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let signing = SigningKey::from_stored_bytes(current.kid.clone(), &current.private_key)?;
    let jwks = Jwks::from_signing_keys(keys.iter());
    let verifier = AccessTokenVerifier::new(
        &jwks.keys,
        config.issuer.clone(),
        config.audience.clone(),
        MAX_LEEWAY,
    )?;
    let issuer = AccessTokenIssuer {
        key: signing,
        issuer: config.issuer.clone(),
        audience: config.audience.clone(),
        ttl: config.access_token_ttl,
    };
    Ok(Loaded {
        issuer,
        verifier,
        jwks,
        loaded_at: now,
    })
}
