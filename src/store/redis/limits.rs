//! Rate-limit counters in Redis: one sorted set per key (a member per hit, scored by its time
//! in milliseconds), judged and written by one script so concurrent hits cannot overshoot.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use time::OffsetDateTime;

use super::RedisStore;
use crate::domain::RateLimit;
use crate::store::limits::{Admission, HitId, LimitKey, RateLimiter, Recent, key_name};
use crate::store::{StoreResult, bounded};

// KEYS[1] the key; ARGV: now (ms), member, keep (ms), then (limit, period ms) per window.
// Returns 0 when the hit was added, else the wait in ms. Mirrors `RateLimit::wait` (the SQL
// and in-memory decision): change both together. Milliseconds keep every number exact in
// Lua's doubles and in their string form.
const ACQUIRE_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
local wait = 0
for i = 4, #ARGV, 2 do
  local limit = tonumber(ARGV[i])
  local period = tonumber(ARGV[i + 1])
  local inside = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - period), '+inf', 'WITHSCORES')
  local n = #inside / 2
  if n >= limit then
    local leaving = tonumber(inside[(n - limit) * 2 + 2])
    local w = math.max(leaving + period - now, 1)
    if w > wait then wait = w end
  end
end
if wait > 0 then return wait end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
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

#[async_trait]
impl RateLimiter for RedisStore {
    async fn acquire(
        &self,
        key: LimitKey<'_>,
        limit: &RateLimit,
        now: OffsetDateTime,
    ) -> StoreResult<Admission> {
        let name = self.limit_key(key);
        let id = HitId::new();
        let mut conn = self.conn.clone();
        let mut invocation = self.limits.acquire.key(&name);
        invocation
            .arg(millis(now))
            .arg(member(&id))
            .arg(duration_millis(limit.longest()));
        for window in limit.windows() {
            invocation
                .arg(window.limit)
                .arg(duration_millis(window.period));
        }
        let wait: i64 = bounded(self.timeout, "checking a rate limit in Redis", async {
            invocation.invoke_async(&mut conn).await
        })
        .await?;
        Ok(match u64::try_from(wait) {
            Ok(0) | Err(_) => Admission::Granted(id),
            Ok(ms) => Admission::Denied(Duration::from_millis(ms)),
        })
    }

    async fn release(&self, key: LimitKey<'_>, hit: &HitId) -> StoreResult<()> {
        let name = self.limit_key(key);
        let mut conn = self.conn.clone();
        bounded(
            self.timeout,
            "giving back a rate-limit hit in Redis",
            async {
                redis::cmd("ZREM")
                    .arg(&name)
                    .arg(member(hit))
                    .query_async::<()>(&mut conn)
                    .await
            },
        )
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
        bounded(self.timeout, "counting a failure in Redis", async {
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
        let (count, newest): (i64, i64) =
            bounded(self.timeout, "reading recent failures in Redis", async {
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
