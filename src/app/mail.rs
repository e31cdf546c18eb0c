//! The mail transport the settings choose, and how the outbox sender uses it.

use std::sync::Arc;

use anyhow::Context;

use crate::config::{EmailTransport, Settings};
use crate::email::{DispatchConfig, EmailSender, LogSender, SmtpSender, Templates};

/// The configured mail transport. An SMTP server that fails its start-up check is only warned
/// about (it may come up after us; each send reports its own failure).
pub async fn mailer(settings: &Settings) -> anyhow::Result<Arc<dyn EmailSender>> {
    let templates = Templates::new().context("compiling the mail templates")?;
    Ok(match (settings.email_transport, &settings.smtp_url) {
        (EmailTransport::Log, _) => {
            if settings.environment.is_deployed() {
                // Allowed explicitly (AIDLC_ALLOW_LOG_EMAIL), still worth a line at every start.
                tracing::warn!(
                    "the log mail transport writes codes to the log; use it only in development"
                );
            }
            Arc::new(LogSender::new(templates))
        }
        (EmailTransport::Smtp, Some(url)) => {
            let smtp =
                SmtpSender::new(url, &settings.email_from, settings.smtp_timeout, templates)?;
            smtp.check().await;
            Arc::new(smtp)
        }
        // Settings::validate refuses this; say so rather than fall back to the log.
        (EmailTransport::Smtp, None) => {
            anyhow::bail!("AIDLC_EMAIL_TRANSPORT=smtp needs AIDLC_SMTP_URL")
        }
        #[cfg(feature = "aws")]
        (EmailTransport::Ses, _) => {
            let config = crate::aws::sdk_config(settings).await;
            let ses = crate::email::SesSender::new(&config, &settings.email_from, templates)?;
            ses.check().await;
            Arc::new(ses)
        }
        // Settings::validate refuses this too.
        #[cfg(not(feature = "aws"))]
        (EmailTransport::Ses, _) => anyhow::bail!(
            "AIDLC_EMAIL_TRANSPORT=ses needs a build with `cargo build --release --features aws`"
        ),
    })
}

/// The outbox sender's settings. A send may take several SMTP commands, each bounded by the
/// SMTP timeout.
pub(super) fn dispatch_config(settings: &Settings) -> DispatchConfig {
    DispatchConfig {
        poll: settings.outbox_poll,
        max_attempts: settings.outbox_max_attempts,
        send_timeout: settings.smtp_timeout * SMTP_COMMANDS_PER_SEND,
    }
}

/// Commands of one SMTP send (connect, EHLO, MAIL, RCPT, DATA, body) each bounded by the
/// SMTP timeout.
const SMTP_COMMANDS_PER_SEND: u32 = 6;
