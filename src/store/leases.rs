//! Leases: at most one holder at a time, per name, across every process on the store.

use super::{Store, StoreError, ts};
use chrono::{DateTime, Utc};
use sqlx::Row;

impl Store {
    /// Takes or renews the lease `name` for `holder` until `expires_at`. True if
    /// `holder` has it now: it was free, expired, or already ours.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, expires_at = $3 \
             WHERE leases.holder = $2 OR leases.expires_at < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(ts(expires_at))
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Who holds the lease `name`, if anyone has ever taken it.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT holder FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("holder")))
    }

    /// Every lease on record: (name, holder, until), by name. What each daemon holds,
    /// for `status`; a lease past its time is free for the taking.
    pub async fn leases(&self) -> Result<Vec<(String, String, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query("SELECT name, holder, expires_at FROM leases ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("name")?,
                    r.try_get("holder")?,
                    super::from_ts(r.try_get("expires_at")?),
                ))
            })
            .collect()
    }

    /// Takes the lease `name` from `previous` (a holder known to be gone).
    pub async fn take_over_lease(
        &self,
        name: &str,
        previous: &str,
        holder: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE leases SET holder = $1, expires_at = $2 WHERE name = $3 AND holder = $4",
        )
        .bind(holder)
        .bind(ts(expires_at))
        .bind(name)
        .bind(previous)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease `name` up, if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
