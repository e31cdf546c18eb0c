//! `GET /api/auth/events`: the signed-in owner's own security events.

use std::net::IpAddr;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ErrorBody, ServiceUnavailable};
use crate::accounts::Authenticated;
use crate::domain::{AuthEvent, AuthEventKind, AuthOutcome, EventCursor};

/// The page asked for.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events per page: 1 to 100 (default 20; larger asks get 100).
    limit: Option<u32>,
    /// `next_cursor` of the previous page; omit for the newest events.
    cursor: Option<String>,
}

/// One security event, as its owner sees it.
#[derive(Serialize, ToSchema)]
pub struct EventView {
    /// Event id.
    id: Uuid,
    /// What happened.
    event: AuthEventKind,
    /// How it ended.
    outcome: AuthOutcome,
    /// The client's address.
    #[schema(value_type = Option<String>)]
    ip: Option<IpAddr>,
    /// The client's `User-Agent`.
    user_agent: Option<String>,
    /// The request's id (`X-Request-Id`), to quote when asking support.
    request_id: Option<String>,
    /// When (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

/// A page of events.
#[derive(Serialize, ToSchema)]
pub struct EventList {
    /// Newest first.
    events: Vec<EventView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

impl From<AuthEvent> for EventView {
    fn from(e: AuthEvent) -> Self {
        Self {
            id: e.id,
            event: e.kind,
            outcome: e.outcome,
            ip: e.ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
            created_at: e.at,
        }
    }
}

/// The caller's own recent security events (logins and failures, password resets and
/// changes, session ends, refresh-token reuse), newest first, paged by cursor.
#[utoipa::path(get, path = "/api/auth/events", tag = "auth", security(("bearer" = [])),
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of the caller's events, newest first", body = EventList),
        (status = 401, description = "Missing, invalid or expired access token", body = ErrorBody),
        (status = 422, description = "invalid_query: an unknown parameter, a limit that is not a number, or a cursor this service did not hand out", body = ErrorBody),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    let after =
        match query.cursor.as_deref() {
            None => None,
            Some(raw) => Some(EventCursor::decode(raw).ok_or_else(|| {
                ApiError::invalid_query("cursor is not one this service handed out")
            })?),
        };
    let page = state
        .accounts
        .list_events(&caller, after, query.limit)
        .await?;
    Ok(Json(EventList {
        events: page.events.into_iter().map(EventView::from).collect(),
        next_cursor: page.next.map(EventCursor::encode),
    }))
}
