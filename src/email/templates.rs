//! The mail templates (`templates/email/`), compiled into the binary and rendered with
//! minijinja: `.html` escapes every value as HTML, a missing variable is an error.

use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior, Value, context};
use time::macros::format_description;

use super::{Email, Message, PRODUCT};

/// A rendered message: subject line, plain-text part, HTML part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The subject line (from the text template's `subject` block).
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
}

/// A template failed to render (a bug in a template: the unit tests render every one).
#[derive(Debug, thiserror::Error)]
#[error("rendering mail template {template}: {source:#}")]
pub struct RenderError {
    template: String,
    #[source]
    source: minijinja::Error,
}

/// Every template file, by its name under `templates/email/`.
macro_rules! templates {
    ($($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/email/", $name)))),+]
    };
}

const SOURCES: &[(&str, &str)] = templates!(
    "ko/layout.txt",
    "ko/layout.html",
    "ko/registration_code.txt",
    "ko/registration_code.html",
    "ko/login_code.txt",
    "ko/login_code.html",
    "ko/account_exists.txt",
    "ko/account_exists.html",
    "ko/password_reset_code.txt",
    "ko/password_reset_code.html",
    "ko/password_changed.txt",
    "ko/password_changed.html",
    "ko/new_sign_in.txt",
    "ko/new_sign_in.html",
    "ko/sign_in_attempts.txt",
    "ko/sign_in_attempts.html",
    "en/layout.txt",
    "en/layout.html",
    "en/registration_code.txt",
    "en/registration_code.html",
    "en/login_code.txt",
    "en/login_code.html",
    "en/account_exists.txt",
    "en/account_exists.html",
    "en/password_reset_code.txt",
    "en/password_reset_code.html",
    "en/password_changed.txt",
    "en/password_changed.html",
    "en/new_sign_in.txt",
    "en/new_sign_in.html",
    "en/sign_in_attempts.txt",
    "en/sign_in_attempts.html",
);

/// The compiled templates; cheap to clone (shared).
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// Compiles every template; fails only on a syntax error in one (a unit test proves none).
    pub fn new() -> Result<Self, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_global("product", PRODUCT);
        for (name, source) in SOURCES {
            env.add_template(name, source)
                .map_err(|source| RenderError {
                    template: (*name).to_owned(),
                    source,
                })?;
        }
        Ok(Self { env: Arc::new(env) })
    }

    /// Renders `email` in its locale.
    pub fn render(&self, email: &Email) -> Result<Rendered, RenderError> {
        let name = email.message.template_name();
        let locale = email.locale.as_str();
        let ctx = context_for(email);
        let text_name = format!("{locale}/{name}.txt");
        let fail = |template: &str| {
            let template = template.to_owned();
            move |source| RenderError { template, source }
        };
        let text_template = self
            .env
            .get_template(&text_name)
            .map_err(fail(&text_name))?;
        let mut captured = text_template
            .render_captured(ctx.clone())
            .map_err(fail(&text_name))?;
        let subject = captured
            .with_state_mut(|state| state.render_block("subject"))
            .map_err(fail(&text_name))?;
        let text = captured.into_output();
        let html_name = format!("{locale}/{name}.html");
        let html = self
            .env
            .get_template(&html_name)
            .and_then(|t| t.render(ctx))
            .map_err(fail(&html_name))?;
        Ok(Rendered {
            // One line, whatever a template does: it becomes a header.
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text,
            html,
        })
    }
}

