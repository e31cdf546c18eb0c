//! What must hold after any fault, checked in the database and through the API once the
//! dependency is back: no user without a way to verify, no code promised without its mail, no
//! revoked session alive again.

use std::collections::HashSet;
use std::time::Duration;

use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;

use super::app::TestApp;
use super::http::{expect_session, refresh_token, status_and_json, token};
use super::traffic::Outcome;

/// Pending accounts with no registration mail written or sent (the code is stored first, then
/// the user row and its outbox row commit together, so there must be none).
const PENDING_WITHOUT_MAIL: &str = "SELECT email FROM users u WHERE status = 'pending' \
     AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.recipient = u.email \
     AND o.kind = 'registration_code' AND o.status IN ('queued', 'sending', 'sent'))";

/// The outbox's lease on a claimed mail with the default SMTP timeout: one send's bound
/// (10 s × 6 commands) plus 30 s (`email/dispatch.rs`).
const MAIL_LEASE_SECS: u64 = 90;

/// Checks every invariant after `outcome`'s traffic on `app` (every dependency answering
/// again); panics naming the first that fails.
pub async fn check_after_fault(app: &TestApp, outcome: &Outcome) {
    // A mail sent just as the database went away can stay leased (`sending`): its delivery
    // could not be recorded, so it goes out again once the lease runs out (at least once, by
    // design). Give in-flight sends a moment, then let the lease's time pass on the test clock.
    let leased = "SELECT count(*) FROM outbox WHERE status = 'sending'";
    if app.db().scalar_i64(leased).await > 0 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if app.db().scalar_i64(leased).await > 0 {
            app.advance(MAIL_LEASE_SECS + 1);
        }
    }
    // Every mail the apps could send by now has been tried.
    app.mailbox().settled().await;
    let db = app.db();

    let orphans = db.strings(PENDING_WITHOUT_MAIL).await;
    assert!(
        orphans.is_empty(),
        "pending accounts without a mail: {orphans:?}"
    );
    let unsent = db
        .strings(
            "SELECT recipient || ' ' || kind || ' ' || status FROM outbox WHERE status <> 'sent'",
        )
        .await;
    assert!(
        unsent.is_empty(),
        "mail not delivered after recovery: {unsent:?}"
    );

    // Every code promised with a 202 has its mail, written and delivered.
    let users: HashSet<String> = db
        .strings("SELECT email FROM users")
        .await
        .into_iter()
        .collect();
    let registration_mail: HashSet<String> = db
        .strings("SELECT recipient FROM outbox WHERE kind = 'registration_code'")
        .await
        .into_iter()
        .collect();
    for email in &outcome.registered {
        assert!(
            users.contains(email),
            "{email} was answered 202 but has no account"
        );
        assert!(
            registration_mail.contains(email),
            "{email} was answered 202 but has no mail"
        );
    }
    let login_mail: HashSet<String> = db
        .strings("SELECT recipient FROM outbox WHERE kind = 'login_code'")
        .await
        .into_iter()
        .collect();
    for email in &outcome.login_codes {
        assert!(
            login_mail.contains(email),
            "a login code for {email} was answered 202 but has no mail"
        );
        assert!(
            !app.mailbox()
                .codes_for(email, CodePurpose::Login)
                .is_empty(),
            "no login code reached {email}"
        );
    }

    // Every pending account can still be verified with its newest mailed code. A verification
    // whose activation fails after its code was spent puts the code back; but when the code
    // store itself fails at that moment (a spend whose answer was lost, or a give-back while
    // the code store is down) the mailed code is gone. That owner asks for a new code once the
    // resend cooldown has passed, and it verifies. Checked last: it moves the test clock.
    let mut respent = Vec::new();
    for email in db
        .strings("SELECT email FROM users WHERE status = 'pending'")
        .await
    {
        let code = app
            .mailbox()
            .last_code_for(&email, CodePurpose::Registration);
        let response = app.verify_registration(&email, &code).await;
        if response.status() == StatusCode::BAD_REQUEST
            && outcome.unsure_verifications.contains(&email)
        {
            respent.push(email);
        } else {
            expect_session(response).await;
        }
    }
    // A session ended before or during the fault stays ended; the others are still live.
    for session in &outcome.revoked {
        let (status, body) = status_and_json(app.me(&token(session)).await).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a revoked session's /me: {body}"
        );
        let (status, body) = status_and_json(app.refresh(&refresh_token(session)).await).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a revoked session's refresh: {body}"
        );
    }
    for session in &outcome.live {
        let (status, body) = status_and_json(app.me(&token(session)).await).await;
        assert_eq!(status, StatusCode::OK, "a live session's /me: {body}");
    }
    if !respent.is_empty() {
        app.advance(app.env.settings.resend_cooldown.as_secs() + 1);
    }
    for email in &respent {
        let resent = app.resend_code(email, "registration").await;
        assert_eq!(resent.status(), StatusCode::ACCEPTED, "resend to {email}");
        let code = app
            .mailbox()
            .last_code_for(email, CodePurpose::Registration);
        expect_session(app.verify_registration(email, &code).await).await;
    }
    eprintln!(
        "invariants hold: {} registrations ({} codes spent by a 503 and sent again), {} login \
         codes, {} revoked and {} live sessions checked",
        outcome.registered.len(),
        respent.len(),
        outcome.login_codes.len(),
        outcome.revoked.len(),
        outcome.live.len()
    );
}
