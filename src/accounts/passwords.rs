//! Argon2id hashing on the blocking pool, and a dummy verification so an unknown address
//! costs the same time as a wrong password.

mod memory;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::SaltString;
use argon2::{Algorithm, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::AccountError;
use crate::config::Argon2Params;
use crate::domain::{Password, PasswordHash};
use memory::Argon2Memory;

/// Hashes and verifies passwords with fixed Argon2id parameters.
///
/// At most a few hashes run at once (each holds `memory_kib` of RAM): a flood of logins queues
/// briefly and then gets a 503, instead of growing the process until it is killed.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Argon2's working memory, reused from one hash to the next.
    memory: Arc<Argon2Memory>,
    /// A hash of a random password with the same parameters, verified when there is no user.
    dummy: Arc<PasswordHash>,
}

impl Hasher {
    /// Builds a hasher; computes the dummy hash once (start-up cost of one hash).
    pub fn new(p: Argon2Params) -> anyhow::Result<Self> {
        let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None)
            .map_err(|e| anyhow::anyhow!("invalid Argon2 parameters: {e}"))?;
        let mut random = [0u8; 24];
        rand::rng().fill_bytes(&mut random);
        let dummy_password = SecretString::from(URL_SAFE_NO_PAD.encode(random));
        let memory = Arc::new(Argon2Memory::new(&params));
        let dummy = hash_blocking(&memory, &params, dummy_password.expose_secret())?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(cores * 2)),
            memory,
            dummy: Arc::new(dummy),
        })
    }

    /// Hashes `password` on the blocking pool.
    pub async fn hash(&self, password: Password) -> Result<PasswordHash, AccountError> {
        let _permit = self.permit().await?;
        let (params, memory) = (self.params.clone(), self.memory.clone());
        self.run_blocking(move || hash_blocking(&memory, &params, password.expose()))
            .await?
            .map_err(AccountError::Unexpected)
    }

    /// Hashes `password` with the salt of `like` (another registration of the same account),
    /// so equal passwords give equal hashes and telling them apart costs no second run; a
    /// fresh salt when `like` cannot be read.
    pub async fn hash_like(
        &self,
        password: Password,
        like: &PasswordHash,
    ) -> Result<PasswordHash, AccountError> {
        let _permit = self.permit().await?;
        let (params, memory) = (self.params.clone(), self.memory.clone());
        let like = like.clone();
        self.run_blocking(move || {
            let salt = argon2::PasswordHash::new(like.as_str())
                .ok()
                .and_then(|parsed| parsed.salt.map(|salt| salt.as_str().to_owned()))
                .and_then(|salt| SaltString::from_b64(&salt).ok());
            match salt {
                Some(salt) => memory.hash(&params, password.expose().as_bytes(), &salt),
                None => hash_blocking(&memory, &params, password.expose()),
            }
        })
        .await?
        .map_err(AccountError::Unexpected)
    }

    /// Which of `candidates` (hashes of one account's registrations) `password` matches. Argon2
    /// runs once per distinct salt and parameters (once, when they share a salt), and once
    /// against the dummy hash when there are no candidates, so no account costs the same.
    pub async fn find_match(
        &self,
        password: SecretString,
        candidates: Vec<PasswordHash>,
    ) -> Result<Option<usize>, AccountError> {
        if candidates.is_empty() {
            self.verify(password, None).await?;
            return Ok(None);
        }
        let _permit = self.permit().await?;
        let memory = self.memory.clone();
        self.run_blocking(move || {
            let mut computed: HashMap<&str, Option<argon2::password_hash::Output>> = HashMap::new();
            candidates.iter().position(|candidate| {
                let phc = candidate.as_str();
                // Everything but the hash: algorithm, version, parameters and salt.
                let Some((setting, _)) = phc.rsplit_once('$') else {
                    return false;
                };
                let Ok(parsed) = argon2::PasswordHash::new(phc) else {
                    return false;
                };
                let Some(expected) = parsed.hash else {
                    return false;
                };
                let ours = computed.entry(setting).or_insert_with(|| {
                    memory.compute(&parsed, password.expose_secret().as_bytes())
                });
                ours.as_ref()
                    .is_some_and(|ours| bool::from(ours.as_bytes().ct_eq(expected.as_bytes())))
            })
        })
        .await
    }

    /// Like [`Self::verify`], and when `password` matches a hash made with other Argon2
    /// parameters than the configured ones, also hashes it anew with them (in the same slot:
    /// only a successful login with an outdated hash pays for the second run).
    pub async fn verify_and_upgrade(
        &self,
        password: SecretString,
        stored: Option<PasswordHash>,
    ) -> Result<Verified, AccountError> {
        let _permit = self.permit().await?;
        let is_real = stored.is_some();
        let phc = stored.unwrap_or_else(|| (*self.dummy).clone());
        let (params, memory) = (self.params.clone(), self.memory.clone());
        self.run_blocking(move || {
            let Ok(parsed) = argon2::PasswordHash::new(phc.as_str()) else {
                return Ok(Verified::default());
            };
            let matched = memory.verify(&parsed, password.expose_secret().as_bytes());
            if !(is_real && matched) {
                return Ok(Verified::default());
            }
            let upgraded = if is_current(&parsed, &params) {
                None
            } else {
                Some(hash_blocking(&memory, &params, password.expose_secret())?)
            };
            Ok(Verified {
                matched: true,
                upgraded,
            })
        })
        .await?
        .map_err(AccountError::Unexpected)
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no
    /// account, so both paths take the same time. Returns false for the dummy.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<PasswordHash>,
    ) -> Result<bool, AccountError> {
        let _permit = self.permit().await?;
        let is_real = stored.is_some();
        let phc = stored.unwrap_or_else(|| (*self.dummy).clone());
        let memory = self.memory.clone();
        let matched = self
            .run_blocking(move || {
                let parsed = argon2::PasswordHash::new(phc.as_str()).ok()?;
                Some(memory.verify(&parsed, password.expose_secret().as_bytes()))
            })
            .await?;
        Ok(is_real && matched.unwrap_or(false))
    }
}

