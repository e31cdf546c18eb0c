//! `/api/auth/*`: request and response bodies, parsing at the edge, one use case per handler.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{
    ApiError, ErrorBody, MalformedJson, PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType,
};
use super::extract::JsonBody;
use crate::accounts::{Authenticated, ClientInfo, IssuedSession, Registration};
use crate::domain::{CodePurpose, EmailAddress, FullName, OneTimeCode, User, UserStatus};

/// `POST /api/auth/register` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The address to register; normalised (trimmed, NFKC, lower-cased).
    #[schema(example = "test@example.com", format = IdnEmail, max_length = 254)]
    email: String,
    /// 8 (`AIDLC_PASSWORD_MIN_LENGTH`) to 128 characters, any (NFKC); not a common or
    /// breached password, not built from the address or the name.
    #[schema(value_type = String, example = "correct horse battery", min_length = 8, max_length = 128)]
    password: SecretString,
    /// 1 to 100 characters, no control characters.
    #[schema(example = "Test User", min_length = 1, max_length = 100)]
    full_name: String,
}

/// Body of the code-verifying endpoints.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyCodeRequest {
    /// The address the code was sent to.
    #[schema(format = IdnEmail, max_length = 254)]
    email: String,
    /// The six digits from the e-mail.
    #[schema(example = "123456", pattern = "^[0-9]{6}$")]
    verification_code: String,
}

/// `POST /api/auth/verify-registration` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRegistrationRequest {
    /// The address the code was sent to.
    #[schema(format = IdnEmail, max_length = 254)]
    email: String,
    /// The six digits from the e-mail.
    #[schema(example = "123456", pattern = "^[0-9]{6}$")]
    verification_code: String,
    /// Recommended: the password chosen at registration. When given, only the registration
    /// made with it is confirmed. Required (409 `password_required`) when the address was
    /// registered with different passwords, so nobody who registered the owner's pending
    /// address can get their password activated by the owner's code.
    #[schema(value_type = Option<String>)]
    password: Option<SecretString>,
}

/// `POST /api/auth/login` body: with `password`, a password login; without, a code is e-mailed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The account's address.
    #[schema(format = IdnEmail, max_length = 254)]
    email: String,
    /// The password; omit it to get a login code by e-mail.
    #[schema(value_type = Option<String>)]
    password: Option<SecretString>,
}

/// `POST /api/auth/resend-code` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendCodeRequest {
    /// The address.
    #[schema(format = IdnEmail, max_length = 254)]
    email: String,
    /// Which code to send again.
    purpose: CodePurpose,
}

/// An acknowledgement that says nothing about whether an account exists.
#[derive(Serialize, ToSchema)]
pub struct MessageResponse {
    /// Human-readable.
    pub(super) message: &'static str,
}

/// A token pair, returned by every login and by refresh.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// Ed25519-signed JWT (`typ: at+jwt`) for `Authorization: Bearer …`; verify it with
    /// `/.well-known/jwks.json`.
    access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: i64,
    /// Opaque token for `POST /api/auth/refresh`; rotated at every use.
    refresh_token: String,
    /// When the session ends regardless of refreshes (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    refresh_token_expires_at: OffsetDateTime,
    /// The session's id (the `sid` claim).
    session_id: Uuid,
    /// The logged-in account.
    user: UserView,
}

/// An account as its owner sees it.
#[derive(Serialize, ToSchema)]
pub struct UserView {
    /// Account id.
    id: Uuid,
    /// Canonical address.
    email: String,
    /// Display name.
    full_name: String,
    /// Lifecycle state.
    status: UserStatus,
    /// Registration time (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// When the address was proven (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339::option")]
    verified_at: Option<OffsetDateTime>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id.0,
            email: u.email.as_str().to_owned(),
            full_name: u.full_name.as_str().to_owned(),
            status: u.status,
            created_at: u.created_at,
            verified_at: u.verified_at,
        }
    }
}

impl From<IssuedSession> for TokenResponse {
    fn from(s: IssuedSession) -> Self {
        Self {
            access_token: s.access_token,
            token_type: "Bearer",
            expires_in: s.access_claims.exp - s.access_claims.iat,
            refresh_token: s.refresh_token.expose().to_owned(),
            refresh_token_expires_at: s.session.expires_at,
            session_id: s.session.id.0,
            user: s.user.into(),
        }
    }
}

const REGISTER_ACCEPTED: &str =
    "If this address can be registered, a verification code has been sent to it.";
const CODE_SENT: &str =
    "If an account in the right state exists for this address, a code has been sent to it.";

pub(super) fn email(raw: &str) -> Result<EmailAddress, ApiError> {
    EmailAddress::parse(raw).map_err(|e| ApiError::invalid("invalid_email", e))
}

pub(super) fn code(raw: &str) -> Result<OneTimeCode, ApiError> {
    OneTimeCode::parse(raw).map_err(|e| ApiError::invalid("invalid_code_format", e))
}

