//! The PostgreSQL schema (`migrations/postgres`) is the SQLite schema (`migrations/sqlite`
//! plus what `Store::open` adds) in PostgreSQL's words: the same tables, columns in the
//! same order with the mapped types, keys, foreign keys, unique constraints, indexes and
//! triggers. Both are read from the databases' own catalogues, not from the SQL text.

use crate::support::{TempDir, postgres, repo_root};
use gazette::store::Store;
use sqlx::{PgPool, SqlitePool};
use std::collections::{BTreeMap, BTreeSet};

/// A column as both catalogues can describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    /// PostgreSQL's type name; SQLite's declared type is mapped to it.
    data_type: String,
    /// NOT NULL, or part of the primary key (which SQLite does not always enforce, but
    /// gazette never stores NULL in).
    not_null: bool,
    has_default: bool,
    /// Position in the primary key, from 1; 0 when not part of it.
    primary_key: i64,
}

/// A foreign key of one column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ForeignKey {
    table: String,
    column: String,
    references_table: String,
    references_column: String,
    on_delete: String,
}

/// An index made by CREATE INDEX: its key columns in order (None for an expression).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, sqlx::FromRow)]
struct Index {
    name: String,
    table: String,
    unique: bool,
    partial: bool,
    columns: Vec<Option<String>>,
}

#[derive(Debug, PartialEq, Eq)]
struct Schema {
    /// Table name to its columns, in order.
    tables: BTreeMap<String, Vec<Column>>,
    foreign_keys: BTreeSet<ForeignKey>,
    /// UNIQUE constraints on columns: the table and the columns.
    unique_constraints: BTreeSet<(String, Vec<String>)>,
    indexes: BTreeSet<Index>,
    triggers: BTreeSet<String>,
}

/// SQLite's declared types, as `migrations/postgres` maps them.
fn postgres_type(sqlite_type: &str) -> String {
    match sqlite_type.to_ascii_uppercase().as_str() {
        "INTEGER" => "bigint",
        "TEXT" => "text",
        "BLOB" => "bytea",
        "REAL" => "double precision",
        other => panic!("the SQLite schema uses the type {other:?}: map it in migrations/postgres"),
    }
    .to_owned()
}

/// SQLite's ON DELETE actions, as PostgreSQL's catalogue spells them.
fn postgres_action(sqlite_action: &str) -> String {
    match sqlite_action {
        "NO ACTION" => "a",
        "RESTRICT" => "r",
        "CASCADE" => "c",
        "SET NULL" => "n",
        "SET DEFAULT" => "d",
        other => panic!("unknown SQLite ON DELETE action {other:?}"),
    }
    .to_owned()
}

/// Tables that belong to the databases or to sqlx, not to gazette.
fn is_bookkeeping(table: &str) -> bool {
    table == "_sqlx_migrations" || table.starts_with("sqlite_")
}

async fn sqlite_schema(pool: &SqlitePool) -> Schema {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .fetch_all(pool)
            .await
            .unwrap();
    let names: Vec<String> = names.into_iter().filter(|t| !is_bookkeeping(t)).collect();
    let mut schema = Schema {
        tables: BTreeMap::new(),
        foreign_keys: BTreeSet::new(),
        unique_constraints: BTreeSet::new(),
        indexes: BTreeSet::new(),
        triggers: BTreeSet::new(),
    };
    for table in &names {
        let rows: Vec<(String, String, bool, Option<String>, i64)> = sqlx::query_as(
            "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1) ORDER BY cid",
        )
        .bind(table)
        .fetch_all(pool)
        .await
        .unwrap();
        let columns = rows
            .into_iter()
            .map(|(name, declared, not_null, default, pk)| Column {
                name,
                data_type: postgres_type(&declared),
                not_null: not_null || pk > 0,
                has_default: default.is_some(),
                primary_key: pk,
            })
            .collect();
        schema.tables.insert(table.clone(), columns);

        let keys: Vec<(i64, String, String, String, String)> = sqlx::query_as(
            "SELECT seq, \"table\", \"from\", \"to\", on_delete FROM pragma_foreign_key_list(?1)",
        )
        .bind(table)
        .fetch_all(pool)
        .await
        .unwrap();
        for (seq, references_table, column, references_column, on_delete) in keys {
            assert_eq!(
                seq, 0,
                "{table}: foreign keys of several columns are not compared"
            );
            schema.foreign_keys.insert(ForeignKey {
                table: table.clone(),
                column,
                references_table,
                references_column,
                on_delete: postgres_action(&on_delete),
            });
        }

        let indexes: Vec<(String, bool, String, bool)> =
            sqlx::query_as("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1)")
                .bind(table)
                .fetch_all(pool)
                .await
                .unwrap();
        for (name, unique, origin, partial) in indexes {
            let columns: Vec<Option<String>> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                    .bind(&name)
                    .fetch_all(pool)
                    .await
                    .unwrap();
            match origin.as_str() {
                // The primary key is compared column by column above.
                "pk" => {}
                "u" => {
                    let columns = columns.into_iter().map(Option::unwrap).collect();
                    schema.unique_constraints.insert((table.clone(), columns));
                }
                _ => {
                    schema.indexes.insert(Index {
                        name,
                        table: table.clone(),
                        unique,
                        partial,
                        columns,
                    });
                }
            }
        }
    }
    schema.triggers = sqlx::query_scalar("SELECT name FROM sqlite_schema WHERE type = 'trigger'")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    schema
}

