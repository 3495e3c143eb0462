//! What editors and operators meet first: front matter written for other tools, files
//! saved a moment ago, oversized or odd section files, settings and schedule mistakes,
//! and the read-only commands.

use crate::support::{self, TempDir, copy_sections, describe, fixture, write_config};
use chrono::{TimeZone, Utc};
use gazette::app::Context;
use gazette::compose::{self, Issue};
use gazette::domain::{IssueId, SendSchedule};
use gazette::settings::{Settings, parse_duration};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// A working folder with the September 2021 sections and settings with `overrides`.
fn setup(label: &str, overrides: &[(&str, &str)]) -> (TempDir, PathBuf) {
    let work = TempDir::new(label);
    copy_sections(&fixture("2021-09"), &work.path().join("sections"));
    let config = write_config(work.path(), overrides);
    (work, config)
}

/// Composes the sections folder of `config` now.
fn compose_folder(config: &Path) -> Issue {
    let ctx = Context::from_config(config).unwrap();
    compose::compose(
        &ctx.settings.content.sections_dir,
        IssueId::parse("2021-09-01").unwrap(),
        &ctx.compose_options(),
        std::time::SystemTime::now(),
    )
    .unwrap()
}

/// Writes a section file, aged so it is not taken for one still being written.
fn write_section(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let path = dir.join("sections").join(name);
    std::fs::write(&path, text).unwrap();
    support::age_file(&path);
    path
}

fn run(config: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    support::gazette(&all)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

// ---- Editors: front matter -------------------------------------------------------------

#[test]
fn yaml_front_matter_is_read_with_the_same_keys_as_toml() {
    let (work, config) = setup("yaml", &[]);
    write_section(
        work.path(),
        "introduction.md",
        b"---\ntitle: Chair's introduction\nauthor: Josh\norder: 3\n---\nWelcome to the issue.\n",
    );
    let issue = compose_folder(&config);
    let intro = issue
        .sections
        .iter()
        .find(|s| s.file_name == "introduction.md")
        .unwrap();
    assert_eq!(intro.title, "Chair's introduction");
    assert_eq!(intro.author.as_deref(), Some("Josh"));
    assert_eq!(intro.order, 3);
    assert_eq!(intro.body.trim(), "Welcome to the issue.");
    assert!(issue.is_sendable(), "{:?}", issue.diagnostics);
}

#[test]
fn yaml_front_matter_that_cannot_be_read_is_an_error_never_published() {
    let (work, config) = setup("yaml-bad", &[]);
    let path = write_section(
        work.path(),
        "20-deep-dives.md",
        b"---\ntitle: Deep dives\nauthor: [unclosed\n---\nBody.\n",
    );
    let issue = compose_folder(&config);
    assert!(!issue.is_sendable());
    let error = issue.errors().next().unwrap();
    assert_eq!(error.file.as_deref(), Some(path.as_path()));
    assert!(error.line.is_some_and(|l| (2..=4).contains(&l)), "{error}");
    assert!(
        issue
            .sections
            .iter()
            .all(|s| s.file_name != "20-deep-dives.md")
    );
}

#[test]
fn a_typo_in_a_front_matter_key_suggests_the_right_one() {
    let (work, config) = setup("typo", &[]);
    let path = write_section(
        work.path(),
        "20-deep-dives.md",
        b"+++\ntitel = \"Deep dives\"\n+++\nBody.\n",
    );
    let issue = compose_folder(&config);
    let warning = issue
        .warnings()
        .find(|d| d.file.as_deref() == Some(path.as_path()))
        .expect("a warning about the typo");
    assert_eq!(warning.line, Some(2));
    assert!(
        warning.message.contains("did you mean 'title'"),
        "{warning}"
    );
}

// ---- Editors: files saved a moment ago -------------------------------------------------

#[test]
fn check_waits_for_files_saved_a_moment_ago_instead_of_calling_them_missing() {
    let work = TempDir::new("settle-check");
    let sections = work.path().join("sections");
    std::fs::create_dir_all(&sections).unwrap();
    // Copied just now, as `git checkout var/sections` leaves them.
    for entry in std::fs::read_dir(fixture("2021-09")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), sections.join(entry.file_name())).unwrap();
    }
    let config = write_config(work.path(), &[("content.settle_time", "\"1s\"")]);
    let out = run(&config, &["check"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("waiting"), "{}", describe(&out));
    assert!(!stderr(&out).contains("missing"), "{}", describe(&out));
}

