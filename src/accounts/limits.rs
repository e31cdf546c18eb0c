//! Rate limits as the use cases apply them: per client IP and per address before any Argon2
//! run or mail, the per-address code-guess budget, the cap on codes issued, and the password
//! back-off with its once-a-day notice.

use std::time::Duration;

use super::{AccountError, Accounts, ClientInfo};
use crate::config::Settings;
use crate::domain::{
    AuthEventKind, AuthOutcome, EmailAddress, RateLimit, User, UserStatus, limit_subject,
    password_backoff,
};
use crate::email::{Email, Message};
use crate::store::{Admission, Admissions, HitId, LimitKey};

/// The configured limits (`AIDLC_RATE_LIMIT_*`, `AIDLC_CODE_*_LIMIT`,
/// `AIDLC_PASSWORD_FAILURE_LIMIT`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests per client IP to each credential endpoint.
    pub ip: RateLimit,
    /// Requests per address to each credential endpoint.
    pub address: RateLimit,
    /// Refreshes per client IP.
    pub refresh: RateLimit,
    /// Wrong codes per address, across codes and purposes.
    pub code_guesses: RateLimit,
    /// Codes (and registration notices) requested per address.
    pub codes_issued: RateLimit,
    /// Wrong passwords per address before its logins back off.
    pub password_failures: RateLimit,
}

impl Limits {
    /// The limits the settings describe.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            ip: settings.rate_limit_ip.clone(),
            address: settings.rate_limit_address.clone(),
            refresh: settings.rate_limit_refresh.clone(),
            code_guesses: settings.code_guess_limit.clone(),
            codes_issued: settings.code_issue_limit.clone(),
            password_failures: settings.password_failure_limit.clone(),
        }
    }
}

/// What a request is limited as: each action has its own counters per client IP and per
/// address, so a burst of one kind does not use up another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /api/auth/register`.
    Register,
    /// `POST /api/auth/login` with a password.
    PasswordLogin,
    /// `POST /api/auth/login` without one (a code is mailed).
    CodeLogin,
    /// `POST /api/auth/verify-registration`.
    VerifyRegistration,
    /// `POST /api/auth/verify-login`.
    VerifyLogin,
    /// `POST /api/auth/resend-code`.
    ResendCode,
    /// `POST /api/auth/refresh` (per client IP only: it names no address).
    Refresh,
    /// `POST /api/auth/password-reset`.
    PasswordReset,
    /// `POST /api/auth/password-reset/confirm`.
    PasswordResetConfirm,
}

impl Action {
    /// The metrics label.
    fn name(self) -> &'static str {
        let (ip_family, _) = self.families();
        ip_family.trim_start_matches("ip:")
    }

    /// The counters' families: per client IP, per address.
    fn families(self) -> (&'static str, &'static str) {
        match self {
            Self::Register => ("ip:register", "address:register"),
            Self::PasswordLogin => ("ip:password-login", "address:password-login"),
            Self::CodeLogin => ("ip:code-login", "address:code-login"),
            Self::VerifyRegistration => ("ip:verify-registration", "address:verify-registration"),
            Self::VerifyLogin => ("ip:verify-login", "address:verify-login"),
            Self::ResendCode => ("ip:resend", "address:resend"),
            Self::Refresh => ("ip:refresh", "address:refresh"),
            Self::PasswordReset => ("ip:password-reset", "address:password-reset"),
            Self::PasswordResetConfirm => (
                "ip:password-reset-confirm",
                "address:password-reset-confirm",
            ),
        }
    }
}

/// Wrong codes per address: one family for every purpose, so a new code, a resend or a
/// registration again starts nothing afresh.
const GUESSES: &str = "code-guesses";
/// Codes and registration notices requested per address, across purposes.
const CODES_ISSUED: &str = "codes-issued";
/// Wrong passwords per address, whether or not it has an account.
const PASSWORD_FAILURES: &str = "password-failures";
/// The "someone tried to sign in" notice, per account.
const ATTEMPTS_NOTICE: &str = "notice:sign-in-attempts";
/// A refused request's audit row, per limit and subject: written at most once a minute, so
/// a flood of refused requests does not become a flood of rows.
const BLOCK_RECORDED: &str = "audit:rate-limited";
const BLOCK_RECORD_EVERY: Duration = Duration::from_secs(60);
/// How often an account gets that notice at most.
const ATTEMPTS_NOTICE_EVERY: Duration = Duration::from_secs(86_400);

