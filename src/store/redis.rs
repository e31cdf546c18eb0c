//! Redis for codes, resend cooldowns and rate limits (`limits`): atomic scripts, expiry by the server (`PX`), and the logical
//! expiry checked against the service's `Clock` so tests and servers agree on "expired".

use std::path::Path;
mod breaker;
mod limits;

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use hmac::Mac;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, IntoConnectionInfo, Script, TlsCertificates};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use super::{
    CodeCheck, CodeStore, Cooldown, Ping, StoreError, StoreResult, StoredCode,
    bounded_noting_timeout,
};
use crate::config::redact_url;
use crate::domain::{CodePurpose, EmailAddress, OnMatch};
use crate::metrics::Dependency;

/// Codes and cooldowns in Redis.
pub(crate) struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    /// Keys the address digests in key names (a plain hash is reversed by a list of guesses).
    key_name_secret: Vec<u8>,
    timeout: Duration,
    /// Fails calls at once for one timeout after a call went unanswered.
    breaker: breaker::Breaker,
    consume: Script,
    cooldown: Script,
    limits: limits::LimitScripts,
}

// KEYS[1] code hash; ARGV: presented hash, now (µs), max attempts, spend (1 or 0).
// Returns 1 when it matched (and, with spend, was consumed). Every try is counted; the code is
// deleted when it is expired or exhausted. After the expiry check it mirrors
// `domain::judge_code_try` (the SQL store's decision), kept in Lua so Redis runs it atomically:
// change both together.
const CONSUME_SCRIPT: &str = r"
local h = redis.call('HMGET', KEYS[1], 'hash', 'attempts', 'expires_at')
if not h[1] then return 0 end
if tonumber(h[3]) <= tonumber(ARGV[2]) or tonumber(h[2]) >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  return 0
end
if h[1] == ARGV[1] then
  if ARGV[4] == '1' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  end
  return 1
end
if redis.call('HINCRBY', KEYS[1], 'attempts', 1) >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
end
return 0
";

// KEYS[1] cooldown key; ARGV: now (µs), until (µs), ttl (ms).
// Returns -1 when the cooldown started, else the running cooldown's end (µs).
const COOLDOWN_SCRIPT: &str = r"
local ends = redis.call('GET', KEYS[1])
if ends and tonumber(ends) > tonumber(ARGV[1]) then return tonumber(ends) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return -1
";

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

fn millis_until(until: OffsetDateTime, now: OffsetDateTime) -> u64 {
    // Never 0: PX 0 is an error, and a key that already expired logically is simply short-lived.
    u64::try_from((until - now).whole_milliseconds())
        .unwrap_or(0)
        .max(1)
}

/// The client for `url`, with the AUTH token as its password and the CA it verifies against.
fn client(
    url: &str,
    auth_token: Option<&SecretString>,
    ca_file: Option<&Path>,
) -> anyhow::Result<redis::Client> {
    crate::tls::install_crypto_provider();
    let invalid = || format!("REDIS_URL {} is not a valid Redis URL", redact_url(url));
    let mut info = url.into_connection_info().with_context(invalid)?;
    if let Some(token) = auth_token {
        let settings = info
            .redis_settings()
            .clone()
            .set_password(token.expose_secret());
        info = info.set_redis_settings(settings);
    }
    match ca_file {
        Some(path) => {
            let pem = crate::tls::read_ca_file(path, "AIDLC_REDIS_CA_FILE")?;
            let certificates = TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(info, certificates).with_context(invalid)
        }
        None => redis::Client::open(info).with_context(invalid),
    }
}

/// The connection error, with what to check when the token or the certificate is refused.
fn explain<E: std::error::Error + Send + Sync + 'static>(error: E) -> anyhow::Error {
    let text = error.to_string();
    let refused = ["WRONGPASS", "NOAUTH", "AuthenticationFailed"];
    let hint = if refused.iter().any(|r| text.contains(r)) {
        Some(
            "Redis refused the credentials: check AIDLC_REDIS_AUTH_TOKEN (or the password in \
             REDIS_URL)",
        )
    } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        Some(
            "the Redis server's certificate is not signed by a trusted CA: AIDLC_REDIS_CA_FILE \
             (default: the public web roots)",
        )
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        Some("the Redis server's certificate does not name the host in REDIS_URL")
    } else {
        None
    };
    match hint {
        Some(hint) => anyhow::Error::new(error).context(hint),
        None => error.into(),
    }
}

