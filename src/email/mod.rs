//! Outgoing mail: what we send (`Email`) and the `EmailSender` seam that transports implement.

mod log;

use std::time::Duration;

use async_trait::async_trait;

pub use self::log::LogSender;
use crate::domain::{CodePurpose, EmailAddress, OneTimeCode};

/// One message to one recipient.
#[derive(Debug, Clone)]
pub struct Email {
    /// Always the address stored for the account (or, for a new account, the one just stored).
    pub to: EmailAddress,
    /// What it says.
    pub message: Message,
}

/// The messages this service sends.
#[derive(Debug, Clone)]
pub enum Message {
    /// A one-time code for `purpose`.
    VerificationCode {
        /// What the code is for.
        purpose: CodePurpose,
        /// The code.
        code: OneTimeCode,
        /// How long it is valid.
        valid_for: Duration,
    },
    /// Someone tried to register an address that already has an account.
    AccountAlreadyExists,
}

impl Email {
    /// Subject line.
    pub fn subject(&self) -> &'static str {
        match &self.message {
            Message::VerificationCode {
                purpose: CodePurpose::Registration,
                ..
            } => "Confirm your e-mail address",
            Message::VerificationCode {
                purpose: CodePurpose::Login,
                ..
            } => "Your login code",
            Message::AccountAlreadyExists => "Someone tried to register with your address",
        }
    }

    /// Plain-text body.
    pub fn body(&self) -> String {
        match &self.message {
            Message::VerificationCode {
                purpose,
                code,
                valid_for,
            } => {
                let action = match purpose {
                    CodePurpose::Registration => "confirm your e-mail address",
                    CodePurpose::Login => "log in",
                };
                format!(
                    "Your code to {action} is {}.\nIt is valid for {} minutes and can be used once.\n\
                     If you did not ask for it, you can ignore this message.",
                    code.expose(),
                    valid_for.as_secs().div_ceil(60)
                )
            }
            Message::AccountAlreadyExists => {
                "Someone, perhaps you, tried to register a new account \
                 with this address, which already has one.\nNo new account was created. \
                 If it was you, log in instead.\nIf it was not, you can ignore this message."
                    .to_owned()
            }
        }
    }
}

/// Why a message could not be handed to the transport.
#[derive(Debug, thiserror::Error)]
#[error("sending mail failed: {0:#}")]
pub struct SendError(pub anyhow::Error);

/// A mail transport (log now; SMTP and SES next, behind a transactional outbox).
#[async_trait]
pub trait EmailSender: Send + Sync {
    /// Hands `email` to the transport.
    async fn send(&self, email: &Email) -> Result<(), SendError>;
}
