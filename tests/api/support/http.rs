//! Requests to a running app (the API one method per route) and the assertions on responses.

use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::app::TestApp;

impl TestApp {
    // --- raw requests ---

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET failed")
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST failed")
    }

    /// `POST path` with a raw body and content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, ct);
        }
        request.send().await.expect("POST failed")
    }

    /// `GET path` with `Authorization: Bearer token`.
    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET failed")
    }

    /// `POST path` (no body) with `Authorization: Bearer token`.
    pub async fn post_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("POST failed")
    }

    // --- the API ---

    /// `POST /api/auth/register`.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        full_name: &str,
    ) -> reqwest::Response {
        self.post_json(
            "/api/auth/register",
            &json!({ "email": email, "password": password, "full_name": full_name }),
        )
        .await
    }

    /// `POST /api/auth/verify-registration`.
    pub async fn verify_registration(&self, email: &str, code: &str) -> reqwest::Response {
        self.post_json(
            "/api/auth/verify-registration",
            &json!({ "email": email, "verification_code": code }),
        )
        .await
    }

    /// `POST /api/auth/login` with a password.
    pub async fn login_password(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/auth/login",
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    /// `POST /api/auth/login` with a password, sent with `User-Agent: user_agent`.
    pub async fn login_password_as(
        &self,
        email: &str,
        password: &str,
        user_agent: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/api/auth/login"))
            .header(reqwest::header::USER_AGENT, user_agent)
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("POST failed")
    }

    /// `POST /api/auth/login` without a password (asks for a login code).
    pub async fn request_login_code(&self, email: &str) -> reqwest::Response {
        self.post_json("/api/auth/login", &json!({ "email": email }))
            .await
    }

    /// `POST /api/auth/verify-login`.
    pub async fn verify_login(&self, email: &str, code: &str) -> reqwest::Response {
        self.post_json(
            "/api/auth/verify-login",
            &json!({ "email": email, "verification_code": code }),
        )
        .await
    }

    /// `verify-registration` or `verify-login`, as `purpose` says (the guide's two-field body).
    pub async fn verify_code(
        &self,
        email: &str,
        code: &str,
        purpose: CodePurpose,
    ) -> reqwest::Response {
        match purpose {
            CodePurpose::Registration => self.verify_registration(email, code).await,
            CodePurpose::Login => self.verify_login(email, code).await,
            CodePurpose::PasswordReset => {
                self.confirm_password_reset(email, code, "reset by verify_code")
                    .await
            }
        }
    }

    /// `POST /api/auth/password-reset`.
    pub async fn request_password_reset(&self, email: &str) -> reqwest::Response {
        self.post_json("/api/auth/password-reset", &json!({ "email": email }))
            .await
    }

    /// `POST /api/auth/password-reset/confirm`.
    pub async fn confirm_password_reset(
        &self,
        email: &str,
        code: &str,
        new_password: &str,
    ) -> reqwest::Response {
        self.post_json(
            "/api/auth/password-reset/confirm",
            &json!({ "email": email, "verification_code": code, "new_password": new_password }),
        )
        .await
    }

    /// `POST /api/auth/password` with the bearer `token`.
    pub async fn change_password(
        &self,
        token: &str,
        current_password: &str,
        new_password: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/api/auth/password"))
            .bearer_auth(token)
            .json(&json!({ "current_password": current_password, "new_password": new_password }))
            .send()
            .await
            .expect("POST failed")
    }

    /// `GET /api/auth/events` with the bearer `token` and the query string `query` (may be
    /// empty).
    pub async fn events(&self, token: &str, query: &str) -> reqwest::Response {
        self.get_with_token(&format!("/api/auth/events{query}"), token)
            .await
    }

    /// `POST /api/auth/resend-code`.
    pub async fn resend_code(&self, email: &str, purpose: &str) -> reqwest::Response {
        self.post_json(
            "/api/auth/resend-code",
            &json!({ "email": email, "purpose": purpose }),
        )
        .await
    }

    /// `GET /api/auth/me`.
    pub async fn me(&self, token: &str) -> reqwest::Response {
        self.get_with_token("/api/auth/me", token).await
    }

    /// `POST /api/auth/refresh` with a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_json(
            "/api/auth/refresh",
            &serde_json::json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    /// `POST /api/auth/logout`.
    pub async fn logout(&self, token: &str) -> reqwest::Response {
        self.post_with_token("/api/auth/logout", token).await
    }

    /// `POST /api/auth/logout-all` with the bearer `token` and, if given, a JSON body.
    pub async fn logout_all(&self, token: &str, body: Option<&Value>) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/api/auth/logout-all"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("POST failed")
    }

    /// `GET /api/auth/sessions`.
    pub async fn sessions(&self, token: &str) -> reqwest::Response {
        self.get_with_token("/api/auth/sessions", token).await
    }

    /// `DELETE /api/auth/sessions/{id}`.
    pub async fn delete_session(&self, token: &str, id: &str) -> reqwest::Response {
        self.client
            .delete(self.url(&format!("/api/auth/sessions/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("DELETE failed")
    }

    /// `POST /api/auth/introspect`.
    pub async fn introspect(&self, token: &str) -> reqwest::Response {
        self.post_json("/api/auth/introspect", &json!({ "token": token }))
            .await
    }

    /// `GET /.well-known/jwks.json`, expecting 200; the key set.
    pub async fn jwks(&self) -> Value {
        expect_json(self.get("/.well-known/jwks.json").await, StatusCode::OK).await
    }

    // --- shortcuts ---

    /// Registers `email` (202 expected) and returns the registration code it was mailed.
    pub async fn register_pending(&self, email: &str, password: &str, full_name: &str) -> String {
        let response = self.register(email, password, full_name).await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "register {email}: {}",
            text(response).await
        );
        self.mailbox()
            .last_code_for(email, CodePurpose::Registration)
    }

    /// Registers and verifies `email`; returns the session body.
    pub async fn register_active(&self, email: &str, password: &str, full_name: &str) -> Value {
        let code = self.register_pending(email, password, full_name).await;
        let response = self.verify_registration(email, &code).await;
        expect_session(response).await
    }
}

// ---------------------------------------------------------------------------------------------
// Response assertions

/// The body as text (for failure messages).
pub async fn text(response: reqwest::Response) -> String {
    response
        .text()
        .await
        .unwrap_or_else(|e| format!("<unreadable body: {e}>"))
}

/// Status and JSON body.
pub async fn status_and_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.text().await.expect("reading the body");
    let json =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body:?}"));
    (status, json)
}

