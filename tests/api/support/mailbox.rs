//! The captured mailbox: every e-mail the app sends, kept in memory; can be told to fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aidlc_auth::domain::CodePurpose;
use aidlc_auth::email::{Email, EmailSender, Message, SendError};

/// Every e-mail the app sent, in order; can be told to make the transport fail.
#[derive(Clone, Default)]
pub struct Mailbox {
    sent: Arc<Mutex<Vec<Email>>>,
    failing: Arc<AtomicBool>,
}

impl Mailbox {
    /// While `true`, every send fails (as a mail provider outage would) and nothing is kept.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// A copy of every message so far.
    pub fn all(&self) -> Vec<Email> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Messages sent to exactly `to` (the stored, normalised address).
    pub fn sent_to(&self, to: &str) -> Vec<Email> {
        self.all()
            .into_iter()
            .filter(|e| e.to.as_str() == to)
            .collect()
    }

    /// The codes sent to `to` for `purpose`, oldest first.
    pub fn codes_for(&self, to: &str, purpose: CodePurpose) -> Vec<String> {
        self.sent_to(to)
            .into_iter()
            .filter_map(|e| match e.message {
                Message::VerificationCode {
                    purpose: p, code, ..
                } if p == purpose => Some(code.expose().to_owned()),
                _ => None,
            })
            .collect()
    }

    /// The newest code sent to `to` for `purpose`; panics when there is none.
    pub fn last_code_for(&self, to: &str, purpose: CodePurpose) -> String {
        self.codes_for(to, purpose).pop().unwrap_or_else(|| {
            panic!(
                "no {purpose:?} code was sent to {to}; mailbox: {:?}",
                self.all()
            )
        })
    }

    /// How many "account already exists" notices went to `to`.
    pub fn notices_for(&self, to: &str) -> usize {
        self.sent_to(to)
            .iter()
            .filter(|e| matches!(e.message, Message::AccountAlreadyExists))
            .count()
    }

    /// How many messages were sent in total.
    pub fn len(&self) -> usize {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The mail transport the tests install: it keeps every message.
pub struct CapturingMailer(pub Mailbox);

#[async_trait::async_trait]
impl EmailSender for CapturingMailer {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        if self.0.failing.load(Ordering::SeqCst) {
            return Err(SendError(anyhow::anyhow!(
                "the test mailbox is refusing mail"
            )));
        }
        self.0
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(email.clone());
        Ok(())
    }
}