async fn postgres_schema(pool: &PgPool) -> Schema {
    // information_schema's columns are of its own domain types: cast them to plain ones.
    let rows: Vec<(String, String, String, bool, bool, i64)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, \
                c.is_nullable::text = 'NO', \
                c.column_default IS NOT NULL, \
                COALESCE((SELECT k.ordinal_position::int8 \
                          FROM information_schema.table_constraints t \
                          JOIN information_schema.key_column_usage k \
                            ON k.constraint_schema = t.constraint_schema \
                           AND k.constraint_name = t.constraint_name \
                          WHERE t.constraint_type = 'PRIMARY KEY' \
                            AND t.table_schema = c.table_schema \
                            AND t.table_name = c.table_name \
                            AND k.column_name = c.column_name), 0) \
         FROM information_schema.columns c \
         JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' \
         ORDER BY c.table_name, c.ordinal_position",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut tables: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    for (table, name, data_type, not_null, has_default, primary_key) in rows {
        if is_bookkeeping(&table) {
            continue;
        }
        tables.entry(table).or_default().push(Column {
            name,
            data_type,
            not_null,
            has_default,
            primary_key,
        });
    }

    let keys: Vec<(String, String, String, String, String, i32)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, a.attname::text, c.confrelid::regclass::text, \
                af.attname::text, c.confdeltype::text, cardinality(c.conkey) \
         FROM pg_constraint c \
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
         JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1] \
         WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let foreign_keys = keys
        .into_iter()
        .map(
            |(table, column, references_table, references_column, on_delete, width)| {
                assert_eq!(
                    width, 1,
                    "{table}: foreign keys of several columns are not compared"
                );
                ForeignKey {
                    table,
                    column,
                    references_table,
                    references_column,
                    on_delete,
                }
            },
        )
        .collect();

    let uniques: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, \
                array_agg(a.attname::text ORDER BY k.position) \
         FROM pg_constraint c \
         CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, position) \
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
         WHERE c.contype = 'u' AND c.connamespace = 'public'::regnamespace \
         GROUP BY c.oid, c.conrelid",
    )
    .fetch_all(pool)
    .await
    .unwrap();

    // Indexes of their own, not the ones behind a primary key or UNIQUE constraint. A key
    // column of 0 is an expression.
    let indexes: Vec<Index> = sqlx::query_as(
        "SELECT i.relname::text AS name, t.relname::text AS \"table\", \
                x.indisunique AS \"unique\", x.indpred IS NOT NULL AS partial, \
                array_agg(a.attname::text ORDER BY k.position) AS columns \
         FROM pg_index x \
         JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class t ON t.oid = x.indrelid \
         CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, position) \
         LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum \
         WHERE t.relnamespace = 'public'::regnamespace \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) \
         GROUP BY i.relname, t.relname, x.indisunique, x.indpred IS NOT NULL",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let indexes = indexes
        .into_iter()
        .filter(|index| !is_bookkeeping(&index.table))
        .collect();

    let triggers: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT trigger_name::text FROM information_schema.triggers \
         WHERE trigger_schema = 'public'",
    )
    .fetch_all(pool)
    .await
    .unwrap();

    Schema {
        tables,
        foreign_keys,
        unique_constraints: uniques.into_iter().collect(),
        indexes,
        triggers: triggers.into_iter().collect(),
    }
}