#[tokio::test]
async fn the_daemon_rechecks_unsettled_files_instead_of_holding_and_mailing_editors() {
    // Every file is younger than the settle time.
    let (work, config) = setup(
        "settle-daemon",
        &[
            ("schedule.send", "\"0 10 1 * *\""),
            ("schedule.timezone", "\"UTC\""),
            ("schedule.proof_lead", "\"0s\""),
            ("content.settle_time", "\"2h\""),
        ],
    );
    let ctx = Context::from_config(&config).unwrap();
    let store = ctx.open_store().await.unwrap();
    let scheduler = gazette::app::daemon::scheduler(&ctx, store.clone());
    let slot = Utc.with_ymd_and_hms(2021, 9, 1, 10, 0, 0).unwrap();
    scheduler.try_once(slot).await.unwrap();
    let editors = work.path().join("outbox/editors");
    assert!(
        !editors.exists(),
        "no notice or proof for files still being written: {:?}",
        std::fs::read_dir(&editors).map(|d| d.count())
    );
    let slots = store.recent_slots(5, chrono::Utc::now()).await.unwrap();
    assert!(
        slots.iter().all(|s| s.state != "held"),
        "{:?}",
        slots.iter().map(|s| &s.state).collect::<Vec<_>>()
    );
    assert_eq!(store.latest_issue().await.unwrap(), None);
    // Once the files have settled, the next step composes and sends as usual.
    for entry in std::fs::read_dir(work.path().join("sections")).unwrap() {
        let file = std::fs::File::options()
            .write(true)
            .open(entry.unwrap().path())
            .unwrap();
        file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 3600))
            .unwrap();
    }
    scheduler
        .try_once(slot + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(
        store.latest_issue().await.unwrap(),
        Some(IssueId::parse("2021-09-01").unwrap())
    );
    assert!(!editors.join("held").exists());
}

// ---- Size limits and control characters --------------------------------------------------