/// Asserts `status` and a JSON body; returns the body.
pub async fn expect_json(response: reqwest::Response, status: StatusCode) -> Value {
    let (actual, body) = status_and_json(response).await;
    assert_eq!(actual, status, "unexpected status; body: {body}");
    body
}

/// Expects 400 `invalid_code`: the one answer for a wrong, expired, used or exhausted code.
pub async fn expect_invalid_code(response: reqwest::Response) -> Value {
    expect_error(response, StatusCode::BAD_REQUEST, "invalid_code").await
}

/// Asserts an error response `{"error":{"code","message"}}` with `status` and `code`; returns
/// the body.
pub async fn expect_error(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = expect_json(response, status).await;
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type:?}"
    );
    assert_eq!(
        body["error"]["code"], code,
        "unexpected error code; body: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error.message must be a non-empty string: {body}"
    );
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["error"], "an error body has only `error`: {body}");
    let mut detail_keys: Vec<&String> = body["error"].as_object().expect("object").keys().collect();
    detail_keys.sort();
    assert_eq!(
        detail_keys,
        ["code", "message"],
        "error has only code and message: {body}"
    );
    body
}

/// Asserts a 200 session response for the given address; returns the body.
pub async fn expect_session(response: reqwest::Response) -> Value {
    let body = expect_json(response, StatusCode::OK).await;
    let access = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token: {body}"));
    assert_eq!(
        access.split('.').count(),
        3,
        "access token is a compact JWS: {body}"
    );
    let refresh = body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token: {body}"));
    assert_eq!(
        refresh.len(),
        43,
        "refresh token is 32 bytes base64url: {body}"
    );
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["expires_in"], 900, "{body}");
    assert!(
        body["session_id"]
            .as_str()
            .is_some_and(|s| Uuid::parse_str(s).is_ok()),
        "{body}"
    );
    assert_eq!(body["user"]["status"], "active", "{body}");
    body
}

/// The access token (bearer) of a token-pair body.
pub fn token(session: &Value) -> String {
    session["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// The refresh token of a token-pair body.
pub fn refresh_token(session: &Value) -> String {
    session["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned()
}

/// The session id of a token-pair body.
pub fn session_id(session: &Value) -> String {
    session["session_id"]
        .as_str()
        .expect("session_id")
        .to_owned()
}

/// One base64url (no padding) JSON part of a compact JWS: 0 the header, 1 the claims.
fn jws_part(jws: &str, index: usize) -> Value {
    use base64::Engine;
    let part = jws
        .split('.')
        .nth(index)
        .unwrap_or_else(|| panic!("not a compact JWS: {jws}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("JWS part {index} is not base64url ({e}): {jws}"));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("JWS part {index} is not JSON ({e}): {jws}"))
}

/// The decoded (unverified) JOSE header of a JWT.
pub fn jwt_header(jwt: &str) -> Value {
    jws_part(jwt, 0)
}

/// The decoded (unverified) claims of a JWT.
pub fn jwt_claims(jwt: &str) -> Value {
    jws_part(jwt, 1)
}

/// The `kid` header of a JWT.
pub fn jwt_kid(jwt: &str) -> String {
    jwt_header(jwt)["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("no kid in the header of {jwt}"))
        .to_owned()
}

/// The `kid`s a JWK Set publishes, in order.
pub fn jwks_kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("not a JWK Set: {jwks}"))
        .iter()
        .map(|k| k["kid"].as_str().expect("every JWK has a kid").to_owned())
        .collect()
}

/// A well-formed code that differs from `code`.
pub fn wrong_code(code: &str) -> String {
    let n: u32 = code.parse().expect("six digits");
    format!("{:06}", (n + 1) % 1_000_000)
}

/// A unique address on example.com.
pub fn unique_email(tag: &str) -> String {
    format!(
        "{tag}-{}@example.com",
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A password that satisfies the policy.
pub const PASSWORD: &str = "correct horse battery";