/// Asserts field by field, so a failure names what differs instead of printing two
/// whole schemas.
fn assert_same(sqlite: &Schema, postgres: &Schema) {
    let sqlite_tables: Vec<&String> = sqlite.tables.keys().collect();
    let postgres_tables: Vec<&String> = postgres.tables.keys().collect();
    assert_eq!(
        sqlite_tables, postgres_tables,
        "tables (SQLite left, PostgreSQL right)"
    );
    for (table, columns) in &sqlite.tables {
        let names = |columns: &[Column]| columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(columns),
            names(&postgres.tables[table]),
            "columns of {table}, in order (SQLite left, PostgreSQL right)"
        );
        for (s, p) in columns.iter().zip(&postgres.tables[table]) {
            assert_eq!(s, p, "{table}.{} (SQLite left, PostgreSQL right)", s.name);
        }
    }
    assert_eq!(sqlite.foreign_keys, postgres.foreign_keys, "foreign keys");
    assert_eq!(
        sqlite.unique_constraints, postgres.unique_constraints,
        "UNIQUE constraints"
    );
    assert_eq!(sqlite.indexes, postgres.indexes, "indexes");
    assert_eq!(sqlite.triggers, postgres.triggers, "triggers");
}

#[tokio::test]
async fn postgres_schema_matches_the_sqlite_schema() {
    let database = postgres::database();
    let pg = PgPool::connect(database.url()).await.unwrap();
    sqlx::migrate::Migrator::new(repo_root().join("migrations/postgres").as_path())
        .await
        .unwrap()
        .run(&pg)
        .await
        .unwrap();

    // SQLite: the migrations, then what the store adds when it first opens (the mailbox
    // index, made once twins are merged).
    let dir = TempDir::new("postgres-schema");
    let url = format!("sqlite://{}", dir.path().join("gazette.db").display());
    let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
        .unwrap()
        .create_if_missing(true);
    let lite = SqlitePool::connect_with(options.clone()).await.unwrap();
    sqlx::migrate::Migrator::new(repo_root().join("migrations/sqlite").as_path())
        .await
        .unwrap()
        .run(&lite)
        .await
        .unwrap();
    lite.close().await;
    Store::open(&url).await.unwrap().close().await;
    let lite = SqlitePool::connect_with(options).await.unwrap();

    let sqlite = sqlite_schema(&lite).await;
    let postgres = postgres_schema(&pg).await;
    assert!(sqlite.tables.contains_key("subscribers"), "{sqlite:?}");
    assert_same(&sqlite, &postgres);

    // Both stand at the same migration version.
    let version = "SELECT max(version) FROM _sqlx_migrations";
    let sqlite_version: i64 = sqlx::query_scalar(version).fetch_one(&lite).await.unwrap();
    let postgres_version: i64 = sqlx::query_scalar(version).fetch_one(&pg).await.unwrap();
    assert_eq!(sqlite_version, postgres_version, "schema versions");
    pg.close().await;
    lite.close().await;
}

/// Databases handed to tests running at the same time are distinct, empty and usable.
#[test]
fn parallel_databases_are_fresh_and_separate() {
    let databases: Vec<postgres::PgDatabase> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(postgres::database)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let names: BTreeSet<&str> = databases.iter().map(postgres::PgDatabase::name).collect();
    assert_eq!(names.len(), databases.len(), "{names:?}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for database in &databases {
            let pool = PgPool::connect(database.url()).await.unwrap();
            let tables: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(tables, 0, "{} is not empty", database.name());
            sqlx::query("CREATE TABLE mine (id BIGINT)")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    });
}

