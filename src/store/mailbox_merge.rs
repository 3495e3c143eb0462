//! One mailbox, one subscriber, for stores written before the rule: merges twins (two
//! spellings of one address) once, then creates the unique index on `lower(email)` that
//! keeps them from coming back.
//!
//! This runs from [`Store::open`] after the migrations rather than as one of them,
//! because the rows that point at a merged twin must follow it, and the tables that
//! refer to `subscribers(id)` are found from the schema as it is then: a table added by
//! any later migration is repointed too, without this code knowing it.

use super::{Store, StoreError};

/// The merge's fixed statements, in two parts around the repointing.
const MERGE_SQL: &str = include_str!("mailbox_merge.sql");
const REPOINT_MARK: &str = "-- @@ repoint @@";

impl Store {
    /// Merges twins and creates the mailbox index, unless that index exists already.
    /// One transaction, taken with the write lock so two daemons opening the same store
    /// at once merge once.
    pub(super) async fn merge_mailbox_twins(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let done: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master \
             WHERE type = 'index' AND name = 'subscribers_by_mailbox'",
        )
        .fetch_one(&mut *tx)
        .await?;
        if done > 0 {
            return Ok(());
        }
        let (before, after) = MERGE_SQL
            .split_once(REPOINT_MARK)
            .expect("mailbox_merge.sql has its repoint mark");
        sqlx::raw_sql(sqlx::AssertSqlSafe(before))
            .execute(&mut *tx)
            .await?;
        let references: Vec<(String, String)> = sqlx::query_as(
            "SELECT m.name, f.\"from\" FROM sqlite_master m, pragma_foreign_key_list(m.name) f \
             WHERE m.type = 'table' AND f.\"table\" = 'subscribers' \
             AND m.name <> 'subscriber_merges' ORDER BY m.name",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (table, column) in references {
            let (table, column) = (quote(&table), quote(&column));
            // A row that would collide with the kept twin's own (a unique key including
            // the subscriber) is a duplicate of it: the kept row's stays.
            let repoint = format!(
                "UPDATE OR IGNORE {table} SET {column} = \
                 (SELECT kept_id FROM temp.twin_members WHERE id = {table}.{column}) \
                 WHERE {column} IN (SELECT id FROM temp.twin_members WHERE id <> kept_id)"
            );
            let leftovers = format!(
                "DELETE FROM {table} WHERE {column} IN \
                 (SELECT id FROM temp.twin_members WHERE id <> kept_id)"
            );
            for sql in [repoint, leftovers] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(after))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// An identifier from the schema, quoted for SQL.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}