/// What [`Hasher::verify_and_upgrade`] found.
#[derive(Debug, Default)]
pub struct Verified {
    /// The password matches a real account's hash.
    pub matched: bool,
    /// The same password hashed with the configured parameters, when the stored hash was made
    /// with others: store it in place of the old one.
    pub upgraded: Option<PasswordHash>,
}

/// True when `parsed` is Argon2id v1.3 with exactly the parameters `params`.
fn is_current(parsed: &argon2::PasswordHash<'_>, params: &Params) -> bool {
    let same_params = Params::try_from(parsed).is_ok_and(|p| {
        p.m_cost() == params.m_cost()
            && p.t_cost() == params.t_cost()
            && p.p_cost() == params.p_cost()
    });
    parsed.algorithm == Algorithm::Argon2id.ident()
        && parsed.version == Some(Version::V0x13.into())
        && same_params
}

impl Hasher {
    /// Runs Argon2 work on the blocking pool, then has its memory freed if it stays idle.
    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AccountError> {
        let result = spawn_blocking_in_span(work).await;
        self.release_idle_memory_later();
        result
    }

    /// Frees Argon2 memory left idle once [`memory::IDLE_RELEASE`] has passed without another
    /// hash taking it (called after each hash; a timer, not a request, does the freeing).
    fn release_idle_memory_later(&self) {
        let memory = self.memory.clone();
        tokio::spawn(async move {
            tokio::time::sleep(memory::IDLE_RELEASE).await;
            memory.release_idle();
        });
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, AccountError> {
        let asked = std::time::Instant::now();
        let permit = tokio::time::timeout(MAX_QUEUE_WAIT, self.permits.acquire()).await;
        let granted = matches!(permit, Ok(Ok(_)));
        crate::metrics::password_hash_slot(asked.elapsed(), granted);
        match permit {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(AccountError::Unavailable(anyhow::anyhow!(
                "password hashing saturated: no slot within {MAX_QUEUE_WAIT:?}"
            ))),
        }
    }
}

/// How long a request waits for a hashing slot before it is answered 503.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(2);

fn hash_blocking(
    memory: &Argon2Memory,
    params: &Params,
    password: &str,
) -> anyhow::Result<PasswordHash> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    memory.hash(params, password.as_bytes(), &salt)
}

