//! The audit trail in SQL.

use async_trait::async_trait;
use uuid::Uuid;

use super::{DbTime, SqlStore, SqlTx, bind_event, sql, sql_tx};
use crate::domain::{AuthEvent, AuthEventKind, AuthOutcome, EventCursor, UserId};
use crate::store::{AuthEventStore, StoreError, StoreResult, bounded};

#[derive(sqlx::FromRow)]
struct EventRow {
    id: Uuid,
    user_id: Option<Uuid>,
    event: String,
    outcome: String,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    created_at: DbTime,
}

impl TryFrom<EventRow> for AuthEvent {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Self, Self::Error> {
        let corrupt =
            |what: &str| StoreError::Corrupt(anyhow::anyhow!("auth event {}: {what}", row.id));
        Ok(AuthEvent {
            id: row.id,
            user_id: row.user_id.map(UserId),
            kind: AuthEventKind::from_stored(&row.event).ok_or_else(|| corrupt("stored event"))?,
            outcome: AuthOutcome::from_stored(&row.outcome)
                .ok_or_else(|| corrupt("stored outcome"))?,
            // An address that no longer parses is shown as none rather than failing the page.
            ip: row.ip.as_deref().and_then(|ip| ip.parse().ok()),
            user_agent: row.user_agent,
            request_id: row.request_id,
            at: row.created_at.0,
        })
    }
}

const INSERT_EVENT: &str = "INSERT INTO auth_events (id, user_id, event, outcome, ip, \
     user_agent, request_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const LIST_EVENTS: &str = "SELECT id, user_id, event, outcome, ip, user_agent, request_id, \
     created_at FROM auth_events WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2";
// Keyset paging: strictly after the cursor in (created_at, id) descending order.
const LIST_EVENTS_AFTER: &str = "SELECT id, user_id, event, outcome, ip, user_agent, \
     request_id, created_at FROM auth_events WHERE user_id = $1 \
     AND (created_at < $3 OR (created_at = $3 AND id < $4)) \
     ORDER BY created_at DESC, id DESC LIMIT $2";

/// Writes `event` inside `tx` (with the change it records).
pub(super) async fn insert_event(tx: &mut SqlTx, event: &AuthEvent) -> Result<(), sqlx::Error> {
    let ip = event.ip.map(|ip| ip.to_string());
    sql_tx!(tx, |db| {
        bind_event!(sqlx::query(INSERT_EVENT), event, ip.as_deref())
            .execute(db)
            .await
            .map(drop)
    })
}

#[async_trait]
impl AuthEventStore for SqlStore {
    async fn record(&self, event: &AuthEvent) -> StoreResult<()> {
        // One statement on the pool, no transaction: one round trip per event.
        let ip = event.ip.map(|ip| ip.to_string());
        bounded(self.timeout, "recording auth event", async {
            sql!(&self.pool, |db| {
                bind_event!(sqlx::query(INSERT_EVENT), event, ip.as_deref())
                    .execute(db)
                    .await
                    .map(drop)
            })
        })
        .await
    }

    async fn list(
        &self,
        user_id: UserId,
        after: Option<EventCursor>,
        limit: u32,
    ) -> StoreResult<Vec<AuthEvent>> {
        let limit = i64::from(limit);
        let rows = bounded(self.timeout, "listing auth events", async {
            match after {
                None => sql!(&self.pool, |db| {
                    sqlx::query_as::<_, EventRow>(LIST_EVENTS)
                        .bind(user_id.0)
                        .bind(limit)
                        .fetch_all(db)
                        .await
                }),
                Some(cursor) => sql!(&self.pool, |db| {
                    sqlx::query_as::<_, EventRow>(LIST_EVENTS_AFTER)
                        .bind(user_id.0)
                        .bind(limit)
                        .bind(DbTime(cursor.at))
                        .bind(cursor.id)
                        .fetch_all(db)
                        .await
                }),
            }
        })
        .await?;
        rows.into_iter().map(AuthEvent::try_from).collect()
    }
}
