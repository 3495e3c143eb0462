//! The relay's state as the delivery worker last saw it (up, or down and backed off
//! until a time), kept in the store so `gazette status` and `/metrics` can show it
//! whichever process is sending.

use super::{Store, StoreError, from_ts, ts};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// What the last worker found out about the relay (or, with the file transport, the
/// outbox folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStatus {
    /// False while sending is stopped by a relay or local fault.
    pub up: bool,
    /// When it went down (or came back up).
    pub since: DateTime<Utc>,
    /// While down: when the next try is due.
    pub retry_at: Option<DateTime<Utc>>,
    /// While down: failed tries in a row.
    pub failures: u32,
    /// While down: what went wrong, as the relay or the system said it.
    pub error: Option<String>,
}

impl Store {
    /// Records that the relay failed at `now` (`failures` tries in a row) and is tried
    /// again at `retry_at`.
    pub async fn relay_down(
        &self,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        failures: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO relay_status (id, up, since, retry_at, failures, last_error, updated_at) \
             VALUES (1, 0, $1, $2, $3, $4, $1) \
             ON CONFLICT (id) DO UPDATE SET up = 0, \
             since = CASE WHEN relay_status.up = 1 THEN $1 ELSE relay_status.since END, \
             retry_at = $2, failures = $3, last_error = $4, updated_at = $1",
        )
        .bind(ts(now))
        .bind(ts(retry_at))
        .bind(i64::from(failures))
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that the relay took a message (or answered about a recipient) at `now`.
    pub async fn relay_up(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO relay_status (id, up, since, retry_at, failures, last_error, updated_at) \
             VALUES (1, 1, $1, NULL, 0, NULL, $1) \
             ON CONFLICT (id) DO UPDATE SET up = 1, \
             since = CASE WHEN relay_status.up = 0 THEN $1 ELSE relay_status.since END, \
             retry_at = NULL, failures = 0, last_error = NULL, updated_at = $1",
        )
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The relay's last known state; `None` before any worker has tried it.
    pub async fn relay_status(&self) -> Result<Option<RelayStatus>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT up, since, retry_at, failures, last_error FROM relay_status WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(RelayStatus {
            up: row.try_get::<i64, _>("up")? != 0,
            since: from_ts(row.try_get("since")?),
            retry_at: row.try_get::<Option<i64>, _>("retry_at")?.map(from_ts),
            failures: row.try_get::<i64, _>("failures")?.max(0) as u32,
            error: row.try_get("last_error")?,
        }))
    }
}