/// Register an account and e-mail a verification code.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 202, description = "Accepted; identical for new and existing addresses", body = MessageResponse),
        (status = 400, response = MalformedJson),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "invalid_body, invalid_email, invalid_full_name, or a password rule: password_too_short, password_too_long, password_too_common, password_contains_email, password_contains_name", body = ErrorBody),
        (status = 429, description = "too_many_requests: a code was sent to this address less than the cooldown ago, or a rate limit (per client IP, per address, codes issued) was reached; `Retry-After` says when to retry", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn register(
    State(state): State<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<RegisterRequest>,
) -> Result<(StatusCode, Json<MessageResponse>), ApiError> {
    let email = email(&body.email)?;
    let full_name =
        FullName::parse(&body.full_name).map_err(|e| ApiError::invalid("invalid_full_name", e))?;
    let password =
        state
            .accounts
            .password_policy()
            .check(&body.password, &email, Some(&full_name))?;
    let request = Registration {
        locale: client.locale,
        email,
        password,
        full_name,
    };
    state.accounts.register(request, client).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageResponse {
            message: REGISTER_ACCEPTED,
        }),
    ))
}

/// Prove the address with the e-mailed code; activates the account and starts a session.
#[utoipa::path(post, path = "/api/auth/verify-registration", tag = "auth", request_body = VerifyRegistrationRequest,
    responses(
        (status = 200, description = "Account active; session started with a token pair", body = TokenResponse),
        (status = 400, description = "invalid_code (wrong, expired, used or exhausted code, or a password that is not the registration's) or malformed_json", body = ErrorBody),
        (status = 409, description = "password_required: the code is right, but the address was registered with different passwords; send the password with the same code", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "invalid_body, invalid_email or invalid_code_format", body = ErrorBody),
        (status = 429, description = "too_many_requests: too many wrong codes for this address (counted across codes, resends and purposes) or a rate limit was reached; `Retry-After` says when to retry", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn verify_registration(
    State(state): State<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<VerifyRegistrationRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let (email, code) = (email(&body.email)?, code(&body.verification_code)?);
    let session = state
        .accounts
        .verify_registration(email, code, body.password, client)
        .await?;
    Ok(Json(session.into()))
}

/// Log in with a password (200), or, without one, get a login code by e-mail (202).
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Password login: session started", body = TokenResponse),
        (status = 202, description = "Code login: identical for every address", body = MessageResponse),
        (status = 400, response = MalformedJson),
        (status = 401, description = "invalid_credentials, for every wrong combination", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "invalid_body or invalid_email", body = ErrorBody),
        (status = 429, description = "too_many_requests: a login code was sent less than the cooldown ago, a rate limit was reached, or password logins for this address back off after wrong passwords; `Retry-After` says when to retry", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let email = email(&body.email)?;
    match body.password {
        Some(password) => {
            let session = state
                .accounts
                .login_with_password(email, password, client)
                .await?;
            Ok(Json(TokenResponse::from(session)).into_response())
        }
        None => {
            state.accounts.request_login_code(email, &client).await?;
            Ok((
                StatusCode::ACCEPTED,
                Json(MessageResponse { message: CODE_SENT }),
            )
                .into_response())
        }
    }
}

/// Exchange an e-mailed login code for a session.
#[utoipa::path(post, path = "/api/auth/verify-login", tag = "auth", request_body = VerifyCodeRequest,
    responses(
        (status = 200, description = "Session started", body = TokenResponse),
        (status = 400, description = "invalid_code or malformed_json", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "invalid_body, invalid_email or invalid_code_format", body = ErrorBody),
        (status = 429, description = "too_many_requests: too many wrong codes for this address (counted across codes, resends and purposes) or a rate limit was reached; `Retry-After` says when to retry", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn verify_login(
    State(state): State<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<VerifyCodeRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let (email, code) = (email(&body.email)?, code(&body.verification_code)?);
    let session = state.accounts.verify_login(email, code, client).await?;
    Ok(Json(session.into()))
}

/// Send a fresh registration or login code (replacing the previous one).
#[utoipa::path(post, path = "/api/auth/resend-code", tag = "auth", request_body = ResendCodeRequest,
    responses(
        (status = 202, description = "Identical for every address", body = MessageResponse),
        (status = 400, response = MalformedJson),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "invalid_body or invalid_email", body = ErrorBody),
        (status = 429, description = "too_many_requests: a code was sent less than the cooldown ago, or a rate limit was reached; `Retry-After` says when to retry", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn resend_code(
    State(state): State<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<ResendCodeRequest>,
) -> Result<(StatusCode, Json<MessageResponse>), ApiError> {
    state
        .accounts
        .resend_code(email(&body.email)?, body.purpose, &client)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageResponse { message: CODE_SENT }),
    ))
}

/// The account behind the access token.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account", body = UserView),
        (status = 401, description = "Missing, invalid or expired access token, or its session has ended", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn me(caller: Authenticated) -> Json<UserView> {
    Json(caller.user.into())
}
