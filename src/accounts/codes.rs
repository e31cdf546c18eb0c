//! Issuing and checking one-time codes: generation, keyed hashing, cooldown, queued mail.

use std::future::Future;

use hmac::Mac;

use super::{AccountError, Accounts, Action, ClientInfo};
use crate::domain::{CodePurpose, EmailAddress, FullName, Locale, OnMatch, OneTimeCode, UserId};
use crate::email::{Email, Message};
use crate::metrics::{self, CodeEvent};
use crate::store::{CodeCheck, Cooldown, OutboxMail, StoredCode};

/// Keyed hashing of codes, so a leaked code store does not yield live codes without the key.
#[derive(Clone)]
pub struct CodeHasher {
    key: Vec<u8>,
}

impl CodeHasher {
    /// Name of the shared key in the secret store.
    pub const SECRET_NAME: &'static str = "code-hmac-key";

    /// A hasher with `key` (32 bytes from the secret store).
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// HMAC-SHA256 over purpose, address and code, hex.
    pub fn hash(&self, email: &EmailAddress, purpose: CodePurpose, code: &OneTimeCode) -> String {
        let mut mac = crate::crypto::hmac_sha256(&self.key);
        for part in [purpose.as_str(), email.as_str(), code.expose()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        crate::crypto::mac_hex(mac)
    }
}

impl Accounts {
    /// Claims the resend cooldown for (address, purpose). Claimed for unknown addresses too,
    /// so a 429 says nothing about whether an account exists.
    pub(super) async fn claim_cooldown(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
    ) -> Result<(), AccountError> {
        let now = self.clock.now();
        match self
            .stores
            .codes
            .start_cooldown(email, purpose, now, self.policy.resend_cooldown)
            .await?
        {
            Cooldown::Started => Ok(()),
            Cooldown::Active(left) => Err(AccountError::Cooldown(left)),
        }
    }

    /// Runs `send` (which mails a code for `purpose` to `email`, or pretends to) under the
    /// resend cooldown and the per-address cap on codes issued: both claimed first, for every
    /// address alike, and given back when `send` fails (or the cap refuses), so the client's
    /// retry is not refused with a 429.
    pub(super) async fn with_cooldown<T>(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
        client: &ClientInfo,
        send: impl Future<Output = Result<T, AccountError>>,
    ) -> Result<T, AccountError> {
        self.claim_cooldown(email, purpose).await?;
        let issued = match self.count_code_issued(email, client).await {
            Ok(hit) => hit,
            Err(e) => {
                self.release_cooldown(email, purpose).await;
                return Err(e);
            }
        };
        let result = send.await;
        if result.is_err() {
            self.release_cooldown(email, purpose).await;
            self.give_back_code_issued(email, &issued).await;
        }
        result
    }

    async fn release_cooldown(&self, email: &EmailAddress, purpose: CodePurpose) {
        if let Err(e) = self.stores.codes.clear_cooldown(email, purpose).await {
            tracing::warn!(error = %e, purpose = purpose.as_str(), "could not release resend cooldown");
        }
    }

    /// Stores a fresh code for (address, purpose), replacing any earlier one, and returns the
    /// outbox row of the mail that carries it (the code sealed), greeting `name`, expiring with
    /// the code. The caller writes the row with the rest of its writes, the code being stored
    /// first: an orphan code is harmless, an account whose code was never mailed is not.
    pub(super) async fn store_new_code(
        &self,
        to: &EmailAddress,
        name: &FullName,
        purpose: CodePurpose,
        locale: Locale,
    ) -> Result<OutboxMail, AccountError> {
        let mail = self.put_code(to, Some(name), purpose, locale).await?;
        metrics::code(purpose, CodeEvent::Issued);
        Ok(mail)
    }

    /// The work of [`Self::store_new_code`] plus the outbox write, for a request that mails
    /// nothing: the address has no account in the state `purpose` needs. A code nobody is
    /// told is stored for (address, purpose) all the same, in place of any earlier one, and
    /// its mail is written and removed ([`crate::store::OutboxStore::enqueue_decoy`]). So the
    /// answer costs what a mailed code costs, and whether a code is pending for the address
    /// (which a later wrong guess would reveal by its cost) does not depend on the account
    /// either. The code replaced can be of no use: it is for a purpose the address's account
    /// (if any) is not in the state for, and the resend cooldown keeps a registration in
    /// flight from being overtaken.
    pub(super) async fn issue_decoy_code(
        &self,
        to: &EmailAddress,
        purpose: CodePurpose,
    ) -> Result<(), AccountError> {
        let mail = self
            .put_code(to, None, purpose, self.policy.default_locale)
            .await?;
        self.stores.outbox.enqueue_decoy(&mail).await?;
        // The sender is woken alike (and finds nothing to send).
        self.outbox.wake();
        Ok(())
    }

