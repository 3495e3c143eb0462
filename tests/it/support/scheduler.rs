//! The scheduler's tests' shared ground: a working folder with sections and readers, the
//! context and store beside it, the delivery worker run at a given time, slot states,
//! and the real `gazette serve` started and stopped.

use super::{TempDir, copy_sections, files, fixture, import_readers, write_config};
use chrono::{DateTime, TimeZone, Utc};
use gazette::app::Context;
use gazette::store::Store;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A monthly schedule at 10:00 UTC on the 1st, its proof due at the slot itself.
pub const MONTHLY: &[(&str, &str)] = &[
    ("schedule.send", "\"0 10 1 * *\""),
    ("schedule.timezone", "\"UTC\""),
    ("schedule.proof_lead", "\"0s\""),
];

/// `y-m-d h:min:00` UTC.
pub fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

/// A working folder with the September 2021 sections, `subscribers` subscribers
/// imported with the real binary, and settings with `overrides`.
pub fn setup(label: &str, subscribers: usize, overrides: &[(&str, &str)]) -> (TempDir, PathBuf) {
    let work = TempDir::new(label);
    copy_sections(&fixture("2021-09"), &work.path().join("sections"));
    let config = write_config(work.path(), overrides);
    if subscribers > 0 {
        import_readers(&config, subscribers);
    }
    (work, config)
}

/// The real `gazette --config config args…`, run to its end.
pub fn run(config: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    super::gazette(&all)
}

/// The settings in `config` loaded as the binary loads them, and their store.
pub async fn context(config: &Path) -> (Context, Store) {
    let ctx = Context::from_config(config).unwrap();
    let store = ctx.open_store().await.unwrap();
    (ctx, store)
}

/// Runs the delivery worker until nothing is due at `now`; returns how many were sent.
pub async fn deliver(ctx: &Context, store: &Store, now: DateTime<Utc>) -> u64 {
    struct At(DateTime<Utc>);
    impl gazette::domain::Clock for At {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }
    let mut worker = gazette::app::delivery::delivery_worker(ctx, store.clone()).unwrap();
    worker.deliver_due(&At(now), |_| {}).await.unwrap().sent
}

/// The state of the slot at `at`, as the store has it.
pub async fn slot_state(store: &Store, at: DateTime<Utc>) -> Option<String> {
    store
        .recent_slots(1000, utc(2999, 1, 1, 0, 0))
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.at == at)
        .map(|s| s.state)
}

/// The .eml files delivered to subscribers (not the editors' mail), by issue.
pub fn delivered(outbox: &Path) -> Vec<String> {
    files(outbox)
        .into_iter()
        .filter(|f| !f.starts_with("editors/"))
        .collect()
}

/// A daily crontab expression with seconds for `at`'s time of day (UTC).
pub fn cron_at(at: DateTime<Utc>) -> String {
    format!(
        "\"{} {} {} * * *\"",
        at.format("%-S"),
        at.format("%-M"),
        at.format("%-H")
    )
}

/// Starts the real `gazette serve` with `env` added, its log going to `log`.
pub fn spawn_serve(config: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    let mut command = super::gazette_binary();
    command
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("GAZETTE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

/// Sends SIGTERM to a child and waits for it (20 s at most).
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "gazette serve did not stop within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
