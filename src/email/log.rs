//! The development transport: the message goes to the log. This is the one deliberate place
//! a code is written out, and why staging and production should use a real transport.

use async_trait::async_trait;

use super::{Email, EmailSender, Message, SendError};

/// Writes each message to the log instead of sending it.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSender;

#[async_trait]
impl EmailSender for LogSender {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        let code = match &email.message {
            Message::VerificationCode { code, .. } => Some(code.expose()),
            Message::AccountAlreadyExists => None,
        };
        tracing::info!(
            to = %email.to,
            subject = email.subject(),
            code,
            "📧 이메일 발송 시뮬레이션 (e-mail sending simulation)"
        );
        Ok(())
    }
}
