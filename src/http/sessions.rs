//! Refresh, logout and the owner's view of their sessions; introspection for other services.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::TokenResponse;
use super::error::{
    ApiError, ErrorBody, MalformedJson, PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType,
};
use super::extract::{IntrospectionClient, JsonBody, JsonOrForm};
use crate::accounts::{Authenticated, ClientInfo};
use crate::domain::{Session, SessionId};
use crate::tokens::RefreshToken;

/// `POST /api/auth/refresh` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last token pair.
    refresh_token: String,
}

/// `POST /api/auth/logout-all` body (optional).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct LogoutAllRequest {
    /// Keep the calling session and end every other one (default: end them all).
    #[serde(default)]
    keep_current: bool,
}

/// How many sessions were ended.
#[derive(Serialize, ToSchema)]
pub struct LogoutAllResponse {
    /// Sessions ended.
    ended: u64,
}

/// One session, as its owner sees it.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    /// Session id.
    id: Uuid,
    /// Login time (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// Last login or refresh (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    last_used_at: OffsetDateTime,
    /// End of its absolute lifetime (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    /// User-Agent at login.
    user_agent: Option<String>,
    /// Client address at login.
    ip: Option<String>,
    /// True for the session of the access token making this request.
    current: bool,
}

/// The caller's sessions.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    /// Newest first.
    sessions: Vec<SessionView>,
}

/// `POST /api/auth/introspect` body, as JSON or as the form RFC 7662 §2.1 specifies
/// (`application/x-www-form-urlencoded`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectRequest {
    /// An access token.
    token: String,
    /// RFC 7662's hint; only access tokens are introspected, so it changes nothing.
    #[serde(default)]
    #[allow(dead_code)] // Accepted so standard clients are not refused; never needed.
    token_type_hint: Option<String>,
}

/// RFC 7662-style answer: `active` false says nothing more.
#[derive(Serialize, ToSchema, Default)]
pub struct IntrospectResponse {
    /// Signature, lifetime, session and account are all good.
    active: bool,
    /// User id.
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    /// Session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    /// The account's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// Expiry, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    /// Issued at, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    /// Always `Bearer` when active.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
}

fn view(session: Session, current: SessionId) -> SessionView {
    SessionView {
        current: session.id == current,
        id: session.id.0,
        created_at: session.created_at,
        last_used_at: session.last_used_at,
        expires_at: session.expires_at,
        user_agent: session.user_agent,
        ip: session.ip,
    }
}

/// Exchange a refresh token for a new pair; the presented token is retired.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "sessions", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair; within 10 s a replay of the previous refresh token returns the same new refresh token", body = TokenResponse),
        (status = 400, response = MalformedJson),
        (status = 401, description = "invalid_refresh_token: unknown, expired, revoked, or reused (reuse revokes the session)", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "invalid_body", body = ErrorBody),
        (status = 429, description = "too_many_requests: too many refreshes from this client IP; `Retry-After` says when to retry", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let token = RefreshToken::parse(body.refresh_token.trim())
        .ok_or_else(ApiError::invalid_refresh_token)?;
    Ok(Json(
        state
            .accounts
            .exchange_refresh_token(token, client)
            .await?
            .into(),
    ))
}

/// End the caller's session (its refresh token stops working at once).
#[utoipa::path(post, path = "/api/auth/logout", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 204, description = "Session ended"),
        (status = 401, description = "Missing or invalid access token, or the session already ended", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    caller: Authenticated,
    client: ClientInfo,
) -> Result<StatusCode, ApiError> {
    state.accounts.logout(&caller, client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// End every session of the caller, or with `keep_current` every other one.
#[utoipa::path(post, path = "/api/auth/logout-all", tag = "sessions", security(("bearer" = [])),
    // The example gives the contract check's signed-in pass one well-formed call to make
    // (schemathesis's examples phase), whatever its random phases reach in their time.
    request_body(content = Option<LogoutAllRequest>, description = "Optional; default ends every session",
        example = json!({"keep_current": true})),
    responses(
        (status = 200, description = "Sessions ended", body = LogoutAllResponse),
        (status = 400, response = MalformedJson),
        (status = 401, description = "Missing or invalid access token", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 422, description = "invalid_body: an unknown or mistyped field", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn logout_all(
    State(state): State<AppState>,
    caller: Authenticated,
    client: ClientInfo,
    body: Bytes,
) -> Result<Json<LogoutAllResponse>, ApiError> {
    // The body is optional: an empty one, or JSON `null` (the document's `oneOf` null), means
    // the defaults.
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutAllRequest::default()
    } else {
        Json::<Option<LogoutAllRequest>>::from_bytes(&body)?
            .0
            .unwrap_or_default()
    };
    let keep_current = request.keep_current;
    let ended = state
        .accounts
        .logout_all(&caller, keep_current, client)
        .await?;
    Ok(Json(LogoutAllResponse { ended }))
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/api/auth/sessions", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 200, description = "Live sessions, newest first; `current` marks the caller's", body = SessionList),
        (status = 401, description = "Missing or invalid access token", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
) -> Result<Json<SessionList>, ApiError> {
    let current = caller.session.id;
    let sessions = state.accounts.list_sessions(&caller).await?;
    Ok(Json(SessionList {
        sessions: sessions.into_iter().map(|s| view(s, current)).collect(),
    }))
}

/// End one of the caller's sessions.
#[utoipa::path(delete, path = "/api/auth/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses(
        (status = 204, description = "Session ended"),
        (status = 401, description = "Missing or invalid access token", body = ErrorBody),
        (status = 404, description = "session_not_found: not one of the caller's live sessions", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Authenticated,
    client: ClientInfo,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Not a UUID: certainly not one of the caller's sessions.
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::session_not_found())?;
    state
        .accounts
        .revoke_session(&caller, SessionId(id), client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether an access token is still good, including its session (for services that need
/// revocation to take effect before the token expires).
#[utoipa::path(post, path = "/api/auth/introspect", tag = "sessions",
    request_body(content(
        (IntrospectRequest = "application/json"),
        (IntrospectRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "`active` and, when true, the token's claims", body = IntrospectResponse),
        (status = 400, response = MalformedJson),
        (status = 401, description = "invalid_client: `AIDLC_INTROSPECTION_SECRET` is set and the caller did not present it (Bearer, or the password of HTTP Basic)", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, description = "unsupported_media_type: the body is neither `application/json` nor `application/x-www-form-urlencoded`", body = ErrorBody),
        (status = 422, description = "invalid_body: a missing, unknown or mistyped field", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn introspect(
    State(state): State<AppState>,
    _client: IntrospectionClient,
    JsonOrForm(body): JsonOrForm<IntrospectRequest>,
) -> Result<Json<IntrospectResponse>, ApiError> {
    Ok(Json(
        match state.accounts.introspect(body.token.trim()).await? {
            Some(caller) => IntrospectResponse {
                active: true,
                sub: Some(caller.claims.sub.0.to_string()),
                sid: Some(caller.claims.sid.0.to_string()),
                email: Some(caller.user.email.as_str().to_owned()),
                exp: Some(caller.claims.exp),
                iat: Some(caller.claims.iat),
                token_type: Some("Bearer"),
            },
            None => IntrospectResponse::default(),
        },
    ))
}
