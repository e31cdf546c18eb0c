//! Access tokens as another service sees them: EdDSA JWTs that an independent implementation
//! verifies with the published keys, forgeries refused, introspection, and signing-key rotation
//! across instances.

use std::time::Duration;

use aidlc_auth::clock::Clock;
use aidlc_auth::tokens::{AccessTokenIssuer, SigningKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::StatusCode;
use reqwest::header::CACHE_CONTROL;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{
    Backend, PASSWORD, TestApp, TestEnv, backend_tests, expect_error, expect_json, expect_session,
    jwks_kids, jwt_claims, jwt_header, jwt_kid, session_id, status_and_json, token, unique_email,
};
use crate::support::python;

backend_tests!(
    login_token_verifies_with_pyjwt_through_the_jwks_endpoint,
    jwks_and_authorization_server_metadata_publish_the_signing_key,
    forged_tokens_are_rejected,
    introspect_reports_active_tokens_and_their_claims,
    key_rotation_keeps_old_tokens_valid_and_new_tokens_use_the_new_kid,
    a_lagging_instance_accepts_a_new_kid_at_once,
    signing_key_rotates_by_itself_when_due_and_instances_agree_on_one_new_key,
);

/// Access-token lifetime and verification leeway (the defaults the tests run with).
const ACCESS_TTL: u64 = 900;
const LEEWAY: u64 = 60;
/// How often an instance re-reads the signing keys (default).
const KEY_RELOAD: u64 = 60;
/// From rotation to the new key's first signature: one reload interval plus the JWKS cache
/// lifetime (defaults).
const ACTIVATION: u64 = KEY_RELOAD + 60;
/// `aidlc-auth keys rotate` stamps the rotation with the wall clock, which is ahead of the
/// tests' manual clock (started with the test) by the seconds the test has run; the tests
/// allow this much of that lead.
const CLI_LEAD: u64 = 60;

// ---------------------------------------------------------------------------------------------
// PyJWT, an independent verifier

const PYJWT_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/verify_with_pyjwt.py"
);