fn address_key<'a>(family: &'static str, email: &'a EmailAddress) -> LimitKey<'a> {
    LimitKey {
        family,
        subject: email.as_str(),
    }
}

impl Accounts {
    /// Counts a request for `action` from `client` (and for `email`, when the request names
    /// one) and refuses it with [`AccountError::RateLimited`] past the per-IP or per-address
    /// limit. Use cases call this first, before any Argon2 run, code check or mail, so a
    /// flood costs one counter update per request. All of a request's counters are checked
    /// in one store round trip, and counted all or none: a refused request counts on no
    /// limit. (Refresh is counted per IP only.)
    pub async fn admit(
        &self,
        action: Action,
        client: &ClientInfo,
        email: Option<&EmailAddress>,
    ) -> Result<(), AccountError> {
        self.admit_with(action, client, email, None).await.map(drop)
    }

    /// [`Accounts::admit`] for a request that presents a code: takes one guess from the
    /// address's code-guess budget with the request's other hits, in one round trip (taken
    /// before the code is checked, so concurrent guesses cannot exceed it); a correct code
    /// gives the returned hit back ([`Accounts::give_back_guess`]).
    pub(super) async fn admit_guess(
        &self,
        action: Action,
        client: &ClientInfo,
        email: &EmailAddress,
    ) -> Result<HitId, AccountError> {
        let guess = (
            address_key(GUESSES, email),
            &self.policy.limits.code_guesses,
        );
        self.admit_with(action, client, Some(email), Some(guess))
            .await
    }

