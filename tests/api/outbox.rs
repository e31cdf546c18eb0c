//! The mail outbox: mail is written with the change that causes it and sent by the instances'
//! senders, so a transport outage or a restart loses nothing, two instances never send one
//! mail twice, a mail whose code expired is dropped, and no row holds a code in clear.

use aidlc_auth::domain::CodePurpose;
use futures::future::join_all;
use reqwest::StatusCode;

use crate::helpers::{
    Backend, PASSWORD, TestApp, TestEnv, backend_tests, expect_json, expect_session, unique_email,
};

backend_tests!(
    a_mail_queued_while_the_transport_is_down_arrives_after_a_restart,
    two_instances_send_each_mail_exactly_once,
    a_mail_whose_code_expired_while_the_transport_was_down_is_not_sent,
    the_outbox_row_never_holds_the_code_in_clear,
    a_mail_failing_past_the_attempt_limit_is_dead_until_retry_dead_queues_it_again,
    a_permanent_refusal_is_dead_at_the_first_attempt,
    a_mail_leased_by_an_instance_that_died_is_sent_once_its_lease_runs_out,
    after_an_outage_only_the_newest_code_is_mailed,
);

/// With the transport failing from now on: a registration answers 202 and nothing is sent.
async fn register_while_mail_fails(app: &TestApp, email: &str, full_name: &str) {
    app.mailbox().set_failing(true);
    expect_json(
        app.register(email, PASSWORD, full_name).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert!(app.mailbox().sent_to(email).is_empty());
}

/// Seconds past the first retry's back-off (at most 1 s).
const PAST_FIRST_BACKOFF: u64 = 2;

async fn a_mail_queued_while_the_transport_is_down_arrives_after_a_restart(backend: Backend) {
    let first = TestApp::spawn(backend).await;
    let email = unique_email("restart-mail");
    register_while_mail_fails(&first, &email, "Restarted").await;
    let env = first.env.clone();
    first.stop().await;

    // The transport is back, and so is the service: the queued mail goes out.
    env.mailbox.set_failing(false);
    let second = env.spawn().await;
    second.advance(PAST_FIRST_BACKOFF);
    let code = second
        .mailbox()
        .last_code_for(&email, CodePurpose::Registration);
    assert_eq!(second.mailbox().sent_to(&email).len(), 1);
    expect_session(second.verify_registration(&email, &code).await).await;
    second.stop().await;
}

async fn two_instances_send_each_mail_exactly_once(backend: Backend) {
    let one = TestApp::spawn(backend).await;
    let two = one.spawn_sibling().await;
    let emails: Vec<String> = (0..30).map(|i| unique_email(&format!("once{i}"))).collect();
    let answers = join_all(emails.iter().enumerate().map(|(i, email)| {
        let app = if i % 2 == 0 { &one } else { &two };
        app.register(email, PASSWORD, "Once")
    }))
    .await;
    for answer in answers {
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
    }
    assert_eq!(one.mailbox().len(), 30, "{:#?}", one.mailbox().all());
    for email in &emails {
        assert_eq!(
            one.mailbox()
                .codes_for(email, CodePurpose::Registration)
                .len(),
            1,
            "{email}"
        );
    }
    let rows = one.db().outbox_rows().await;
    assert_eq!(rows.len(), 30);
    assert!(
        rows.iter().all(|r| r.status == "sent" && r.attempts == 1),
        "{rows:#?}"
    );
    one.stop().await;
    two.stop().await;
}

async fn a_mail_whose_code_expired_while_the_transport_was_down_is_not_sent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("expired-mail");
    register_while_mail_fails(&app, &email, "Too Late").await;

    // The transport comes back only after the code's lifetime (900 s by default).
    app.advance(app.env.settings.code_ttl.as_secs() + 1);
    app.mailbox().set_failing(false);
    assert!(
        app.mailbox().sent_to(&email).is_empty(),
        "an expired code is never mailed"
    );
    let rows = app.db().outbox_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "expired");
    assert_eq!(rows[0].payload, None, "the sealed code is erased");
    app.stop().await;
}

async fn the_outbox_row_never_holds_the_code_in_clear(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("sealed");
    // The transport refuses for now, so the row still holds its sealed code.
    register_while_mail_fails(&app, &email, "Sealed").await;
    let queued = app.db().outbox_rows().await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].status, "queued");
    assert_eq!(queued[0].kind, "registration_code");
    assert_eq!(queued[0].recipient, email);
    assert_eq!(queued[0].key_id.as_deref(), Some("outbox-key"));
    assert!(queued[0].last_error.is_some());

    app.mailbox().set_failing(false);
    app.advance(PAST_FIRST_BACKOFF);
    let code = app
        .mailbox()
        .last_code_for(&email, CodePurpose::Registration);
    let row = &queued[0];
    let payload = row.payload.as_deref().expect("a sealed code while queued");
    assert!(
        !payload.windows(6).any(|w| w == code.as_bytes()),
        "the payload holds the code in clear"
    );
    for text in [
        Some(row.kind.as_str()),
        Some(row.recipient.as_str()),
        row.name.as_deref(),
        Some(row.locale.as_str()),
        row.key_id.as_deref(),
        row.last_error.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!text.contains(&code), "{text:?} holds the code");
    }
    let sent = app.db().outbox_rows().await;
    assert_eq!(sent[0].status, "sent");
    assert_eq!(sent[0].payload, None, "the sealed code is erased once sent");
    expect_session(app.verify_registration(&email, &code).await).await;
    app.stop().await;
}