#[test]
fn a_section_over_the_size_limit_is_refused_with_its_name() {
    let (work, config) = setup("big-section", &[]);
    let mut text = b"# Huge\n\n".to_vec();
    while text.len() < 1_100_000 {
        text.extend_from_slice(b"All work and no play makes Jack a dull boy.\n");
    }
    let path = write_section(work.path(), "20-huge.md", &text);
    let issue = compose_folder(&config);
    assert!(!issue.is_sendable());
    assert!(
        issue
            .errors()
            .any(|d| d.file.as_deref() == Some(path.as_path()) && d.message.contains("1 MB")),
        "{:?}",
        issue.diagnostics
    );
    let out = run(&config, &["check"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("20-huge.md"), "{}", describe(&out));
}

#[test]
fn an_issue_over_the_message_size_limit_is_refused_by_check_and_send_now() {
    let (work, config) = setup("big-message", &[("smtp.max_message_size", "\"20KB\"")]);
    let out = run(&config, &["check"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("smtp.max_message_size"),
        "{}",
        describe(&out)
    );
    let out = run(&config, &["send-now", "--date", "2021-09-01"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(!work.path().join("outbox/2021-09-01").exists());
}

#[test]
fn control_characters_are_a_warning_with_their_line_and_are_not_sent() {
    let (work, config) = setup("controls", &[]);
    let path = write_section(
        work.path(),
        "20-deep-dives.md",
        "# Deep\u{202e}dives\n\nFine line.\nA NUL\0 here and an ESC\u{1b}[31m there.\nIsolate \u{2066}x\u{2069}.\n"
            .as_bytes(),
    );
    let issue = compose_folder(&config);
    let lines: Vec<Option<usize>> = issue
        .warnings()
        .filter(|d| d.file.as_deref() == Some(path.as_path()))
        .map(|d| d.line)
        .collect();
    assert_eq!(
        lines,
        vec![Some(1), Some(4), Some(5)],
        "{:?}",
        issue.diagnostics
    );
    let section = issue
        .sections
        .iter()
        .find(|s| s.file_name == "20-deep-dives.md")
        .unwrap();
    let bad = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    assert!(!section.title.contains(bad), "{:?}", section.title);
    assert!(!section.body.contains(bad), "{:?}", section.body);
}

// ---- Settings and schedule errors --------------------------------------------------------

#[test]
fn a_toml_syntax_error_names_the_file_as_given_with_line_and_column_once() {
    let work = TempDir::new("bad-toml");
    let path = work.path().join("bad.toml");
    std::fs::write(&path, "[newsletter]\nname = \"x\"\nfrom = = 3\n").unwrap();
    let out = run(&path, &["check"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:3:", path.display())),
        "{}",
        describe(&out)
    );
    assert_eq!(err.matches("invalid string").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("../"), "{err}");
}

#[test]
fn a_config_that_is_not_a_file_says_what_it_is() {
    let work = TempDir::new("config-kind");
    let out = support::gazette(&["--config", "/dev/null", "check"]);
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("not found"), "{}", describe(&out));
    assert!(
        !stderr(&out).contains("does not exist"),
        "{}",
        describe(&out)
    );
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        describe(&out)
    );
    let out = support::gazette(&["--config", work.path().to_str().unwrap(), "check"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is a folder"), "{}", describe(&out));
}

fn settings_with_schedule(send: &str) -> Result<Settings, String> {
    let base = std::fs::read_to_string(support::repo_root().join("config/gazette.toml")).unwrap();
    let text = base.replace("send = \"0 10 1 * *\"", &format!("send = \"{send}\""));
    assert_ne!(text, base);
    Settings::from_toml(&text).map_err(|e| e.to_string())
}

#[test]
fn cron_errors_speak_of_the_operators_own_expression_and_field() {
    let err = settings_with_schedule("60 10 * * *").unwrap_err();
    assert!(err.contains("'60 10 * * *'"), "{err}");
    assert!(err.contains("minute"), "{err}");
    assert!(err.contains("0-59"), "{err}");
    assert!(!err.contains("0 60 10"), "{err}");
    assert!(!err.contains("less than 59"), "{err}");
    let err = settings_with_schedule("0 10 * 13 *").unwrap_err();
    assert!(err.contains("month"), "{err}");
    assert!(err.contains("1-12"), "{err}");
}

#[test]
fn day_of_month_and_weekday_together_follow_crontab() {
    // crontab(5): "0 10 1 * MON" is the 1st of the month or any Monday.
    let schedule = SendSchedule::parse("0 10 1 * MON").unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap(); // a Monday
    let next: Vec<String> = schedule
        .after(&start)
        .take(3)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .collect();
    assert_eq!(next, vec!["2026-11-23", "2026-11-30", "2026-12-01"]);
    // Six fields (seconds first) and Sunday as 7 still work.
    let schedule = SendSchedule::parse("30 0 10 * * 7").unwrap();
    let first = schedule.after(&start).next().unwrap();
    assert_eq!(
        first,
        Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 30).unwrap()
    );
}

#[test]
fn a_schedule_that_never_fires_is_an_error_at_check_and_start_up() {
    let err = settings_with_schedule("0 10 31 2 *").unwrap_err();
    assert!(err.contains("schedule.send"), "{err}");
    assert!(err.contains("never"), "{err}");
    let (_work, config) = setup("never", &[("schedule.send", "\"0 10 31 2 *\"")]);
    let out = run(&config, &["check"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("schedule.send"), "{}", describe(&out));
}

#[test]
fn durations_that_overflow_are_errors_naming_the_key() {
    assert!(parse_duration("213503982334602d").is_err());
    assert!(parse_duration("18446744073709551615s1s").is_err());
    assert!(parse_duration("1h30m").is_ok());
    let base = std::fs::read_to_string(support::repo_root().join("config/gazette.toml")).unwrap();
    let text = base.replace("proof_lead = \"24h\"", "proof_lead = \"213503982334602d\"");
    let err = Settings::from_toml(&text).unwrap_err().to_string();
    assert!(err.contains("schedule.proof_lead"), "{err}");
}

// ---- Commands ----------------------------------------------------------------------------

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let (_work, config) = setup("pipe", &[]);
    for args in [vec!["status"], vec!["subscribers", "export"], vec!["check"]] {
        let mut child = support::gazette_binary()
            .arg("--config")
            .arg(&config)
            .args(&args)
            .current_dir(support::repo_root())
            .env("GAZETTE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before gazette writes a line, as `| head -0` would.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    }
}

#[test]
fn status_without_a_store_says_so_and_creates_nothing() {
    // About a SQLite file that is missing or is not a database.
    let (work, config) = setup("status-none", &[]);
    let config = crate::support::with_sqlite_store(&config, work.path());
    let out = run(&config, &["status"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        !work.path().join("gazette.db").exists(),
        "status created the store"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no store"), "{}", describe(&out));
    // Listing and exporting do not create it either.
    for args in [["subscribers", "list"], ["subscribers", "export"]] {
        let out = run(&config, &args);
        assert!(out.status.success(), "{}", describe(&out));
        assert!(
            !work.path().join("gazette.db").exists(),
            "{args:?} created the store"
        );
    }
}

#[test]
fn status_on_an_unreadable_store_says_plainly_what_is_wrong() {
    // About a SQLite file that is missing or is not a database.
    let (work, config) = setup("status-bad", &[]);
    let config = crate::support::with_sqlite_store(&config, work.path());
    std::fs::write(
        work.path().join("gazette.db"),
        b"this is not a database, just text\n".repeat(200),
    )
    .unwrap();
    let out = run(&config, &["status"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("gazette.db"), "{err}");
    assert_eq!(
        err.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "{err}"
    );
}

#[tokio::test]
async fn status_shows_a_missed_slot_once() {
    let (_work, config) = setup("status-missed", &[]);
    let ctx = Context::from_config(&config).unwrap();
    let store = ctx.open_store().await.unwrap();
    let slot = Utc.with_ymd_and_hms(2021, 9, 1, 10, 0, 0).unwrap();
    let id = IssueId::parse("2021-09-01").unwrap();
    store
        .close_slot(
            slot,
            id,
            gazette::domain::SlotState::Missed,
            "missed: the daemon was not running in time, or a later slot superseded it",
            slot,
        )
        .await
        .unwrap();
    store.close().await;
    let out = run(&config, &["status"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("missed"), "{text}");
    assert!(!text.contains("missed: missed"), "{text}");
}

/// The README's command table: `command` → what it does.
fn readme_commands() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(support::repo_root().join("README.md")).unwrap();
    let section = readme.split("## Commands").nth(1).unwrap();
    section
        .lines()
        .skip_while(|l| !l.starts_with("| command"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            (cells[0].trim().to_owned(), cells[1].trim().to_owned())
        })
        .collect()
}

#[test]
fn every_subcommands_help_says_what_the_readme_says() {
    use clap::CommandFactory;
    let cli = gazette::app::Cli::command();
    let mut seen = 0;
    for (command, readme) in readme_commands() {
        for usage in command.split(", ") {
            let words: Vec<&str> = usage
                .trim_matches('`')
                .split_whitespace()
                .take_while(|w| {
                    !w.starts_with('-') && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                })
                .collect();
            let mut cmd = &cli;
            for word in &words {
                cmd = cmd
                    .find_subcommand(word)
                    .unwrap_or_else(|| panic!("README names `{usage}`, which gazette lacks"));
            }
            let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
            let about = about.trim_end_matches('.');
            assert!(
                readme.to_lowercase().starts_with(&about.to_lowercase()),
                "`{usage}`: --help says {about:?}, the README says {readme:?}"
            );
            seen += 1;
        }
    }
    assert!(seen >= 10, "{seen}");
    // Every subcommand is in the README.
    let mut names = Vec::new();
    for sub in cli.get_subcommands() {
        if sub.has_subcommands() {
            for inner in sub.get_subcommands() {
                names.push(format!("{} {}", sub.get_name(), inner.get_name()));
            }
        } else {
            names.push(sub.get_name().to_owned());
        }
    }
    let table: String = readme_commands().into_iter().map(|(c, _)| c).collect();
    for name in names {
        if name.ends_with(" help") || name == "help" {
            continue;
        }
        assert!(
            table.contains(&format!("`{name}")),
            "{name} is not in the README"
        );
    }
}

#[test]
fn exported_names_cannot_run_as_spreadsheet_formulas() {
    let (_work, config) = setup("formula", &[]);
    let names = [
        "=HYPERLINK(\"https://x.example\",\"x\")",
        "+1+1",
        "-2+3",
        "@SUM(A1)",
    ];
    for (i, name) in names.iter().enumerate() {
        let email = format!("reader{i}@example.org");
        let out = run(
            &config,
            &["subscribers", "add", &email, &format!("--name={name}")],
        );
        assert!(out.status.success(), "{}", describe(&out));
    }
    let out = run(&config, &["subscribers", "export"]);
    assert!(out.status.success(), "{}", describe(&out));
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let exported: Vec<String> = reader
        .records()
        .map(|r| r.unwrap().get(1).unwrap().to_owned())
        .collect();
    assert_eq!(exported.len(), names.len());
    for name in exported {
        assert!(name.starts_with('\''), "{name:?}");
    }
}

#[tokio::test]
async fn the_relays_announced_size_is_read_from_its_ehlo() {
    use crate::support::mailstack::{MailStack, SmtpSink};
    let stack = MailStack::start(&["alice"]);
    let size = gazette::send::announced_size(
        "127.0.0.1",
        stack.smtp_port(),
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    // Postfix's default message_size_limit.
    assert_eq!(size, Some(10_240_000));
    let sink = SmtpSink::start(&[]);
    let size =
        gazette::send::announced_size("127.0.0.1", sink.port(), std::time::Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(size, None, "smtp-sink announces no SIZE");
    // `check` asks the relay and finds the sample issue well within its limit.
    let (_work, config) = setup(
        "relay-size",
        &[
            ("transport.kind", "\"smtp\""),
            ("smtp.port", &stack.smtp_port().to_string()),
            ("smtp.tls", "\"none\""),
        ],
    );
    let out = run(&config, &["check"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!stderr(&out).contains("relay"), "{}", describe(&out));
}

#[test]
fn a_settings_key_that_does_not_fit_is_reported_once_with_the_file() {
    let work = TempDir::new("bad-key");
    let base = std::fs::read_to_string(support::repo_root().join("config/gazette.toml")).unwrap();
    let path = work.path().join("gazette.toml");
    std::fs::write(&path, base.replace("timeout = \"30s\"", "timout = \"30s\"")).unwrap();
    let out = run(&path, &["check"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.matches("unknown field `timout`").count(), 1, "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[tokio::test]
async fn status_reads_a_store_from_an_older_gazette() {
    let (work, config) = setup("status-old", &[]);
    // A store with only the first migration applied, as the first release left it.
    let (_, pool) = support::store_migrated_before(work.path(), "0002").await;
    pool.close().await;
    let out = run(&config, &["status"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No issue has been sent yet"),
        "{}",
        describe(&out)
    );
}
