//! Withdrawing consent: the one operation behind every unsubscribe (the command line,
//! the web's one-click POST and page, a reply to the newsletter's mailbox), and the one
//! shape it leaves in the consent record.
//!
//! The record's second half is three columns on the subscriber: `withdrawn_at` (when),
//! `withdrawn_source` (how: [`Withdrawal::source`]) and `withdrawn_evidence` (what shows
//! it: who ran the command, the client's address, the reply's key in the inbox record).
//! Whatever the channel, a withdrawal makes the subscriber `unsubscribed` (a bounced one
//! too: `subscribers reactivate` must not bring back someone who asked to leave), skips
//! their deliveries still to send, and — through the trigger of migration 0040 — closes
//! their open sign-up requests. Withdrawing again changes nothing: the first record stays.

use super::subscribers::{resolve_id, status_from_db};
use super::{Store, StoreError, SubscriberStatus, from_ts, ts};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// How a subscriber withdrew consent, with what shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withdrawal {
    /// `gazette subscribers remove`, run by `by` (`--by`, else `cli:$USER`, else `cli`).
    CommandLine { by: String },
    /// The RFC 8058 one-click POST (a mail provider's unsubscribe button), from `ip`.
    OneClick { ip: String },
    /// The button on the unsubscribe page, from `ip`.
    Page { ip: String },
    /// A reply saying UNSUBSCRIBE; `message` is its key in the inbox's record (its
    /// Message-ID with a hash of its content, or the hash alone).
    Reply { message: String },
}

impl Withdrawal {
    /// How, as the consent record names it: `cli`, `web:one-click`, `web:page` or
    /// `reply`. Records written before these names may say `web` (one-click or page).
    pub fn source(&self) -> &'static str {
        match self {
            Self::CommandLine { .. } => "cli",
            Self::OneClick { .. } => "web:one-click",
            Self::Page { .. } => "web:page",
            Self::Reply { .. } => "reply",
        }
    }

    /// What shows it: who ran the command, the client's address, or the reply's key.
    pub fn evidence(&self) -> &str {
        match self {
            Self::CommandLine { by } => by,
            Self::OneClick { ip } | Self::Page { ip } => ip,
            Self::Reply { message } => message,
        }
    }
}

/// A withdrawal as the consent record keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawn {
    pub at: DateTime<Utc>,
    /// [`Withdrawal::source`].
    pub source: String,
    /// [`Withdrawal::evidence`]; empty for records older than this column (a withdrawal
    /// on the web before the client's address was kept).
    pub evidence: Option<String>,
}

impl Store {
    /// Withdraws `id`'s consent: see the module's doc for what that does. Returns the
    /// status the subscriber had (`Unsubscribed` means nothing changed), or `None` when
    /// no subscriber has this id. One transaction.
    pub async fn unsubscribe(
        &self,
        id: i64,
        how: &Withdrawal,
        now: DateTime<Utc>,
    ) -> Result<Option<SubscriberStatus>, StoreError> {
        let mut tx = self.begin_write().await?;
        let outcome = withdraw(&mut tx, id, how, now).await?;
        tx.commit().await?;
        Ok(outcome.map(|(_, before)| before))
    }

    /// When, how and with what evidence `id` withdrew consent, if they did.
    pub async fn consent_withdrawn(&self, id: i64) -> Result<Option<Withdrawn>, StoreError> {
        let row = sqlx::query(
            "SELECT withdrawn_at, withdrawn_source, withdrawn_evidence FROM subscribers \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let at: Option<i64> = row.try_get("withdrawn_at")?;
        let source: Option<String> = row.try_get("withdrawn_source")?;
        let evidence: Option<String> = row.try_get("withdrawn_evidence")?;
        Ok(at.zip(source).map(|(at, source)| Withdrawn {
            at: from_ts(at),
            source,
            evidence,
        }))
    }
}

/// Marks subscriber `$1`'s rows still to be sent skipped, at `$2`. The ledger's key is
/// (issue, subscriber): naming every issue (a dozen a year) lets both databases look each
/// row up by that key rather than read the whole ledger for one subscriber's rows.
const SKIP_PENDING: &str = "UPDATE deliveries SET status = 'skipped', updated_at = $2 \
     WHERE issue_id IN (SELECT id FROM issues) AND subscriber_id = $1 \
     AND status IN ('queued', 'retrying')";

/// Withdraws consent inside the caller's transaction (the inbox records a whole batch in
/// one). Returns the subscriber's current id (a merged twin's id resolves to the row
/// kept) and the status before, or `None` for an unknown id.
pub(super) async fn withdraw(
    tx: &mut sqlx::AnyConnection,
    id: i64,
    how: &Withdrawal,
    now: DateTime<Utc>,
) -> Result<Option<(i64, SubscriberStatus)>, StoreError> {
    let id = resolve_id(&mut *tx, id).await?;
    let Some(before) =
        sqlx::query_scalar::<_, String>("SELECT status FROM subscribers WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(None);
    };
    let before = status_from_db(&before)?;
    if before == SubscriberStatus::Unsubscribed {
        return Ok(Some((id, before)));
    }
    // The status change fires `web_signups_close_on_leaving` (migration 0040).
    sqlx::query(
        "UPDATE subscribers SET status = 'unsubscribed', updated_at = $2, withdrawn_at = $2, \
         withdrawn_source = $3, withdrawn_evidence = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(ts(now))
    .bind(how.source())
    .bind(how.evidence())
    .execute(&mut *tx)
    .await?;
    sqlx::query(SKIP_PENDING)
        .bind(id)
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
    Ok(Some((id, before)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unsubscribe (by reply, link or command) marks the leaver's pending rows. It
    /// must find them by the ledger's key, not by reading every row of every issue ever
    /// sent: with 1 000 000 rows that took 37 ms per unsubscribe, and the ledger grows
    /// by a row per subscriber per issue. SQLite's own plan says which.
    #[tokio::test]
    async fn the_pending_rows_of_a_leaver_are_found_by_key_not_by_reading_the_ledger() {
        let dir = std::env::temp_dir().join(format!("gazette-consent-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&format!("sqlite://{}/store.db", dir.display()))
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {SKIP_PENDING}"
        )))
        .bind(1_i64)
        .bind(0_i64)
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("detail").unwrap())
        .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            plan.iter()
                .any(|step| step.starts_with("SEARCH deliveries USING PRIMARY KEY")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN deliveries")),
            "{plan:?}"
        );
    }
}