/// The template variables of `email` (`product` is global).
fn context_for(email: &Email) -> Value {
    let name = email.name.as_ref().map(|n| n.as_str().to_owned());
    match &email.message {
        Message::VerificationCode {
            code, valid_for, ..
        }
        | Message::PasswordResetCode { code, valid_for } => context! {
            name,
            code => code.expose(),
            minutes => valid_for.as_secs().div_ceil(60),
        },
        Message::AccountAlreadyExists | Message::PasswordChanged | Message::SignInAttempts => {
            context! { name }
        }
        Message::NewSignIn { at, device } => {
            let format = format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
            let at = at
                .to_offset(time::UtcOffset::UTC)
                .format(&format)
                .unwrap_or_else(|_| at.to_string());
            context! { name, at, device => device.clone() }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;
    use crate::domain::{CodePurpose, EmailAddress, FullName, Locale, OneTimeCode};

    fn every_message() -> Vec<Message> {
        let code = || OneTimeCode::parse("123456").unwrap();
        vec![
            Message::VerificationCode {
                purpose: CodePurpose::Registration,
                code: code(),
                valid_for: Duration::from_secs(900),
            },
            Message::VerificationCode {
                purpose: CodePurpose::Login,
                code: code(),
                valid_for: Duration::from_secs(900),
            },
            Message::AccountAlreadyExists,
            Message::PasswordResetCode {
                code: code(),
                valid_for: Duration::from_secs(600),
            },
            Message::PasswordChanged,
            Message::SignInAttempts,
            Message::NewSignIn {
                at: datetime!(2026-12-01 09:30 UTC),
                device: Some("<script>alert(1)</script> Firefox".to_owned()),
            },
        ]
    }

    fn email(message: Message, locale: Locale, name: Option<&str>) -> Email {
        Email {
            to: EmailAddress::parse("kim@example.com").unwrap(),
            name: name.map(|n| FullName::parse(n).unwrap()),
            locale,
            message,
        }
    }

    #[test]
    fn every_message_renders_in_every_locale_with_product_greeting_and_code() {
        let templates = Templates::new().unwrap();
        for locale in Locale::ALL {
            for message in every_message() {
                let mail = email(message.clone(), locale, Some("김철수"));
                let r = templates.render(&mail).unwrap();
                let what = format!("{locale} {}", message.template_name());
                assert!(r.subject.starts_with("[AIDLC] "), "{what}: {r:?}");
                assert!(!r.subject.contains('\n'), "{what}");
                for part in [&r.text, &r.html] {
                    assert!(part.contains("AIDLC"), "{what}: {part}");
                    assert!(part.contains("김철수"), "{what}: {part}");
                    assert!(
                        !part.contains("{{") && !part.contains("{%"),
                        "{what}: {part}"
                    );
                }
                assert!(
                    r.html.contains(&format!("<html lang=\"{locale}\">")),
                    "{what}"
                );
                if let Some(code) = message.code() {
                    assert!(r.text.contains(code.expose()), "{what}");
                    assert!(r.html.contains(code.expose()), "{what}");
                    let minutes = match message {
                        Message::PasswordResetCode { .. } => "10",
                        _ => "15",
                    };
                    let lifetime = match locale {
                        Locale::Ko => format!("{minutes}분"),
                        Locale::En => format!("{minutes} minutes"),
                    };
                    assert!(r.text.contains(&lifetime), "{what}: {}", r.text);
                    assert!(r.html.contains(&lifetime), "{what}: {}", r.html);
                }
            }
        }
    }

    #[test]
    fn korean_and_english_differ_and_a_missing_name_gives_a_plain_greeting() {
        let templates = Templates::new().unwrap();
        let ko = templates
            .render(&email(Message::AccountAlreadyExists, Locale::Ko, None))
            .unwrap();
        let en = templates
            .render(&email(Message::AccountAlreadyExists, Locale::En, None))
            .unwrap();
        assert!(ko.text.starts_with("안녕하세요."), "{}", ko.text);
        assert!(en.text.starts_with("Hello,"), "{}", en.text);
        assert_ne!(ko.subject, en.subject);
    }

    #[test]
    fn names_and_devices_are_escaped_in_html_and_kept_verbatim_in_text() {
        let templates = Templates::new().unwrap();
        let name = "<b>x</b> & \"Eve\" <img src=x onerror=alert(1)>";
        for locale in Locale::ALL {
            for message in every_message() {
                let r = templates
                    .render(&email(message.clone(), locale, Some(name)))
                    .unwrap();
                let what = format!("{locale} {}", message.template_name());
                assert!(!r.html.contains("<b>x</b>"), "{what}: {}", r.html);
                assert!(!r.html.contains("<img"), "{what}");
                assert!(!r.html.contains("<script>"), "{what}");
                assert!(
                    r.html.contains("&lt;b&gt;x&lt;&#x2f;b&gt;"),
                    "{what}: {}",
                    r.html
                );
                assert!(r.text.contains(name), "{what}: {}", r.text);
                assert!(
                    !r.subject.contains("Eve"),
                    "the name never reaches a header"
                );
            }
        }
    }

    #[test]
    fn sign_in_time_is_shown_in_utc() {
        let templates = Templates::new().unwrap();
        let message = Message::NewSignIn {
            at: datetime!(2026-12-01 18:30 +09:00),
            device: None,
        };
        let r = templates.render(&email(message, Locale::En, None)).unwrap();
        assert!(r.text.contains("2026-12-01 09:30 UTC"), "{}", r.text);
        assert!(r.text.contains("Device: unknown"), "{}", r.text);
    }
}
