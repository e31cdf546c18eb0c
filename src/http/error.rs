//! The one place HTTP statuses are chosen. Every error leaves as
//! `{"error": {"code", "message"}}`; causes go to the log, never to the body.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::accounts::AccountError;
use crate::domain::{ParseError, PasswordRejection};

/// The error body, as documented in the OpenAPI schema.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A stable machine-readable code and a human-readable message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable identifier, e.g. `invalid_email`, `invalid_credentials`, `service_unavailable`.
    pub code: &'static str,
    /// Explanation safe to show to the user.
    pub message: String,
}

/// The 503 every dependency-backed route can answer, documented once: PostgreSQL or Redis is
/// down or did not answer within the dependency timeout, nothing was half-written, and
/// `Retry-After` says when to try again.
#[derive(utoipa::ToResponse)]
#[response(headers(("Retry-After" = u32, description = "Seconds to wait before trying again")))]
#[allow(dead_code)] // Only its OpenAPI description is used.
pub struct ServiceUnavailable(ErrorBody);

/// `malformed_json`: the body is not valid JSON.
#[derive(utoipa::ToResponse)]
#[allow(dead_code)] // Only its OpenAPI description is used.
pub struct MalformedJson(ErrorBody);

/// `payload_too_large`: the body is over 64 KiB.
#[derive(utoipa::ToResponse)]
#[allow(dead_code)] // Only its OpenAPI description is used.
pub struct PayloadTooLarge(ErrorBody);

/// `unsupported_media_type`: the body was not sent with `Content-Type: application/json`.
#[derive(utoipa::ToResponse)]
#[allow(dead_code)] // Only its OpenAPI description is used.
pub struct UnsupportedMediaType(ErrorBody);

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
    /// The `WWW-Authenticate` challenge of a 401 (Bearer unless said otherwise).
    challenge: Option<&'static str>,
    cause: Option<anyhow::Error>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            challenge: None,
            cause: None,
        }
    }

    /// A field that failed validation (422) with `code` naming the field's rule.
    pub fn invalid(code: &'static str, e: ParseError) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.0)
    }

    /// A query string that does not parse (422 `invalid_query`).
    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", message)
    }

    /// No or bad bearer token (401).
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    /// An introspection caller without the right client credential (401, RFC 7662).
    pub fn invalid_client() -> Self {
        Self {
            // RFC 6749 §5.2: a client authenticating with HTTP Basic is answered in kind.
            challenge: Some("Basic realm=\"aidlc-auth\""),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "introspection needs the client credential (AIDLC_INTROSPECTION_SECRET)",
            )
        }
    }

    /// A refresh token that is unknown, malformed, expired, revoked or reused (401).
    pub fn invalid_refresh_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
            "the refresh token is invalid, expired or revoked; log in again",
        )
    }

    /// No such session among the caller's (404).
    pub fn session_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "no such session",
        )
    }

    /// Unknown route (404).
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// Known route, wrong method (405).
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this resource",
        )
    }

    /// The status this error becomes.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// A password the policy refused (422), its code naming the rule: `password_too_short`,
/// `password_too_long`, `password_too_common`, `password_contains_email`,
/// `password_contains_name`.
impl From<PasswordRejection> for ApiError {
    fn from(rejection: PasswordRejection) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            rejection.code(),
            rejection.to_string(),
        )
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::InvalidCode => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_code",
                "the code is invalid or has expired",
            ),
            AccountError::PasswordRequired => Self::new(
                StatusCode::CONFLICT,
                "password_required",
                "this address was registered more than once with different passwords: \
                 send the password you registered with, together with the code",
            ),
            AccountError::InvalidCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "invalid e-mail or password",
            ),
            AccountError::PasswordRejected(rejection) => rejection.into(),
            AccountError::WrongCurrentPassword => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_current_password",
                "the current password is wrong",
            ),
            AccountError::Unauthenticated => Self::unauthorized(),
            AccountError::InvalidRefreshToken => Self::invalid_refresh_token(),
            AccountError::SessionNotFound => Self::session_not_found(),
            AccountError::Cooldown(left) => Self {
                retry_after: Some(left),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    format!(
                        "a code was sent recently; try again in {} s",
                        left.as_secs().max(1)
                    ),
                )
            },
            AccountError::RateLimited(left) => Self {
                retry_after: Some(left),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    format!(
                        "too many attempts; try again in {} s",
                        whole_seconds_up(left)
                    ),
                )
            },
            AccountError::Unavailable(cause) => Self {
                cause: Some(cause),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "the service is temporarily unavailable; please retry",
                )
            },
            AccountError::Unexpected(cause) => Self {
                cause: Some(cause),
                ..Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "an unexpected error occurred",
                )
            },
        }
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        match rejection {
            FormRejection::FailedToDeserializeForm(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.body_text(),
            ),
            FormRejection::FailedToDeserializeFormBody(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.body_text(),
            ),
            FormRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body must be at most 64 KiB",
                )
            }
            other => Self::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonSyntaxError(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "the body is not valid JSON",
            ),
            JsonRejection::JsonDataError(e) => {
                // serde's message names the missing, unknown or mistyped field.
                let detail = e.body_text();
                let detail = detail
                    .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                    .unwrap_or(&detail);
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    detail.to_owned(),
                )
            }
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body must be at most 64 KiB",
                )
            }
            other => Self::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match (&self.cause, self.status) {
            (Some(cause), s) if s.is_server_error() => {
                tracing::error!(
                    status = s.as_u16(),
                    code = self.code,
                    error = format!("{cause:#}"),
                    "request failed"
                );
            }
            _ => tracing::debug!(
                status = self.status.as_u16(),
                code = self.code,
                "request refused"
            ),
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(left) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(whole_seconds_up(left)),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = self.challenge.unwrap_or("Bearer");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Seconds to wait, rounded up so that waiting that long is always enough; at least 1.
fn whole_seconds_up(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}
