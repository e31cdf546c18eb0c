//! Extractors: JSON bodies with our error mapping, the authenticated caller, and the client's
//! identity.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::accounts::{Authenticated, ClientInfo};
use crate::domain::{client_ip, preferred_locale};

/// `axum::Json` whose rejections become our JSON errors (400/413/415/422).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// A JSON body, or the same fields as `application/x-www-form-urlencoded` (the form OAuth
/// endpoints such as RFC 7662 introspection are called with).
pub struct JsonOrForm<T>(pub T);

impl<S, T> FromRequest<S> for JsonOrForm<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            let axum::Form(body) = axum::Form::<T>::from_request(request, state)
                .await
                .map_err(ApiError::from)?;
            Ok(Self(body))
        } else {
            let JsonBody(body) = JsonBody::<T>::from_request(request, state).await?;
            Ok(Self(body))
        }
    }
}

/// The access token from `Authorization: Bearer …`, verified, with its live session and
/// active owner; anything else is a 401.
impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        Ok(state.accounts.authenticate(token).await?)
    }
}

/// The bearer credential of the request, if it has a plausible one.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= MAX_TOKEN_LEN)
        .then_some(token)
}

/// Longer than any token we issue; a bigger header is not worth parsing.
const MAX_TOKEN_LEN: usize = 4096;

/// A caller of `POST /api/auth/introspect` that presented `AIDLC_INTROSPECTION_SECRET`, as
/// a bearer credential or as the password of HTTP Basic (RFC 7662 section 2.1: the client
/// authenticates; the client id is not checked). Anyone passes when no secret is set.
pub struct IntrospectionClient;

impl FromRequestParts<AppState> for IntrospectionClient {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(expected) = &state.introspection_secret else {
            return Ok(Self);
        };
        let presented = client_secret(parts).ok_or_else(ApiError::invalid_client)?;
        let expected = expected.expose_secret().as_bytes();
        if bool::from(presented.as_bytes().ct_eq(expected)) {
            Ok(Self)
        } else {
            Err(ApiError::invalid_client())
        }
    }
}

/// The secret of `Authorization: Bearer <secret>` or `Basic base64(<id>:<secret>)`.
fn client_secret(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    if credential.is_empty() || credential.len() > MAX_TOKEN_LEN {
        return None;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credential.to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credential)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (_, secret) = decoded.split_once(':')?;
    // RFC 6749 section 2.3.1: the id and secret are form-encoded before Basic encoding.
    let secret: String = url::form_urlencoded::parse(format!("s={secret}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    Some(secret)
}

/// The one place the client's address is resolved: the socket peer, or behind a trusted
/// proxy (`AIDLC_TRUSTED_PROXIES`) the right-most `X-Forwarded-For` entry that is not one
/// ([`client_ip`]; the left-most entries are client-written). Recorded on the request's log
/// span as `client_ip`.
impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| {
                let forwarded = parts
                    .headers
                    .get_all(X_FORWARDED_FOR)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>();
                client_ip(addr.ip(), forwarded.into_iter(), &state.trusted_proxies)
            });
        if let Some(ip) = ip {
            tracing::Span::current().record("client_ip", tracing::field::display(ip));
        }
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let locale = preferred_locale(
            parts
                .headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        );
        // Set by the request-id layer before any handler runs.
        let request_id = parts
            .headers
            .get(super::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Self {
            ip,
            user_agent,
            request_id,
            locale,
        })
    }
}

const X_FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");
