//! The Amazon SES transport (`--features aws`): SES v2 `SendEmail` with the rendered text and
//! HTML parts, credentials and region from the standard AWS chain.

use anyhow::Context;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sesv2::error::{DisplayErrorContext, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent};

use super::{Email, EmailSender, SendError, Templates};

/// Sends each message as one SES "simple" mail (subject, text part, HTML part).
#[derive(Debug, Clone)]
pub struct SesSender {
    client: aws_sdk_sesv2::Client,
    from: String,
    templates: Templates,
}

/// What SES answered when it did not take a mail, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
#[error("SES did not send the mail: {reason}")]
pub struct SesFailure {
    reason: String,
    permanent: bool,
}

impl SesFailure {
    /// True when SES refused this message for good (rejected, its sender not verified, a
    /// malformed request); false for throttling, a paused or suspended account (the operator
    /// fixes it and the outbox's retries deliver), timeouts and server errors.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

impl SesSender {
    /// A transport sending from `from` (`AIDLC_EMAIL_FROM`, e.g. `AIDLC <no-reply@example.com>`:
    /// its address or domain must be a verified SES identity).
    pub fn new(config: &SdkConfig, from: &str, templates: Templates) -> anyhow::Result<Self> {
        // The same check the SMTP transport makes, so a typo fails at start-up here too.
        let _: lettre::message::Mailbox = from
            .parse()
            .with_context(|| format!("AIDLC_EMAIL_FROM {from:?} is not a mailbox"))?;
        Ok(Self {
            client: aws_sdk_sesv2::Client::new(config),
            from: from.to_owned(),
            templates,
        })
    }

    /// The start-up check: asks SES for the account's sending status. A failure is only
    /// warned about (credentials may arrive after us; every send reports its own failure).
    pub async fn check(&self) {
        match self.client.get_account().send().await {
            Ok(account) if account.sending_enabled() => {
                tracing::info!("SES reachable, sending enabled")
            }
            Ok(_) => tracing::warn!("SES reachable, but sending is paused for this account"),
            Err(e) => {
                tracing::warn!(error = %DisplayErrorContext(e), "SES unreachable at start-up")
            }
        }
    }

    /// The `SendEmail` content for `email`: the rendered subject, text and HTML, in UTF-8.
    fn content(&self, email: &Email) -> Result<EmailContent, SendError> {
        let rendered = self
            .templates
            .render(email)
            .map_err(|e| SendError(e.into()))?;
        let utf8 = |data: String| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|e| SendError(anyhow::Error::new(e).context("building the SES message")))
        };
        let message = aws_sdk_sesv2::types::Message::builder()
            .subject(utf8(rendered.subject)?)
            .body(
                Body::builder()
                    .text(utf8(rendered.text)?)
                    .html(utf8(rendered.html)?)
                    .build(),
            )
            .build();
        Ok(EmailContent::builder().simple(message).build())
    }
}

/// Sorts an SES answer into permanent and transient (see [`SesFailure::is_permanent`]).
fn failure(e: SdkError<SendEmailError>) -> SesFailure {
    let permanent = match e.as_service_error() {
        Some(
            SendEmailError::MessageRejected(_)
            | SendEmailError::MailFromDomainNotVerifiedException(_)
            | SendEmailError::BadRequestException(_)
            | SendEmailError::NotFoundException(_),
        ) => true,
        // Throttling, a paused or suspended account, anything SES adds later: retried.
        Some(_) => false,
        // Timeouts, connection failures, unreadable answers: the service may come back.
        None => false,
    };
    SesFailure {
        reason: DisplayErrorContext(e).to_string(),
        permanent,
    }
}

#[async_trait]
impl EmailSender for SesSender {
    #[tracing::instrument(skip_all, fields(template = email.message.template_name()))]
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        let content = self.content(email)?;
        let sent = self
            .client
            .send_email()
            .from_email_address(&self.from)
            // The bare address: the user's name never reaches a header.
            .destination(
                Destination::builder()
                    .to_addresses(email.to.as_str())
                    .build(),
            )
            .content(content)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                let failure = failure(e);
                tracing::warn!(error = %failure, permanent = failure.permanent, "SES send failed");
                Err(SendError(failure.into()))
            }
        }
    }
}
