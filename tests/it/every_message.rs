//! Every kind of message gazette sends (issue, proof, held notice, unsubscribe notice,
//! sign-up confirmation), made through the real code paths, is well-formed by Python's
//! parser and carries a DKIM signature dkimpy accepts when a key is configured.

use crate::support::dkim::{rsa_key, verify};
use crate::support::judges::python_parse;
use crate::support::{
    TempDir, add_active, copy_sections, describe, fixture, gazette, write_config,
};
use crate::web::TestWeb;
use chrono::{TimeZone, Utc};
use gazette::app::Context;
use gazette::app::daemon::scheduler as new_scheduler;
use gazette::domain::TokenPurpose;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `[dkim]` settings for a fresh key in `dir`, and the DNS answers that publish it.
fn dkim(dir: &Path) -> (Vec<(&'static str, String)>, BTreeMap<String, String>) {
    let key = rsa_key(dir, 2048);
    let settings = vec![
        ("dkim.domain", "\"example.org\"".to_owned()),
        ("dkim.selector", "\"news\"".to_owned()),
        (
            "dkim.private_key_file",
            format!("\"{}\"", key.file.display()),
        ),
    ];
    let records = BTreeMap::from([("news._domainkey.example.org".to_owned(), key.record)]);
    (settings, records)
}

fn overrides<'a>(
    dkim: &'a [(&'static str, String)],
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    dkim.iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(more.iter().copied())
        .collect()
}

/// Every message file under `dir`, at any depth.
fn walk(dir: &Path) -> Vec<PathBuf> {
    crate::support::walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect()
}

/// The checks every message passes; returns its decoded text parts.
fn judge(what: &str, bytes: &[u8], records: &BTreeMap<String, String>) -> Vec<String> {
    let parsed = python_parse(bytes);
    let text = String::from_utf8_lossy(bytes);
    assert!(
        parsed.defects.is_empty(),
        "{what}: {:?}\n{text}",
        parsed.defects
    );
    let id = parsed.message_id.as_deref().unwrap_or_default();
    assert!(
        id.ends_with("@example.org>"),
        "{what}: Message-ID {id:?}\n{text}"
    );
    assert!(parsed.date.is_some(), "{what}: no Date");
    assert_eq!(
        parsed.mime_version.as_deref(),
        Some("1.0"),
        "{what}\n{text}"
    );
    assert!(!parsed.charsets.is_empty(), "{what}: no text part");
    for charset in &parsed.charsets {
        assert_eq!(charset, "utf-8", "{what}\n{text}");
    }
    assert_eq!(verify(bytes, records), [true], "{what}: DKIM\n{text}");
    parsed.texts
}

fn header<'a>(bytes: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(bytes).unwrap();
    let head = text.split("\r\n\r\n").next().unwrap();
    head.split("\r\n")
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[tokio::test]
async fn the_issue_the_proof_and_a_held_notice_are_well_formed_and_signed() {
    let work = TempDir::new("every-daemon");
    let (keys, records) = dkim(work.path());
    let sections = work.path().join("sections");
    copy_sections(&fixture("2021-09"), &sections);
    let config = write_config(
        work.path(),
        &overrides(
            &keys,
            &[
                ("schedule.send", "\"0 10 1 * *\""),
                ("schedule.timezone", "\"UTC\""),
                ("schedule.hold_recheck", "\"10m\""),
            ],
        ),
    );
    let ctx = Context::from_config(&config).unwrap();
    let store = ctx.open_store().await.unwrap();
    add_active(&store, "reader@example.org").await;
    let scheduler = new_scheduler(&ctx, store.clone());
    let outbox = work.path().join("outbox");

    // The proof, a day ahead.
    scheduler
        .try_once(Utc.with_ymd_and_hms(2021, 8, 31, 10, 0, 0).unwrap())
        .await
        .unwrap();
    let proofs = walk(&outbox.join("editors/proof"));
    assert_eq!(proofs.len(), 1, "{proofs:?}");
    let proof = std::fs::read(&proofs[0]).unwrap();
    judge("proof", &proof, &records);
    assert_eq!(header(&proof, "Auto-Submitted"), Some("auto-generated"));

    // A held issue: the introduction is missing and a file with an accented name has
    // front matter that does not parse.
    std::fs::remove_file(sections.join("introduction.md")).unwrap();
    std::fs::write(
        sections.join("café.md"),
        "---\ntitle: [never closed\n---\nText.\n",
    )
    .unwrap();
    crate::support::age_file(&sections.join("café.md"));
    scheduler
        .try_once(Utc.with_ymd_and_hms(2021, 9, 1, 10, 0, 0).unwrap())
        .await
        .unwrap();
    let held = walk(&outbox.join("editors/held"));
    assert_eq!(held.len(), 1, "{held:?}");
    let held = std::fs::read(&held[0]).unwrap();
    let texts = judge("held notice", &held, &records);
    assert!(texts[0].contains("café.md"), "{}", texts[0]);
    assert_eq!(header(&held, "Auto-Submitted"), Some("auto-generated"));

    // Fixed: the issue goes out.
    std::fs::remove_file(sections.join("café.md")).unwrap();
    copy_sections(&fixture("2021-09"), &sections);
    scheduler
        .try_once(Utc.with_ymd_and_hms(2021, 9, 1, 10, 10, 0).unwrap())
        .await
        .unwrap();
    let mut worker = gazette::app::delivery::delivery_worker(&ctx, store.clone()).unwrap();
    worker
        .deliver_due(&gazette::domain::SystemClock, |_| {})
        .await
        .unwrap();
    let issues: Vec<_> = walk(&outbox)
        .into_iter()
        .filter(|p| !p.starts_with(outbox.join("editors")))
        .collect();
    assert_eq!(issues.len(), 1, "{issues:?}");
    let issue = std::fs::read(&issues[0]).unwrap();
    judge("issue", &issue, &records);
    assert_eq!(header(&issue, "Auto-Submitted"), None);
}

