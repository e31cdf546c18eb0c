//! The audit trail as the use cases see it.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{AuthEvent, EventCursor, UserId};

/// The audit trail (SQL). Rows are written by the use cases through one seam
/// (`accounts/audit.rs`), and read back only by their owner.
#[async_trait]
pub trait AuthEventStore: Send + Sync {
    /// Writes one event.
    async fn record(&self, event: &AuthEvent) -> StoreResult<()>;
    /// The user's events, newest first, after `after` (the previous page's cursor), at most
    /// `limit`.
    async fn list(
        &self,
        user_id: UserId,
        after: Option<EventCursor>,
        limit: u32,
    ) -> StoreResult<Vec<AuthEvent>>;
}
