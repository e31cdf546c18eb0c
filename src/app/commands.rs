//! The operator commands of `main` that act on the shared stores without serving.

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;

use super::key_ring_config;

/// `aidlc-auth outbox`: rows per state and the oldest queued mail's age.
pub async fn outbox_counts(settings: &Settings) -> anyhow::Result<crate::store::OutboxCounts> {
    let outbox = crate::store::connect_outbox_store(settings).await?;
    Ok(outbox.counts(SystemClock.now()).await?)
}

/// `aidlc-auth outbox retry-dead`: queues every dead mail whose code has not expired again,
/// with a fresh count of attempts (after fixing what killed them, e.g. the SMTP credentials).
/// The running instances send them within their poll interval. Returns how many.
pub async fn retry_dead_mail(settings: &Settings) -> anyhow::Result<u64> {
    let outbox = crate::store::connect_outbox_store(settings).await?;
    Ok(outbox.retry_dead(SystemClock.now()).await?)
}

/// `aidlc-auth keys rotate`: a new signing key, published now and signing once every instance
/// and verifier has seen it; the old one stays published until the tokens it signed have
/// expired. Returns the new key.
pub async fn rotate_signing_key(settings: &Settings) -> anyhow::Result<crate::store::StoredKey> {
    let keys = crate::store::connect_key_store(settings).await?;
    // Rotation only stores a key: the issuer it will sign for does not matter here.
    let config = key_ring_config(settings, String::new());
    crate::tokens::publish_next_key(keys.as_ref(), &SystemClock, &config).await
}

/// `aidlc-auth keys revoke <kid>`: for a key that has leaked. It stops signing and leaves the
/// JWKS at once in the shared store, a new key signs from now, and every instance refuses
/// tokens with that `kid` after its next key reload. Returns the `kid` that signs now, or None
/// when no published key has `kid`.
pub async fn revoke_signing_key(settings: &Settings, kid: &str) -> anyhow::Result<Option<String>> {
    let keys = crate::store::connect_key_store(settings).await?;
    crate::tokens::revoke_key(keys.as_ref(), &SystemClock, kid).await
}

/// `aidlc-auth keys rewrap`: every stored private key and server secret sealed again under the
/// current key-encryption key, in one transaction; after it the previous key can be removed
/// (run it once every instance runs with the new key, so none writes under the old one).
pub async fn rewrap_keys(settings: &Settings) -> anyhow::Result<crate::store::RewrapCounts> {
    crate::store::rewrap_keys(settings).await
}
