//! The key ring: the signing keys every instance shares through the key store, cached and
//! re-read every `reload_interval` (and on an unknown `kid`, at most every few seconds).
//!
//! Rotation publishes before it signs: a new key is in the JWKS at once but signs only from its
//! `activates_at`, one reload interval plus one JWKS cache lifetime later, so every instance and
//! every verifier caching our JWKS knows it before the first token it signs arrives. The key it
//! replaces stops signing then (its `retired_at`) and stays published until the last token it
//! signed has expired.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use anyhow::Context;
use time::OffsetDateTime;
use tokio::sync::{Mutex, RwLock};

use super::access::MAX_LEEWAY;
use super::{AccessClaims, AccessTokenIssuer, AccessTokenVerifier, Jwks, SigningKey, TokenError};
use crate::clock::Clock;
use crate::domain::{SessionId, UserId};
use crate::store::{KeyRevocation, KeyStore, StoreError, StoredKey};

/// How far a sibling instance's clock may run ahead of ours (`nbf`/`iat` of its tokens).
/// Expiry gets no leeway in our own checks: the clock that set `exp` is ours.
const OWN_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// How long verifiers may cache the JWKS (`Cache-Control: max-age`).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(60);

/// How long cached keys are used after a failed reload, and the least gap between two reloads
/// forced by unknown `kid`s (anyone can send one).
const RELOAD_BACKOFF: Duration = Duration::from_secs(5);

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
    /// From rotation to first signature: every instance has reloaded and every verifier's
    /// cached JWKS has expired.
    pub fn activation_delay(&self) -> Duration {
        self.reload_interval + JWKS_MAX_AGE
    }

    /// How long a retired key stays published: the tokens it signed up to its retirement live
    /// for the access-token lifetime plus leeway (and an instance picks the next signer at
    /// issue time, so none signs with it after its retirement).
    pub fn retired_key_window(&self) -> Duration {
        self.access_token_ttl + MAX_LEEWAY
    }
}

/// One key with the span in which it signs.
struct Signer {
    issuer: AccessTokenIssuer,
    activates_at: OffsetDateTime,
    retired_at: Option<OffsetDateTime>,
}

struct Loaded {
    signers: Vec<Signer>,
    verifier: AccessTokenVerifier,
    jwks: Jwks,
    loaded_at: OffsetDateTime,
}

impl Loaded {
    /// The key that signs at `now`: the newest activated one not yet retired (or, should the
    /// clocks disagree, the newest activated one at all, or failing that the oldest).
    fn signer(&self, now: OffsetDateTime) -> Option<&AccessTokenIssuer> {
        let activated = || self.signers.iter().filter(|s| s.activates_at <= now);
        activated()
            .filter(|s| s.retired_at.is_none_or(|r| r > now))
            .max_by_key(|s| s.activates_at)
            .or_else(|| activated().max_by_key(|s| s.activates_at))
            .or_else(|| self.signers.iter().min_by_key(|s| s.activates_at))
            .map(|s| &s.issuer)
    }
}

