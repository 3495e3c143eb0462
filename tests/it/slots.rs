//! One issue per set of sections, slots interrupted by a crash, and the first run: the
//! real binary (`send-now`, `serve` killed with SIGKILL and started again) and the
//! scheduler step with the clock passed in, on a SQLite file on disk.

use crate::support::scheduler::{
    MONTHLY, context, cron_at, deliver, delivered, run, setup, slot_state, spawn_serve, terminate,
    utc,
};
use crate::support::{TempDir, copy_sections, describe, files, fixture, repo_root, with_store};
use chrono::{DateTime, TimeZone, Utc};
use gazette::app::Context;
use gazette::app::daemon::scheduler as new_scheduler;
use gazette::domain::IssueId;
use gazette::schedule::Action;
use gazette::store::{SlotRow, Store};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A slot every minute, in UTC.
const EVERY_MINUTE: &[(&str, &str)] = &[
    ("schedule.send", "\"* * * * *\""),
    ("schedule.timezone", "\"UTC\""),
];

/// States a slot can end in: nothing more will happen to it.
const FINAL: [&str; 5] = ["sent", "served", "superseded", "given_up", "missed"];

/// The editors' mail: proofs and notices.
fn editor_mail(outbox: &Path) -> Vec<String> {
    files(&outbox.join("editors"))
}

/// The slots the editors were told about (the file transport keeps one file per kind,
/// issue and editor, so a repeated notice would not show as a second file).
async fn slots_told(store: &Store) -> Vec<DateTime<Utc>> {
    let mut told: Vec<DateTime<Utc>> = store
        .recent_slots(1000, utc(2999, 1, 1, 0, 0))
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.editors_told_at.is_some())
        .map(|s| s.at)
        .collect();
    told.sort();
    told
}

/// Makes every freeze fail from outside (a test fixture, not gazette's SQL): the store
/// then holds exactly what a process killed between claim and freeze leaves behind.
async fn block_freezing(url: &str) {
    crate::support::refuse_writes(url, "block_freeze", "INSERT", "issues").await;
}

async fn unblock_freezing(url: &str) {
    crate::support::allow_writes(url, "block_freeze", "issues").await;
}

// ---------------------------------------------------------------------------------
// One issue per set of sections

#[tokio::test]
async fn send_now_archives_its_files_and_the_days_slot_sends_nothing_more() {
    let (work, config) = setup(
        "send-now-slot",
        3,
        &[
            ("schedule.send", "\"0 10 * * *\""),
            ("schedule.timezone", "\"UTC\""),
            ("schedule.proof_lead", "\"0s\""),
        ],
    );
    // Tomorrow's 10:00 slot is still to come when the editor runs send-now (real time).
    let tomorrow = Utc::now().date_naive() + chrono::Days::new(1);
    let day = tomorrow.format("%Y-%m-%d").to_string();
    let slot = tomorrow.and_hms_opt(10, 0, 0).unwrap().and_utc();
    let (ctx, store) = context(&config).await;
    let scheduler = new_scheduler(&ctx, store.clone());
    // The daemon has been running since midnight.
    let midnight = tomorrow.and_hms_opt(0, 0, 0).unwrap().and_utc();
    scheduler.try_once(midnight).await.unwrap();

    // An editor sends the day's issue by hand, before its 10:00 slot.
    let out = run(&config, &["send-now", "--date", &day]);
    assert!(out.status.success(), "{}", describe(&out));
    let outbox = work.path().join("outbox");
    assert_eq!(delivered(&outbox).len(), 3);
    assert!(
        files(&work.path().join("sections")).is_empty(),
        "send-now archives the files it sent"
    );
    assert_eq!(files(&work.path().join("archive").join(&day)).len(), 6);
    assert_eq!(
        slot_state(&store, slot).await.as_deref(),
        Some("served"),
        "the slot knows its date has been sent"
    );

    // The slot comes: nothing is composed again, nobody is told anything.
    let report = scheduler.try_once(slot).await.unwrap();
    assert_eq!(report.actions, vec![]);
    assert_eq!(deliver(&ctx, &store, slot).await, 0);
    // The next day's slot finds the folder empty: held, not sent again.
    let next = slot + chrono::Duration::days(1);
    scheduler.try_once(next).await.unwrap();
    assert_eq!(deliver(&ctx, &store, next).await, 0);
    assert_eq!(slot_state(&store, next).await.as_deref(), Some("held"));
    assert_eq!(
        delivered(&outbox).len(),
        3,
        "one copy per subscriber: {:?}",
        files(&outbox)
    );
    assert_eq!(
        store.latest_issue().await.unwrap(),
        Some(IssueId::parse(&day).unwrap())
    );
}

