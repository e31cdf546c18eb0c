//! The SMTP transport (lettre, pooled, rustls with ring): a local catcher, a mail provider, or
//! SES through its SMTP endpoint, all named by one URL.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use super::{Email, EmailSender, SendError, Templates};
use crate::config::redact_url;

/// Connections kept open to the server, and how long an idle one is kept (lettre's defaults,
/// stated: a provider may limit concurrent connections).
const POOL_SIZE: u32 = 10;
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Sends each message as a multipart/alternative (text, HTML) mail over one pooled SMTP
/// transport.
#[derive(Clone)]
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    templates: Templates,
    /// The URL without its password, for logs.
    shown_url: String,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender")
            .field("url", &self.shown_url)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// A transport for `url` in lettre's form: `smtp://host:port` (plain, for a local
    /// catcher), `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465`
    /// (TLS from the start). `timeout` bounds connecting and every SMTP command. Connects
    /// lazily: see [`SmtpSender::check`].
    pub fn new(
        url: &SecretString,
        from: &str,
        timeout: Duration,
        templates: Templates,
    ) -> anyhow::Result<Self> {
        let shown_url = redact_url(url.expose_secret());
        let from: Mailbox = from
            .parse()
            .with_context(|| format!("AIDLC_EMAIL_FROM {from:?} is not a mailbox"))?;
        // lettre's error would not print the URL, but say which setting it was anyway.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
            .with_context(|| format!("AIDLC_SMTP_URL {shown_url}"))?
            .timeout(Some(timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(POOL_SIZE)
                    .idle_timeout(POOL_IDLE),
            )
            .build();
        Ok(Self {
            transport,
            from,
            templates,
            shown_url,
        })
    }

    /// The start-up check: connects and says `NOOP` (after EHLO, STARTTLS and AUTH as
    /// configured). A failure is only warned about: the server may come up after us, and every
    /// send reports its own failure.
    pub async fn check(&self) {
        match self.transport.test_connection().await {
            Ok(true) => tracing::info!(url = %self.shown_url, "SMTP server reachable"),
            Ok(false) => {
                tracing::warn!(url = %self.shown_url, "SMTP server did not answer NOOP")
            }
            Err(e) => {
                tracing::warn!(url = %self.shown_url, error = %e, "SMTP server unreachable at start-up")
            }
        }
    }

    /// The MIME message for `email`: From the setting, To the bare address (the user's name
    /// never reaches a header), the rendered subject, a text and an HTML part.
    pub fn message(&self, email: &Email) -> Result<lettre::Message, SendError> {
        let rendered = self
            .templates
            .render(email)
            .map_err(|e| SendError(e.into()))?;
        let to: Address = email
            .to
            .as_str()
            .parse()
            .map_err(|e: lettre::address::AddressError| SendError(e.into()))?;
        lettre::Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(rendered.subject)
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))
            .map_err(|e| SendError(e.into()))
    }
}

#[async_trait]
impl EmailSender for SmtpSender {
    #[tracing::instrument(skip_all, fields(template = email.message.template_name()))]
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        let message = self.message(email)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, permanent = e.is_permanent(), "SMTP send failed");
                Err(SendError(e.into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CodePurpose, EmailAddress, FullName, Locale, OneTimeCode};
    use crate::email::Message;

    fn sender(url: &str) -> SmtpSender {
        SmtpSender::new(
            &SecretString::from(url.to_owned()),
            "AIDLC <no-reply@aidlc.local>",
            Duration::from_secs(5),
            Templates::new().unwrap(),
        )
        .unwrap()
    }

    // The pool's clean-up task needs a runtime, hence tokio::test.
    #[tokio::test]
    async fn every_url_form_builds_a_transport_and_hides_its_password() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://user:hunter2@mail.example:587?tls=required",
            "smtps://user:hunter2@mail.example:465",
            "smtp://AKIAEXAMPLE:hunter2@email-smtp.eu-west-1.amazonaws.com:587?tls=required",
        ] {
            let shown = format!("{:?}", sender(url));
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        let bad = SmtpSender::new(
            &SecretString::from("smtp://mail.example:25?tls=sometimes".to_owned()),
            "AIDLC <no-reply@aidlc.local>",
            Duration::from_secs(5),
            Templates::new().unwrap(),
        );
        assert!(bad.is_err());
    }

    #[tokio::test]
    async fn the_mime_message_has_both_parts_and_keeps_the_name_out_of_the_headers() {
        let email = Email {
            to: EmailAddress::parse("kim@example.com").unwrap(),
            name: Some(FullName::parse("Eve <b>Bcc</b>").unwrap()),
            locale: Locale::Ko,
            message: Message::VerificationCode {
                purpose: CodePurpose::Login,
                code: OneTimeCode::parse("654321").unwrap(),
                valid_for: Duration::from_secs(300),
            },
        };
        let wire = sender("smtp://127.0.0.1:2525").message(&email).unwrap();
        let wire = String::from_utf8(wire.formatted()).unwrap();
        let (headers, body) = wire.split_once("\r\n\r\n").unwrap();
        assert!(headers.contains("To: kim@example.com\r\n"), "{headers}");
        assert!(
            headers.contains("From: AIDLC <no-reply@aidlc.local>"),
            "{headers}"
        );
        assert!(headers.contains("multipart/alternative"), "{headers}");
        assert!(
            !headers.contains("Eve") && !headers.contains("Bcc"),
            "{headers}"
        );
        assert!(
            body.contains("text/plain") && body.contains("text/html"),
            "{body}"
        );
    }

    #[test]
    fn bad_addresses_are_permanent_failures_and_others_are_not() {
        let bad: Result<Address, _> = "not an address".parse();
        let Err(e) = bad else { panic!("parsed") };
        assert!(SendError(e.into()).is_permanent());
        assert!(!SendError(anyhow::anyhow!("timed out")).is_permanent());
    }
}
