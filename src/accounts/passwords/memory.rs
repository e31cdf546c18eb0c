//! Argon2 computed in memory that is kept between hashes.
//!
//! The `argon2` crate's PHC entry points allocate `memory_kib` afresh for every hash; at the
//! default 19 MiB that is a fresh mapping the kernel zeroes and faults in page by page, several
//! milliseconds of CPU per hash on top of Argon2 itself. Here each hash borrows a buffer from
//! a small pool instead: at most one per hash running at once (the hasher's slots bound that),
//! so the memory kept is what concurrent hashes would map anyway. A buffer is never read
//! before Argon2 writes it, so a reused one needs no clearing. A buffer unused for
//! [`IDLE_RELEASE`] is freed ([`Argon2Memory::release_idle`]), so a burst of logins does not
//! leave the process holding its memory once the burst is over.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, ParamsString, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

use crate::domain::PasswordHash;

/// How long a pooled buffer may sit unused before it is freed.
pub(super) const IDLE_RELEASE: Duration = Duration::from_secs(2);

/// Argon2's working memory, pooled.
pub(super) struct Argon2Memory {
    /// Buffers and when each was last given back; the most recent is taken first, so the
    /// others age out when fewer hashes run at once.
    pool: Mutex<Vec<(Vec<Block>, Instant)>>,
    /// Buffers larger than this (grown for a hash made with heavier parameters) are dropped
    /// after use rather than kept.
    keep_blocks: usize,
}

impl Argon2Memory {
    /// A pool sized for hashes with `params` (the configured ones).
    pub(super) fn new(params: &Params) -> Self {
        Self {
            pool: Mutex::new(Vec::new()),
            keep_blocks: params.block_count(),
        }
    }

    /// Runs `work` with at least `blocks` blocks of memory.
    fn with<T>(&self, blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
        let mut buffer = self
            .pool
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .map(|(buffer, _)| buffer)
            .unwrap_or_default();
        if buffer.len() < blocks {
            buffer.resize(blocks, Block::default());
        }
        let result = work(&mut buffer[..blocks]);
        if buffer.len() <= self.keep_blocks
            && let Ok(mut pool) = self.pool.lock()
        {
            pool.push((buffer, Instant::now()));
        }
        result
    }

    /// Frees the buffers unused for [`IDLE_RELEASE`] or longer.
    pub(super) fn release_idle(&self) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.retain(|(_, returned)| returned.elapsed() < IDLE_RELEASE);
        }
    }

    /// Argon2 of `password` with the algorithm, version, parameters and salt of `like` (its
    /// hash, if any, is ignored); None when `like` is not an Argon2 setting this build runs.
    pub(super) fn compute(
        &self,
        like: &argon2::PasswordHash<'_>,
        password: &[u8],
    ) -> Option<Output> {
        let algorithm = Algorithm::try_from(like.algorithm).ok()?;
        let version = match like.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(like).ok()?;
        let mut salt = [0u8; 64];
        let salt = like.salt?.decode_b64(&mut salt).ok()?;
        let length = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let argon2 = Argon2::new(algorithm, version, params.clone());
        self.with(params.block_count(), |blocks| {
            Output::init_with(length, |out| {
                argon2
                    .hash_password_into_with_memory(password, salt, out, blocks)
                    .map_err(Into::into)
            })
            .ok()
        })
    }

    /// Whether `password` is the one `stored` was made from (compared in constant time).
    pub(super) fn verify(&self, stored: &argon2::PasswordHash<'_>, password: &[u8]) -> bool {
        let Some(expected) = stored.hash else {
            return false;
        };
        self.compute(stored, password)
            .is_some_and(|ours| bool::from(ours.as_bytes().ct_eq(expected.as_bytes())))
    }

    /// `password` hashed with Argon2id v1.3, `params` and `salt`, as a PHC string.
    pub(super) fn hash(
        &self,
        params: &Params,
        password: &[u8],
        salt: &SaltString,
    ) -> anyhow::Result<PasswordHash> {
        let setting = argon2::PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(params).map_err(|e| anyhow::anyhow!("{e}"))?,
            salt: Some(salt.as_salt()),
            hash: None,
        };
        let hash = self
            .compute(&setting, password)
            .ok_or_else(|| anyhow::anyhow!("hashing password"))?;
        let phc = argon2::PasswordHash {
            hash: Some(hash),
            ..setting
        };
        Ok(PasswordHash::from_phc(phc.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    #[test]
    fn pooled_hashes_are_the_crates_own_and_verify_both_ways() {
        let params = Params::new(1024, 2, 1, None).unwrap();
        let memory = Argon2Memory::new(&params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        // Twice: the second run reuses the first one's memory.
        for _ in 0..2 {
            let ours = memory.hash(&params, b"correct horse", &salt).unwrap();
            assert_eq!(ours.as_str(), reference);
        }
        let parsed = argon2::PasswordHash::new(&reference).unwrap();
        assert!(memory.verify(&parsed, b"correct horse"));
        assert!(!memory.verify(&parsed, b"wrong horse"));
        let ours = memory.hash(&params, b"correct horse", &salt).unwrap();
        let ours = argon2::PasswordHash::new(ours.as_str()).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &ours)
                .is_ok()
        );
        assert_eq!(memory.pool.lock().unwrap().len(), 1, "one buffer kept");
        memory.release_idle();
        assert_eq!(memory.pool.lock().unwrap().len(), 1, "just used: kept");
        if let Some((_, returned)) = memory.pool.lock().unwrap().first_mut() {
            *returned -= IDLE_RELEASE;
        }
        memory.release_idle();
        assert!(memory.pool.lock().unwrap().is_empty(), "idle: freed");
    }

    #[test]
    fn a_heavier_hash_verifies_and_its_larger_buffer_is_not_kept() {
        let configured = Params::new(1024, 1, 1, None).unwrap();
        let memory = Argon2Memory::new(&configured);
        let heavier = Params::new(2048, 1, 1, None).unwrap();
        let salt = SaltString::encode_b64(b"fedcba9876543210").unwrap();
        let stored = Argon2::new(Algorithm::Argon2id, Version::V0x13, heavier)
            .hash_password(b"old params", &salt)
            .unwrap()
            .to_string();
        let parsed = argon2::PasswordHash::new(&stored).unwrap();
        assert!(memory.verify(&parsed, b"old params"));
        assert!(memory.pool.lock().unwrap().is_empty());
    }
}