/// Runs `tests/support/verify_with_pyjwt.py` (the README's recipe) against `app`'s JWKS over
/// HTTP: the claims when PyJWT accepts the token, its complaint otherwise.
async fn verify_with_pyjwt(
    app: &TestApp,
    token: &str,
    issuer: &str,
    audience: &str,
) -> Result<Value, String> {
    let jwks_url = app.url("/.well-known/jwks.json");
    let run = python::command()
        .arg(PYJWT_SCRIPT)
        .args([jwks_url.as_str(), token, issuer, audience])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("PyJWT did not finish within 60 s")
        .expect("running tests/support/verify_with_pyjwt.py with the venv's python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        Ok(serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("PyJWT printed no claims JSON ({e}): {stdout:?}")))
    } else {
        Err(format!(
            "exit {:?}: {}{stdout}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Forging

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON"))
}

/// A compact JWS with any header and claims, signed by `sign` over `header.claims`.
fn forge(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> String) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let signature = sign(message.as_bytes());
    format!("{message}.{signature}")
}

/// Signs with the Ed25519 key stored as PKCS#8 `der`.
fn eddsa(der: &[u8]) -> impl FnOnce(&[u8]) -> String {
    let key = EncodingKey::from_ed_der(der);
    move |message| {
        jsonwebtoken::crypto::sign(message, &key, Algorithm::EdDSA).expect("EdDSA signing")
    }
}

/// HMAC-SHA256 keyed with `key` (the algorithm-confusion attack).
fn hs256(key: &[u8]) -> impl FnOnce(&[u8]) -> String + '_ {
    move |message| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(message);
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// `jwt` with the first signature character changed (all six of its bits are signature bits).
fn tamper_signature(jwt: &str) -> String {
    let (message, signature) = jwt.rsplit_once('.').expect("a compact JWS");
    let mut sig = signature.to_owned().into_bytes();
    sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
    format!("{message}.{}", String::from_utf8(sig).expect("ASCII"))
}

/// `jwt` with its claims replaced and its header and signature kept.
fn swap_claims(jwt: &str, claims: &Value) -> String {
    let mut parts = jwt.split('.');
    let (header, _, signature) = (parts.next(), parts.next(), parts.next());
    format!(
        "{}.{}.{}",
        header.expect("header"),
        b64_json(claims),
        signature.expect("signature")
    )
}

/// `/me` accepts `token` and introspection calls it active.
async fn expect_accepted(app: &TestApp, what: &str, token: &str) {
    let (status, body) = status_and_json(app.me(token).await).await;
    assert_eq!(status, StatusCode::OK, "{what}: /me answered {body}");
    let introspected = expect_json(app.introspect(token).await, StatusCode::OK).await;
    assert_eq!(introspected["active"], true, "{what}: {introspected}");
}

/// `/me` answers 401 `unauthorized` and introspection says exactly `{"active": false}`.
async fn expect_rejected(app: &TestApp, what: &str, token: &str) {
    let (status, body) = status_and_json(app.me(token).await).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "{what}: /me answered {status} {body}"
    );
    assert_eq!(body["error"]["code"], "unauthorized", "{what}: {body}");
    let introspected = expect_json(app.introspect(token).await, StatusCode::OK).await;
    assert_eq!(introspected, json!({ "active": false }), "{what}");
}

// ---------------------------------------------------------------------------------------------
// The CLI

/// Runs the real `aidlc-auth keys rotate` on `app`'s database; returns the new key id.
async fn rotate_keys_with_the_cli(app: &TestApp) -> String {
    let out = app.env.cli(&["keys", "rotate"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`aidlc-auth keys rotate` failed ({:?}): {stdout}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    // "new signing key <kid> published; it signs from <time>"
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("new signing key "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("`keys rotate` printed no new key id: {stdout:?}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn login_token_verifies_with_pyjwt_through_the_jwks_endpoint(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("pyjwt");
    app.register_active(&email, PASSWORD, "Py Jwt").await;
    let login = expect_session(app.login_password(&email, PASSWORD).await).await;
    let access = token(&login);
    let issuer = app.issuer().to_owned();
    let audience = app.env.settings.jwt_audience.clone();
    assert_eq!(issuer, "http://localhost:8001");
    assert_eq!(audience, "aidlc");

    let claims = verify_with_pyjwt(&app, &access, &issuer, &audience)
        .await
        .unwrap_or_else(|e| panic!("PyJWT rejected a fresh login token: {e}"));
    assert_eq!(claims["sub"], login["user"]["id"], "{claims}");
    assert_eq!(claims["sid"], login["session_id"], "{claims}");
    assert_eq!(claims["email"], email, "{claims}");
    assert_eq!(claims["email_verified"], true, "{claims}");
    assert_eq!(claims["aud"], audience, "{claims}");
    assert_eq!(claims["iss"], issuer, "{claims}");
    let iat = claims["iat"].as_i64().expect("iat");
    assert_eq!(claims["nbf"].as_i64(), Some(iat), "{claims}");
    assert_eq!(claims["exp"].as_i64(), Some(iat + 900), "{claims}");

    // The independent check is no rubber stamp.
    let other_audience = verify_with_pyjwt(&app, &access, &issuer, "another-api").await;
    assert!(
        other_audience.is_err(),
        "PyJWT accepted the token for another audience: {other_audience:?}"
    );
    let spoiled = verify_with_pyjwt(&app, &tamper_signature(&access), &issuer, &audience).await;
    assert!(
        spoiled.is_err(),
        "PyJWT accepted a spoiled signature: {spoiled:?}"
    );
    app.stop().await;
}

async fn jwks_and_authorization_server_metadata_publish_the_signing_key(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let session = app
        .register_active(&unique_email("jwks"), PASSWORD, "Jwks")
        .await;
    let access = token(&session);
    let header = jwt_header(&access);
    assert_eq!(header["alg"], "EdDSA", "{header}");
    assert_eq!(header["typ"], "at+jwt", "{header}");
    let kid = jwt_kid(&access);

    let response = app.get("/.well-known/jwks.json").await;
    let cache = response
        .headers()
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(cache.contains("max-age="), "Cache-Control: {cache:?}");
    let jwks = expect_json(response, StatusCode::OK).await;
    let keys = jwks["keys"].as_array().expect("keys is an array");
    assert_eq!(
        keys.len(),
        1,
        "a fresh deployment publishes one key: {jwks}"
    );
    for key in keys {
        let mut members: Vec<&str> = key
            .as_object()
            .expect("a JWK is an object")
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(
            members,
            ["alg", "crv", "kid", "kty", "use", "x"],
            "only public members, no \"d\": {key}"
        );
    }
    let jwk = keys
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("the token's kid {kid} is not in the JWKS: {jwks}"));
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(jwk["use"], "sig");
    let x = URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().expect("x"))
        .expect("x is base64url without padding");
    assert_eq!(x.len(), 32, "an Ed25519 public key is 32 bytes");

    // The published key is the public half of the stored one the token names.
    let stored = app
        .signing_key(&kid)
        .await
        .unwrap_or_else(|| panic!("no stored signing key {kid}"));
    let signing = SigningKey::from_stored_bytes(kid.clone(), &stored).expect("stored key loads");
    assert_eq!(
        serde_json::to_value(signing.public_jwk()).unwrap(),
        *jwk,
        "JWKS entry vs stored key"
    );

    let discovery = expect_json(
        app.get("/.well-known/oauth-authorization-server").await,
        StatusCode::OK,
    )
    .await;
    let issuer = app.issuer();
    assert_eq!(discovery["issuer"], issuer, "{discovery}");
    assert_eq!(
        discovery["jwks_uri"],
        format!("{issuer}/.well-known/jwks.json"),
        "{discovery}"
    );
    assert_eq!(jwt_claims(&access)["iss"], discovery["issuer"]);
    app.stop().await;
}

async fn forged_tokens_are_rejected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let victim_email = unique_email("victim");
    let victim = app.register_active(&victim_email, PASSWORD, "Victim").await;
    let attacker = app
        .register_active(&unique_email("attacker"), PASSWORD, "Attacker")
        .await;
    let genuine = token(&attacker);
    let header = jwt_header(&genuine);
    let claims = jwt_claims(&genuine);
    let kid = jwt_kid(&genuine);
    let settings = &app.env.settings;

    let stored = app
        .signing_key(&kid)
        .await
        .unwrap_or_else(|| panic!("no stored signing key {kid}"));
    let jwks = app.jwks().await;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .unwrap_or_else(|| panic!("{kid} is not in {jwks}"))
        .clone();
    let x = jwk["x"].as_str().expect("x").to_owned();
    let public_key = URL_SAFE_NO_PAD.decode(&x).expect("x is base64url");

    // The tools below make tokens the service accepts when nothing is wrong with them, so each
    // rejection that follows is down to the one thing changed.
    expect_accepted(&app, "the genuine token", &genuine).await;
    expect_accepted(
        &app,
        "a token forged with our key and nothing wrong",
        &forge(&header, &claims, eddsa(&stored)),
    )
    .await;

    let mut as_victim = claims.clone();
    as_victim["sub"] = victim["user"]["id"].clone();
    as_victim["sid"] = victim["session_id"].clone();
    as_victim["email"] = json!(victim_email);
    let mut sub_and_email_only = claims.clone();
    sub_and_email_only["sub"] = victim["user"]["id"].clone();
    sub_and_email_only["email"] = json!(victim_email);
    let mut longer = claims.clone();
    longer["exp"] = json!(claims["exp"].as_i64().expect("exp") + 86_400);

    let with_header = |changes: Value| {
        let mut h = header.clone();
        for (name, value) in changes.as_object().expect("an object") {
            if value.is_null() {
                h.as_object_mut().expect("header object").remove(name);
            } else {
                h[name] = value.clone();
            }
        }
        h
    };
    let our_key_for = |issuer: &str, audience: &str| {
        let issuer = AccessTokenIssuer {
            key: SigningKey::from_stored_bytes(kid.clone(), &stored).expect("stored key loads"),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl: Duration::from_secs(ACCESS_TTL),
        };
        issuer
            .issue(
                serde_json::from_value(claims["sub"].clone()).expect("sub is a user id"),
                serde_json::from_value(claims["sid"].clone()).expect("sid is a session id"),
                claims["email"].as_str().expect("email"),
                true,
                app.env.clock.now(),
            )
            .expect("issuing")
            .0
    };
    let attacker_key = SigningKey::generate().expect("an attacker key");
    let attacker_der = attacker_key.to_stored_bytes();
    let attacker_jwk = serde_json::to_value(attacker_key.public_jwk()).expect("JWK");
    let (message, _) = genuine.rsplit_once('.').expect("a compact JWS");

    let mut forgeries: Vec<(String, String)> = vec![
        (
            "signature with one character changed".into(),
            tamper_signature(&genuine),
        ),
        ("signature removed".into(), format!("{message}.")),
        (
            "sub, sid and email changed to the victim's, signature kept".into(),
            swap_claims(&genuine, &as_victim),
        ),
        (
            "sub and email changed to the victim's, signature kept".into(),
            swap_claims(&genuine, &sub_and_email_only),
        ),
        (
            "exp moved a day later, signature kept".into(),
            swap_claims(&genuine, &longer),
        ),
        (
            "HS256 keyed with the raw public key".into(),
            forge(
                &with_header(json!({ "alg": "HS256" })),
                &as_victim,
                hs256(&public_key),
            ),
        ),
        (
            "HS256 keyed with the JWK's x string".into(),
            forge(
                &with_header(json!({ "alg": "HS256" })),
                &as_victim,
                hs256(x.as_bytes()),
            ),
        ),
        (
            "HS256 keyed with the JWK as JSON".into(),
            forge(
                &with_header(json!({ "alg": "HS256" })),
                &as_victim,
                hs256(jwk.to_string().as_bytes()),
            ),
        ),
        (
            "our key, wrong aud".into(),
            our_key_for(app.issuer(), "another-api"),
        ),
        (
            "our key, wrong iss".into(),
            our_key_for("https://evil.example", &settings.jwt_audience),
        ),
        (
            "our key, typ JWT".into(),
            forge(
                &with_header(json!({ "typ": "JWT" })),
                &claims,
                eddsa(&stored),
            ),
        ),
        (
            "our key, no typ".into(),
            forge(
                &with_header(json!({ "typ": null })),
                &claims,
                eddsa(&stored),
            ),
        ),
        (
            "our key, no kid".into(),
            forge(
                &with_header(json!({ "kid": null })),
                &claims,
                eddsa(&stored),
            ),
        ),
        (
            "our key, an unknown critical header".into(),
            forge(
                &with_header(json!({ "crit": ["urn:example:ext"], "urn:example:ext": true })),
                &claims,
                eddsa(&stored),
            ),
        ),
        (
            "attacker key with its public key in a jwk header and its own kid".into(),
            forge(
                &with_header(json!({ "kid": attacker_key.kid(), "jwk": attacker_jwk })),
                &as_victim,
                eddsa(&attacker_der),
            ),
        ),
        (
            "attacker key with its public key in a jwk header and our kid".into(),
            forge(
                &with_header(json!({ "jwk": attacker_jwk })),
                &as_victim,
                eddsa(&attacker_der),
            ),
        ),
        (
            "attacker key named by a jku header".into(),
            forge(
                &with_header(json!({
                    "kid": attacker_key.kid(),
                    "jku": "http://127.0.0.1:9/jwks.json",
                })),
                &as_victim,
                eddsa(&attacker_der),
            ),
        ),
    ];
    for alg in ["none", "None", "NONE"] {
        forgeries.push((
            format!("alg {alg} with an empty signature"),
            forge(
                &json!({ "alg": alg, "typ": "at+jwt", "kid": kid }),
                &as_victim,
                |_| String::new(),
            ),
        ));
    }

    for (what, forged) in &forgeries {
        expect_rejected(&app, what, forged).await;
    }
    // None of that harmed the sessions it named.
    expect_accepted(&app, "the genuine token after the attempts", &genuine).await;
    expect_accepted(&app, "the victim's token", &token(&victim)).await;

    // Expired: 900 s of lifetime (and any other verifier's 60 s leeway) are over.
    let ours = forge(&header, &claims, eddsa(&stored));
    app.advance(ACCESS_TTL + LEEWAY + 1);
    expect_rejected(&app, "the genuine token, expired", &genuine).await;
    expect_rejected(&app, "a token forged with our key, expired", &ours).await;
    app.stop().await;
}

async fn introspect_reports_active_tokens_and_their_claims(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("introspect");
    let session = app.register_active(&email, PASSWORD, "Introspect").await;
    let access = token(&session);
    let claims = jwt_claims(&access);

    let body = expect_json(app.introspect(&access).await, StatusCode::OK).await;
    assert_eq!(
        body,
        json!({
            "active": true,
            "sub": session["user"]["id"],
            "sid": session["session_id"],
            "email": email,
            "exp": claims["exp"],
            "iat": claims["iat"],
            "token_type": "Bearer",
        })
    );
    assert_eq!(
        body["exp"].as_i64().unwrap() - body["iat"].as_i64().unwrap(),
        900
    );

    // No bearer is needed to ask; anything that is not an access token is simply inactive.
    for not_an_access_token in [
        crate::helpers::refresh_token(&session),
        "not-a-token".to_owned(),
        String::new(),
    ] {
        let body = expect_json(app.introspect(&not_an_access_token).await, StatusCode::OK).await;
        assert_eq!(body, json!({ "active": false }), "{not_an_access_token:?}");
    }
    expect_error(
        app.post_json("/api/auth/introspect", &json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;

    // A refresh does not end the older access token of the same live session ...
    let refreshed =
        expect_session(app.refresh(&crate::helpers::refresh_token(&session)).await).await;
    let body = expect_json(app.introspect(&access).await, StatusCode::OK).await;
    assert_eq!(body["active"], true, "{body}");

    // ... logout ends every access token of the session at once.
    assert_eq!(
        app.logout(&token(&refreshed)).await.status(),
        StatusCode::NO_CONTENT
    );
    for ended in [&access, &token(&refreshed)] {
        let body = expect_json(app.introspect(ended).await, StatusCode::OK).await;
        assert_eq!(body, json!({ "active": false }));
    }
    app.stop().await;
}

/// A password login on each instance; their access tokens.
async fn login_on_both(app: &TestApp, sibling: &TestApp, email: &str) -> (String, String) {
    let on_app = expect_session(app.login_password(email, PASSWORD).await).await;
    let on_sibling = expect_session(sibling.login_password(email, PASSWORD).await).await;
    (token(&on_app), token(&on_sibling))
}

async fn key_rotation_keeps_old_tokens_valid_and_new_tokens_use_the_new_kid(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("rotation");
    let first = app.register_active(&email, PASSWORD, "Rotation").await;
    let token_a = token(&first);
    let kid1 = jwt_kid(&token_a);
    assert_eq!(jwks_kids(&app.jwks().await), [kid1.as_str()]);

    let kid2 = rotate_keys_with_the_cli(&app).await;
    assert_ne!(kid2, kid1);

    // Published at once: a new instance lists it, and so does this one after its next reload.
    let sibling = app.spawn_sibling().await;
    let both = [kid2.as_str(), kid1.as_str()];
    assert_eq!(jwks_kids(&sibling.jwks().await), both, "newest first");
    app.advance(KEY_RELOAD + 1);
    let jwks = app.jwks().await;
    assert_eq!(jwks_kids(&jwks), both);
    assert_eq!(
        sibling.jwks().await,
        jwks,
        "both instances publish the same set"
    );

    // But it does not sign yet: verifiers caching the JWKS may not have it.
    let (token_a2, on_sibling) = login_on_both(&app, &sibling, &email).await;
    assert_eq!(
        jwt_kid(&token_a2),
        kid1,
        "the old key signs until the activation"
    );
    assert_eq!(jwt_kid(&on_sibling), kid1);

    // From the activation on, every instance signs with the new key and accepts the old tokens.
    app.advance(ACTIVATION + CLI_LEAD - (KEY_RELOAD + 1));
    let (token_b, on_sibling) = login_on_both(&app, &sibling, &email).await;
    assert_eq!(
        jwt_kid(&token_b),
        kid2,
        "the new key signs after the activation"
    );
    assert_eq!(jwt_kid(&on_sibling), kid2);
    for instance in [&app, &sibling] {
        for access in [&token_a, &token_a2, &token_b, &on_sibling] {
            expect_json(instance.me(access).await, StatusCode::OK).await;
        }
    }

    // Token A is over (issued at 0, expired at 900: we give our own tokens no leeway) but the
    // old key stays published while any token it signed may live: the last one was signed at
    // 61, and other services' verifiers allow it 60 s of leeway beyond its expiry.
    app.advance(ACCESS_TTL + 30 - (ACTIVATION + CLI_LEAD));
    expect_error(
        app.me(&token_a).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    for instance in [&app, &sibling] {
        expect_json(instance.me(&token_a2).await, StatusCode::OK).await;
        assert_eq!(jwks_kids(&instance.jwks().await), both);
    }

    // Once the last token it can have signed (at its retirement, the activation) is over, and
    // after one more reload, only the new key is published.
    let end_of_window = ACTIVATION + CLI_LEAD + ACCESS_TTL + LEEWAY;
    app.advance(end_of_window + KEY_RELOAD - (ACCESS_TTL + 30));
    for instance in [&app, &sibling] {
        assert_eq!(jwks_kids(&instance.jwks().await), [kid2.as_str()]);
        expect_error(
            instance.me(&token_a2).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    let (token_c, on_sibling) = login_on_both(&app, &sibling, &email).await;
    assert_eq!(jwt_kid(&token_c), kid2);
    assert_eq!(jwt_kid(&on_sibling), kid2);
    expect_json(sibling.me(&token_c).await, StatusCode::OK).await;
    expect_json(app.me(&on_sibling).await, StatusCode::OK).await;
    sibling.stop().await;
    app.stop().await;
}

async fn a_lagging_instance_accepts_a_new_kid_at_once(backend: Backend) {
    // This instance re-reads its keys only hourly ...
    let mut env = TestEnv::new(backend).await;
    env.settings.key_reload_interval = Duration::from_secs(3_600);
    let app = env.spawn().await;
    let email = unique_email("newkid");
    let first = app.register_active(&email, PASSWORD, "New Kid").await;
    let kid1 = jwt_kid(&token(&first));

    // ... while the others, with the default reload, sign with the new key once it is active.
    let kid2 = rotate_keys_with_the_cli(&app).await;
    let mut others = app.env.clone();
    others.settings.key_reload_interval = Duration::from_secs(KEY_RELOAD);
    let sibling = others.spawn().await;
    app.advance(ACTIVATION + CLI_LEAD);
    let second = expect_session(sibling.login_password(&email, PASSWORD).await).await;
    assert_eq!(jwt_kid(&token(&second)), kid2);
    assert_ne!(kid1, kid2);

    // An unknown kid makes the lagging instance re-read the keys instead of refusing the token.
    let me = expect_json(app.me(&token(&second)).await, StatusCode::OK).await;
    assert_eq!(me["email"], email);
    let body = expect_json(app.introspect(&token(&second)).await, StatusCode::OK).await;
    assert_eq!(body["sid"], json!(session_id(&second)));
    expect_json(app.me(&token(&first)).await, StatusCode::OK).await;
    assert_eq!(jwks_kids(&app.jwks().await), [kid2.as_str(), kid1.as_str()]);
    sibling.stop().await;
    app.stop().await;
}

async fn signing_key_rotates_by_itself_when_due_and_instances_agree_on_one_new_key(
    backend: Backend,
) {
    const ROTATION: u64 = 3_600;
    let mut env = TestEnv::new(backend).await;
    env.settings.key_rotation_interval = Some(Duration::from_secs(ROTATION));
    let app = env.spawn().await;
    let sibling = app.spawn_sibling().await;
    let email = unique_email("autorotate");
    let first = app.register_active(&email, PASSWORD, "Auto Rotate").await;
    let kid1 = jwt_kid(&token(&first));
    assert_eq!(jwks_kids(&sibling.jwks().await), [kid1.as_str()]);

    // Both instances find the key due at once; exactly one new key comes out of it, published
    // at once and signing after the activation delay.
    app.advance(ROTATION + 1);
    let (a, b) = tokio::join!(
        app.login_password(&email, PASSWORD),
        sibling.login_password(&email, PASSWORD)
    );
    let (a, b) = (expect_session(a).await, expect_session(b).await);
    assert_eq!(jwt_kid(&token(&a)), kid1, "not active yet");
    assert_eq!(jwt_kid(&token(&b)), kid1, "not active yet");
    let jwks = app.jwks().await;
    let kids = jwks_kids(&jwks);
    assert_eq!(kids.len(), 2, "one new key, not one per instance: {jwks}");
    assert_eq!(kids[1], kid1);
    let kid2 = kids[0].clone();
    assert_eq!(sibling.jwks().await, jwks);

    app.advance(ACTIVATION);
    let (c, d) = tokio::join!(
        app.login_password(&email, PASSWORD),
        sibling.login_password(&email, PASSWORD)
    );
    let (c, d) = (expect_session(c).await, expect_session(d).await);
    assert_eq!(jwt_kid(&token(&c)), kid2);
    assert_eq!(jwt_kid(&token(&d)), kid2);
    for instance in [&app, &sibling] {
        assert_eq!(jwks_kids(&instance.jwks().await), kids);
        for access in [token(&a), token(&b), token(&c), token(&d)] {
            expect_json(instance.me(&access).await, StatusCode::OK).await;
        }
    }
    sibling.stop().await;
    app.stop().await;
}
