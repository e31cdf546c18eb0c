//! The development transport: the message goes to the log. This is the one deliberate place
//! a code is written out, and why staging and production refuse it unless told otherwise.

use async_trait::async_trait;

use super::{Email, EmailSender, SendError, Templates};

/// Writes each message (its subject, locale and code) to the log instead of sending it.
#[derive(Debug, Clone)]
pub struct LogSender {
    templates: Templates,
}

impl LogSender {
    /// A log transport rendering subjects with `templates`.
    pub fn new(templates: Templates) -> Self {
        Self { templates }
    }
}

#[async_trait]
impl EmailSender for LogSender {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        // Rendered in full, so a template that fails here fails in development too.
        let rendered = self
            .templates
            .render(email)
            .map_err(|e| SendError(e.into()))?;
        let code = email.message.code().map(|c| c.expose());
        tracing::info!(
            to = %email.to,
            subject = rendered.subject,
            locale = %email.locale,
            code,
            "📧 이메일 발송 시뮬레이션 (e-mail sending simulation)"
        );
        Ok(())
    }
}
