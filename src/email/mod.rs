//! Outgoing mail: what we send (`Email`), how it reads (`templates`), the `EmailSender`
//! seam that transports implement (`log` for development, `smtp`, `ses` with `--features aws`), and
//! the outbox that carries each mail from the transaction that causes it to its transport.

mod dispatch;
mod log;
mod outbox;
#[cfg(feature = "aws")]
mod ses;
mod smtp;
mod templates;

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

pub use self::dispatch::{DispatchConfig, Dispatcher};
pub use self::log::LogSender;
pub use self::outbox::{Outbox, UnreadableMail};
#[cfg(feature = "aws")]
pub use self::ses::{SesFailure, SesSender};
pub use self::smtp::SmtpSender;
pub use self::templates::{RenderError, Rendered, Templates};
use crate::domain::{CodePurpose, EmailAddress, FullName, Locale, OneTimeCode};

/// The product name every message carries.
pub const PRODUCT: &str = "AIDLC";

/// One message to one recipient: everything needed to render and send it later (a queued row
/// stores these fields, and renders them at send time with [`Templates::render`]).
#[derive(Debug, Clone)]
pub struct Email {
    /// Always the address stored for the account (or, for a new account, the one just stored).
    pub to: EmailAddress,
    /// The name the greeting uses (none: a greeting without a name). Escaped in the HTML part;
    /// never put in a header.
    pub name: Option<FullName>,
    /// The language it is written in.
    pub locale: Locale,
    /// What it says.
    pub message: Message,
}

/// The messages this service sends. The variants marked *not sent yet* exist so their
/// templates are written and tested now; the issues that add their flows send them.
#[derive(Debug, Clone)]
pub enum Message {
    /// A one-time code for `purpose` (address verification or login).
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
    /// A code that lets the owner of an active account set a new password.
    PasswordResetCode {
        /// The code.
        code: OneTimeCode,
        /// How long it is valid.
        valid_for: Duration,
    },
    /// The password was reset or changed, and the other sessions ended.
    PasswordChanged,
    /// Passwords for the account were refused many times: someone may be guessing it. Sent at
    /// most once a day per account.
    SignInAttempts,
    /// *Not sent yet* (sign-in notice issue): a sign-in from a device not seen before.
    NewSignIn {
        /// When it happened (rendered in UTC).
        at: OffsetDateTime,
        /// The client's `User-Agent`, as sent (escaped in the HTML part), if any.
        device: Option<String>,
    },
}

impl Message {
    /// The code it carries, if any.
    pub fn code(&self) -> Option<&OneTimeCode> {
        match self {
            Self::VerificationCode { code, .. } | Self::PasswordResetCode { code, .. } => {
                Some(code)
            }
            Self::AccountAlreadyExists
            | Self::PasswordChanged
            | Self::SignInAttempts
            | Self::NewSignIn { .. } => None,
        }
    }

    /// The template's name (`templates/email/<locale>/<name>.{txt,html}`).
    pub fn template_name(&self) -> &'static str {
        match self {
            Self::VerificationCode {
                purpose: CodePurpose::Registration,
                ..
            } => "registration_code",
            Self::VerificationCode {
                purpose: CodePurpose::Login,
                ..
            } => "login_code",
            Self::AccountAlreadyExists => "account_exists",
            Self::VerificationCode {
                purpose: CodePurpose::PasswordReset,
                ..
            }
            | Self::PasswordResetCode { .. } => "password_reset_code",
            Self::PasswordChanged => "password_changed",
            Self::SignInAttempts => "sign_in_attempts",
            Self::NewSignIn { .. } => "new_sign_in",
        }
    }
}

/// Why a message could not be handed to the transport.
#[derive(Debug, thiserror::Error)]
#[error("sending mail failed: {0:#}")]
pub struct SendError(pub anyhow::Error);

impl SendError {
    /// True when trying again cannot help: the server refused the message or its recipient
    /// for good (SMTP 5xx), or it could not be built. Timeouts, refused connections and 4xx
    /// answers are transient; SES answers are sorted by `SesFailure::is_permanent`. (For the
    /// outbox: permanent means dead, transient means retry.)
    pub fn is_permanent(&self) -> bool {
        #[cfg(feature = "aws")]
        if let Some(ses) = self.0.downcast_ref::<SesFailure>() {
            return ses.is_permanent();
        }
        if let Some(smtp) = self.0.downcast_ref::<lettre::transport::smtp::Error>() {
            return smtp.is_permanent();
        }
        self.0.downcast_ref::<RenderError>().is_some()
            || self.0.downcast_ref::<lettre::error::Error>().is_some()
            || self
                .0
                .downcast_ref::<lettre::address::AddressError>()
                .is_some()
    }
}

/// A mail transport: `log`, `smtp` or `ses`. The outbox's sender calls the
/// configured one for each due row.
#[async_trait]
pub trait EmailSender: Send + Sync {
    /// Renders `email` and hands it to the transport; Ok once the transport accepted it.
    async fn send(&self, email: &Email) -> Result<(), SendError>;
}
