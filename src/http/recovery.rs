//! Password reset by e-mailed code, and password change by the signed-in owner.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{MessageResponse, code, email};
use super::error::{
    ApiError, ErrorBody, MalformedJson, PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType,
};
use super::extract::JsonBody;
use crate::accounts::{Authenticated, ClientInfo};

/// `POST /api/auth/password-reset` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    /// The account's address.
    #[schema(example = "test@example.com", format = IdnEmail, max_length = 254)]
    email: String,
}

/// `POST /api/auth/password-reset/confirm` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirmRequest {
    /// The address the code was sent to.
    #[schema(format = IdnEmail, max_length = 254)]
    email: String,
    /// The six digits from the e-mail.
    #[schema(example = "123456", pattern = "^[0-9]{6}$")]
    verification_code: String,
    /// The new password, held to the password policy (8 to 128 characters, as at registration).
    #[schema(value_type = String, min_length = 8, max_length = 128)]
    new_password: SecretString,
}

/// `POST /api/auth/password` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The password in use now.
    #[schema(value_type = String)]
    current_password: SecretString,
    /// The new password, held to the password policy (8 to 128 characters, as at registration).
    #[schema(value_type = String, min_length = 8, max_length = 128)]
    new_password: SecretString,
}

/// What a password change did.
#[derive(Serialize, ToSchema)]
pub struct ChangePasswordResponse {
    /// Other sessions ended (the calling one stays).
    ended: u64,
}

const RESET_ACCEPTED: &str =
    "If an active account exists for this address, a password reset code has been sent to it.";
const RESET_DONE: &str = "The password has been reset and every session ended; log in with it.";

/// Ask for a password-reset code by e-mail.
#[utoipa::path(post, path = "/api/auth/password-reset", tag = "auth", request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "Identical for every address (an active account is mailed a code; within the resend cooldown nothing new is sent); nothing is revoked", body = MessageResponse),
        (status = 400, response = MalformedJson),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "invalid_body or invalid_email", body = ErrorBody),
        (status = 429, description = "too_many_requests: a rate limit (per client IP or per address) was reached; `Retry-After` says when to retry", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn request_reset(
    State(state): State<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<PasswordResetRequest>,
) -> Result<(StatusCode, Json<MessageResponse>), ApiError> {
    state
        .accounts
        .request_password_reset(email(&body.email)?, client)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageResponse {
            message: RESET_ACCEPTED,
        }),
    ))
}

/// Set a new password with the e-mailed reset code; every session ends, nobody is signed in.
#[utoipa::path(post, path = "/api/auth/password-reset/confirm", tag = "auth", request_body = PasswordResetConfirmRequest,
    responses(
        (status = 200, description = "Password set, every session and refresh token ended, a notice mailed; log in with the new password", body = MessageResponse),
        (status = 400, description = "invalid_code (wrong, expired, used or exhausted code) or malformed_json", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "invalid_body, invalid_email, invalid_code_format, or a password rule: password_too_short, password_too_long, password_too_common, password_contains_email, password_contains_name (the code stays valid)", body = ErrorBody),
        (status = 429, description = "too_many_requests: too many wrong codes for this address (counted across codes and purposes) or a rate limit was reached; `Retry-After` says when to retry", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn confirm_reset(
    State(state): State<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<PasswordResetConfirmRequest>,
) -> Result<Json<MessageResponse>, ApiError> {
    let (email, code) = (email(&body.email)?, code(&body.verification_code)?);
    // The name rule waits for the account (the use case checks it once the code is proven).
    let password = state
        .accounts
        .password_policy()
        .check(&body.new_password, &email, None)?;
    state
        .accounts
        .reset_password(email, code, password, client)
        .await?;
    Ok(Json(MessageResponse {
        message: RESET_DONE,
    }))
}

/// Change the password of the signed-in account; its other sessions end.
#[utoipa::path(post, path = "/api/auth/password", tag = "auth", request_body = ChangePasswordRequest, security(("bearer" = [])),
    responses(
        (status = 200, description = "Password changed, every other session ended, a notice mailed; this session stays", body = ChangePasswordResponse),
        (status = 400, description = "invalid_current_password or malformed_json", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired access token", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "invalid_body, or a password rule: password_too_short, password_too_long, password_too_common, password_contains_email, password_contains_name", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn change(
    State(state): State<AppState>,
    caller: Authenticated,
    client: ClientInfo,
    JsonBody(body): JsonBody<ChangePasswordRequest>,
) -> Result<Json<ChangePasswordResponse>, ApiError> {
    let password = state.accounts.password_policy().check(
        &body.new_password,
        &caller.user.email,
        Some(&caller.user.full_name),
    )?;
    let ended = state
        .accounts
        .change_password(&caller, body.current_password, password, client)
        .await?;
    Ok(Json(ChangePasswordResponse { ended }))
}
