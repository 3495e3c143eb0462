//! Frozen issues: rendered once, stored with their source files, never changed again.

use super::{Store, StoreError, from_ts, ts};
use crate::domain::{HeaderText, IssueId};
use crate::render::{Personalized, RenderedIssue};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// An issue as it goes out: what is needed to build every message again, identically.
#[derive(Debug, Clone)]
pub struct FrozenIssue {
    pub id: IssueId,
    /// Subject, HTML and text, with per-recipient slots.
    pub rendered: RenderedIssue,
    /// The `Date` header of every message of the issue, so a resend is the same message.
    pub message_date: DateTime<Utc>,
    pub frozen_at: DateTime<Utc>,
    /// The section files it was composed from: (file name, content).
    pub sources: Vec<(String, String)>,
}

impl FrozenIssue {
    /// Freezes a rendered issue.
    pub fn new(
        id: IssueId,
        rendered: &RenderedIssue,
        sources: Vec<(String, String)>,
        now: DateTime<Utc>,
    ) -> Self {
        // Whole seconds: what the database keeps, so a reloaded issue equals this one.
        let now = from_ts(ts(now));
        Self {
            id,
            rendered: rendered.clone(),
            message_date: now,
            frozen_at: now,
            sources,
        }
    }
}

/// The fingerprint of a set of section files: SHA-256 over each (name, content) pair in
/// name order, lengths first so no two different sets can run together.
fn sources_hash(sources: &[(String, String)]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&(String, String)> = sources.iter().collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    for (name, content) in sorted {
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        hasher.update((content.len() as u64).to_be_bytes());
        hasher.update(content.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// An issue id as the store holds it; anything else is a corrupt store.
pub(super) fn issue_id_from_db(raw: String) -> Result<IssueId, StoreError> {
    IssueId::parse(&raw).map_err(|_| StoreError::Corrupt {
        what: "issue id",
        value: raw,
    })
}

/// What freezing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreezeOutcome {
    /// False when the issue had been frozen before: nothing was written.
    pub newly_frozen: bool,
    /// Ledger rows written by the audience snapshot (0 when not newly frozen).
    pub queued: u64,
}

impl Store {
    /// Stores `issue` and snapshots the audience (every active subscriber, as of now)
    /// into the ledger, both in one transaction, so there is never an issue without its
    /// audience. An issue frozen before is left exactly as it was: freezing twice
    /// changes nothing and queues nobody new.
    pub async fn freeze_and_snapshot(
        &self,
        issue: &FrozenIssue,
        now: DateTime<Utc>,
    ) -> Result<FreezeOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let id = issue.id.to_string();
        let inserted = sqlx::query(
            "INSERT INTO issues (id, subject, html_template, text_template, message_date, \
             frozen_at, sources_hash) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(issue.rendered.subject.as_str())
        .bind(issue.rendered.html.marked())
        .bind(issue.rendered.text.marked())
        .bind(ts(issue.message_date))
        .bind(ts(issue.frozen_at))
        .bind(sources_hash(&issue.sources))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            tx.rollback().await?;
            return Ok(FreezeOutcome {
                newly_frozen: false,
                queued: 0,
            });
        }
        for (name, content) in &issue.sources {
            sqlx::query(
                "INSERT INTO issue_sources (issue_id, file_name, content) VALUES ($1, $2, $3)",
            )
            .bind(&id)
            .bind(name)
            .bind(content)
            .execute(&mut *tx)
            .await?;
        }
        let queued = sqlx::query(
            "INSERT INTO deliveries (issue_id, subscriber_id, status, attempts, \
             next_attempt_at, updated_at) \
             SELECT $1, id, 'queued', 0, $2, $2 FROM subscribers WHERE status = 'active'",
        )
        .bind(&id)
        .bind(ts(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(FreezeOutcome {
            newly_frozen: true,
            queued,
        })
    }

    /// The frozen issue `id`, if there is one.
    pub async fn issue(&self, id: IssueId) -> Result<Option<FrozenIssue>, StoreError> {
        let key = id.to_string();
        let Some(row) = sqlx::query(
            "SELECT subject, html_template, text_template, message_date, frozen_at \
             FROM issues WHERE id = $1",
        )
        .bind(&key)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let subject: String = row.try_get("subject")?;
        let sources = self.frozen_sources(&key).await?;
        Ok(Some(FrozenIssue {
            id,
            rendered: RenderedIssue {
                subject: HeaderText::parse(&subject).map_err(|_| StoreError::Corrupt {
                    what: "issue subject",
                    value: subject.clone(),
                })?,
                html: Personalized::parse(row.try_get("html_template")?, true),
                text: Personalized::parse(row.try_get("text_template")?, false),
            },
            message_date: from_ts(row.try_get("message_date")?),
            frozen_at: from_ts(row.try_get("frozen_at")?),
            sources,
        }))
    }

    /// The issue frozen from exactly these section files (same names, same bytes), if
    /// one was: composing them again would send the same text twice.
    pub async fn issue_with_sources(
        &self,
        sources: &[(String, String)],
    ) -> Result<Option<IssueId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM issues WHERE sources_hash = $1 ORDER BY frozen_at LIMIT 1",
        )
        .bind(sources_hash(sources))
        .fetch_optional(&self.pool)
        .await?;
        id.map(issue_id_from_db).transpose()
    }

    /// The section files frozen with the issue `id`: (file name, content), by name.
    async fn frozen_sources(&self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT file_name, content FROM issue_sources WHERE issue_id = $1 ORDER BY file_name",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("file_name")?, r.try_get("content")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// Computes the fingerprint of issues frozen before fingerprints were kept (once,
    /// when a store from before them is first opened).
    pub(super) async fn fill_sources_hashes(&self) -> Result<(), StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM issues WHERE sources_hash IS NULL")
                .fetch_all(&self.pool)
                .await?;
        for id in ids {
            let sources = self.frozen_sources(&id).await?;
            sqlx::query("UPDATE issues SET sources_hash = $1 WHERE id = $2")
                .bind(sources_hash(&sources))
                .bind(&id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// True if an issue was frozen at or after `since`.
    pub async fn issue_frozen_since(&self, since: DateTime<Utc>) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM issues WHERE frozen_at >= $1")
            .bind(ts(since))
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// The most recently frozen issue's id.
    pub async fn latest_issue(&self) -> Result<Option<IssueId>, StoreError> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM issues ORDER BY frozen_at DESC, id DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        id.map(issue_id_from_db).transpose()
    }
}