    /// Stores a fresh code for (address, purpose) and returns its mail, sealed, unwritten.
    pub(super) async fn put_code(
        &self,
        to: &EmailAddress,
        name: Option<&FullName>,
        purpose: CodePurpose,
        locale: Locale,
    ) -> Result<OutboxMail, AccountError> {
        let code = OneTimeCode::generate();
        let now = self.clock.now();
        let stored = StoredCode {
            hash: self.codes.hash(to, purpose, &code),
            issued_at: now,
            expires_at: now + self.policy.code_ttl,
        };
        self.stores.codes.put(to, purpose, &stored).await?;
        let valid_for = self.policy.code_ttl;
        let message = match purpose {
            CodePurpose::PasswordReset => Message::PasswordResetCode { code, valid_for },
            purpose => Message::VerificationCode {
                purpose,
                code,
                valid_for,
            },
        };
        let mail = Email {
            to: to.clone(),
            name: name.cloned(),
            locale,
            message,
        };
        self.seal(&mail, stored.expires_at)
    }

    /// Stores `code` again for (address, purpose), valid for a full lifetime from now with its
    /// tries reset: for a code that was spent by a request that then failed, so the mail that
    /// carries it works for the retry. Best effort: a failure is logged.
    pub(super) async fn restore_code(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
        code: &OneTimeCode,
    ) {
        let now = self.clock.now();
        let stored = StoredCode {
            hash: self.codes.hash(email, purpose, code),
            issued_at: now,
            expires_at: now + self.policy.code_ttl,
        };
        if let Err(e) = self.stores.codes.put(email, purpose, &stored).await {
            tracing::warn!(error = %e, purpose = purpose.as_str(), "could not give a spent code back");
        }
    }

    /// The outbox row for `mail`, written now, not sent after `expires_at`.
    pub(super) fn seal(
        &self,
        mail: &Email,
        expires_at: time::OffsetDateTime,
    ) -> Result<OutboxMail, AccountError> {
        self.outbox
            .seal(mail, self.clock.now(), expires_at)
            .map_err(AccountError::Unexpected)
    }

    /// Presents `code` for (address, purpose): consumed or only proven as `on_match` says;
    /// anything but a live match fails with `InvalidCode`.
    pub(super) async fn present_code(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
        code: &OneTimeCode,
        on_match: OnMatch,
    ) -> Result<(), AccountError> {
        let hash = self.codes.hash(email, purpose, code);
        let now = self.clock.now();
        let max = self.policy.max_code_attempts;
        match self
            .stores
            .codes
            .try_code(email, purpose, &hash, now, max, on_match)
            .await?
        {
            CodeCheck::Accepted => {
                metrics::code(purpose, CodeEvent::Verified);
                Ok(())
            }
            CodeCheck::Rejected => {
                metrics::code(purpose, CodeEvent::Rejected);
                Err(AccountError::InvalidCode)
            }
        }
    }

    /// `POST /api/auth/resend-code`: a fresh code when the account is in the state the purpose
    /// needs (pending for registration, active for login); the same answer otherwise.
    #[tracing::instrument(skip_all, fields(purpose = purpose.as_str()))]
    pub async fn resend_code(
        &self,
        email: EmailAddress,
        purpose: CodePurpose,
        client: &ClientInfo,
    ) -> Result<(), AccountError> {
        self.admit(Action::ResendCode, client, Some(&email)).await?;
        self.send_code(email, purpose, client).await
    }

    /// A fresh code for `purpose` when the account is in the state it needs, under the
    /// cooldown and the cap on codes issued; the same answer otherwise.
    pub(super) async fn send_code(
        &self,
        email: EmailAddress,
        purpose: CodePurpose,
        client: &ClientInfo,
    ) -> Result<(), AccountError> {
        let send = self.resend_code_claimed(&email, purpose);
        self.with_cooldown(&email, purpose, client, send)
            .await
            .map(drop)
    }

    /// Mails a fresh code for `purpose` when the account is in the state it needs; returns
    /// the account's id when one was sent.
    pub(super) async fn resend_code_claimed(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
    ) -> Result<Option<UserId>, AccountError> {
        let wanted = match purpose {
            CodePurpose::Registration => crate::domain::UserStatus::Pending,
            CodePurpose::Login | CodePurpose::PasswordReset => crate::domain::UserStatus::Active,
        };
        let user = self.stores.users.find_by_email(email).await?;
        let Some(user) = user.filter(|u| u.status == wanted) else {
            self.issue_decoy_code(email, purpose).await?;
            return Ok(None);
        };
        let mail = self
            .store_new_code(&user.email, &user.full_name, purpose, user.locale)
            .await?;
        // No other write to share: the outbox row is the write.
        self.stores.outbox.enqueue(&mail).await?;
        self.outbox.wake();
        Ok(Some(user.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_binds_code_to_address_and_purpose() {
        let h = CodeHasher::new(vec![7; 32]);
        let a = EmailAddress::parse("a@example.com").unwrap();
        let b = EmailAddress::parse("b@example.com").unwrap();
        let code = OneTimeCode::parse("123456").unwrap();
        let base = h.hash(&a, CodePurpose::Registration, &code);
        assert_ne!(base, h.hash(&b, CodePurpose::Registration, &code));
        assert_ne!(base, h.hash(&a, CodePurpose::Login, &code));
        assert_ne!(
            base,
            CodeHasher::new(vec![8; 32]).hash(&a, CodePurpose::Registration, &code)
        );
        assert_eq!(base, h.hash(&a, CodePurpose::Registration, &code));
    }
}