async fn a_mail_failing_past_the_attempt_limit_is_dead_until_retry_dead_queues_it_again(
    backend: Backend,
) {
    let mut env = TestEnv::new(backend).await;
    env.settings.outbox_max_attempts = 2;
    let app = env.spawn().await;
    let email = unique_email("dead");
    register_while_mail_fails(&app, &email, "Dead Letter").await;
    app.advance(PAST_FIRST_BACKOFF);
    assert!(app.mailbox().sent_to(&email).is_empty());
    let rows = app.db().outbox_rows().await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("dead", 2),
        "{rows:#?}"
    );
    let counts = aidlc_auth::app::outbox_counts(&app.env.settings)
        .await
        .unwrap();
    assert_eq!(
        (counts.depth.queued, counts.depth.dead),
        (0, 1),
        "{counts:?}"
    );

    // `aidlc-auth outbox retry-dead` once the transport is fixed: the mail goes out.
    app.mailbox().set_failing(false);
    let requeued = aidlc_auth::app::retry_dead_mail(&app.env.settings)
        .await
        .unwrap();
    assert_eq!(requeued, 1);
    let code = app
        .mailbox()
        .last_code_for(&email, CodePurpose::Registration);
    expect_session(app.verify_registration(&email, &code).await).await;
    let counts = aidlc_auth::app::outbox_counts(&app.env.settings)
        .await
        .unwrap();
    assert_eq!((counts.sent, counts.depth.dead), (1, 0), "{counts:?}");
    app.stop().await;
}

async fn a_permanent_refusal_is_dead_at_the_first_attempt(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("refused");
    app.mailbox().set_refusing(true);
    expect_json(
        app.register(&email, PASSWORD, "Refused").await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert!(app.mailbox().sent_to(&email).is_empty());
    let rows = app.db().outbox_rows().await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("dead", 1),
        "{rows:#?}"
    );
    assert!(rows[0].last_error.is_some());
    app.stop().await;
}

async fn a_mail_leased_by_an_instance_that_died_is_sent_once_its_lease_runs_out(backend: Backend) {
    let first = TestApp::spawn(backend).await;
    let email = unique_email("crashed");
    register_while_mail_fails(&first, &email, "Crashed").await;
    let env = first.env.clone();
    first.stop().await;
    // What an instance that died mid-send leaves: the row leased to it, the lease running
    // until the retry time the failure had set (at most 1 s ahead).
    let staged = env
        .db
        .execute(
            "UPDATE outbox SET status = 'sending', lease_owner = 'crashed', \
             lease_until = next_attempt_at",
        )
        .await;
    assert_eq!(staged, 1);

    env.mailbox.set_failing(false);
    let second = env.spawn().await;
    second.advance(PAST_FIRST_BACKOFF);
    let code = second
        .mailbox()
        .last_code_for(&email, CodePurpose::Registration);
    assert_eq!(second.mailbox().sent_to(&email).len(), 1);
    let rows = second.db().outbox_rows().await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("sent", 2),
        "{rows:#?}"
    );
    expect_session(second.verify_registration(&email, &code).await).await;
    second.stop().await;
}

async fn after_an_outage_only_the_newest_code_is_mailed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("superseded");
    app.mailbox().set_failing(true);
    expect_json(
        app.register(&email, PASSWORD, "Superseded").await,
        StatusCode::ACCEPTED,
    )
    .await;
    // Two resends during the outage: each code replaces the one before it.
    for _ in 0..2 {
        app.advance(61);
        expect_json(
            app.resend_code(&email, "registration").await,
            StatusCode::ACCEPTED,
        )
        .await;
    }
    app.mailbox().set_failing(false);
    app.advance(PAST_FIRST_BACKOFF + 60);
    let codes = app.mailbox().codes_for(&email, CodePurpose::Registration);
    assert_eq!(codes.len(), 1, "dead codes are not mailed: {codes:?}");
    expect_session(app.verify_registration(&email, &codes[0]).await).await;
    let rows = app.db().outbox_rows().await;
    let statuses: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "expired").count(),
        2,
        "{statuses:?}"
    );
    assert!(
        rows.iter()
            .filter(|r| r.status == "expired")
            .all(|r| r.payload.is_none())
    );
    app.stop().await;
}
