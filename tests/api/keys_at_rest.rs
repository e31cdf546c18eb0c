//! Keys at rest: the database holds no private key or server secret in clear; a wrong
//! key-encryption key refuses to start and changes nothing; `keys rewrap` moves every row to a
//! new key while tokens signed before it stay valid; a database from before sealing is sealed
//! at its first start; development generates its key file once, private, and reuses it.

use std::collections::BTreeSet;
use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;

use crate::helpers::{
    Backend, PASSWORD, TestApp, TestEnv, backend_tests, expect_json, expect_session, refresh_token,
    token, unique_email,
};
use crate::support::at_rest::{SealedRow, kek_id, random_kek};

backend_tests!(
    no_private_key_or_server_secret_is_stored_in_clear,
    a_wrong_key_encryption_key_refuses_to_start_and_changes_nothing,
    a_value_moved_to_another_row_refuses_to_start_and_changes_nothing,
    keys_rewrap_moves_every_row_to_the_new_key_and_earlier_tokens_stay_valid,
    a_database_with_keys_in_clear_is_sealed_at_its_first_start,
    development_generates_a_private_key_file_once_and_refuses_to_replace_it,
);

/// What a test signs in with before the keys change under it.
struct Before {
    jwks: Value,
    access: String,
    refresh: String,
}

/// An app on `env` with an active account; its JWKS and token pair, then the app stopped.
async fn tokens_before(env: &TestEnv) -> Before {
    let app = env.spawn().await;
    let session = app
        .register_active(&unique_email("atrest"), PASSWORD, "At Rest")
        .await;
    let before = Before {
        jwks: app.jwks().await,
        access: token(&session),
        refresh: refresh_token(&session),
    };
    app.stop().await;
    before
}

/// The tokens from before still work on `app`: same JWKS, the access token accepted by
/// `/me`, the refresh token exchanged (the refresh-successor key survived too).
async fn expect_tokens_still_valid(app: &TestApp, before: &Before) {
    assert_eq!(app.jwks().await, before.jwks, "the JWKS changed");
    expect_json(app.me(&before.access).await, StatusCode::OK).await;
    expect_session(app.refresh(&before.refresh).await).await;
}

fn the_kek(env: &TestEnv) -> &SecretString {
    env.settings.key_encryption_key.as_ref().expect("a KEK")
}

