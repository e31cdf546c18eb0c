//! The captured mailbox: every e-mail the app sends, kept in memory; can be told to fail.
//!
//! The app sends from its outbox a few milliseconds after the request that wrote the mail, so
//! every read first waits until the test database's outbox has settled: no row in flight and
//! none due at the test clock's now (a row backing off after a failure is not due). That is a
//! condition on the database, not a sleep: a read returns as soon as the sender is done.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aidlc_auth::clock::{Clock, ManualClock};
use aidlc_auth::domain::CodePurpose;
use aidlc_auth::email::{Email, EmailSender, Message, SendError};

use super::database::TestDatabase;

/// How long a read waits for the outbox to settle before the test fails.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// Every e-mail the app sent, in order; can be told to make the transport fail.
#[derive(Clone)]
pub struct Mailbox {
    sent: Arc<Mutex<Vec<Email>>>,
    failing: Arc<AtomicBool>,
    refusing: Arc<AtomicBool>,
    db: Arc<TestDatabase>,
    clock: Arc<ManualClock>,
}

impl Mailbox {
    /// An empty mailbox for the apps on `db`, whose outbox it waits for, read at `clock`.
    pub fn new(db: Arc<TestDatabase>, clock: Arc<ManualClock>) -> Self {
        Self {
            sent: Arc::default(),
            failing: Arc::default(),
            refusing: Arc::default(),
            db,
            clock,
        }
    }

    /// While `true`, every send fails (as a mail provider outage would) and nothing is kept.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// While `true`, every send is refused for good (as an SMTP 5xx would be).
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }

    /// Waits until the outbox has no row in flight and none due now (at most 5 s, then the
    /// test fails): every mail the apps could send by now has been tried.
    pub async fn settled(&self) {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let busy = self.db.outbox_busy(self.clock.now()).await;
            if busy == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the outbox did not settle within {SETTLE_LIMIT:?}: {busy} rows due or in flight"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// [`Mailbox::settled`] for the synchronous reads (the tests run on a multi-threaded runtime).
    fn settle(&self) {
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(self.settled()));
    }

    /// A copy of every message so far.
    pub fn all(&self) -> Vec<Email> {
        self.settle();
        self.snapshot()
    }

    fn snapshot(&self) -> Vec<Email> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Messages sent to exactly `to` (the stored, normalised address).
    pub fn sent_to(&self, to: &str) -> Vec<Email> {
        self.all()
            .into_iter()
            .filter(|e| e.to.as_str() == to)
            .collect()
    }

    /// The codes sent to `to` for `purpose` (password-reset codes for `PasswordReset`),
    /// oldest first.
    pub fn codes_for(&self, to: &str, purpose: CodePurpose) -> Vec<String> {
        codes_in(self.sent_to(to), purpose)
    }

    /// The codes delivered to `to` for `purpose` so far, oldest first, without waiting for the
    /// outbox (which cannot settle while its database is down).
    pub fn codes_so_far(&self, to: &str, purpose: CodePurpose) -> Vec<String> {
        let sent = self.snapshot().into_iter().filter(|e| e.to.as_str() == to);
        codes_in(sent.collect(), purpose)
    }

    /// How many "password changed" notices went to `to`.
    pub fn password_changed_notices_for(&self, to: &str) -> usize {
        self.sent_to(to)
            .iter()
            .filter(|e| matches!(e.message, Message::PasswordChanged))
            .count()
    }

    /// The newest code sent to `to` for `purpose`; panics when there is none.
    pub fn last_code_for(&self, to: &str, purpose: CodePurpose) -> String {
        self.codes_for(to, purpose).pop().unwrap_or_else(|| {
            panic!(
                "no {purpose:?} code was sent to {to}; mailbox: {:?}",
                self.snapshot()
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
        self.all().len()
    }
}

/// The codes `mails` carry for `purpose` (password-reset codes for `PasswordReset`), in order.
fn codes_in(mails: Vec<Email>, purpose: CodePurpose) -> Vec<String> {
    mails
        .into_iter()
        .filter_map(|e| match e.message {
            Message::VerificationCode {
                purpose: p, code, ..
            } if p == purpose => Some(code.expose().to_owned()),
            Message::PasswordResetCode { code, .. } if purpose == CodePurpose::PasswordReset => {
                Some(code.expose().to_owned())
            }
            _ => None,
        })
        .collect()
}

/// The mail transport the tests install: it keeps every message.
pub struct CapturingMailer(pub Mailbox);

#[async_trait::async_trait]
impl EmailSender for CapturingMailer {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        if self.0.refusing.load(Ordering::SeqCst) {
            // An error `SendError::is_permanent` knows as one.
            let refused = "refused for good"
                .parse::<lettre::Address>()
                .expect_err("not an address");
            return Err(SendError(refused.into()));
        }
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
