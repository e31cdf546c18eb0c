//! Rate-limit counters: the [`RateLimiter`] trait (Redis, or SQL without Redis), the
//! per-instance counters used while that shared store is unreachable, and the wrapper that
//! switches between them so a limit never lapses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hmac::Mac;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, StoreResult};
use crate::domain::RateLimit;

/// What is counted and for whom: `family` names the limit (`ip:login`, `guess`, …), `subject`
/// the client IP, address or account. Stores never write the subject in the clear.
#[derive(Debug, Clone, Copy)]
pub struct LimitKey<'a> {
    /// The limit's name.
    pub family: &'static str,
    /// Who it counts.
    pub subject: &'a str,
}

/// One counted hit, which [`RateLimiter::release`] can give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitId(pub String);

impl HitId {
    /// A fresh, unique id.
    pub fn new() -> Self {
        Self(Uuid::new_v4().simple().to_string())
    }
}

impl Default for HitId {
    fn default() -> Self {
        Self::new()
    }
}

/// The answer to one more hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Counted; the hit's id.
    Granted(HitId),
    /// Over the limit: counted nothing; retry after this long.
    Denied(Duration),
}

/// The answer to one hit on each of several keys at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admissions {
    /// Counted on every key, all under this one id.
    Granted(HitId),
    /// Some key is over its limit: counted nothing on any; the one with the longest wait
    /// (its index among the hits asked) and that wait.
    Denied {
        /// Which hit was refused.
        index: usize,
        /// Retry after this long.
        wait: Duration,
    },
}

/// Recent hits of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recent {
    /// How many since the time asked.
    pub count: u32,
    /// The newest one's time.
    pub last: Option<OffsetDateTime>,
}

