//! Copying a whole store into another, empty one: how a SQLite store moves to PostgreSQL
//! (or to another SQLite file) with every subscriber, consent record, suppression,
//! issue and ledger row, ids and all.
//!
//! Ids are kept because tokens in mail already sent sign subscriber ids: a link in last
//! month's issue must name the same person after the move.
//!
//! The tables and their columns are read from each database's catalogue, not from a
//! list here, so a table a later migration adds is copied without a change to this file;
//! the two stores must stand at the same schema version and their tables must agree
//! column for column (name and kind) before anything is written. Tables are filled
//! parents first, in the order the target's foreign keys give.
//!
//! The source is read inside one read transaction, so the copy is the store as it was at
//! one instant even while a daemon writes to it. The target is written inside one write
//! transaction: a copy that fails leaves the target as it was. Afterwards each generated
//! id (PostgreSQL's identity columns, SQLite's AUTOINCREMENT) is moved past the highest
//! id the source ever gave out, not only past the highest one left, so an id that was
//! merged away is never given to someone new.

use super::{Dialect, Store, StoreError};
use futures::TryStreamExt;
use sqlx::any::{Any, AnyRow};
use sqlx::{AssertSqlSafe, Row};
use std::collections::{BTreeMap, BTreeSet};

/// Most values bound in one INSERT: a few hundred rows a statement, well under either
/// backend's limit on parameters (SQLite 32 766, PostgreSQL 65 535).
const VALUES_PER_STATEMENT: usize = 4_000;

/// How many rows of each table a copy wrote, parents first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// The store copied from, as messages name it.
    pub from: String,
    /// The store copied into.
    pub to: String,
    /// Every table copied, in the order it was filled.
    pub tables: Vec<TableCopied>,
}

/// One table's share of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopied {
    pub table: String,
    pub rows: u64,
}

impl CopyReport {
    /// Rows copied in all.
    pub fn total(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// Why a copy was refused or failed; in every case the target is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the target {target} is the store being copied: name another database")]
    SameStore { target: String },
    #[error(
        "the store {from} is at schema version {from_version} but the target {to} at \
         {to_version}: copy with the gazette that matches both"
    )]
    SchemaVersions {
        from: String,
        from_version: i64,
        to: String,
        to_version: i64,
    },
    #[error(
        "the schemas of {from} and {to} differ at table {table}: {detail}; both must be \
         made by the same gazette"
    )]
    SchemaDiffers {
        from: String,
        to: String,
        table: String,
        detail: String,
    },
    #[error(
        "the target {target} is not empty (its table {table} holds rows): a store is copied \
         only into an empty database, never merged into one in use"
    )]
    TargetNotEmpty { target: String, table: String },
    #[error("{table}.{column} is declared {declared}, a type a copy does not carry")]
    UnknownType {
        table: String,
        column: String,
        declared: String,
    },
    #[error("{table}.{column} holds a value that is not {kind}: {reason}")]
    Value {
        table: String,
        column: String,
        kind: &'static str,
        reason: String,
    },
    #[error("the foreign keys among the tables {tables} form a cycle: no order fills them")]
    Cycle { tables: String },
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(e))
    }
}