/// The shared signing keys, cached.
pub struct KeyRing {
    store: Arc<dyn KeyStore>,
    clock: Arc<dyn Clock>,
    config: KeyRingConfig,
    loaded: RwLock<Arc<Loaded>>,
    reloading: Mutex<()>,
    /// No reload before this (after a failure, or a recent forced reload).
    quiet_until: std::sync::Mutex<Option<OffsetDateTime>>,
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
            quiet_until: std::sync::Mutex::new(None),
        })
    }

    fn quiet_until(&self) -> Option<OffsetDateTime> {
        *self
            .quiet_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn stay_quiet(&self, now: OffsetDateTime) {
        *self
            .quiet_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(now + RELOAD_BACKOFF);
    }

    /// The cached keys, re-read first when they are older than the reload interval.
    async fn fresh(&self) -> Result<Arc<Loaded>, KeyRingError> {
        let current = self.loaded.read().await.clone();
        if current.loaded_at + self.config.reload_interval > self.clock.now() {
            return Ok(current);
        }
        self.reload(current, false).await
    }

    /// Re-reads the keys, one task at a time. A task that waited finds the result of the one
    /// before it. While the store is failing, or (when `forced`, on an unknown `kid`) shortly
    /// after another forced reload, the cached keys are used: keys change only through the
    /// store, so they are still right, and a storm of requests does not queue behind it.
    async fn reload(&self, seen: Arc<Loaded>, forced: bool) -> Result<Arc<Loaded>, KeyRingError> {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.loaded.read().await.clone();
        let now = self.clock.now();
        if current.loaded_at > seen.loaded_at || self.quiet_until().is_some_and(|t| t > now) {
            return Ok(current);
        }
        match load_keys(self.store.as_ref(), self.clock.as_ref(), &self.config).await {
            Ok(loaded) => {
                if forced {
                    self.stay_quiet(now);
                }
                let loaded = Arc::new(loaded);
                *self.loaded.write().await = loaded.clone();
                Ok(loaded)
            }
            Err(KeyRingError::Store(e)) => {
                tracing::warn!(error = %e, "reloading signing keys failed; using the cached ones");
                self.stay_quiet(now);
                Ok(current)
            }
            Err(e) => Err(e),
        }
    }

    /// Signs an access token with the key that signs now.
    pub async fn issue(
        &self,
        sub: UserId,
        sid: SessionId,
        email: &str,
        email_verified: bool,
    ) -> Result<(String, AccessClaims), KeyRingError> {
        let loaded = self.fresh().await?;
        let now = self.clock.now();
        let signer = loaded
            .signer(now)
            .ok_or_else(|| KeyRingError::Keys(anyhow::anyhow!("no signing key loaded")))?;
        signer
            .issue(sub, sid, email, email_verified, now)
            .map_err(|e| KeyRingError::Keys(e.into()))
    }

    /// Verifies an access token against the published keys; an unknown `kid` may trigger a
    /// reload (a key rotated on another instance).
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let loaded = self.fresh().await?;
        match loaded.verifier.verify(token, self.clock.now()) {
            Err(TokenError::UnknownKey) => {
                let reloaded = self.reload(loaded, true).await?;
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

/// Starts a rotation (`aidlc-auth keys rotate`): a new key, published now, signing from
/// `now + activation_delay`, when the current one retires. Returns the new key.
pub async fn publish_next_key(
    store: &dyn KeyStore,
    clock: &dyn Clock,
    config: &KeyRingConfig,
) -> anyhow::Result<StoredKey> {
    for _ in 0..3 {
        let now = clock.now();
        let keys = store.published(now - config.retired_key_window()).await?;
        let current = keys
            .iter()
            .find(|k| k.retired_at.is_none())
            .map(|k| k.kid.clone());
        let new = new_stored_key(now, now + config.activation_delay())?;
        if store.publish_next(current.as_deref(), &new).await? {
            tracing::info!(kid = %new.kid, replaces = ?current, activates_at = %new.activates_at, "signing key rotation started");
            crate::metrics::key_rotation();
            return Ok(new);
        }
    }
    anyhow::bail!("another instance kept rotating the signing key; try again")
}

/// Revokes a compromised key (`aidlc-auth keys revoke <kid>`): it is unpublished and stops
/// signing at once in the store, and a key that signs from now replaces it. Each instance
/// follows at its next reload (within the reload interval): from then on it neither signs with
/// the key, nor publishes it, nor accepts tokens that carry its `kid`. Returns the `kid` that
/// signs now, or None when no published key has `kid`.
pub async fn revoke_key(
    store: &dyn KeyStore,
    clock: &dyn Clock,
    kid: &str,
) -> anyhow::Result<Option<String>> {
    let now = clock.now();
    let replacement = new_stored_key(now, now)?;
    match store.revoke(kid, now, &replacement).await? {
        KeyRevocation::NotFound => Ok(None),
        KeyRevocation::Revoked { signing } => {
            tracing::warn!(%kid, %signing, "signing key revoked");
            Ok(Some(signing))
        }
    }
}

fn new_stored_key(now: OffsetDateTime, activates_at: OffsetDateTime) -> anyhow::Result<StoredKey> {
    let key = SigningKey::generate().context("generating a signing key")?;
    Ok(StoredKey {
        kid: key.kid().to_owned(),
        private_key: key.to_stored_bytes().to_vec(),
        created_at: now,
        activates_at,
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
        let newest = stored.iter().find(|k| k.retired_at.is_none());
        match (newest, config.rotation_interval) {
            // The very first key signs at once: there is nothing to stay compatible with.
            (None, _) => {
                let first = new_stored_key(now, now).map_err(KeyRingError::Keys)?;
                // Losing the race to another instance is fine: the next pass loads its key.
                if store.publish_next(None, &first).await? {
                    tracing::info!(kid = %first.kid, "first signing key created");
                }
            }
            (Some(k), Some(every)) if k.created_at + every <= now => {
                let next = new_stored_key(now, now + config.activation_delay())
                    .map_err(KeyRingError::Keys)?;
                if store.publish_next(Some(&k.kid), &next).await? {
                    tracing::info!(kid = %next.kid, replaces = %k.kid, "scheduled signing key rotation started");
                    crate::metrics::key_rotation();
                }
            }
            _ => return build(&stored, config, now).map_err(KeyRingError::Keys),
        }
    }
    Err(KeyRingError::Keys(anyhow::anyhow!(
        "no current signing key after three attempts"
    )))
}

fn build(
    stored: &[StoredKey],
    config: &KeyRingConfig,
    now: OffsetDateTime,
) -> anyhow::Result<Loaded> {
    let mut signers = Vec::with_capacity(stored.len());
    for k in stored {
        let key = SigningKey::from_stored_bytes(k.kid.clone(), &k.private_key)
            .with_context(|| format!("stored signing key {}", k.kid))?;
        signers.push(Signer {
            issuer: AccessTokenIssuer {
                key,
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                ttl: config.access_token_ttl,
            },
            activates_at: k.activates_at,
            retired_at: k.retired_at,
        });
    }
    let jwks = Jwks::from_signing_keys(signers.iter().map(|s| &s.issuer.key));
    let verifier = AccessTokenVerifier::new(
        &jwks.keys,
        config.issuer.clone(),
        config.audience.clone(),
        OWN_CLOCK_SKEW,
    )?
    .with_strict_expiry();
    Ok(Loaded {
        signers,
        verifier,
        jwks,
        loaded_at: now,
    })
}