/// Sliding-window counters shared by every instance.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts a hit at `now` for `key` if every window of `limit` has room (atomically: of
    /// concurrent hits, no more than the limit are granted).
    async fn acquire(
        &self,
        key: LimitKey<'_>,
        limit: &RateLimit,
        now: OffsetDateTime,
    ) -> StoreResult<Admission> {
        self.acquire_as(key, limit, now, &HitId::new()).await
    }
    /// Counts a hit at `now` on each key of `hits` if every one has room under its limit,
    /// else on none. This default asks key by key and gives back what it was granted before
    /// a refusal (each key exact, the set not atomic); Redis judges them all in one script.
    async fn acquire_all(
        &self,
        hits: &[(LimitKey<'_>, &RateLimit)],
        now: OffsetDateTime,
    ) -> StoreResult<Admissions> {
        let id = HitId::new();
        for (index, (key, limit)) in hits.iter().enumerate() {
            match self.acquire_as(*key, limit, now, &id).await? {
                Admission::Granted(_) => {}
                Admission::Denied(wait) => {
                    for (granted, _) in &hits[..index] {
                        self.release(*granted, &id).await?;
                    }
                    return Ok(Admissions::Denied { index, wait });
                }
            }
        }
        Ok(Admissions::Granted(id))
    }
    /// [`RateLimiter::acquire`] with the hit named `id` (so hits on several keys share one).
    async fn acquire_as(
        &self,
        key: LimitKey<'_>,
        limit: &RateLimit,
        now: OffsetDateTime,
        id: &HitId,
    ) -> StoreResult<Admission>;
    /// Gives a granted hit back (it turned out not to count, e.g. a correct code).
    async fn release(&self, key: LimitKey<'_>, hit: &HitId) -> StoreResult<()>;
    /// Counts a hit at `now` unconditionally, remembered for `keep` (failures).
    async fn record(
        &self,
        key: LimitKey<'_>,
        keep: Duration,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// The hits of `key` after `since`.
    async fn recent(&self, key: LimitKey<'_>, since: OffsetDateTime) -> StoreResult<Recent>;
}

/// The name a store keeps `key` under: the family and an HMAC of the subject under the
/// shared key-name secret, so neither a key listing nor a list of candidate addresses tells
/// whose counters are there.
pub(crate) fn key_name(secret: &[u8], key: LimitKey<'_>) -> String {
    let mut mac = crate::crypto::hmac_sha256(secret);
    mac.update(key.family.as_bytes());
    mac.update(&[0]);
    mac.update(key.subject.as_bytes());
    format!("{}:{}", key.family, crate::crypto::mac_hex(mac))
}

/// Keys the in-memory counters hold at most; past it, the expired ones are dropped, and if
/// none has expired the oldest key goes (a flood of distinct keys cannot exhaust memory).
const MEMORY_MAX_KEYS: usize = 100_000;

/// One hit in memory: its id, its time, and when it is forgotten.
type MemoryHit = (HitId, OffsetDateTime, OffsetDateTime);

/// Per-instance counters: exact within one process, used only while the shared store is down.
pub struct MemoryLimiter {
    secret: Vec<u8>,
    hits: Mutex<HashMap<String, Vec<MemoryHit>>>,
}

impl MemoryLimiter {
    /// Empty counters; keys are named as the shared store names them.
    pub fn new(secret: Vec<u8>) -> Self {
        Self {
            secret,
            hits: Mutex::new(HashMap::new()),
        }
    }

    fn with_hits<T>(
        &self,
        key: LimitKey<'_>,
        now: OffsetDateTime,
        f: impl FnOnce(&mut Vec<MemoryHit>) -> T,
    ) -> T {
        let name = key_name(&self.secret, key);
        let mut map = self
            .hits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() >= MEMORY_MAX_KEYS && !map.contains_key(&name) {
            map.retain(|_, hits| hits.iter().any(|(_, _, until)| *until > now));
            if map.len() >= MEMORY_MAX_KEYS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, hits)| hits.iter().map(|h| h.1).max())
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let hits = map.entry(name).or_default();
        hits.retain(|(_, _, until)| *until > now);
        f(hits)
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn acquire_as(
        &self,
        key: LimitKey<'_>,
        limit: &RateLimit,
        now: OffsetDateTime,
        id: &HitId,
    ) -> StoreResult<Admission> {
        Ok(self.with_hits(key, now, |hits| {
            let times: Vec<OffsetDateTime> = hits.iter().map(|h| h.1).collect();
            match limit.wait(&times, now) {
                Some(wait) => Admission::Denied(wait),
                None => {
                    hits.push((id.clone(), now, now + limit.longest()));
                    Admission::Granted(id.clone())
                }
            }
        }))
    }

    async fn release(&self, key: LimitKey<'_>, hit: &HitId) -> StoreResult<()> {
        let name = key_name(&self.secret, key);
        let mut map = self
            .hits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(hits) = map.get_mut(&name) {
            hits.retain(|(id, _, _)| id != hit);
        }
        Ok(())
    }

    async fn record(
        &self,
        key: LimitKey<'_>,
        keep: Duration,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        self.with_hits(key, now, |hits| hits.push((HitId::new(), now, now + keep)));
        Ok(())
    }

    async fn recent(&self, key: LimitKey<'_>, since: OffsetDateTime) -> StoreResult<Recent> {
        Ok(self.with_hits(key, since, |hits| {
            let inside = hits.iter().filter(|h| h.1 > since);
            Recent {
                count: u32::try_from(inside.clone().count()).unwrap_or(u32::MAX),
                last: inside.map(|h| h.1).max(),
            }
        }))
    }
}

/// After the shared store fails, how long the in-memory counters answer before it is tried
/// again (so an outage costs one dependency timeout per interval, not one per request).
const RETRY_SHARED_AFTER: Duration = Duration::from_secs(5);

/// The shared counters, or the per-instance ones while the shared store is unreachable: a
/// limit is never skipped. The switch is logged once each way and the degraded checks counted.
///
/// A refusal is also remembered here until its wait is over, so a client that keeps sending
/// past its limit is refused without a store round trip: a flood cannot tie up the database
/// pool or Redis that everyone else's requests need.
pub struct FallbackLimiter {
    shared: Arc<dyn RateLimiter>,
    local: MemoryLimiter,
    refused_until: Mutex<HashMap<String, OffsetDateTime>>,
    degraded: AtomicBool,
    retry_at: Mutex<Option<Instant>>,
    degraded_checks: AtomicU64,
}

impl FallbackLimiter {
    /// `shared` backed by in-memory counters named with `secret`.
    pub fn new(shared: Arc<dyn RateLimiter>, secret: Vec<u8>) -> Self {
        Self {
            shared,
            local: MemoryLimiter::new(secret),
            refused_until: Mutex::new(HashMap::new()),
            degraded: AtomicBool::new(false),
            retry_at: Mutex::new(None),
            degraded_checks: AtomicU64::new(0),
        }
    }

    fn lock_refused(&self) -> std::sync::MutexGuard<'_, HashMap<String, OffsetDateTime>> {
        self.refused_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The longest wait still remembered for any of `names`, as a refusal of that one.
    fn remembered_refusal(&self, names: &[String], now: OffsetDateTime) -> Option<Admissions> {
        let refused = self.lock_refused();
        names
            .iter()
            .enumerate()
            .filter_map(|(index, name)| {
                let until = refused.get(name).copied().filter(|until| *until > now)?;
                Some((index, Duration::try_from(until - now).unwrap_or_default()))
            })
            .max_by_key(|(_, wait)| *wait)
            .map(|(index, wait)| Admissions::Denied { index, wait })
    }

    /// Refuses `name` without a store round trip until `until`.
    fn remember_refusal(&self, name: String, until: OffsetDateTime, now: OffsetDateTime) {
        let mut refused = self.lock_refused();
        if refused.len() >= MEMORY_MAX_KEYS {
            refused.retain(|_, until| *until > now);
            if refused.len() >= MEMORY_MAX_KEYS {
                refused.clear();
            }
        }
        refused.insert(name, until);
    }

    /// Checks answered by the in-memory counters since start.
    pub fn degraded_checks(&self) -> u64 {
        self.degraded_checks.load(Ordering::Relaxed)
    }

    /// True while the shared store is skipped (it failed less than the retry interval ago).
    fn skipping_shared(&self) -> bool {
        let retry_at = self.retry_at.lock().unwrap_or_else(|p| p.into_inner());
        retry_at.is_some_and(|at| Instant::now() < at)
    }

    /// Runs `shared` unless it is being skipped; on its failure (or while skipped) runs `local`.
    async fn run<T>(
        &self,
        shared: impl Future<Output = StoreResult<T>>,
        local: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        if !self.skipping_shared() {
            match shared.await {
                Ok(answer) => {
                    if self.degraded.swap(false, Ordering::Relaxed) {
                        tracing::warn!(
                            degraded_checks = self.degraded_checks(),
                            "rate limits are shared again"
                        );
                    }
                    return Ok(answer);
                }
                Err(StoreError::Unavailable(e)) => {
                    *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Instant::now() + RETRY_SHARED_AFTER);
                    if !self.degraded.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            error = %e,
                            "rate-limit store unreachable: limits now count per instance"
                        );
                    }
                }
                Err(corrupt) => return Err(corrupt),
            }
        }
        self.degraded_checks.fetch_add(1, Ordering::Relaxed);
        local.await
    }
}

#[async_trait]
impl RateLimiter for FallbackLimiter {
    async fn acquire_as(
        &self,
        key: LimitKey<'_>,
        limit: &RateLimit,
        now: OffsetDateTime,
        id: &HitId,
    ) -> StoreResult<Admission> {
        let name = key_name(&self.local.secret, key);
        if let Some(Admissions::Denied { wait, .. }) =
            self.remembered_refusal(std::slice::from_ref(&name), now)
        {
            return Ok(Admission::Denied(wait));
        }
        let answer = self
            .run(
                self.shared.acquire_as(key, limit, now, id),
                self.local.acquire_as(key, limit, now, id),
            )
            .await?;
        if let Admission::Denied(wait) = &answer {
            self.remember_refusal(name, now + *wait, now);
        }
        Ok(answer)
    }

    async fn acquire_all(
        &self,
        hits: &[(LimitKey<'_>, &RateLimit)],
        now: OffsetDateTime,
    ) -> StoreResult<Admissions> {
        let names: Vec<String> = hits
            .iter()
            .map(|(key, _)| key_name(&self.local.secret, *key))
            .collect();
        if let Some(denied) = self.remembered_refusal(&names, now) {
            return Ok(denied);
        }
        let answer = self
            .run(
                self.shared.acquire_all(hits, now),
                self.local.acquire_all(hits, now),
            )
            .await?;
        if let Admissions::Denied { index, wait } = &answer
            && let Some(name) = names.get(*index)
        {
            self.remember_refusal(name.clone(), now + *wait, now);
        }
        Ok(answer)
    }

    async fn release(&self, key: LimitKey<'_>, hit: &HitId) -> StoreResult<()> {
        // The hit may live in either; giving it back to both is harmless. A refusal
        // remembered for the key may no longer hold.
        self.lock_refused()
            .remove(&key_name(&self.local.secret, key));
        self.local.release(key, hit).await?;
        self.run(self.shared.release(key, hit), async { Ok(()) })
            .await
    }

    async fn record(
        &self,
        key: LimitKey<'_>,
        keep: Duration,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        self.run(
            self.shared.record(key, keep, now),
            self.local.record(key, keep, now),
        )
        .await
    }

    async fn recent(&self, key: LimitKey<'_>, since: OffsetDateTime) -> StoreResult<Recent> {
        self.run(
            self.shared.recent(key, since),
            self.local.recent(key, since),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Down;

    #[async_trait]
    impl RateLimiter for Down {
        async fn acquire_as(
            &self,
            _: LimitKey<'_>,
            _: &RateLimit,
            _: OffsetDateTime,
            _: &HitId,
        ) -> StoreResult<Admission> {
            Err(StoreError::Unavailable(anyhow::anyhow!("down")))
        }
        async fn release(&self, _: LimitKey<'_>, _: &HitId) -> StoreResult<()> {
            Err(StoreError::Unavailable(anyhow::anyhow!("down")))
        }
        async fn record(&self, _: LimitKey<'_>, _: Duration, _: OffsetDateTime) -> StoreResult<()> {
            Err(StoreError::Unavailable(anyhow::anyhow!("down")))
        }
        async fn recent(&self, _: LimitKey<'_>, _: OffsetDateTime) -> StoreResult<Recent> {
            Err(StoreError::Unavailable(anyhow::anyhow!("down")))
        }
    }

    const KEY: LimitKey<'static> = LimitKey {
        family: "test",
        subject: "a@example.com",
    };

    #[tokio::test]
    async fn an_unreachable_shared_store_degrades_to_local_counters_not_to_no_limit() {
        let limiter = FallbackLimiter::new(Arc::new(Down), vec![1; 32]);
        let limit: RateLimit = "2/1m".parse().unwrap();
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1000);
        let first = limiter.acquire(KEY, &limit, now).await.unwrap();
        assert!(matches!(first, Admission::Granted(_)));
        assert!(matches!(
            limiter.acquire(KEY, &limit, now).await.unwrap(),
            Admission::Granted(_)
        ));
        assert_eq!(
            limiter.acquire(KEY, &limit, now).await.unwrap(),
            Admission::Denied(Duration::from_secs(60))
        );
        let Admission::Granted(id) = first else {
            unreachable!()
        };
        limiter.release(KEY, &id).await.unwrap();
        assert!(matches!(
            limiter.acquire(KEY, &limit, now).await.unwrap(),
            Admission::Granted(_)
        ));
        assert_eq!(limiter.degraded_checks(), 5);
    }

    #[tokio::test]
    async fn hits_on_several_keys_count_all_or_none() {
        let limiter = MemoryLimiter::new(vec![1; 32]);
        let other = LimitKey {
            family: "other",
            subject: "a@example.com",
        };
        let (one, two): (RateLimit, RateLimit) = ("1/1m".parse().unwrap(), "2/1m".parse().unwrap());
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1000);
        let both = [(other, &two), (KEY, &one)];
        let Admissions::Granted(id) = limiter.acquire_all(&both, now).await.unwrap() else {
            panic!("both have room");
        };
        // KEY is full: refused, and `other` keeps its one remaining hit.
        assert_eq!(
            limiter.acquire_all(&both, now).await.unwrap(),
            Admissions::Denied {
                index: 1,
                wait: Duration::from_secs(60)
            }
        );
        assert!(matches!(
            limiter.acquire(other, &two, now).await.unwrap(),
            Admission::Granted(_)
        ));
        // The shared id gives back each key's hit.
        limiter.release(KEY, &id).await.unwrap();
        assert!(matches!(
            limiter.acquire(KEY, &one, now).await.unwrap(),
            Admission::Granted(_)
        ));
    }

    #[tokio::test]
    async fn memory_counters_report_recent_failures() {
        let limiter = MemoryLimiter::new(vec![1; 32]);
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1000);
        let keep = Duration::from_secs(900);
        limiter.record(KEY, keep, now).await.unwrap();
        let later = now + Duration::from_secs(10);
        limiter.record(KEY, keep, later).await.unwrap();
        let recent = limiter.recent(KEY, now - keep).await.unwrap();
        assert_eq!(
            recent,
            Recent {
                count: 2,
                last: Some(later)
            }
        );
        assert_eq!(limiter.recent(KEY, now).await.unwrap().count, 1);
    }

    #[test]
    fn key_names_hide_the_subject() {
        let name = key_name(&[1; 32], KEY);
        assert!(
            name.starts_with("test:") && !name.contains("example"),
            "{name}"
        );
        assert_ne!(name, key_name(&[2; 32], KEY));
    }
}
