//! Read-only questions `gazette doctor` asks the store.

use super::issues::issue_id_from_db;
use super::{Store, StoreError, from_ts};
use crate::domain::IssueId;
use chrono::{DateTime, Utc};
use sqlx::Row;

/// How the last issue treated the people who had unsubscribed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeAudit {
    /// The issue looked at: the newest one with at least one message sent.
    pub issue: IssueId,
    /// Subscribers who unsubscribed (by any channel: `subscribers remove`, the one-click
    /// link, the unsubscribe page or a reply) since that issue was frozen.
    pub unsubscribes_since: u64,
    /// Messages of that issue sent to someone longer than the grace period after they
    /// had unsubscribed.
    pub late: Vec<LateDelivery>,
}

/// One message that went out although its recipient had left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateDelivery {
    pub subscriber_id: i64,
    pub email: String,
    pub unsubscribed_at: DateTime<Utc>,
    pub sent_at: DateTime<Utc>,
}

impl Store {
    /// The last sent issue's messages that reached a subscriber more than `grace` after
    /// they unsubscribed; `None` before any issue has gone out.
    pub async fn unsubscribe_audit(
        &self,
        grace: chrono::Duration,
    ) -> Result<Option<UnsubscribeAudit>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT i.id, i.frozen_at FROM issues i \
             WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = i.id AND d.status = 'sent') \
             ORDER BY i.frozen_at DESC, i.id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let issue = issue_id_from_db(row.try_get("id")?)?;
        let frozen_at: i64 = row.try_get("frozen_at")?;
        let unsubscribes_since: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM subscribers WHERE status = 'unsubscribed' AND withdrawn_at >= $1",
        )
        .bind(frozen_at)
        .fetch_one(&self.pool)
        .await?;
        let rows = sqlx::query(
            "SELECT s.id, s.email, s.withdrawn_at, d.sent_at FROM deliveries d \
             JOIN subscribers s ON s.id = d.subscriber_id \
             WHERE d.issue_id = $1 AND d.status = 'sent' AND s.withdrawn_at IS NOT NULL \
               AND d.sent_at > s.withdrawn_at + $2 \
             ORDER BY d.sent_at, s.id",
        )
        .bind(issue.to_string())
        .bind(grace.num_seconds())
        .fetch_all(&self.pool)
        .await?;
        let late = rows
            .iter()
            .map(|r| {
                Ok(LateDelivery {
                    subscriber_id: r.try_get("id")?,
                    email: r.try_get("email")?,
                    unsubscribed_at: from_ts(r.try_get("withdrawn_at")?),
                    sent_at: from_ts(r.try_get("sent_at")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(UnsubscribeAudit {
            issue,
            unsubscribes_since: unsubscribes_since.max(0) as u64,
            late,
        }))
    }
}
