//! Discovery metadata that says only what is true (checked with Authlib's RFC 8414 parser), and
//! introspection that can require the other services' client credential.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, PASSWORD, TestApp, TestEnv, backend_tests, expect_error, expect_json, token,
    unique_email,
};

backend_tests!(
    metadata_publishes_only_true_members_and_a_standard_parser_accepts_them,
    without_a_configured_issuer_development_names_the_port_it_listens_on,
    introspection_requires_the_client_secret_when_one_is_set,
);

const METADATA_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/check_metadata_with_authlib.py"
);

/// An https issuer, as deployed (RFC 8414 requires one); tokens only carry it as a string.
const ISSUER: &str = "https://auth.aidlc.test";

/// Runs `tests/support/check_metadata_with_authlib.py` against `app`.
async fn parse_with_authlib(app: &TestApp) -> Value {
    let run = crate::support::python::command()
        .arg(METADATA_SCRIPT)
        .args([app.address.as_str(), ISSUER])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("Authlib did not finish within 60 s")
        .expect("running python3 tests/support/check_metadata_with_authlib.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Authlib refused the metadata: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("no JSON from Authlib ({e}): {stdout}"))
}

async fn metadata_publishes_only_true_members_and_a_standard_parser_accepts_them(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.settings.jwt_issuer = Some(ISSUER.to_owned());
    let app = env.spawn().await;

    let metadata = expect_json(
        app.get("/.well-known/oauth-authorization-server").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        metadata,
        json!({
            "issuer": ISSUER,
            "jwks_uri": format!("{ISSUER}/.well-known/jwks.json"),
            "introspection_endpoint": format!("{ISSUER}/api/auth/introspect"),
            "introspection_endpoint_auth_methods_supported": ["none"],
            "access_token_signing_alg_values_supported": ["EdDSA"],
        }),
        "no token or authorization endpoint, no ID token: there are none"
    );
    let parsed = parse_with_authlib(&app).await;
    assert_eq!(parsed["issuer"], ISSUER);
    assert_eq!(
        parsed["validated"],
        json!([
            "introspection_endpoint",
            "introspection_endpoint_auth_methods_supported",
            "issuer",
            "jwks_uri"
        ]),
        "{parsed}"
    );
    assert_eq!(
        parsed["extensions"],
        json!(["access_token_signing_alg_values_supported"])
    );

    // The OpenID document claimed an ID token and a token endpoint that do not exist.
    expect_error(
        app.get("/.well-known/openid-configuration").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let session = app
        .register_active(&unique_email("iss"), PASSWORD, "Issuer")
        .await;
    assert_eq!(crate::helpers::jwt_claims(&token(&session))["iss"], ISSUER);
    app.stop().await;
}

async fn without_a_configured_issuer_development_names_the_port_it_listens_on(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.settings.jwt_issuer = None;
    let app = env.spawn().await;
    // Bound to 127.0.0.1 on a port picked at start: that is where discovery must point.
    let issuer = app.address.clone();
    let metadata = expect_json(
        app.get("/.well-known/oauth-authorization-server").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(metadata["issuer"], issuer.as_str(), "{metadata}");
    let jwks_uri = metadata["jwks_uri"].as_str().expect("jwks_uri");
    assert_eq!(jwks_uri, format!("{issuer}/.well-known/jwks.json"));
    let jwks: Value = app
        .client
        .get(jwks_uri)
        .send()
        .await
        .expect("fetching jwks_uri")
        .json()
        .await
        .expect("a JWK Set");
    let session = app
        .register_active(&unique_email("port"), PASSWORD, "Port")
        .await;
    let access = token(&session);
    assert_eq!(crate::helpers::jwt_claims(&access)["iss"], issuer.as_str());
    assert_eq!(
        crate::helpers::jwks_kids(&jwks),
        vec![crate::helpers::jwt_kid(&access)]
    );
    expect_json(app.me(&access).await, StatusCode::OK).await;
    app.stop().await;
}

async fn introspection_requires_the_client_secret_when_one_is_set(backend: Backend) {
    const SECRET: &str = "introspection-secret-0123456789";
    let mut env = TestEnv::new(backend).await;
    env.settings.introspection_secret = Some(SecretString::from(SECRET));
    let app = env.spawn().await;
    let session = app
        .register_active(&unique_email("intro"), PASSWORD, "Intro")
        .await;
    let access = token(&session);
    let introspect = |authorization: Option<String>| {
        let request = app
            .client
            .post(app.url("/api/auth/introspect"))
            .json(&json!({ "token": access }));
        let request = match authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        };
        async move { request.send().await.expect("introspect request") }
    };

    for refused in [
        None,
        Some("Bearer wrong-secret-0123456789".to_owned()),
        Some(format!("Basic {}", STANDARD.encode("orders:wrong"))),
        Some(format!("Bearer {access}")),
    ] {
        expect_error(
            introspect(refused.clone()).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        )
        .await;
    }
    for accepted in [
        format!("Bearer {SECRET}"),
        format!("Basic {}", STANDARD.encode(format!("orders:{SECRET}"))),
    ] {
        let body = expect_json(introspect(Some(accepted)).await, StatusCode::OK).await;
        assert_eq!(body["active"], true, "{body}");
    }
    let refused = introspect(None).await;
    assert_eq!(
        refused
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"aidlc-auth\""),
        "a client credential is asked for in kind"
    );

    // A standard RFC 7662 client: a form body, a hint, the secret by HTTP Basic.
    let form = app
        .client
        .post(app.url("/api/auth/introspect"))
        .basic_auth("orders", Some(SECRET))
        .form(&[
            ("token", access.as_str()),
            ("token_type_hint", "access_token"),
        ])
        .send()
        .await
        .expect("form introspection");
    let body = expect_json(form, StatusCode::OK).await;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let metadata = expect_json(
        app.get("/.well-known/oauth-authorization-server").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        metadata["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic"])
    );
    app.stop().await;
}