/// Every row is sealed under `kek` and none is PKCS#8 or holds what another row opens to.
fn expect_all_sealed_under(rows: &[SealedRow], kek: &SecretString) {
    assert!(rows.iter().any(|r| r.table == "signing_keys"), "{rows:?}");
    for row in rows {
        assert_eq!(row.kek_id, Some(kek_id(kek)), "{} {}", row.table, row.name);
        assert!(
            ed25519_dalek::SigningKey::from_pkcs8_der(&row.value).is_err(),
            "{} {} is a private key in clear",
            row.table,
            row.name
        );
        let plain = row
            .open(kek)
            .unwrap_or_else(|| panic!("{} does not open", row.name));
        for other in rows {
            assert!(
                !contains(&other.value, &plain),
                "{} holds {} in clear",
                other.name,
                row.name
            );
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The start's error, for a start that must fail.
async fn expect_refused(env: &TestEnv) -> String {
    match env.try_spawn().await {
        Ok(app) => {
            app.stop().await;
            panic!("the app started");
        }
        Err(e) => format!("{e:#}"),
    }
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn expect_success(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        stdout_of(out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_of(out)
}

async fn no_private_key_or_server_secret_is_stored_in_clear(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let session = app
        .register_active(&unique_email("clear"), PASSWORD, "Clear")
        .await;
    let kid = crate::helpers::jwt_kid(&token(&session));
    let kek = the_kek(&app.env).clone();
    let rows = app.db().sealed_rows().await;
    expect_all_sealed_under(&rows, &kek);

    let secrets: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.table == "server_secrets")
        .map(|r| r.name.as_str())
        .collect();
    // The key-name key also names the rate-limit counters, so every backend has it.
    let expected = BTreeSet::from([
        "code-hmac-key",
        "outbox-key",
        "redis-key-name-key",
        "refresh-successor-key",
    ]);
    assert_eq!(secrets, expected);

    // What the rows open to is what the service uses: the signing key's public half is the one
    // the JWKS publishes for the kid tokens carry.
    let private = app
        .signing_key(&kid)
        .await
        .expect("the token's key is stored");
    let public = ed25519_dalek::SigningKey::from_pkcs8_der(&private)
        .expect("the opened key is PKCS#8")
        .verifying_key();
    let jwks = app.jwks().await;
    let published = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .unwrap_or_else(|| panic!("{kid} not in {jwks}"));
    assert_eq!(published["x"], URL_SAFE_NO_PAD.encode(public.as_bytes()));

    // A dump of the SQLite file (and its log) holds no secret either: no seed, no secret.
    let seed = &private[16..48];
    for file in app.db().sqlite_files() {
        let bytes = std::fs::read(&file).expect("reading the database file");
        assert!(
            !contains(&bytes, seed),
            "{} holds the signing key",
            file.display()
        );
        for row in rows.iter().filter(|r| r.table == "server_secrets") {
            let plain = row.open(&kek).expect("opens");
            assert!(
                !contains(&bytes, &plain),
                "{} holds {}",
                file.display(),
                row.name
            );
        }
    }
    app.stop().await;
}

async fn a_wrong_key_encryption_key_refuses_to_start_and_changes_nothing(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    tokens_before(&env).await;
    let rows = env.db.sealed_rows().await;
    let right = the_kek(&env).clone();

    env.settings.key_encryption_key = Some(random_kek());
    let err = expect_refused(&env).await;
    assert!(err.contains("AIDLC_KEY_ENCRYPTION_KEY"), "{err}");
    assert!(
        err.contains(&kek_id(&right)),
        "the message names the row's key: {err}"
    );
    assert_eq!(env.db.sealed_rows().await, rows, "a row changed");
    // Nor did the CLI write anything (no rotation under the wrong key).
    let out = env.cli(&["keys", "rotate"]).await;
    assert!(!out.status.success(), "{}", stdout_of(&out));
    assert_eq!(env.db.sealed_rows().await, rows, "a row changed");

    // The right key as the previous one reads the same rows.
    env.settings.key_encryption_key_previous = Some(right);
    env.spawn().await.stop().await;
}

async fn a_value_moved_to_another_row_refuses_to_start_and_changes_nothing(backend: Backend) {
    let env = TestEnv::new(backend).await;
    tokens_before(&env).await;
    let mut rows = env.db.sealed_rows().await;
    let code_key = rows
        .iter()
        .find(|r| r.name == "code-hmac-key")
        .expect("code key")
        .clone();
    let refresh = rows
        .iter_mut()
        .find(|r| r.name == "refresh-successor-key")
        .expect("refresh key");
    refresh.value = code_key.value.clone();
    let moved = refresh.clone();
    env.db.write_sealed_row(&moved).await;

    let err = expect_refused(&env).await;
    assert!(err.contains("refresh-successor-key"), "{err}");
    assert!(err.contains("AIDLC_KEY_ENCRYPTION_KEY"), "{err}");
    assert!(err.contains("copied from another row"), "{err}");
    assert_eq!(env.db.sealed_rows().await, rows, "a row changed");
}

async fn keys_rewrap_moves_every_row_to_the_new_key_and_earlier_tokens_stay_valid(
    backend: Backend,
) {
    let mut env = TestEnv::new(backend).await;
    let mut before = tokens_before(&env).await;
    let old = the_kek(&env).clone();
    let new = random_kek();

    // Step 1 of a rotation: the new key, the old one as previous. A key rotated now is sealed
    // under the new key, so the rows are mixed.
    env.settings.key_encryption_key = Some(new.clone());
    env.settings.key_encryption_key_previous = Some(old.clone());
    let app = env.spawn().await;
    expect_success("keys rotate", &env.cli(&["keys", "rotate"]).await);
    let rows = env.db.sealed_rows().await;
    let under_old = rows
        .iter()
        .filter(|r| r.kek_id == Some(kek_id(&old)))
        .count();
    assert_eq!(
        under_old,
        rows.len() - 1,
        "only the rotated key is under the new KEK"
    );
    app.stop().await;
    let app = env.spawn().await;
    before.jwks = app.jwks().await;

    // Step 2: rewrap, with an instance running.
    let out = expect_success("keys rewrap", &env.cli(&["keys", "rewrap"]).await);
    let keys = rows.iter().filter(|r| r.table == "signing_keys").count();
    let expected = format!(
        "rewrapped {keys} signing keys and {} server secrets under key-encryption key {} \
         ({under_old} were under the previous key)",
        rows.len() - keys,
        kek_id(&new)
    );
    assert!(out.contains(&expected), "{out:?} vs {expected:?}");
    let rewrapped = env.db.sealed_rows().await;
    expect_all_sealed_under(&rewrapped, &new);
    for (was, is) in rows.iter().zip(&rewrapped) {
        assert_eq!((was.table, &was.name), (is.table, &is.name));
        assert_ne!(was.value, is.value, "{} was not sealed again", was.name);
    }
    expect_tokens_still_valid(&app, &before).await;
    app.stop().await;

    // Step 3: the previous key removed; the old key alone opens nothing any more.
    env.settings.key_encryption_key_previous = None;
    let app = env.spawn().await;
    assert_eq!(app.jwks().await, before.jwks);
    expect_json(app.me(&before.access).await, StatusCode::OK).await;
    app.stop().await;
    env.settings.key_encryption_key = Some(old);
    let err = expect_refused(&env).await;
    assert!(err.contains(&kek_id(&new)), "{err}");
}

async fn a_database_with_keys_in_clear_is_sealed_at_its_first_start(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    let before = tokens_before(&env).await;
    // What a database written before sealing holds: every key in clear, no KEK id.
    let kek = the_kek(&env).clone();
    for row in env.db.sealed_rows().await {
        let clear = SealedRow {
            value: row.open(&kek).expect("opens"),
            kek_id: None,
            ..row
        };
        env.db.write_sealed_row(&clear).await;
    }
    let clear = env.db.sealed_rows().await;
    assert!(clear.iter().all(|r| r.kek_id.is_none()));
    let key = clear
        .iter()
        .find(|r| r.table == "signing_keys")
        .expect("a key");
    assert!(ed25519_dalek::SigningKey::from_pkcs8_der(&key.value).is_ok());

    // The first start with a key-encryption key (the operator's first) seals every row.
    let first = random_kek();
    env.settings.key_encryption_key = Some(first.clone());
    let app = env.spawn().await;
    let sealed = env.db.sealed_rows().await;
    expect_all_sealed_under(&sealed, &first);
    for (was, is) in clear.iter().zip(&sealed) {
        assert_eq!(
            is.open(&first).as_ref(),
            Some(&was.value),
            "{} changed",
            was.name
        );
    }
    expect_tokens_still_valid(&app, &before).await;
    app.stop().await;
}

async fn development_generates_a_private_key_file_once_and_refuses_to_replace_it(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.settings.key_encryption_key = None;
    // The working directory of the CLI: PostgreSQL keeps the file in its `data/`.
    let cwd = crate::support::servers::run_dir().join(format!("cwd_{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&cwd).expect("creating a working directory");
    let file = match env.db.sqlite_dir() {
        Some(dir) => dir.join("aidlc-auth.kek"),
        None => cwd.join("data").join("aidlc-auth.kek"),
    };

    expect_success(
        "keys rotate",
        &env.cli_in(&["keys", "rotate"], Some(&cwd)).await,
    );
    let text = std::fs::read_to_string(&file).expect("the key file was generated");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    let kek = SecretString::from(text.trim().to_owned());
    expect_all_sealed_under(&env.db.sealed_rows().await, &kek);

    // Reused: a second command opens what the first sealed, and seals under the same key.
    expect_success(
        "keys rotate",
        &env.cli_in(&["keys", "rotate"], Some(&cwd)).await,
    );
    assert_eq!(std::fs::read_to_string(&file).expect("still there"), text);
    let rows = env.db.sealed_rows().await;
    assert_eq!(rows.iter().filter(|r| r.table == "signing_keys").count(), 2);
    expect_all_sealed_under(&rows, &kek);

    // A lost file is not replaced by a key that opens nothing.
    std::fs::remove_file(&file).expect("removing the key file");
    let out = env.cli_in(&["keys", "rotate"], Some(&cwd)).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned() + &stdout_of(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("AIDLC_KEY_ENCRYPTION_KEY"), "{stderr}");
    assert!(!file.exists(), "a new key file was generated");
    assert_eq!(env.db.sealed_rows().await, rows, "a row changed");
    let _ = std::fs::remove_dir_all(&cwd);
}
