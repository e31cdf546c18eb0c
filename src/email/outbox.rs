//! Turning an [`Email`] into an outbox row and back: the code sealed under the server's outbox
//! key (ChaCha20-Poly1305, the row id, kind and key id as associated data), and the in-process
//! wake-up the use cases poke after they commit.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Email, Message};
use crate::domain::{CodePurpose, EmailAddress, FullName, Locale, OneTimeCode};
use crate::store::OutboxMail;

/// Seals mail for the outbox and opens it again at send time; wakes this instance's sender.
#[derive(Clone)]
pub struct Outbox {
    key_id: Arc<str>,
    key: Arc<[u8]>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Why a row could not become a mail again (a bug or a corrupt row: it is given up on).
#[derive(Debug, thiserror::Error)]
#[error("outbox row {id} cannot be read back: {reason}")]
pub struct UnreadableMail {
    /// The row.
    pub id: Uuid,
    /// What was wrong.
    pub reason: String,
}

impl Outbox {
    /// The shared secret's name for the key sealing codes in outbox rows (the first key id).
    pub const SECRET_NAME: &'static str = "outbox-key";

    /// An outbox sealing with the 32-byte `key`, recorded as `key_id` (the secret's name).
    pub fn new(key_id: &str, key: Vec<u8>) -> Self {
        Self {
            key_id: key_id.into(),
            key: key.into(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The row for `email`, written at `now`, not sent after `expires_at`.
    pub fn seal(
        &self,
        email: &Email,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> anyhow::Result<OutboxMail> {
        let id = Uuid::new_v4();
        let kind = email.message.template_name();
        let (valid_for_secs, payload, key_id) = match &email.message {
            Message::VerificationCode {
                code, valid_for, ..
            }
            | Message::PasswordResetCode { code, valid_for } => {
                let context = self.context(id, kind, &self.key_id);
                let sealed = crate::crypto::seal(&self.key, &context, code.expose().as_bytes())
                    .context("the outbox key is not 32 bytes")?;
                let secs = i64::try_from(valid_for.as_secs()).unwrap_or(i64::MAX);
                (Some(secs), Some(sealed), Some(self.key_id.to_string()))
            }
            Message::AccountAlreadyExists | Message::PasswordChanged | Message::SignInAttempts => {
                (None, None, None)
            }
            Message::NewSignIn { .. } => {
                anyhow::bail!("the sign-in notice cannot be queued yet (no columns for it)")
            }
        };
        Ok(OutboxMail {
            id,
            kind: kind.to_owned(),
            recipient: email.to.as_str().to_owned(),
            name: email.name.as_ref().map(|n| n.as_str().to_owned()),
            locale: email.locale.as_str().to_owned(),
            valid_for_secs,
            payload,
            key_id,
            created_at: now,
            expires_at,
        })
    }

    /// The mail `row` describes, its code unsealed.
    pub fn open(&self, row: &OutboxMail) -> Result<Email, UnreadableMail> {
        let bad = |reason: &str| UnreadableMail {
            id: row.id,
            reason: reason.to_owned(),
        };
        let to = EmailAddress::parse(&row.recipient).map_err(|_| bad("recipient"))?;
        let name = match &row.name {
            Some(name) => Some(FullName::parse(name).map_err(|_| bad("name"))?),
            None => None,
        };
        let locale: Locale = row.locale.parse().map_err(|_| bad("locale"))?;
        let code = || -> Result<(OneTimeCode, Duration), UnreadableMail> {
            let (Some(sealed), Some(key_id), Some(secs)) =
                (&row.payload, &row.key_id, row.valid_for_secs)
            else {
                return Err(bad("no sealed code"));
            };
            if **key_id != *self.key_id {
                return Err(bad("sealed under an unknown key"));
            }
            let context = self.context(row.id, &row.kind, key_id);
            let plain = crate::crypto::open(&self.key, &context, sealed)
                .map_err(|_| bad("the sealed code does not open"))?;
            let code = std::str::from_utf8(&plain)
                .ok()
                .and_then(|c| OneTimeCode::parse(c).ok())
                .ok_or_else(|| bad("the sealed code is not a code"))?;
            let valid_for = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
            Ok((code, valid_for))
        };
        let message = match row.kind.as_str() {
            "registration_code" | "login_code" => {
                let purpose = if row.kind == "login_code" {
                    CodePurpose::Login
                } else {
                    CodePurpose::Registration
                };
                let (code, valid_for) = code()?;
                Message::VerificationCode {
                    purpose,
                    code,
                    valid_for,
                }
            }
            "password_reset_code" => {
                let (code, valid_for) = code()?;
                Message::PasswordResetCode { code, valid_for }
            }
            "account_exists" => Message::AccountAlreadyExists,
            "password_changed" => Message::PasswordChanged,
            "sign_in_attempts" => Message::SignInAttempts,
            _ => return Err(bad("unknown kind")),
        };
        Ok(Email {
            to,
            name,
            locale,
            message,
        })
    }

    /// Tells this instance's sender that mail was committed (call after the commit).
    pub fn wake(&self) {
        // notify_one keeps a permit when the sender is busy, so the poke is never lost.
        self.wake.notify_one();
    }

    /// Completes at the next [`Outbox::wake`] (or at once if one came since the last wait).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// The associated data: a sealed code opens only in the row, for the kind, and under the
    /// key id it was sealed for.
    fn context(&self, id: Uuid, kind: &str, key_id: &str) -> Vec<u8> {
        let mut context = Vec::with_capacity(16 + kind.len() + key_id.len() + 1);
        context.extend_from_slice(id.as_bytes());
        context.extend_from_slice(kind.as_bytes());
        // Kinds are ASCII names: the separator keeps (kind, key id) pairs apart.
        context.push(0);
        context.extend_from_slice(key_id.as_bytes());
        context
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_mail() -> Email {
        Email {
            to: EmailAddress::parse("a@example.com").unwrap(),
            name: Some(FullName::parse("김철수").unwrap()),
            locale: Locale::Ko,
            message: Message::VerificationCode {
                purpose: CodePurpose::Login,
                code: OneTimeCode::parse("123456").unwrap(),
                valid_for: Duration::from_secs(900),
            },
        }
    }

    #[test]
    fn a_sealed_row_opens_to_the_same_mail_and_never_holds_the_code() {
        let outbox = Outbox::new("outbox-key", vec![1; 32]);
        let now = OffsetDateTime::UNIX_EPOCH;
        let row = outbox.seal(&code_mail(), now, now).unwrap();
        let sealed = row.payload.clone().unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"123456"));
        assert_eq!(row.kind, "login_code");
        let opened = outbox.open(&row).unwrap();
        assert_eq!(opened.message.code().unwrap().expose(), "123456");
        assert_eq!(opened.message.template_name(), "login_code");
        assert_eq!(opened.name.unwrap().as_str(), "김철수");

        // Moved to another row, or relabelled, it does not open.
        let moved = OutboxMail {
            id: Uuid::new_v4(),
            ..row.clone()
        };
        assert!(outbox.open(&moved).is_err());
        let relabelled = OutboxMail {
            kind: "registration_code".to_owned(),
            ..row.clone()
        };
        assert!(outbox.open(&relabelled).is_err());
        assert!(Outbox::new("outbox-key", vec![2; 32]).open(&row).is_err());
    }
}