/// Runs CPU-heavy work on the blocking pool inside the caller's tracing span.
async fn spawn_blocking_in_span<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AccountError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(|e| AccountError::Unexpected(anyhow::anyhow!("blocking task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Hasher {
        Hasher::new(Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = cheap();
        let hash = h.hash(Password::for_tests("correct horse")).await.unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(
            h.verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!h.verify("wrong horse!".into(), Some(hash)).await.unwrap());
    }

    #[tokio::test]
    async fn no_account_never_verifies() {
        assert!(
            !cheap()
                .verify("anything at all".into(), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn registrations_sharing_a_salt_compare_by_hash_and_match_in_one_run() {
        let h = cheap();
        let first = h.hash(Password::for_tests("owner's secret")).await.unwrap();
        let same = h
            .hash_like(Password::for_tests("owner's secret"), &first)
            .await
            .unwrap();
        let other = h
            .hash_like(Password::for_tests("squatter pass"), &first)
            .await
            .unwrap();
        assert_eq!(same, first, "same password, same salt: same hash");
        assert_ne!(other, first);
        let candidates = vec![other.clone(), first.clone()];
        assert_eq!(
            h.find_match("owner's secret".into(), candidates.clone())
                .await
                .unwrap(),
            Some(1)
        );
        assert_eq!(
            h.find_match("squatter pass".into(), candidates.clone())
                .await
                .unwrap(),
            Some(0)
        );
        assert_eq!(
            h.find_match("neither one".into(), candidates)
                .await
                .unwrap(),
            None
        );
        assert_eq!(h.find_match("anything".into(), vec![]).await.unwrap(), None);
        // A candidate with a salt and parameters of its own still matches.
        let stronger = Hasher::new(Argon2Params {
            memory_kib: 2048,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        let lone = stronger
            .hash(Password::for_tests("changed params"))
            .await
            .unwrap();
        assert_eq!(
            h.find_match("changed params".into(), vec![first, lone])
                .await
                .unwrap(),
            Some(1)
        );
    }

    #[tokio::test]
    async fn a_hash_with_other_parameters_is_upgraded_once_its_password_matches() {
        let weak = cheap();
        let strong = Hasher::new(Argon2Params {
            memory_kib: 2048,
            iterations: 2,
            parallelism: 1,
        })
        .unwrap();
        let old = weak.hash(Password::for_tests("upgrade me")).await.unwrap();
        let wrong = strong
            .verify_and_upgrade("not the one".into(), Some(old.clone()))
            .await
            .unwrap();
        assert!(!wrong.matched && wrong.upgraded.is_none());
        let right = strong
            .verify_and_upgrade("upgrade me".into(), Some(old.clone()))
            .await
            .unwrap();
        assert!(right.matched);
        let new = right.upgraded.expect("upgraded");
        assert!(
            new.as_str().starts_with("$argon2id$v=19$m=2048,t=2,p=1$"),
            "{}",
            new.as_str()
        );
        assert!(
            strong
                .verify("upgrade me".into(), Some(new.clone()))
                .await
                .unwrap()
        );
        let again = strong
            .verify_and_upgrade("upgrade me".into(), Some(new))
            .await
            .unwrap();
        assert!(
            again.matched && again.upgraded.is_none(),
            "current: left alone"
        );
        let none = strong.verify_and_upgrade("x".into(), None).await.unwrap();
        assert!(!none.matched && none.upgraded.is_none());
    }

    #[test]
    fn default_parameters_are_owasp() {
        let h = Hasher::new(Argon2Params::default()).unwrap();
        assert!(
            h.dummy
                .as_str()
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
        );
    }
}