impl RedisStore {
    /// Connects (bounded by `timeout`) and checks the server answers. `auth_token`, when given,
    /// is the connection's password (ElastiCache's AUTH token, whatever supplied it), replacing
    /// one in `url`; `ca_file` is the CA bundle a `rediss://` server is verified against
    /// instead of the public web roots.
    pub(crate) async fn connect(
        url: &SecretString,
        auth_token: Option<&SecretString>,
        ca_file: Option<&Path>,
        prefix: &str,
        key_name_secret: Vec<u8>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let url = url.expose_secret();
        let client = client(url, auth_token, ca_file)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            timeout * 3,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {:?}", timeout * 3))
        .and_then(|r| r.map_err(explain))
        .with_context(|| format!("connecting to Redis at {}", redact_url(url)))?;
        let store = Self {
            conn,
            prefix: prefix.to_owned(),
            key_name_secret,
            timeout,
            breaker: breaker::Breaker::new(timeout),
            consume: Script::new(CONSUME_SCRIPT),
            cooldown: Script::new(COOLDOWN_SCRIPT),
            limits: limits::LimitScripts::new(),
        };
        // A server wanting a password may accept the connection and refuse the first command.
        store
            .ping()
            .await
            .map_err(explain)
            .with_context(|| format!("pinging Redis at {}", redact_url(url)))?;
        tracing::info!(redis = %redact_url(url), "Redis connected");
        Ok(store)
    }

    /// Runs the Redis call `op` under the timeout; while the breaker is open (a call went
    /// unanswered less than a timeout ago) fails at once instead.
    pub(super) async fn call<T>(
        &self,
        what: &'static str,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> StoreResult<T> {
        if self.breaker.is_open() {
            return Err(StoreError::Unavailable(anyhow::anyhow!(
                "{what}: not tried, a Redis call went unanswered less than {:?} ago",
                self.breaker.pause()
            )));
        }
        bounded_noting_timeout(
            Dependency::Redis,
            self.timeout,
            what,
            op,
            redis::RedisError::is_timeout,
            || self.breaker.trip(),
        )
        .await
    }

    /// Addresses enter key names only as an HMAC under a server secret, so neither a key
    /// listing nor a list of candidate addresses tells whose codes are there.
    fn pair_key(&self, kind: &str, email: &EmailAddress, purpose: CodePurpose) -> String {
        let mut mac = crate::crypto::hmac_sha256(&self.key_name_secret);
        mac.update(email.as_str().as_bytes());
        format!(
            "{}{kind}:{}:{}",
            self.prefix,
            purpose.as_str(),
            crate::crypto::mac_hex(mac)
        )
    }
}

#[async_trait]
impl CodeStore for RedisStore {
    /// Runs the code script: counts a try, judges it, and consumes a match when `spend`.
    async fn try_code(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
        hash: &str,
        now: OffsetDateTime,
        max_attempts: u32,
        on_match: OnMatch,
    ) -> StoreResult<CodeCheck> {
        let key = self.pair_key("code", email, purpose);
        let mut conn = self.conn.clone();
        let matched: i64 = self
            .call("checking code in Redis", async {
                self.consume
                    .key(&key)
                    .arg(hash)
                    .arg(micros(now))
                    .arg(max_attempts)
                    .arg(if on_match == OnMatch::Consume {
                        "1"
                    } else {
                        "0"
                    })
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(if matched == 1 {
            CodeCheck::Accepted
        } else {
            CodeCheck::Rejected
        })
    }

    async fn put(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
        code: &StoredCode,
    ) -> StoreResult<()> {
        let key = self.pair_key("code", email, purpose);
        let mut conn = self.conn.clone();
        self.call("storing code in Redis", async {
            redis::pipe()
                .atomic()
                .del(&key)
                .hset_multiple(
                    &key,
                    &[
                        ("hash", code.hash.clone()),
                        ("attempts", "0".to_owned()),
                        ("expires_at", micros(code.expires_at).to_string()),
                    ],
                )
                .pexpire_at(&key, micros(code.expires_at) / 1000)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn start_cooldown(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
        now: OffsetDateTime,
        length: Duration,
    ) -> StoreResult<Cooldown> {
        let key = self.pair_key("cooldown", email, purpose);
        let until = now + length;
        let mut conn = self.conn.clone();
        let answer: i64 = self
            .call("starting resend cooldown in Redis", async {
                self.cooldown
                    .key(&key)
                    .arg(micros(now))
                    .arg(micros(until))
                    .arg(millis_until(until, now))
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        if answer < 0 {
            return Ok(Cooldown::Started);
        }
        let left_micros = u64::try_from(answer - micros(now)).unwrap_or(0);
        Ok(Cooldown::Active(Duration::from_micros(left_micros)))
    }

    async fn clear_cooldown(&self, email: &EmailAddress, purpose: CodePurpose) -> StoreResult<()> {
        let key = self.pair_key("cooldown", email, purpose);
        let mut conn = self.conn.clone();
        self.call("clearing resend cooldown in Redis", async {
            conn.del::<_, ()>(&key).await
        })
        .await
    }
}

#[async_trait]
impl Ping for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        // Tried even while the breaker is open: readiness says what the server does now, and
        // an answer lets the calls through again.
        bounded_noting_timeout(
            Dependency::Redis,
            self.timeout,
            "pinging Redis",
            async { redis::cmd("PING").query_async::<String>(&mut conn).await },
            redis::RedisError::is_timeout,
            || self.breaker.trip(),
        )
        .await?;
        self.breaker.close();
        Ok(())
    }
}
