//! Several daemons on one PostgreSQL store send one issue together: three real `gazette
//! send-now` processes and 20 000 subscribers into one smtp-sink. Every subscriber gets
//! the issue once and every process sends a share; a process killed with SIGKILL in the
//! middle loses nobody, and the copies sent twice are bounded by what it had in flight.

use crate::delivery_support::smtp_config;
use crate::support::mailstack::SmtpSink;
use crate::support::{TempDir, describe, gazette_command, import_readers, postgres, with_store};
use gazette::domain::IssueId;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const READERS: usize = 20_000;
const DATE: &str = "2021-09-01";
/// SMTP connections per process; a batch is 16 rows per connection.
const POOL: usize = 4;

/// Settings for `dir` sending through `sink`, with the store on a fresh PostgreSQL
/// database, and the readers imported.
fn three_daemon_setup(
    label: &str,
    sink: &SmtpSink,
) -> (
    TempDir,
    postgres::PgDatabase,
    std::path::PathBuf,
    Vec<String>,
) {
    let dir = TempDir::new(label);
    let database = postgres::database();
    let url = format!("\"{}\"", database.url());
    let pool = POOL.to_string();
    let config = smtp_config(
        &dir,
        sink.port(),
        &[("store.url", &url), ("smtp.pool_size", &pool)],
    );
    let emails = import_readers(&config, READERS);
    (dir, database, config, emails)
}

fn send_now(config: &Path, dir: &Path, n: usize) -> Child {
    let log = std::fs::File::create(dir.join(format!("send-now-{n}.log"))).unwrap();
    gazette_command(config, &["send-now", "--date", DATE])
        .env("GAZETTE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits for `child` to exit within `limit`; its exit status, or a failure naming `log`.
fn finish(mut child: Child, limit: Duration, log: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "send-now did not finish in {limit:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn issue() -> IssueId {
    IssueId::parse(DATE).unwrap()
}

#[test]
fn three_daemons_on_postgres_send_one_issue_to_everyone_once_and_each_a_share() {
    let sink = SmtpSink::start(&[]);
    let (dir, database, config, emails) = three_daemon_setup("scale-three", &sink);
    let children: Vec<Child> = (0..3).map(|n| send_now(&config, dir.path(), n)).collect();
    for (n, child) in children.into_iter().enumerate() {
        let log = dir.path().join(format!("send-now-{n}.log"));
        let status = finish(child, Duration::from_secs(300), &log);
        assert!(
            status.success(),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
    }

    sink.wait_for_received(READERS, Duration::from_secs(60));
    let counts = sink.recipient_counts();
    assert_eq!(counts.len(), READERS, "every subscriber reached");
    for email in &emails {
        assert_eq!(counts.get(email), Some(&1), "{email} once");
    }
    let (ledger, senders) = with_store(database.url(), async |store| {
        (
            store.delivery_counts(issue()).await.unwrap(),
            store.senders(issue()).await.unwrap(),
        )
    });
    assert_eq!(
        (ledger.sent, ledger.total()),
        (READERS as u64, READERS as u64)
    );
    assert_eq!(senders.len(), 3, "every daemon sent a share: {senders:?}");
    assert!(senders.iter().all(|(_, n)| *n > 0), "{senders:?}");
    assert_eq!(senders.iter().map(|(_, n)| n).sum::<u64>(), READERS as u64);
}

#[test]
fn a_daemon_killed_mid_send_loses_nobody_and_its_duplicates_are_bounded() {
    let sink = SmtpSink::start(&[]);
    let (dir, database, config, emails) = three_daemon_setup("scale-kill", &sink);
    let mut children: Vec<Child> = (0..3).map(|n| send_now(&config, dir.path(), n)).collect();
    // Mid-send: a quarter of the issue is out.
    let deadline = Instant::now() + Duration::from_secs(120);
    while sink.received_count() < READERS / 4 {
        assert!(Instant::now() < deadline, "the send did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut killed = children.remove(0);
    killed.kill().unwrap(); // SIGKILL: no destructor, no claim released, nothing recorded
    killed.wait().unwrap();
    for (n, child) in children.into_iter().enumerate() {
        let log = dir.path().join(format!("send-now-{}.log", n + 1));
        let status = finish(child, Duration::from_secs(300), &log);
        assert!(
            status.success(),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
    }

    let ledger = with_store(database.url(), async |store| {
        store.delivery_counts(issue()).await.unwrap()
    });
    assert_eq!(
        (ledger.sent, ledger.total()),
        (READERS as u64, READERS as u64),
        "nobody lost: every row ends sent"
    );
    sink.wait_for_received(READERS, Duration::from_secs(60));
    let counts = sink.recipient_counts();
    for email in &emails {
        assert!(
            counts.get(email).is_some_and(|n| *n >= 1),
            "{email} reached"
        );
    }
    // What the killed process had handed to the relay without recording it: at most the
    // batch it was sending and the one whose results it was writing.
    let twice: usize = counts.values().map(|n| n - 1).sum();
    let batch = POOL * gazette::send::ROWS_PER_CONNECTION;
    assert!(
        twice <= 2 * batch,
        "{twice} sent twice, more than two batches of {batch}"
    );
    let out = gazette_command(&config, &["status"]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
}
