//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod chromium;
pub mod dkim;
pub mod dnsmasq;
pub mod http;
pub mod judges;
pub mod mailstack;
pub mod peak;
pub mod postgres;
pub mod prometheus;
pub mod scheduler;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("gazette-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // The PostgreSQL database standing for a store in this folder goes with it.
        let gone = lock_databases().remove(&self.0);
        drop(gone);
    }
}

/// On PostgreSQL, the database [`store_url`] gave each folder.
static DATABASES: std::sync::Mutex<BTreeMap<PathBuf, postgres::PgDatabase>> =
    std::sync::Mutex::new(BTreeMap::new());

fn lock_databases() -> std::sync::MutexGuard<'static, BTreeMap<PathBuf, postgres::PgDatabase>> {
    DATABASES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The repository root (where `config/`, `templates/` and `tests/fixtures/` are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture folder under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// Copies a folder's files (not sub-folders) into `to`, setting their modification time
/// in the past so they are not taken for files still being written.
pub fn copy_sections(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let dest = to.join(entry.file_name());
            std::fs::copy(entry.path(), &dest).unwrap();
            age_file(&dest);
        }
    }
}

/// Sets a file's modification time one hour back.
pub fn age_file(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    file.set_modified(past).unwrap();
}

/// Writes a settings file into `dir` based on the shipped `config/gazette.toml`, with
/// every path pointing inside `dir`, then `extra` TOML appended by section replacement.
pub fn write_config(dir: &Path, overrides: &[(&str, &str)]) -> PathBuf {
    let base = std::fs::read_to_string(repo_root().join("config/gazette.toml")).unwrap();
    let mut doc: toml::Table = toml::from_str(&base).unwrap();
    let d = dir.display();
    let defaults = [
        ("content.sections_dir", format!("\"{d}/sections\"")),
        ("content.archive_dir", format!("\"{d}/archive\"")),
        ("content.settle_time", "\"0s\"".to_owned()),
        ("store.url", format!("\"{}\"", store_url(dir))),
        ("transport.outbox_dir", format!("\"{d}/outbox\"")),
        ("inbox.maildir", format!("\"{d}/inbox\"")),
    ];
    for (key, value) in defaults
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(overrides.iter().copied())
    {
        let (table, field) = key.split_once('.').expect("section.key");
        let parsed: toml::Table = toml::from_str(&format!("v = {value}")).expect("a TOML value");
        doc.entry(table.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a table")
            .insert(field.to_owned(), parsed["v"].clone());
    }
    let path = dir.join("gazette.toml");
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    path
}

/// The real `gazette` binary, not started yet. Started, it is killed (SIGKILL) when the
/// thread that started it ends: a test that fails while a daemon it started runs
/// leaves no process behind (nor the descriptors it inherited, such as a build lock).
/// Start it on the test's own thread, not on one that ends before the test does.
pub fn gazette_binary() -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_gazette"));
    // SAFETY: between fork and exec the closure only calls prctl, which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// The real `gazette` binary with `--config config` and `args`, in the repository root,
/// logging warnings only; not started yet.
pub fn gazette_command(config: &Path, args: &[&str]) -> Command {
    let mut command = gazette_binary();
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .current_dir(repo_root())
        .env("GAZETTE_LOG", "warn");
    command
}

/// Runs the real `gazette` binary with `args`, in the repository root.
pub fn gazette(args: &[&str]) -> Output {
    gazette_binary()
        .args(args)
        .current_dir(repo_root())
        .env("GAZETTE_LOG", "warn")
        .output()
        .expect("run gazette")
}

/// Imports `readers` subscribers, `reader{i}@example.org` named `Reader {i}`, into the
/// store of `config` with the real `gazette subscribers import`; returns their addresses
/// in order.
pub fn import_readers(config: &Path, readers: usize) -> Vec<String> {
    let emails: Vec<String> = (0..readers)
        .map(|i| format!("reader{i}@example.org"))
        .collect();
    let mut csv = String::from("email,name\n");
    for (i, email) in emails.iter().enumerate() {
        csv.push_str(&format!("{email},Reader {i}\n"));
    }
    let people = config.with_file_name("readers.csv");
    std::fs::write(&people, csv).unwrap();
    let config = config.to_str().unwrap();
    let out = gazette(&[
        "--config",
        config,
        "subscribers",
        "import",
        people.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    emails
}

/// Runs the real `gazette send-now --date date` with `config` to its end; it must succeed.
pub fn send_now(config: &Path, date: &str) {
    let config = config.to_str().unwrap();
    let out = gazette(&["--config", config, "send-now", "--date", date]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// stdout and stderr of a run, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Which store a test binary runs its tests on: `it` on SQLite files, `it_pg` on
/// PostgreSQL databases (the same tests, see tests/it_pg/main.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The store `write_config` puts in `dir`: `dir/gazette.db`, or on PostgreSQL a fresh
/// database of the test process's cluster, the same one for every call with `dir`.
pub fn store_url(dir: &Path) -> String {
    match crate::BACKEND {
        Backend::Sqlite => format!("sqlite://{}/gazette.db", dir.display()),
        Backend::Postgres => lock_databases()
            .entry(dir.to_owned())
            .or_insert_with(postgres::database)
            .url()
            .to_owned(),
    }
}

/// Opens the store at `url`, runs `f` on it and closes it: how a test without a runtime
/// of its own reads what a run of the binary left behind (or prepares the next run).
pub fn with_store<T>(url: &str, f: impl AsyncFnOnce(&gazette::store::Store) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = gazette::store::Store::open(url)
            .await
            .expect("open the store");
        let out = f(&store).await;
        store.close().await;
        out
    })
}

/// A store `gazette.db` in `dir` as an older gazette left it: only the migrations whose
/// file names sort before `before` applied (copied to `dir/old-migrations`). Returns the
/// store's URL and a pool open on it, for the test to write old rows with raw SQL.
pub async fn store_migrated_before(dir: &Path, before: &str) -> (String, sqlx::SqlitePool) {
    let old = dir.join("old-migrations");
    std::fs::create_dir_all(&old).unwrap();
    for entry in std::fs::read_dir(repo_root().join("migrations/sqlite")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < before {
            std::fs::copy(&path, old.join(&name)).unwrap();
        }
    }
    // An older gazette's store is always a SQLite file, whichever backend the test runs.
    let url = format!("sqlite://{}/gazette.db", dir.display());
    let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
        .unwrap()
        .create_if_missing(true)
        .foreign_keys(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    (url, pool)
}

/// Adds an active subscriber straight into the store, as `gazette subscribers add` does.
pub async fn add_active(store: &gazette::store::Store, email: &str) -> i64 {
    use gazette::store::{Consent, NewSubscriber, SubscriberStatus};
    let (subscriber, _) = store
        .add_subscriber(
            &NewSubscriber {
                email: gazette::domain::SubscriberEmail::parse(email).unwrap(),
                name: None,
                status: SubscriberStatus::Active,
                consent: Consent {
                    at: Some(chrono::Utc::now()),
                    source: Some("cli".into()),
                    ip: None,
                },
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    subscriber.id
}

/// Every file under `dir` (hidden ones aside), relative to it and sorted. Mail that is
/// not an issue has a fresh, time-based name; it is listed as `<folder>/*.eml`, once per
/// file, so a test can compare where and how many without knowing the time.
pub fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for path in walk(dir) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let relative = path.strip_prefix(dir).unwrap().display().to_string();
        let fresh = name
            .strip_suffix(".eml")
            .is_some_and(|stem| stem.parse::<i64>().is_err() && !stem.is_empty());
        out.push(match fresh {
            true => match Path::new(&relative).parent() {
                Some(folder) if !folder.as_os_str().is_empty() => {
                    format!("{}/*.eml", folder.display())
                }
                _ => "*.eml".to_owned(),
            },
            false => relative,
        });
    }
    out.sort();
    out
}

/// Every file under `dir`, hidden ones too, at any depth, sorted; none if `dir` is not
/// there.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            // A temporary file may be renamed away while the folder is read.
            let Ok(kind) = e.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The text of the one message file in `dir`; fails when there is not exactly one.
pub fn only_message(dir: &Path) -> String {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(found.len(), 1, "{}: {found:?}", dir.display());
    std::fs::read_to_string(found.pop().unwrap()).unwrap()
}

/// Puts request `n`, an UNSUBSCRIBE carrying subscriber `id`'s token, into the Maildir at
/// `inbox`, as a reply would arrive.
pub fn unsubscribe_request(ctx: &gazette::app::Context, inbox: &Path, id: i64, n: u32) {
    let token = ctx
        .tokens
        .sign(gazette::domain::TokenPurpose::Unsubscribe, id);
    let text = format!(
        "From: someone@elsewhere.test\r\nTo: newsletter@example.org\r\n\
         Subject: UNSUBSCRIBE {token}\r\nMessage-ID: <request-{n}@elsewhere.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\r\n"
    );
    let new = inbox.join("new");
    std::fs::create_dir_all(&new).unwrap();
    std::fs::write(new.join(format!("17000000{n:02}.M1P1.host")), text).unwrap();
}

/// Freezes a small issue `id` ("News", one line of text) for every active subscriber at
/// `at`, straight through the store.
pub async fn freeze_small(
    store: &gazette::store::Store,
    id: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> gazette::domain::IssueId {
    use gazette::render::{Personalized, RenderedIssue};
    let issue = gazette::domain::IssueId::parse(id).unwrap();
    let rendered = RenderedIssue {
        subject: gazette::domain::HeaderText::parse("News").unwrap(),
        html: Personalized::parse("<p>hi</p>", true),
        text: Personalized::parse("hi", false),
    };
    store
        .freeze_and_snapshot(
            &gazette::store::FrozenIssue::new(issue, &rendered, vec![], at),
            at,
        )
        .await
        .unwrap();
    issue
}

/// Makes every `event` (`INSERT`, `UPDATE`, `DELETE`) on `table` of the store at `url`
/// fail, as a full disk or a broken database would, with a trigger named `name`; on
/// either backend. A test fixture written from outside, not gazette's SQL.
pub async fn refuse_writes(url: &str, name: &str, event: &str, table: &str) {
    let sql = if url.starts_with("sqlite:") {
        format!(
            "CREATE TRIGGER {name} BEFORE {event} ON {table} \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    } else {
        format!(
            "CREATE OR REPLACE FUNCTION gazette_test_refuse() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
             CREATE TRIGGER {name} BEFORE {event} ON {table} \
             FOR EACH ROW EXECUTE FUNCTION gazette_test_refuse()"
        )
    };
    run_outside(url, sql).await;
}

/// Removes the trigger `name` on `table` that [`refuse_writes`] made.
pub async fn allow_writes(url: &str, name: &str, table: &str) {
    let sql = if url.starts_with("sqlite:") {
        format!("DROP TRIGGER {name}")
    } else {
        format!("DROP TRIGGER {name} ON {table}")
    };
    run_outside(url, sql).await;
}

/// Runs `sql` on the store at `url` over a connection of its own, not gazette's.
async fn run_outside(url: &str, sql: String) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
}

/// A SQLite store in `dir`, for the tests about SQLite's own files (upgrading an old
/// store, a file that is not a database, …), whichever backend the other tests run on.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/gazette.db", dir.display())
}

/// The settings file `config` with its store moved to a SQLite file in `dir` (see
/// [`sqlite_url`]); returns its path.
pub fn with_sqlite_store(config: &Path, dir: &Path) -> PathBuf {
    let mut doc: toml::Table = toml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    doc["store"]
        .as_table_mut()
        .expect("a [store] table")
        .insert("url".into(), toml::Value::String(sqlite_url(dir)));
    std::fs::write(config, toml::to_string(&doc).unwrap()).unwrap();
    config.to_owned()
}