/// The same statements on both schemas have the same outcomes: the constraints, the
/// identity ids, the trigger, byte-order text and A-Z-only case folding of the mailbox
/// index, even in a PostgreSQL database whose locale folds more than A-Z.
#[tokio::test]
async fn the_same_statements_have_the_same_outcomes_on_both() {
    let database = postgres::database_in_locale("C.UTF-8");
    let pg = PgPool::connect(database.url()).await.unwrap();
    sqlx::migrate::Migrator::new(repo_root().join("migrations/postgres").as_path())
        .await
        .unwrap()
        .run(&pg)
        .await
        .unwrap();
    let dir = TempDir::new("postgres-outcomes");
    let url = format!("sqlite://{}", dir.path().join("gazette.db").display());
    Store::open(&url).await.unwrap().close().await;
    let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
        .unwrap()
        .foreign_keys(true);
    let lite = SqlitePool::connect_with(options).await.unwrap();

    // Each statement, and whether both databases accept it.
    let statements = [
        (
            "INSERT INTO subscribers (email, status, created_at, updated_at) \
          VALUES ('Ada@example.org', 'active', 1, 1)",
            true,
        ),
        (
            "INSERT INTO subscribers (email, status, created_at, updated_at) \
          VALUES ('ada@example.org', 'active', 1, 1)",
            false,
        ),
        (
            "INSERT INTO subscribers (email, status, created_at, updated_at) \
          VALUES ('Émile@example.org', 'active', 1, 1)",
            true,
        ),
        (
            "INSERT INTO subscribers (email, status, created_at, updated_at) \
          VALUES ('émile@example.org', 'pending', 2, 2)",
            true,
        ),
        (
            "INSERT INTO subscribers (email, status, created_at, updated_at) \
          VALUES ('bob@example.org', 'lurking', 1, 1)",
            false,
        ),
        (
            "INSERT INTO web_signups (subscriber_id, requested_at, requested_ip) \
          VALUES (1, 10, '192.0.2.1')",
            true,
        ),
        (
            "INSERT INTO web_signups (subscriber_id, requested_at, requested_ip) \
          VALUES (99, 10, '192.0.2.1')",
            false,
        ),
        (
            "UPDATE subscribers SET status = 'unsubscribed', updated_at = 20 WHERE id = 1",
            true,
        ),
        ("INSERT INTO inbox_polls (id, at) VALUES (2, 1)", false),
        (
            "INSERT INTO slots (at, issue_id, updated_at) VALUES (100, '2026-11-30', 1)",
            true,
        ),
        (
            "INSERT INTO deliveries (issue_id, subscriber_id, status, next_attempt_at, updated_at) \
          VALUES ('2026-11-30', 1, 'queued', 1, 1)",
            false,
        ),
    ];
    for (sql, accepted) in statements {
        let on_sqlite = sqlx::query(sql).execute(&lite).await;
        let on_postgres = sqlx::query(sql).execute(&pg).await;
        assert_eq!(on_sqlite.is_ok(), accepted, "SQLite: {sql}: {on_sqlite:?}");
        assert_eq!(
            on_postgres.is_ok(),
            accepted,
            "PostgreSQL: {sql}: {on_postgres:?}"
        );
    }

    // Ids from the identity column as from AUTOINCREMENT (a refused insert may use one up
    // on PostgreSQL, never reused either way), byte order, defaults, the trigger.
    let queries = [
        "SELECT email || ':' || status FROM subscribers ORDER BY email",
        "SELECT CAST(subscriber_id AS TEXT) || ':' || COALESCE(CAST(closed_at AS TEXT), 'open') \
         FROM web_signups",
        "SELECT state FROM slots",
        "SELECT email FROM subscribers WHERE lower(email) = 'émile@example.org'",
    ];
    for sql in queries {
        let on_sqlite: Vec<String> = sqlx::query_scalar(sql).fetch_all(&lite).await.unwrap();
        let on_postgres: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pg).await.unwrap();
        assert_eq!(
            on_sqlite, on_postgres,
            "{sql} (SQLite left, PostgreSQL right)"
        );
    }
    let first: i64 = sqlx::query_scalar("SELECT min(id) FROM subscribers")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(first, 1, "PostgreSQL's first identity id");
    pg.close().await;
    lite.close().await;
}