#[tokio::test]
async fn sections_identical_to_a_sent_issue_are_held_not_sent_again() {
    let (work, config) = setup("identical", 2, MONTHLY);
    let (ctx, store) = context(&config).await;
    let scheduler = new_scheduler(&ctx, store.clone());
    let september = utc(2021, 9, 1, 10, 0);
    scheduler.try_once(september).await.unwrap();
    assert_eq!(deliver(&ctx, &store, september).await, 2);
    // Someone puts the same files back (`git checkout var/sections`).
    copy_sections(&fixture("2021-09"), &work.path().join("sections"));
    let october = utc(2021, 10, 1, 10, 0);
    let report = scheduler.try_once(october).await.unwrap();
    assert_eq!(report.actions, vec![Action::Compose(october)]);
    assert_eq!(deliver(&ctx, &store, october).await, 0);
    assert_eq!(slot_state(&store, october).await.as_deref(), Some("held"));
    // Re-checked: still the same files, still held, no second notice.
    scheduler.try_once(utc(2021, 10, 1, 10, 10)).await.unwrap();
    assert_eq!(deliver(&ctx, &store, utc(2021, 10, 1, 10, 10)).await, 0);
    let outbox = work.path().join("outbox");
    assert_eq!(delivered(&outbox).len(), 2, "{:?}", files(&outbox));
    assert_eq!(editor_mail(&outbox), vec!["held/2021-10-01/*.eml"]);
    assert_eq!(slots_told(&store).await, vec![october]);
    let notice = crate::support::only_message(&outbox.join("editors/held/2021-10-01"));
    assert!(notice.contains("2021-09-01"), "{notice}");
    // `check` says so, send-now refuses them, and its dry run says so.
    let out = run(&config, &["check"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the issue 2021-09-01, which has been sent"),
        "{}",
        describe(&out)
    );
    let out = run(&config, &["send-now", "--date", "2021-10-02", "--dry-run"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let out = run(&config, &["send-now", "--date", "2021-10-02"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2021-09-01"),
        "{}",
        describe(&out)
    );
    assert_eq!(delivered(&outbox).len(), 2);
}

// ---------------------------------------------------------------------------------
// A fresh store has missed nothing

#[tokio::test]
async fn a_fresh_store_has_missed_nothing() {
    let (work, config) = setup(
        "fresh-daily",
        2,
        &[
            ("schedule.send", "\"0 10 * * *\""),
            ("schedule.timezone", "\"UTC\""),
            ("schedule.proof_lead", "\"0s\""),
            ("schedule.catch_up", "\"24h\""),
        ],
    );
    let (ctx, store) = context(&config).await;
    let scheduler = new_scheduler(&ctx, store.clone());
    // First start at 09:00: yesterday's 10:00 slot is inside the catch-up window, but the
    // daemon was never meant to send it.
    let first = scheduler.try_once(utc(2021, 9, 2, 9, 0)).await.unwrap();
    assert_eq!(first.actions, vec![]);
    assert_eq!(first.wake_at, Some(utc(2021, 9, 2, 10, 0)));
    assert_eq!(store.latest_issue().await.unwrap(), None);
    assert!(editor_mail(&work.path().join("outbox")).is_empty());
    // Today's slot is its first.
    let at_ten = scheduler.try_once(utc(2021, 9, 2, 10, 0)).await.unwrap();
    assert_eq!(
        at_ten.actions,
        vec![Action::Compose(utc(2021, 9, 2, 10, 0))]
    );

    // Every minute, started 20 s after a slot: that slot is on time, nothing is missed.
    let (work, config) = setup("fresh-minute", 1, EVERY_MINUTE);
    let (ctx, store) = context(&config).await;
    let scheduler = new_scheduler(&ctx, store.clone());
    let now = utc(2021, 9, 2, 9, 30) + chrono::Duration::seconds(20);
    let first = scheduler.try_once(now).await.unwrap();
    assert_eq!(first.actions[0], Action::Compose(utc(2021, 9, 2, 9, 30)));
    assert!(
        !first
            .actions
            .iter()
            .any(|a| matches!(a, Action::ReportMissed(_))),
        "{:?}",
        first.actions
    );
    assert!(
        editor_mail(&work.path().join("outbox")).is_empty(),
        "{:?}",
        files(&work.path().join("outbox"))
    );
}

// ---------------------------------------------------------------------------------
// A slot interrupted between claim and freeze

#[tokio::test]
async fn an_interrupted_slot_whose_files_are_gone_is_given_up_once() {
    let (work, config) = setup("interrupted-gone", 2, MONTHLY);
    let (ctx, store) = context(&config).await;
    let slot = utc(2021, 9, 1, 10, 0);
    block_freezing(&ctx.settings.store.url).await;
    new_scheduler(&ctx, store.clone())
        .try_once(slot)
        .await
        .unwrap();
    assert_eq!(slot_state(&store, slot).await.as_deref(), Some("claimed"));
    unblock_freezing(&ctx.settings.store.url).await;
    // The files are taken away meanwhile.
    std::fs::remove_dir_all(work.path().join("sections")).unwrap();
    std::fs::create_dir_all(work.path().join("sections")).unwrap();

    let restarted = new_scheduler(&ctx, store.clone());
    for minutes in [2, 3, 10] {
        restarted
            .try_once(slot + chrono::Duration::minutes(minutes))
            .await
            .unwrap();
    }
    assert_eq!(slot_state(&store, slot).await.as_deref(), Some("given_up"));
    assert_eq!(slots_told(&store).await, vec![slot]);
    let outbox = work.path().join("outbox");
    assert_eq!(
        editor_mail(&outbox),
        vec!["given-up/2021-09-01/*.eml"],
        "exactly one notice"
    );
    assert!(delivered(&outbox).is_empty());
}

/// Copies the sample sections as the repository ships them (`var/sections` at `HEAD`) to
/// `to`, dated back. The README's first command moves the working copy's into
/// `var/archive`, and a newcomer runs the tests right after it. Outside a git checkout
/// (a source archive) the folder is taken as it is.
fn copy_shipped_sample(to: &Path) {
    let root = repo_root();
    let git = |args: &[&str]| Command::new("git").arg("-C").arg(&root).args(args).output();
    let listed = match git(&["ls-tree", "--name-only", "HEAD", "var/sections/"]) {
        Ok(out) if out.status.success() && !out.stdout.is_empty() => out.stdout,
        _ => return copy_sections(&root.join("var/sections"), to),
    };
    std::fs::create_dir_all(to).unwrap();
    for path in String::from_utf8(listed).unwrap().lines() {
        let shown = git(&["show", &format!("HEAD:{path}")]).unwrap();
        assert!(
            shown.status.success(),
            "git show HEAD:{path}: {}",
            describe(&shown)
        );
        let dest = to.join(Path::new(path).file_name().unwrap());
        std::fs::write(&dest, shown.stdout).unwrap();
        crate::support::age_file(&dest);
    }
}

/// Polls `check` every 100 ms until it is true; fails with `what` and the log after
/// `secs` seconds.
fn wait_until(secs: u64, what: &str, log: &Path, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} within {secs} s; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `f` on one runtime shared by these tests: a store's connections belong to the
/// runtime that opened them (PostgreSQL's are its tasks), so a store opened in one
/// `block_on` must be used in the next on the same runtime.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        })
        .block_on(f)
}

/// `serve` claims a slot, then is killed with SIGKILL before the issue is frozen.
/// Returns the work folder, settings, the slot and its log.
fn serve_killed_between_claim_and_freeze(label: &str, subscribers: usize) -> Killed {
    let slot = Utc::now() + chrono::Duration::seconds(4);
    let slot = Utc.timestamp_opt(slot.timestamp(), 0).unwrap();
    let cron = cron_at(slot);
    let (work, config) = setup(
        label,
        subscribers,
        &[
            ("schedule.send", &cron),
            ("schedule.timezone", "\"UTC\""),
            ("schedule.proof_lead", "\"0s\""),
            ("web.bind", "\"127.0.0.1:0\""),
        ],
    );
    let url = crate::support::store_url(work.path());
    let store = block_on(async {
        block_freezing(&url).await;
        Store::open(&url).await.unwrap()
    });
    let log = work.path().join("serve-1.log");
    let mut daemon = spawn_serve(&config, &log, &[]);
    wait_until(30, "the slot was not claimed", &log, || {
        block_on(slot_state(&store, slot)).as_deref() == Some("claimed")
    });
    // SIGKILL: no destructor, nothing flushed.
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    block_on(async {
        unblock_freezing(&url).await;
        assert_eq!(store.latest_issue().await.unwrap(), None, "nothing frozen");
        store.close().await;
    });
    assert_eq!(files(&work.path().join("sections")).len(), 6);
    Killed {
        work,
        config,
        slot,
        url,
    }
}

struct Killed {
    work: TempDir,
    config: PathBuf,
    slot: DateTime<Utc>,
    url: String,
}

/// Every slot the store at `url` knows, newest first (from a test without a runtime).
fn slots_in(url: &str) -> Vec<SlotRow> {
    with_store(url, async |store| {
        store
            .recent_slots(1000, utc(2999, 1, 1, 0, 0))
            .await
            .unwrap()
    })
}

/// The slots not yet in a final state.
fn all_slots_final(url: &str) -> Vec<(DateTime<Utc>, String)> {
    slots_in(url)
        .into_iter()
        .filter(|s| !FINAL.contains(&s.state.as_str()))
        .map(|s| (s.at, s.state))
        .collect()
}

#[test]
fn serve_killed_between_claim_and_freeze_finishes_the_slot_on_restart() {
    let killed = serve_killed_between_claim_and_freeze("killed-finish", 3);
    let work = killed.work.path();
    let log = work.join("serve-2.log");
    let mut daemon = spawn_serve(&killed.config, &log, &[]);
    let issue = killed.slot.format("%Y-%m-%d").to_string();
    let outbox = work.join("outbox");
    wait_until(20, "the interrupted issue was not delivered", &log, || {
        files(&outbox.join(&issue)).len() == 3
    });
    let url = killed.url.clone();
    wait_until(20, "the slot did not reach a final state", &log, || {
        all_slots_final(&url).is_empty()
    });
    let status = terminate(&mut daemon);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(!text.contains("ERROR"), "{text}");
    assert_eq!(delivered(&outbox).len(), 3, "{:?}", files(&outbox));
    assert!(files(&work.join("sections")).is_empty());
    assert_eq!(files(&work.join("archive").join(&issue)).len(), 6);
    block_on(async {
        let store = Store::open(&killed.url).await.unwrap();
        assert_eq!(
            slot_state(&store, killed.slot).await.as_deref(),
            Some("sent")
        );
        let counts = store
            .delivery_counts(IssueId::parse(&issue).unwrap())
            .await
            .unwrap();
        assert_eq!((counts.sent, counts.total()), (3, 3));
        store.close().await;
    });
}

#[test]
fn serve_killed_between_claim_and_freeze_after_its_files_went_out_closes_the_slot_once() {
    let killed = serve_killed_between_claim_and_freeze("killed-superseded", 3);
    let work = killed.work.path();
    // While the daemon is down an editor sends the files by hand as the next day's issue.
    let tomorrow = (killed.slot + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let out = run(&killed.config, &["send-now", "--date", &tomorrow]);
    assert!(out.status.success(), "{}", describe(&out));
    let log = work.join("serve-2.log");
    let mut daemon = spawn_serve(&killed.config, &log, &[]);
    let url = killed.url.clone();
    wait_until(20, "the slot did not reach a final state", &log, || {
        all_slots_final(&url).is_empty()
    });
    // The editors are told in the step that closed the slot, and the store notes it.
    wait_until(20, "the editors were not told", &log, || {
        block_on(async {
            let store = Store::open(&url).await.unwrap();
            let told = slots_told(&store).await;
            store.close().await;
            told == vec![killed.slot]
        })
    });
    let status = terminate(&mut daemon);
    // A later scheduler step tells nobody again.
    block_on(async {
        let ctx = Context::from_config(&killed.config).unwrap();
        let store = ctx.open_store().await.unwrap();
        let told_at = async || {
            store
                .recent_slots(1000, utc(2999, 1, 1, 0, 0))
                .await
                .unwrap()
                .into_iter()
                .find(|s| s.at == killed.slot)
                .and_then(|s| s.editors_told_at)
        };
        let before = told_at().await;
        new_scheduler(&ctx, store.clone())
            .try_once(Utc::now())
            .await
            .unwrap();
        assert_eq!(told_at().await, before);
        store.close().await;
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(!text.contains("ERROR"), "{text}");
    let outbox = work.join("outbox");
    assert_eq!(
        delivered(&outbox),
        vec![
            format!("{tomorrow}/1.eml"),
            format!("{tomorrow}/2.eml"),
            format!("{tomorrow}/3.eml")
        ],
        "the content went out exactly once"
    );
    let issue = killed.slot.format("%Y-%m-%d").to_string();
    assert_eq!(
        editor_mail(&outbox),
        vec![format!("superseded/{issue}/*.eml")],
        "exactly one notice"
    );
    block_on(async {
        let store = Store::open(&killed.url).await.unwrap();
        assert_eq!(
            slot_state(&store, killed.slot).await.as_deref(),
            Some("superseded")
        );
        assert_eq!(slots_told(&store).await, vec![killed.slot]);
        store.close().await;
    });
}

// ---------------------------------------------------------------------------------
// The first run, as the README's first command does it

#[test]
fn the_first_run_sends_one_issue_to_the_sample_subscribers_without_false_alarms() {
    let work = TempDir::new("first-run");
    // A copy of the shipped config with its relative paths, run from the copy's folder.
    std::fs::create_dir_all(work.path().join("config")).unwrap();
    for name in ["gazette.toml", "sample-subscribers.csv"] {
        std::fs::copy(
            repo_root().join("config").join(name),
            work.path().join("config").join(name),
        )
        .unwrap();
    }
    copy_shipped_sample(&work.path().join("var/sections"));
    let gazette = |args: &[&str]| {
        let mut command = crate::support::gazette_binary();
        command
            .args(args)
            .current_dir(work.path())
            .env("GAZETTE__SCHEDULE__SEND", "* * * * *")
            .env("GAZETTE__WEB__BIND", "127.0.0.1:0");
        command
    };
    let out = gazette(&["subscribers", "import", "config/sample-subscribers.csv"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let log = work.path().join("serve.log");
    let mut daemon = gazette(&["serve"])
        .env("GAZETTE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let outbox = work.path().join("var/outbox");
    let url = format!("sqlite://{}/var/gazette.db", work.path().display());
    // Wait for the issue, then for one more slot after it (every minute).
    wait_until(90, "no issue delivered", &log, || {
        delivered(&outbox).len() >= 5
    });
    let first_slot = slots_in(&url).iter().map(|s| s.at).min().unwrap();
    wait_until(90, "no later slot was looked at", &log, || {
        slots_in(&url)
            .iter()
            .any(|s| s.at > first_slot && FINAL.contains(&s.state.as_str()))
    });
    let status = terminate(&mut daemon);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    let sent = delivered(&outbox);
    assert_eq!(sent.len(), 5, "one .eml per sample subscriber: {sent:?}");
    assert!(!text.contains("missed"), "{text}");
    assert!(!text.contains("WARN"), "{text}");
    assert!(
        editor_mail(&outbox).is_empty(),
        "no proof of an issue that will not go out, no notice: {:?}",
        editor_mail(&outbox)
    );
    assert!(files(&work.path().join("var/sections")).is_empty());
    assert!(
        all_slots_final(&url).is_empty(),
        "{:?}",
        all_slots_final(&url)
    );
}

#[tokio::test]
async fn an_every_minute_schedule_left_running_past_midnight_tells_the_editors_once() {
    let (work, config) = setup("past-midnight", 2, EVERY_MINUTE);
    let (ctx, store) = context(&config).await;
    let scheduler = new_scheduler(&ctx, store.clone());
    let start = utc(2021, 9, 1, 23, 58);
    for minute in 0..6 {
        let now = start + chrono::Duration::minutes(minute) + chrono::Duration::seconds(1);
        scheduler.try_once(now).await.unwrap();
        deliver(&ctx, &store, now).await;
    }
    let outbox = work.path().join("outbox");
    assert_eq!(delivered(&outbox).len(), 2, "{:?}", files(&outbox));
    // The empty folder on the new day holds its issue: the editors hear it once, not
    // once a minute, and nothing is reported missed.
    assert_eq!(editor_mail(&outbox), vec!["held/2021-09-02/*.eml"]);
    assert_eq!(
        slots_told(&store).await,
        vec![start + chrono::Duration::minutes(2)]
    );
    let state = |m: i64| slot_state(&store, start + chrono::Duration::minutes(m));
    assert_eq!(state(0).await.as_deref(), Some("sent"));
    assert_eq!(state(1).await.as_deref(), Some("served"));
    assert_eq!(state(2).await.as_deref(), Some("superseded"));
    assert_eq!(state(4).await.as_deref(), Some("superseded"));
    assert_eq!(state(5).await.as_deref(), Some("held"));
}

// ---------------------------------------------------------------------------------
// A store written before slots had final states

#[tokio::test]
async fn a_store_from_before_final_states_keeps_its_slots_and_its_history() {
    let dir = TempDir::new("slots-upgrade");
    // The schema as it was: the migrations before this change, applied for real.
    let (url, pool) = crate::support::store_migrated_before(dir.path(), "0050").await;
    let at = |d: u32| utc(2021, 9, d, 10, 0).timestamp();
    for (day, state, frozen) in [
        (1, "claimed", Some(at(1))),
        (2, "held", None),
        (3, "missed", None),
    ] {
        sqlx::query(
            "INSERT INTO slots (at, issue_id, state, frozen_at, note, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(at(day))
        .bind(format!("2021-09-0{day}"))
        .bind(state)
        .bind(frozen)
        .bind(format!("note {day}"))
        .bind(at(day))
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO issues (id, subject, html_template, text_template, message_date, frozen_at) \
         VALUES ('2021-09-01', 'September', '<p>x</p>', 'x', ?1, ?1)",
    )
    .bind(at(1))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO issue_sources (issue_id, file_name, content) VALUES ('2021-09-01', 'introduction.md', 'Hello')",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = Store::open(&url).await.unwrap();
    let states: Vec<(DateTime<Utc>, String, Option<String>)> = store
        .recent_slots(10, utc(2999, 1, 1, 0, 0))
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.at, s.state, s.note))
        .collect();
    assert_eq!(
        states,
        vec![
            (
                utc(2021, 9, 3, 10, 0),
                "missed".into(),
                Some("note 3".into())
            ),
            (utc(2021, 9, 2, 10, 0), "held".into(), Some("note 2".into())),
            (utc(2021, 9, 1, 10, 0), "sent".into(), Some("note 1".into())),
        ]
    );
    // The daemon has kept its schedule since its first slot, not since the upgrade.
    let since = store
        .schedule_since("0 10 * * *", "UTC", utc(2021, 10, 1, 0, 0))
        .await
        .unwrap();
    assert_eq!(since, utc(2021, 9, 1, 10, 0));
    // The old issue is recognised by its files.
    let sources = vec![("introduction.md".to_owned(), "Hello".to_owned())];
    assert_eq!(
        store.issue_with_sources(&sources).await.unwrap(),
        Some(IssueId::parse("2021-09-01").unwrap())
    );
    // A changed schedule starts afresh.
    let since = store
        .schedule_since("0 9 * * *", "UTC", utc(2021, 10, 2, 0, 0))
        .await
        .unwrap();
    assert_eq!(since, utc(2021, 10, 2, 0, 0));
}

#[tokio::test]
async fn the_first_run_started_again_later_that_day_reports_nothing_missed() {
    let (work, config) = setup("first-run-again", 2, EVERY_MINUTE);
    let (ctx, store) = context(&config).await;
    let first = utc(2021, 9, 2, 9, 30) + chrono::Duration::seconds(20);
    new_scheduler(&ctx, store.clone())
        .try_once(first)
        .await
        .unwrap();
    assert_eq!(deliver(&ctx, &store, first).await, 2);
    // Stopped with Ctrl-C, started again a quarter of an hour later.
    let again = utc(2021, 9, 2, 9, 45) + chrono::Duration::seconds(10);
    let report = new_scheduler(&ctx, store.clone())
        .try_once(again)
        .await
        .unwrap();
    assert!(
        !report
            .actions
            .iter()
            .any(|a| matches!(a, Action::ReportMissed(_))),
        "{:?}",
        report.actions
    );
    assert_eq!(deliver(&ctx, &store, again).await, 0);
    assert!(
        editor_mail(&work.path().join("outbox")).is_empty(),
        "{:?}",
        files(&work.path().join("outbox"))
    );
    assert!(slots_told(&store).await.is_empty());
}

#[tokio::test]
async fn a_claim_that_cannot_be_frozen_is_retried_calmly_then_given_up_once() {
    let (work, config) = setup(
        "unfreezable",
        2,
        &[
            ("schedule.send", "\"0 10 * * *\""),
            ("schedule.timezone", "\"UTC\""),
            ("schedule.proof_lead", "\"0s\""),
            ("schedule.hold_window", "\"1h\""),
            ("schedule.hold_recheck", "\"10m\""),
        ],
    );
    let (ctx, store) = context(&config).await;
    let slot = utc(2021, 9, 1, 10, 0);
    block_freezing(&ctx.settings.store.url).await;
    let scheduler = new_scheduler(&ctx, store.clone());
    scheduler.try_once(slot).await.unwrap();
    assert_eq!(slot_state(&store, slot).await.as_deref(), Some("claimed"));
    // Still failing: it is tried again at the re-check interval, and the step says when.
    let report = scheduler
        .try_once(slot + chrono::Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(
        report.wake_at,
        Some(slot + chrono::Duration::minutes(11)),
        "the next try is a re-check away"
    );
    assert_eq!(slot_state(&store, slot).await.as_deref(), Some("claimed"));
    // The hold window ends: the slot is closed for good, and the editors told once.
    scheduler
        .try_once(slot + chrono::Duration::minutes(61))
        .await
        .unwrap();
    scheduler
        .try_once(slot + chrono::Duration::minutes(70))
        .await
        .unwrap();
    assert_eq!(slot_state(&store, slot).await.as_deref(), Some("given_up"));
    assert_eq!(slots_told(&store).await, vec![slot]);
    // The next day's slot is not held back by it.
    unblock_freezing(&ctx.settings.store.url).await;
    let next = slot + chrono::Duration::days(1);
    scheduler.try_once(next).await.unwrap();
    assert_eq!(slot_state(&store, next).await.as_deref(), Some("sent"));
    assert_eq!(deliver(&ctx, &store, next).await, 2);
    assert!(files(&work.path().join("sections")).is_empty());
}