/// What a column holds, as both backends can say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Real,
    Text,
    Blob,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Integer => "an integer",
            Self::Real => "a real number",
            Self::Text => "text",
            Self::Blob => "a blob",
        }
    }

    /// SQLite's declared type, by its affinity rules; PostgreSQL's `data_type`.
    fn of(dialect: Dialect, declared: &str) -> Option<Self> {
        let upper = declared.to_ascii_uppercase();
        match dialect {
            Dialect::Sqlite if upper.contains("INT") => Some(Self::Integer),
            Dialect::Sqlite if ["CHAR", "CLOB", "TEXT"].iter().any(|t| upper.contains(t)) => {
                Some(Self::Text)
            }
            Dialect::Sqlite if upper.is_empty() || upper.contains("BLOB") => Some(Self::Blob),
            Dialect::Sqlite if ["REAL", "FLOA", "DOUB"].iter().any(|t| upper.contains(t)) => {
                Some(Self::Real)
            }
            Dialect::Sqlite => None,
            Dialect::Postgres => match upper.as_str() {
                "BIGINT" | "INTEGER" | "SMALLINT" => Some(Self::Integer),
                "DOUBLE PRECISION" | "REAL" => Some(Self::Real),
                "TEXT" | "CHARACTER VARYING" | "CHARACTER" => Some(Self::Text),
                "BYTEA" => Some(Self::Blob),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    kind: Kind,
}

/// A table as the catalogue describes it.
#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<Column>,
    /// The tables its foreign keys point at.
    parents: BTreeSet<String>,
    /// The column whose values the database generates (identity / AUTOINCREMENT).
    generated_id: Option<String>,
}

/// One value on its way from the source to the target.
#[derive(Debug, Clone)]
enum Value {
    Integer(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

/// `name` as a quoted identifier (both backends read double quotes).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Store {
    /// Copies every row of this store into `target`, which must be another database at
    /// the same schema version and hold no rows. See the module's doc.
    pub async fn copy_to(&self, target: &Store) -> Result<CopyReport, CopyError> {
        if self.same_database(target) {
            return Err(CopyError::SameStore {
                target: target.name.clone(),
            });
        }
        let from_version = self.schema_version().await?;
        let to_version = target.schema_version().await?;
        if from_version != to_version {
            return Err(CopyError::SchemaVersions {
                from: self.name.clone(),
                from_version,
                to: target.name.clone(),
                to_version,
            });
        }
        let from_tables = self.tables().await?;
        let to_tables = target.tables().await?;
        self.check_same_tables(target, &from_tables, &to_tables)?;
        let order = fill_order(&to_tables)?;

        // The write lock first, then the snapshot: nothing can write to the target
        // between the emptiness check and the commit.
        let mut to = target.begin_write().await?;
        for table in &order {
            let sql = format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM {} LIMIT 1) AS t",
                quoted(&table.name)
            );
            let any: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(&mut *to)
                .await?;
            if any > 0 {
                return Err(CopyError::TargetNotEmpty {
                    target: target.name.clone(),
                    table: table.name.clone(),
                });
            }
        }
        let mut from = match self.dialect {
            // A deferred transaction: its first read fixes the snapshot (WAL mode).
            Dialect::Sqlite => self.pool.begin().await?,
            Dialect::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?
            }
        };

        let mut tables = Vec::with_capacity(order.len());
        for table in &order {
            let rows = copy_table(&mut from, &mut to, target.dialect, table).await?;
            tables.push(TableCopied {
                table: table.name.clone(),
                rows,
            });
        }
        for table in &order {
            let Some(column) = &table.generated_id else {
                continue;
            };
            let issued = self.highest_issued(&mut from, &table.name, column).await?;
            target
                .move_generator_past(&mut to, &table.name, column, issued)
                .await?;
        }
        to.commit().await?;
        from.rollback().await?;
        Ok(CopyReport {
            from: self.name.clone(),
            to: target.name.clone(),
            tables,
        })
    }

    /// Whether `other` is this very database. For PostgreSQL this compares the urls
    /// (without passwords); two spellings of one database are still caught, by the
    /// target holding the source's rows.
    fn same_database(&self, other: &Store) -> bool {
        if self.dialect != other.dialect {
            return false;
        }
        match self.dialect {
            Dialect::Sqlite => {
                let a = std::fs::canonicalize(&self.name);
                let b = std::fs::canonicalize(&other.name);
                match (a, b) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => self.name == other.name,
                }
            }
            Dialect::Postgres => self.name == other.name,
        }
    }

    /// The tables gazette keeps (not the migrations' bookkeeping, not SQLite's own),
    /// by name.
    async fn tables(&self) -> Result<BTreeMap<String, Table>, CopyError> {
        let names: Vec<(String, Option<String>)> = match self.dialect {
            Dialect::Sqlite => {
                sqlx::query_as(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite!_%' ESCAPE '!' AND name <> '_sqlx_migrations'",
                )
                .fetch_all(&self.pool)
                .await?
            }
            Dialect::Postgres => {
                sqlx::query_as(
                    "SELECT table_name::text, NULL::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                     AND table_name <> '_sqlx_migrations'",
                )
                .fetch_all(&self.pool)
                .await?
            }
        };
        let mut tables = BTreeMap::new();
        for (name, sql) in names {
            let table = match self.dialect {
                Dialect::Sqlite => self.sqlite_table(&name, sql.as_deref()).await?,
                Dialect::Postgres => self.postgres_table(&name).await?,
            };
            tables.insert(name, table);
        }
        Ok(tables)
    }

    async fn sqlite_table(&self, name: &str, sql: Option<&str>) -> Result<Table, CopyError> {
        let described: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT name, type, pk FROM pragma_table_info($1) ORDER BY cid")
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
        let parents: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list($1)")
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
        // Only an INTEGER PRIMARY KEY declared AUTOINCREMENT keeps a high-water mark
        // (in sqlite_sequence); any other rowid is simply the largest one plus one.
        let autoincrement = sql.is_some_and(|s| s.to_ascii_uppercase().contains("AUTOINCREMENT"));
        let generated_id = autoincrement
            .then(|| described.iter().find(|(_, _, pk)| *pk == 1))
            .flatten()
            .map(|(column, _, _)| column.clone());
        let columns = described
            .into_iter()
            .map(|(column, declared, _)| column_of(Dialect::Sqlite, name, column, &declared))
            .collect::<Result<_, _>>()?;
        Ok(Table {
            name: name.to_owned(),
            columns,
            parents: parents.into_iter().collect(),
            generated_id,
        })
    }

    async fn postgres_table(&self, name: &str) -> Result<Table, CopyError> {
        let described: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text, is_identity::text \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 \
             ORDER BY ordinal_position",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let parents: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT p.relname::text FROM pg_constraint c \
             JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class p ON p.oid = c.confrelid \
             WHERE c.contype = 'f' AND t.relname = $1 \
             AND t.relnamespace = current_schema()::regnamespace",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let generated_id = described
            .iter()
            .find(|(_, _, identity)| identity == "YES")
            .map(|(column, _, _)| column.clone());
        let columns = described
            .into_iter()
            .map(|(column, declared, _)| column_of(Dialect::Postgres, name, column, &declared))
            .collect::<Result<_, _>>()?;
        Ok(Table {
            name: name.to_owned(),
            columns,
            parents: parents.into_iter().collect(),
            generated_id,
        })
    }

    /// Both stores must have the same tables with the same columns (names, order and
    /// kinds), or rows would land in the wrong place.
    fn check_same_tables(
        &self,
        target: &Store,
        from: &BTreeMap<String, Table>,
        to: &BTreeMap<String, Table>,
    ) -> Result<(), CopyError> {
        let differs = |table: &str, detail: String| CopyError::SchemaDiffers {
            from: self.name.clone(),
            to: target.name.clone(),
            table: table.to_owned(),
            detail,
        };
        for (name, table) in from {
            let Some(other) = to.get(name) else {
                return Err(differs(name, "the target has no such table".into()));
            };
            if table.columns != other.columns {
                let describe = |t: &Table| {
                    t.columns
                        .iter()
                        .map(|c| format!("{} {}", c.name, c.kind.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(differs(
                    name,
                    format!(
                        "columns ({}) against ({})",
                        describe(table),
                        describe(other)
                    ),
                ));
            }
        }
        if let Some(name) = to.keys().find(|name| !from.contains_key(*name)) {
            return Err(differs(name, "the source has no such table".into()));
        }
        Ok(())
    }

    /// The highest id the source's generator for `table`.`column` ever gave out (or the
    /// highest id left, where the generator keeps no record).
    async fn highest_issued(
        &self,
        from: &mut sqlx::Transaction<'static, Any>,
        table: &str,
        column: &str,
    ) -> Result<Option<i64>, CopyError> {
        let highest = format!("SELECT MAX({}) FROM {}", quoted(column), quoted(table));
        let mut issued: Option<i64> = sqlx::query_scalar(AssertSqlSafe(highest))
            .fetch_one(&mut **from)
            .await?;
        let recorded: Option<i64> = match self.dialect {
            Dialect::Sqlite => {
                sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = $1")
                    .bind(table)
                    .fetch_optional(&mut **from)
                    .await?
            }
            // NULL until the sequence has given out its first value.
            Dialect::Postgres => {
                sqlx::query_scalar(
                    "SELECT pg_sequence_last_value(pg_get_serial_sequence($1, $2)::regclass)",
                )
                .bind(quoted(table))
                .bind(column)
                .fetch_one(&mut **from)
                .await?
            }
        };
        if let Some(recorded) = recorded {
            issued = Some(issued.map_or(recorded, |i| i.max(recorded)));
        }
        Ok(issued)
    }

    /// Makes the target's generator for `table`.`column` give ids above `issued` and
    /// above every id now in the table.
    async fn move_generator_past(
        &self,
        to: &mut sqlx::Transaction<'static, Any>,
        table: &str,
        column: &str,
        issued: Option<i64>,
    ) -> Result<(), CopyError> {
        let highest = format!("SELECT MAX({}) FROM {}", quoted(column), quoted(table));
        let present: Option<i64> = sqlx::query_scalar(AssertSqlSafe(highest))
            .fetch_one(&mut **to)
            .await?;
        let Some(past) = present.max(issued) else {
            return Ok(());
        };
        match self.dialect {
            Dialect::Postgres => {
                sqlx::query("SELECT setval(pg_get_serial_sequence($1, $2), $3)")
                    .bind(quoted(table))
                    .bind(column)
                    .bind(past)
                    .execute(&mut **to)
                    .await?;
            }
            Dialect::Sqlite => {
                // Inserting explicit ids already raised the mark to the highest present;
                // a higher one from the source (ids merged away) is carried over.
                sqlx::query("UPDATE sqlite_sequence SET seq = $2 WHERE name = $1 AND seq < $2")
                    .bind(table)
                    .bind(past)
                    .execute(&mut **to)
                    .await?;
                sqlx::query(
                    "INSERT INTO sqlite_sequence (name, seq) SELECT $1, $2 \
                     WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = $1)",
                )
                .bind(table)
                .bind(past)
                .execute(&mut **to)
                .await?;
            }
        }
        Ok(())
    }
}

fn column_of(
    dialect: Dialect,
    table: &str,
    name: String,
    declared: &str,
) -> Result<Column, CopyError> {
    match Kind::of(dialect, declared) {
        Some(kind) => Ok(Column { name, kind }),
        None => Err(CopyError::UnknownType {
            table: table.to_owned(),
            column: name,
            declared: declared.to_owned(),
        }),
    }
}

/// The tables in an order that fills every parent before its children (ties by name).
fn fill_order(tables: &BTreeMap<String, Table>) -> Result<Vec<Table>, CopyError> {
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::with_capacity(tables.len());
    while order.len() < tables.len() {
        let ready: Vec<&Table> = tables
            .values()
            .filter(|t| !placed.contains(t.name.as_str()))
            .filter(|t| {
                t.parents
                    .iter()
                    .all(|p| p == &t.name || placed.contains(p.as_str()) || !tables.contains_key(p))
            })
            .collect();
        if ready.is_empty() {
            let left: Vec<&str> = tables
                .keys()
                .map(String::as_str)
                .filter(|n| !placed.contains(n))
                .collect();
            return Err(CopyError::Cycle {
                tables: left.join(", "),
            });
        }
        for table in ready {
            placed.insert(&table.name);
            order.push(table.clone());
        }
    }
    Ok(order)
}

/// Streams `table`'s rows from the source into the target in multi-row INSERTs.
async fn copy_table(
    from: &mut sqlx::Transaction<'static, Any>,
    to: &mut sqlx::Transaction<'static, Any>,
    target: Dialect,
    table: &Table,
) -> Result<u64, CopyError> {
    let names: Vec<String> = table.columns.iter().map(|c| quoted(&c.name)).collect();
    let select = format!("SELECT {} FROM {}", names.join(", "), quoted(&table.name));
    let per_statement = (VALUES_PER_STATEMENT / table.columns.len().max(1)).max(1);
    // A PostgreSQL identity column takes the ids given; OVERRIDING says so even for
    // one declared ALWAYS.
    let overriding = match (target, &table.generated_id) {
        (Dialect::Postgres, Some(_)) => " OVERRIDING SYSTEM VALUE",
        _ => "",
    };
    let insert = format!(
        "INSERT INTO {} ({}){overriding} VALUES ",
        quoted(&table.name),
        names.join(", ")
    );
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(per_statement);
    let mut copied = 0u64;
    let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(&mut **from);
    while let Some(row) = rows.try_next().await? {
        batch.push(values_of(&row, table)?);
        if batch.len() == per_statement {
            copied += insert_batch(to, &insert, std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        copied += insert_batch(to, &insert, batch).await?;
    }
    Ok(copied)
}

/// One row's values, each read as its column's kind.
fn values_of(row: &AnyRow, table: &Table) -> Result<Vec<Value>, CopyError> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let read = match column.kind {
                Kind::Integer => row.try_get(i).map(Value::Integer),
                Kind::Real => row.try_get(i).map(Value::Real),
                Kind::Text => row.try_get(i).map(Value::Text),
                Kind::Blob => row.try_get(i).map(Value::Blob),
            };
            read.map_err(|e| CopyError::Value {
                table: table.name.clone(),
                column: column.name.clone(),
                kind: column.kind.name(),
                reason: e.to_string(),
            })
        })
        .collect()
}

async fn insert_batch(
    to: &mut sqlx::Transaction<'static, Any>,
    insert: &str,
    batch: Vec<Vec<Value>>,
) -> Result<u64, CopyError> {
    let width = batch.first().map_or(0, Vec::len);
    let mut sql = String::from(insert);
    for i in 0..batch.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&super::placeholders(width, 1 + i * width));
        sql.push(')');
    }
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for value in batch.into_iter().flatten() {
        query = match value {
            Value::Integer(v) => query.bind(v),
            Value::Real(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Blob(v) => query.bind(v),
        };
    }
    Ok(query.execute(&mut **to).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, parents: &[&str]) -> (String, Table) {
        (
            name.to_owned(),
            Table {
                name: name.to_owned(),
                columns: vec![],
                parents: parents.iter().map(|p| (*p).to_owned()).collect(),
                generated_id: None,
            },
        )
    }

    #[test]
    fn parents_are_filled_before_their_children() {
        let tables: BTreeMap<_, _> = [
            table("deliveries", &["issues", "subscribers"]),
            table("issue_sources", &["issues"]),
            table("issues", &[]),
            table("subscribers", &[]),
            table("web_signups", &["subscribers"]),
            table("tree", &["tree"]),
        ]
        .into_iter()
        .collect();
        let order: Vec<String> = fill_order(&tables)
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(
            order,
            [
                "issues",
                "subscribers",
                "tree",
                "deliveries",
                "issue_sources",
                "web_signups"
            ]
        );
    }

    #[test]
    fn a_cycle_is_named() {
        let tables: BTreeMap<_, _> = [table("a", &["b"]), table("b", &["a"]), table("c", &[])]
            .into_iter()
            .collect();
        match fill_order(&tables) {
            Err(CopyError::Cycle { tables }) => assert_eq!(tables, "a, b"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn declared_types_map_to_kinds() {
        assert_eq!(Kind::of(Dialect::Sqlite, "INTEGER"), Some(Kind::Integer));
        assert_eq!(Kind::of(Dialect::Sqlite, "TEXT"), Some(Kind::Text));
        assert_eq!(Kind::of(Dialect::Sqlite, ""), Some(Kind::Blob));
        assert_eq!(Kind::of(Dialect::Postgres, "bigint"), Some(Kind::Integer));
        assert_eq!(Kind::of(Dialect::Postgres, "text"), Some(Kind::Text));
        assert_eq!(Kind::of(Dialect::Postgres, "bytea"), Some(Kind::Blob));
        assert_eq!(Kind::of(Dialect::Postgres, "jsonb"), None);
    }
}
