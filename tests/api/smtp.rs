//! Real mail: the app sends over SMTP (no mailbox override) to the suite's catcher, and the
//! tests read what arrived, per recipient.

use aidlc_auth::config::EmailTransport;
use aidlc_auth::domain::Locale;
use reqwest::StatusCode;
use secrecy::SecretString;

use crate::helpers::{
    Backend, CaughtMail, PASSWORD, TestApp, TestEnv, backend_tests, expect_json, expect_session,
    smtp, unique_email,
};

backend_tests!(
    registration_mail_arrives_in_korean_with_text_and_html_and_its_code_verifies,
    english_is_sent_when_it_is_the_default_locale,
    a_name_with_markup_is_escaped_in_the_html_part_and_kept_out_of_headers,
    an_smtp_server_refusing_connections_delays_the_mail_until_it_is_back,
);

/// A test environment whose apps send mail by SMTP to `url`.
async fn smtp_env(backend: Backend, url: &str) -> TestEnv {
    let mut env = TestEnv::new(backend).await;
    env.settings.email_transport = EmailTransport::Smtp;
    env.settings.smtp_url = Some(SecretString::from(url.to_owned()));
    env.capture_mail = false;
    env
}

/// Every mail `address` received, once `app`'s outbox has settled (sent what is due).
async fn mail_for(app: &TestApp, address: &str) -> Vec<CaughtMail> {
    app.mailbox().settled().await;
    smtp().mail_for(address)
}

/// The one mail `address` received; panics unless there is exactly one.
async fn only_mail(app: &TestApp, address: &str) -> CaughtMail {
    let mut mail = mail_for(app, address).await;
    assert_eq!(mail.len(), 1, "mail for {address}: {mail:#?}");
    mail.remove(0)
}

async fn registration_mail_arrives_in_korean_with_text_and_html_and_its_code_verifies(
    backend: Backend,
) {
    let app = smtp_env(backend, &smtp().url).await.spawn().await;
    let email = unique_email("smtp-ko");
    expect_json(
        app.register(&email, PASSWORD, "김철수").await,
        StatusCode::ACCEPTED,
    )
    .await;

    let mail = only_mail(&app, &email).await;
    assert_eq!(mail.rcpt_tos, vec![email.clone()]);
    assert_eq!(mail.mail_from, "no-reply@aidlc.local");
    assert_eq!(mail.header("To"), Some(email.as_str()));
    assert_eq!(mail.content_type, "multipart/alternative");
    assert_eq!(mail.subject, "[AIDLC] 이메일 주소 확인 코드");
    let code = mail.code();
    for part in [mail.text(), mail.html()] {
        assert!(part.contains("김철수님, 안녕하세요."), "{part}");
        assert!(part.contains(&code), "{part}");
        assert!(part.contains("15분"), "{part}");
        assert!(part.contains("AIDLC"), "{part}");
    }
    assert!(!mail.raw.contains(PASSWORD), "the password is never mailed");
    assert_eq!(app.mailbox().len(), 0, "nothing went to the test mailbox");

    let session = expect_session(app.verify_registration(&email, &code).await).await;
    assert_eq!(session["user"]["email"], email);

    // Registering the now active address again mails its owner the notice, not a code.
    app.advance(61);
    expect_json(
        app.register(&email, "another password", "Someone").await,
        StatusCode::ACCEPTED,
    )
    .await;
    let mail = mail_for(&app, &email).await;
    assert_eq!(mail.len(), 2, "{mail:#?}");
    let notice = &mail[1];
    assert_eq!(notice.subject, "[AIDLC] 이 주소로 가입 시도가 있었습니다");
    assert!(
        notice.text().contains("김철수님"),
        "the owner's name: {}",
        notice.text()
    );
    assert!(!notice.raw.contains("another password"));
    app.stop().await;
}

async fn english_is_sent_when_it_is_the_default_locale(backend: Backend) {
    let mut env = smtp_env(backend, &smtp().url).await;
    env.settings.default_locale = Locale::En;
    let app = env.spawn().await;
    let email = unique_email("smtp-en");
    expect_json(
        app.register(&email, PASSWORD, "Jane Doe").await,
        StatusCode::ACCEPTED,
    )
    .await;

    let mail = only_mail(&app, &email).await;
    assert_eq!(mail.subject, "[AIDLC] Confirm your e-mail address");
    for part in [mail.text(), mail.html()] {
        assert!(part.contains("Hello Jane Doe,"), "{part}");
        assert!(part.contains("15 minutes"), "{part}");
    }
    assert!(mail.html().contains("<html lang=\"en\">"));
    expect_session(app.verify_registration(&email, &mail.code()).await).await;
    app.stop().await;
}

async fn a_name_with_markup_is_escaped_in_the_html_part_and_kept_out_of_headers(backend: Backend) {
    let app = smtp_env(backend, &smtp().url).await.spawn().await;
    let email = unique_email("smtp-html");
    let name = "<b>x</b> <a href=\"https://evil.example\">y</a>";
    expect_json(
        app.register(&email, PASSWORD, name).await,
        StatusCode::ACCEPTED,
    )
    .await;

    let mail = only_mail(&app, &email).await;
    let html = mail.html();
    assert!(!html.contains("<b>"), "{html}");
    assert!(!html.contains("<a href"), "{html}");
    assert!(html.contains("&lt;b&gt;x&lt;&#x2f;b&gt;"), "{html}");
    assert!(
        mail.text().contains(name),
        "the text part is plain text: {}",
        mail.text()
    );
    for (header, value) in &mail.headers {
        assert!(
            !value.contains("<b>") && !value.contains("evil"),
            "{header}: {value}"
        );
    }
    app.stop().await;
}

async fn an_smtp_server_refusing_connections_delays_the_mail_until_it_is_back(backend: Backend) {
    // A port nobody listens on: connections are refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("smtp://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let env = smtp_env(backend, &refused).await;
    // The start-up check fails, and only warns: the app starts.
    let app = env.spawn().await;
    let email = unique_email("smtp-down");

    // Before the outbox this was the client's 503; now the mail is queued with the account.
    expect_json(
        app.register(&email, PASSWORD, "Down").await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert!(mail_for(&app, &email).await.is_empty());
    let rows = app.db().outbox_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "queued", "{rows:#?}");
    assert!(rows[0].attempts >= 1, "{rows:#?}");
    app.stop().await;

    // The service comes back with a working server: the queued mail arrives, once, and its
    // code verifies the account.
    let mut working = env.clone();
    working.settings.smtp_url = Some(SecretString::from(smtp().url.clone()));
    let recovered = working.spawn().await;
    recovered.advance(2);
    let mail = only_mail(&recovered, &email).await;
    expect_session(recovered.verify_registration(&email, &mail.code()).await).await;
    recovered.stop().await;
}
