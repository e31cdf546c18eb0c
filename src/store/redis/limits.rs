//! Rate-limit counters in Redis: one sorted set per key (a member per hit, scored by its time
//! in milliseconds), judged and written by one script so concurrent hits cannot overshoot.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use time::OffsetDateTime;

use super::RedisStore;
use crate::domain::RateLimit;
use crate::store::StoreResult;
use crate::store::limits::{Admission, Admissions, HitId, LimitKey, RateLimiter, Recent, key_name};

// KEYS: the keys; ARGV: now (ms), member, then per key: keep (ms), its number of windows, and
// (limit, period ms) per window. Judges every key first and adds the hit to all of them only
// if none is over a limit: returns {0, 0} when added, else {the refused key's index from 0,
// the wait in ms} for the longest wait. Mirrors `RateLimit::wait` (the SQL and in-memory
// decision): change both together. Milliseconds keep every number exact in Lua's doubles and
// in their string form. (All keys in one script: the deployment's Redis is one shard.)
const ACQUIRE_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local a = 3
local worst, refused = 0, 0
for k = 1, #KEYS do
  local keep = tonumber(ARGV[a])
  local windows = tonumber(ARGV[a + 1])
  a = a + 2
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now - keep)
  for i = 1, windows do
    local limit = tonumber(ARGV[a])
    local period = tonumber(ARGV[a + 1])
    a = a + 2
    local inside = redis.call('ZRANGEBYSCORE', KEYS[k], '(' .. (now - period), '+inf', 'WITHSCORES')
    local n = #inside / 2
    if n >= limit then
      local leaving = tonumber(inside[(n - limit) * 2 + 2])
      local w = math.max(leaving + period - now, 1)
      if w > worst then worst, refused = w, k - 1 end
    end
  end
end
if worst > 0 then return {refused, worst} end
a = 3
for k = 1, #KEYS do
  redis.call('ZADD', KEYS[k], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[k], ARGV[a])
  a = a + 2 + 2 * tonumber(ARGV[a + 1])
end
return {0, 0}
";

// KEYS[1] the key; ARGV: now (ms), member, keep (ms). Adds unconditionally; the key lives as
// long as its newest hit needs.
const RECORD_SCRIPT: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
";

// KEYS[1] the key; ARGV: since (ms). Returns {count, newest score or -1}.
const RECENT_SCRIPT: &str = r"
local n = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf')
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if n == 0 or not newest[2] then return {0, -1} end
return {n, tonumber(newest[2])}
";

/// The Lua scripts, loaded once.
pub(super) struct LimitScripts {
    acquire: Script,
    record: Script,
    recent: Script,
}

impl LimitScripts {
    pub(super) fn new() -> Self {
        Self {
            acquire: Script::new(ACQUIRE_SCRIPT),
            record: Script::new(RECORD_SCRIPT),
            recent: Script::new(RECENT_SCRIPT),
        }
    }
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    fn limit_key(&self, key: LimitKey<'_>) -> String {
        format!("{}rl:{}", self.prefix, key_name(&self.key_name_secret, key))
    }
}

/// A member names its hit uniquely; its score is the hit's time.
fn member(id: &HitId) -> &str {
    &id.0
}

impl RedisStore {
    /// Runs the acquire script over `hits` with the hit named `id`: None when added, else the
    /// refused hit's index and the wait.
    async fn acquire_in_redis(
        &self,
        hits: &[(LimitKey<'_>, &RateLimit)],
        now: OffsetDateTime,
        id: &HitId,
    ) -> StoreResult<Option<(usize, Duration)>> {
        let mut conn = self.conn.clone();
        let mut invocation = self.limits.acquire.prepare_invoke();
        invocation.arg(millis(now)).arg(member(id));
        for (key, limit) in hits {
            invocation.key(self.limit_key(*key));
            let windows = limit.windows();
            invocation
                .arg(duration_millis(limit.longest()))
                .arg(windows.len());
            for window in windows {
                invocation
                    .arg(window.limit)
                    .arg(duration_millis(window.period));
            }
        }
        let (refused, wait): (i64, i64) = self
            .call("checking a rate limit in Redis", async {
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        Ok(match u64::try_from(wait) {
            Ok(0) | Err(_) => None,
            Ok(ms) => Some((
                usize::try_from(refused).unwrap_or(0),
                Duration::from_millis(ms),
            )),
        })
    }
}

#[async_trait]
impl RateLimiter for RedisStore {
    async fn acquire_as(
        &self,
        key: LimitKey<'_>,
        limit: &RateLimit,
        now: OffsetDateTime,
        id: &HitId,
    ) -> StoreResult<Admission> {
        Ok(
            match self.acquire_in_redis(&[(key, limit)], now, id).await? {
                None => Admission::Granted(id.clone()),
                Some((_, wait)) => Admission::Denied(wait),
            },
        )
    }

    async fn acquire_all(
        &self,
        hits: &[(LimitKey<'_>, &RateLimit)],
        now: OffsetDateTime,
    ) -> StoreResult<Admissions> {
        let id = HitId::new();
        Ok(match self.acquire_in_redis(hits, now, &id).await? {
            None => Admissions::Granted(id),
            Some((index, wait)) => Admissions::Denied { index, wait },
        })
    }

    async fn release(&self, key: LimitKey<'_>, hit: &HitId) -> StoreResult<()> {
        let name = self.limit_key(key);
        let mut conn = self.conn.clone();
        self.call("giving back a rate-limit hit in Redis", async {
            redis::cmd("ZREM")
                .arg(&name)
                .arg(member(hit))
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn record(
        &self,
        key: LimitKey<'_>,
        keep: Duration,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let name = self.limit_key(key);
        let mut conn = self.conn.clone();
        self.call("counting a failure in Redis", async {
            self.limits
                .record
                .key(&name)
                .arg(millis(now))
                .arg(member(&HitId::new()))
                .arg(duration_millis(keep))
                .invoke_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn recent(&self, key: LimitKey<'_>, since: OffsetDateTime) -> StoreResult<Recent> {
        let name = self.limit_key(key);
        let mut conn = self.conn.clone();
        let (count, newest): (i64, i64) = self
            .call("reading recent failures in Redis", async {
                self.limits
                    .recent
                    .key(&name)
                    .arg(millis(since))
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        let last = (newest >= 0)
            .then(|| OffsetDateTime::from_unix_timestamp_nanos(i128::from(newest) * 1_000_000).ok())
            .flatten();
        Ok(Recent {
            count: u32::try_from(count).unwrap_or(0),
            last,
        })
    }
}
