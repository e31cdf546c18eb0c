//! Emergency signing-key revocation (`aidlc-auth keys revoke <kid>`): the leaked key stops
//! signing and leaves the JWKS at once in the store, a new key signs immediately, and every
//! instance refuses the key's tokens after its next key reload.

use std::process::Output;

use reqwest::StatusCode;

use crate::helpers::{
    Backend, PASSWORD, TestApp, backend_tests, expect_error, expect_json, jwks_kids, jwt_kid,
    token, unique_email,
};

backend_tests!(
    a_revoked_key_stops_signing_leaves_the_jwks_and_its_tokens_are_refused,
    revoking_an_unknown_kid_fails_and_changes_nothing,
    revoking_the_signing_key_during_a_rotation_makes_the_staged_key_sign_now,
    revoking_a_staged_key_keeps_the_current_one_signing,
);

/// How often an instance re-reads the signing keys (default).
const KEY_RELOAD: u64 = 60;

/// Runs the real `aidlc-auth keys <args>` on `app`'s database.
async fn keys_cli(app: &TestApp, args: &[&str]) -> Output {
    let args: Vec<&str> = ["keys"].into_iter().chain(args.iter().copied()).collect();
    app.env.cli(&args).await
}

/// Revokes `kid` with the CLI; returns the key that signs now.
async fn revoke(app: &TestApp, kid: &str) -> String {
    let out = keys_cli(app, &["revoke", kid]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`keys revoke` failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "signing key <kid> revoked; <new> signs now; ..."
    stdout
        .split("; ")
        .nth(1)
        .and_then(|part| part.strip_suffix(" signs now"))
        .unwrap_or_else(|| panic!("`keys revoke` did not say which key signs now: {stdout:?}"))
        .to_owned()
}

async fn login_kid(app: &TestApp, email: &str) -> String {
    let session = crate::helpers::expect_session(app.login_password(email, PASSWORD).await).await;
    jwt_kid(&token(&session))
}

async fn a_revoked_key_stops_signing_leaves_the_jwks_and_its_tokens_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("leak");
    let session = app.register_active(&email, PASSWORD, "Leak").await;
    let leaked_token = token(&session);
    let leaked = jwt_kid(&leaked_token);

    let signing = revoke(&app, &leaked).await;
    assert_ne!(signing, leaked);

    // An instance that loads the keys now never sees the revoked key.
    let fresh = app.spawn_sibling().await;
    assert_eq!(jwks_kids(&fresh.jwks().await), vec![signing.clone()]);
    expect_error(
        fresh.me(&leaked_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(
        login_kid(&fresh, &email).await,
        signing,
        "the new key signs at once"
    );

    // The instance that was running follows at its next reload.
    app.advance(KEY_RELOAD + 1);
    assert_eq!(jwks_kids(&app.jwks().await), vec![signing.clone()]);
    expect_error(
        app.me(&leaked_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let introspected = expect_json(app.introspect(&leaked_token).await, StatusCode::OK).await;
    assert_eq!(introspected["active"], false, "{introspected}");
    assert_eq!(login_kid(&app, &email).await, signing);
    fresh.stop().await;
    app.stop().await;
}

async fn revoking_an_unknown_kid_fails_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let session = app
        .register_active(&unique_email("typo"), PASSWORD, "Typo")
        .await;
    let kid = jwt_kid(&token(&session));
    // Kids are base64url, so one may start with '-': it is still a kid, not a flag.
    let out = keys_cli(&app, &["revoke", "-no-such-kid"]).await;
    assert!(!out.status.success(), "an unknown kid is an error");
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("no-such-kid"),
        "the error names the kid: {log}"
    );

    app.advance(KEY_RELOAD + 1);
    assert_eq!(jwks_kids(&app.jwks().await), vec![kid]);
    expect_json(app.me(&token(&session)).await, StatusCode::OK).await;
    app.stop().await;
}

async fn revoking_the_signing_key_during_a_rotation_makes_the_staged_key_sign_now(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("staged");
    let session = app.register_active(&email, PASSWORD, "Staged").await;
    let leaked = jwt_kid(&token(&session));

    let out = keys_cli(&app, &["rotate"]).await;
    assert!(out.status.success(), "{out:?}");
    app.advance(KEY_RELOAD + 1);
    let kids = jwks_kids(&app.jwks().await);
    assert_eq!(kids.len(), 2, "the staged key is published: {kids:?}");
    let staged = kids
        .into_iter()
        .find(|k| *k != leaked)
        .expect("a staged kid");
    assert_eq!(
        login_kid(&app, &email).await,
        leaked,
        "staged: not signing yet"
    );

    // Revoking the key that signs hands signing to the staged key at once.
    assert_eq!(revoke(&app, &leaked).await, staged);
    app.advance(KEY_RELOAD + 1);
    assert_eq!(jwks_kids(&app.jwks().await), vec![staged.clone()]);
    assert_eq!(login_kid(&app, &email).await, staged);
    app.stop().await;
}

async fn revoking_a_staged_key_keeps_the_current_one_signing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("unstaged");
    let session = app.register_active(&email, PASSWORD, "Unstaged").await;
    let current = jwt_kid(&token(&session));
    let out = keys_cli(&app, &["rotate"]).await;
    assert!(out.status.success(), "{out:?}");
    app.advance(KEY_RELOAD + 1);
    let staged = jwks_kids(&app.jwks().await)
        .into_iter()
        .find(|k| *k != current)
        .expect("a staged kid");

    // The staged key leaked before it ever signed: the rotation is simply undone.
    assert_eq!(revoke(&app, &staged).await, current);
    app.advance(KEY_RELOAD + 1);
    assert_eq!(jwks_kids(&app.jwks().await), vec![current.clone()]);
    // Long after the staged key would have started signing, the current one still signs.
    app.advance(300);
    assert_eq!(login_kid(&app, &email).await, current);
    expect_json(app.me(&token(&session)).await, StatusCode::OK).await;
    app.stop().await;
}