#[tokio::test]
async fn preview_writes_a_signed_issue() {
    let work = TempDir::new("every-preview");
    let (keys, records) = dkim(work.path());
    copy_sections(&fixture("2021-09"), &work.path().join("sections"));
    let config = write_config(work.path(), &overrides(&keys, &[]));
    let out_dir = work.path().join("preview");
    let out = gazette(&[
        "--config",
        config.to_str().unwrap(),
        "preview",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let eml =
        std::fs::read(out_dir.join("issue.eml")).unwrap_or_else(|_| panic!("{}", describe(&out)));
    judge("preview", &eml, &records);
}

#[tokio::test]
async fn an_unsubscribe_notice_is_well_formed_and_signed() {
    let work = TempDir::new("every-notice");
    let (keys, records) = dkim(work.path());
    let config = write_config(work.path(), &overrides(&keys, &[]));
    let ctx = Context::from_config(&config).unwrap();
    let store = ctx.open_store().await.unwrap();
    let alice = add_active(&store, "alice@example.net").await;
    let token = ctx.tokens.sign(TokenPurpose::Unsubscribe, alice);
    let new = work.path().join("inbox/new");
    std::fs::create_dir_all(&new).unwrap();
    std::fs::write(
        new.join("1700000000.M1P1.host"),
        format!(
            "From: alice@example.net\r\nTo: newsletter@example.org\r\nSubject: UNSUBSCRIBE {token}\r\nMessage-ID: <u-1@example.net>\r\n\r\n"
        ),
    )
    .unwrap();
    let out = gazette(&["--config", config.to_str().unwrap(), "inbox", "--once"]);
    assert!(out.status.success(), "{}", describe(&out));
    let notices = walk(&work.path().join("outbox/notices"));
    assert_eq!(notices.len(), 1, "{notices:?} {}", describe(&out));
    let notice = std::fs::read(&notices[0]).unwrap();
    judge("unsubscribe notice", &notice, &records);
    assert_eq!(header(&notice, "Auto-Submitted"), Some("auto-replied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_is_well_formed_and_signed() {
    let keydir = TempDir::new("every-confirm-key");
    let (keys, records) = dkim(keydir.path());
    let web = TestWeb::start(&overrides(&keys, &[])).await;
    let r = web.post("/subscribe", "email=carol%40example.org").await;
    assert_eq!(r.status, 200);
    let messages = web.wait_for_messages("carol@example.org", 1).await;
    let bytes = messages[0].as_bytes();
    judge("confirmation", bytes, &records);
    assert_eq!(header(bytes, "Auto-Submitted"), Some("auto-generated"));
    web.stop().await;
}

/// Mail that is not an issue never takes another message's place in the outbox: two
/// confirmations to one address on one day are two files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_confirmations_on_one_day_are_two_files() {
    let web = TestWeb::start(&[]).await;
    for _ in 0..2 {
        let r = web.post("/subscribe", "email=dora%40example.org").await;
        assert_eq!(r.status, 200);
    }
    let messages = web.wait_for_messages("dora@example.org", 2).await;
    let ids: std::collections::BTreeSet<_> = messages
        .iter()
        .map(|m| header(m.as_bytes(), "Message-ID").map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 2, "{messages:?}");
    web.stop().await;
}