    async fn admit_with(
        &self,
        action: Action,
        client: &ClientInfo,
        email: Option<&EmailAddress>,
        extra: Option<(LimitKey<'_>, &RateLimit)>,
    ) -> Result<HitId, AccountError> {
        let started = std::time::Instant::now();
        let (ip_family, address_family) = action.families();
        let limits = &self.policy.limits;
        let subject = client.ip.map(limit_subject);
        let mut hits = Vec::with_capacity(3);
        if let Some(subject) = &subject {
            let limit = if action == Action::Refresh {
                &limits.refresh
            } else {
                &limits.ip
            };
            let key = LimitKey {
                family: ip_family,
                subject,
            };
            hits.push((key, limit));
        }
        if let Some(email) = email {
            hits.push((address_key(address_family, email), &limits.address));
        }
        hits.extend(extra);
        let admitted = self.acquire_all(&hits, client).await;
        crate::metrics::rate_limit_check(action.name(), started.elapsed());
        admitted
    }

    /// Counts one hit on each of `hits` (one store round trip), or none and refuses
    /// `client`'s request with the wait of the limit it is over. Every limit a use case
    /// applies goes through here.
    async fn acquire_all(
        &self,
        hits: &[(LimitKey<'_>, &RateLimit)],
        client: &ClientInfo,
    ) -> Result<HitId, AccountError> {
        match self
            .stores
            .limiter
            .acquire_all(hits, self.clock.now())
            .await?
        {
            Admissions::Granted(hit) => Ok(hit),
            Admissions::Denied { index, wait } => {
                let Some((key, _)) = hits.get(index) else {
                    return Err(AccountError::RateLimited(wait));
                };
                self.refused(*key, wait, client).await
            }
        }
    }

    /// A request refused by `key`'s limit: logged, audited (at most once a minute), answered.
    async fn refused<T>(
        &self,
        key: LimitKey<'_>,
        wait: Duration,
        client: &ClientInfo,
    ) -> Result<T, AccountError> {
        tracing::info!(
            limit = key.family,
            retry_after_secs = wait.as_secs(),
            "rate limited"
        );
        self.record_block(key, client).await;
        Err(AccountError::RateLimited(wait))
    }

    /// Writes the audit row of a request refused by `key`'s limit, unless one was written for
    /// that limit and subject within the last minute. (Which account the address has is not
    /// looked up: that would cost refused requests a read, and differ between addresses.)
    async fn record_block(&self, key: LimitKey<'_>, client: &ClientInfo) {
        let subject = format!("{}|{}", key.family, key.subject);
        let once = LimitKey {
            family: BLOCK_RECORDED,
            subject: &subject,
        };
        let every = RateLimit::single(1, BLOCK_RECORD_EVERY);
        match self
            .stores
            .limiter
            .acquire(once, &every, self.clock.now())
            .await
        {
            Ok(Admission::Granted(_)) => {
                self.record(
                    AuthEventKind::RateLimited,
                    AuthOutcome::Failure,
                    None,
                    client,
                )
                .await;
            }
            Ok(Admission::Denied(_)) => {}
            Err(e) => tracing::warn!(error = %e, "could not throttle the rate-limit audit row"),
        }
    }

    /// Gives a hit back; a failure only costs the client one unit of its budget.
    async fn give_back(&self, key: LimitKey<'_>, hit: &HitId) {
        if let Err(e) = self.stores.limiter.release(key, hit).await {
            tracing::warn!(error = %e, limit = key.family, "could not give back a rate-limit hit");
        }
    }

    /// Returns a guess that was not a wrong code.
    pub(super) async fn give_back_guess(&self, email: &EmailAddress, hit: &HitId) {
        self.give_back(address_key(GUESSES, email), hit).await;
    }

    /// Counts a code (or registration notice) requested for the address, across purposes.
    pub(super) async fn count_code_issued(
        &self,
        email: &EmailAddress,
        client: &ClientInfo,
    ) -> Result<HitId, AccountError> {
        let hit = (
            address_key(CODES_ISSUED, email),
            &self.policy.limits.codes_issued,
        );
        self.acquire_all(&[hit], client).await
    }

    /// Returns a counted code that was never sent.
    pub(super) async fn give_back_code_issued(&self, email: &EmailAddress, hit: &HitId) {
        self.give_back(address_key(CODES_ISSUED, email), hit).await;
    }

    /// Refuses a password login for the address while it backs off after wrong passwords;
    /// returns the failures counted so far.
    pub(super) async fn check_password_backoff(
        &self,
        email: &EmailAddress,
        client: &ClientInfo,
    ) -> Result<u32, AccountError> {
        let limit = &self.policy.limits.password_failures;
        let now = self.clock.now();
        let recent = self
            .stores
            .limiter
            .recent(address_key(PASSWORD_FAILURES, email), now - limit.longest())
            .await?;
        match password_backoff(limit, recent.count, recent.last, now) {
            Some(wait) => {
                tracing::info!(
                    failures = recent.count,
                    retry_after_secs = wait.as_secs(),
                    "password login backing off"
                );
                self.record_block(address_key(PASSWORD_FAILURES, email), client)
                    .await;
                Err(AccountError::RateLimited(wait))
            }
            None => Ok(recent.count),
        }
    }

    /// Counts a wrong password for the address (known or not: both answer alike); once the
    /// failures reach the limit, an active account's owner is told, at most once a day.
    pub(super) async fn count_password_failure(
        &self,
        email: &EmailAddress,
        failures_before: u32,
        user: Option<&User>,
    ) -> Result<(), AccountError> {
        let limit = &self.policy.limits.password_failures;
        self.stores
            .limiter
            .record(
                address_key(PASSWORD_FAILURES, email),
                limit.longest(),
                self.clock.now(),
            )
            .await?;
        let threshold = limit.windows().iter().map(|w| w.limit).min().unwrap_or(0);
        if failures_before + 1 >= threshold
            && let Some(user) = user.filter(|u| u.status == UserStatus::Active)
        {
            // The notice is a courtesy: failing to queue it must not change the answer.
            if let Err(e) = self.notify_sign_in_attempts(user).await {
                tracing::warn!(error = %e, user_id = %user.id.0, "could not queue the sign-in attempts notice");
            }
        }
        Ok(())
    }

    async fn notify_sign_in_attempts(&self, user: &User) -> Result<(), AccountError> {
        let subject = user.id.0.to_string();
        let key = LimitKey {
            family: ATTEMPTS_NOTICE,
            subject: &subject,
        };
        let once_a_day = RateLimit::single(1, ATTEMPTS_NOTICE_EVERY);
        let now = self.clock.now();
        if let Admission::Denied(_) = self.stores.limiter.acquire(key, &once_a_day, now).await? {
            return Ok(());
        }
        let notice = Email {
            to: user.email.clone(),
            name: Some(user.full_name.clone()),
            locale: user.locale,
            message: Message::SignInAttempts,
        };
        let mail = self.seal(&notice, now + ATTEMPTS_NOTICE_EVERY)?;
        self.stores.outbox.enqueue(&mail).await?;
        self.outbox.wake();
        tracing::info!(user_id = %user.id.0, "sign-in attempts notice queued");
        Ok(())
    }
}
