//! Unsubscribing, by whatever channel: the command line, the web (the RFC 8058 one-click
//! POST and the unsubscribe page's button) and a reply to the newsletter's mailbox each
//! record the same shape of withdrawal, and the subscriber gets no further issue. Real
//! SQLite file, the real binary for the command line and the inbox, real HTTP on a real
//! port for the web.

use crate::support::http::form_encode;
use crate::support::{TempDir, describe, freeze_small as freeze, gazette_command, write_config};
use crate::web::TestWeb;
use chrono::{DateTime, Duration, TimeZone, Utc};
use gazette::domain::{IssueId, SubscriberEmail, TokenPurpose};
use gazette::store::{
    DeliveryStatus, DeliveryUpdate, SignupOutcome, Store, SubscriberStatus, Withdrawal, Withdrawn,
};

fn run_ok(config: &std::path::Path, args: &[&str]) -> String {
    let out = gazette_command(config, args).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn id_of(store: &Store, email: &str) -> i64 {
    store
        .subscriber_by_email(&SubscriberEmail::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id
}

/// `subscribers remove` is a withdrawal of consent like any other: it is recorded with
/// its time, so `gazette doctor`'s 2-day rule sees a message sent long after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_from_the_command_line_is_a_withdrawal_the_two_day_rule_sees() {
    let dir = TempDir::new("unsub-cli-doctor");
    let config = write_config(dir.path(), &[]);
    run_ok(&config, &["subscribers", "add", "alice@example.net"]);
    run_ok(&config, &["subscribers", "add", "bob@example.net"]);
    let url = crate::support::store_url(dir.path());
    let store = Store::open(&url).await.unwrap();
    let alice = id_of(&store, "alice@example.net").await;
    let issue = freeze(&store, "2026-11-01", Utc::now() - Duration::days(1)).await;

    let before = Utc::now() - Duration::seconds(1);
    run_ok(&config, &["subscribers", "remove", "alice@example.net"]);
    let after = Utc::now() + Duration::seconds(1);

    let withdrawn = store.consent_withdrawn(alice).await.unwrap();
    let Some(Withdrawn { at, .. }) = withdrawn else {
        panic!("no withdrawal recorded for a removal from the command line");
    };
    assert!(before <= at && at <= after, "{at}");
    // The message reaches Alice three days after she left (a relay's retries): late.
    store
        .record_deliveries(&[(
            issue,
            alice,
            DeliveryUpdate::Sent {
                at: at + Duration::days(3),
            },
        )])
        .await
        .unwrap();
    let audit = store
        .unsubscribe_audit(Duration::days(2))
        .await
        .unwrap()
        .expect("an issue went out");
    assert_eq!(audit.unsubscribes_since, 1);
    assert_eq!(
        audit
            .late
            .iter()
            .map(|l| l.subscriber_id)
            .collect::<Vec<_>>(),
        [alice]
    );
    store.close().await;
}

/// A message in the newsletter's Maildir inbox, as a mail client would send it.
fn reply(inbox: &std::path::Path, name: &str, from: &str, message_id: &str) {
    let new = inbox.join("new");
    std::fs::create_dir_all(&new).unwrap();
    let text = format!(
        "From: {from}\r\nTo: newsletter@example.org\r\nSubject: Re: UNSUBSCRIBE\r\n\
         Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nPlease stop.\r\n"
    );
    std::fs::write(new.join(name), text).unwrap();
}

/// What a browser posts when the unsubscribe page's button is pressed: the form's
/// action and its hidden fields, form-encoded.
fn page_form(page: &str) -> (String, String) {
    let form = &page[page.find("<form").expect("a form on the page")..];
    let form = &form[..form.find("</form>").unwrap()];
    let attr = |tag: &str, name: &str| -> String {
        let start = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        tag[start..start + tag[start..].find('"').unwrap()].to_owned()
    };
    let action = attr(form, "action");
    let fields: Vec<String> = form
        .split("<input")
        .skip(1)
        .map(|input| {
            format!(
                "{}={}",
                form_encode(&attr(input, "name")),
                form_encode(&attr(input, "value"))
            )
        })
        .collect();
    (action, fields.join("&"))
}

/// One subscriber per channel and status: `active` ones have a queued issue, `pending`
/// ones an open sign-up request.
struct Leaver {
    email: &'static str,
    id: i64,
    request: Option<i64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_records_the_same_withdrawal_and_no_further_issue_goes_out() {
    let web = TestWeb::start(&[]).await;
    let store = &web.store;
    let t0 = Utc::now();
    let mut leavers = Vec::new();
    for email in [
        "cli@example.org",
        "one-click@example.org",
        "page@example.org",
        "reply@example.org",
    ] {
        let id = web.add_active(email).await;
        leavers.push(Leaver {
            email,
            id,
            request: None,
        });
    }
    for email in [
        "pending-cli@example.org",
        "pending-one-click@example.org",
        "pending-page@example.org",
        "pending-reply@example.org",
    ] {
        let outcome = store
            .web_signup(
                &SubscriberEmail::parse(email).unwrap(),
                None,
                "192.0.2.7",
                t0,
            )
            .await
            .unwrap();
        let SignupOutcome::Confirm {
            request_id,
            subscriber_id,
            ..
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        leavers.push(Leaver {
            email,
            id: subscriber_id,
            request: Some(request_id),
        });
    }
    let stay = web.add_active("stay@example.org").await;
    let issue = freeze(store, "2021-08-01", t0).await;
    let tokens = web.tokens();
    let before = Utc::now() - Duration::seconds(1);

    for leaver in &leavers {
        let token = tokens
            .sign(TokenPurpose::Unsubscribe, leaver.id)
            .to_string();
        let path = format!("/unsubscribe/{token}");
        match leaver.email.trim_start_matches("pending-") {
            "cli@example.org" => {
                run_ok(
                    &web.config,
                    &["subscribers", "remove", leaver.email, "--by", "ops:ada"],
                );
            }
            "one-click@example.org" => {
                // What a mail provider posts to the List-Unsubscribe URL.
                let r = web.post(&path, "List-Unsubscribe=One-Click").await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
            "page@example.org" => {
                let page = web.get(&path).await;
                assert_eq!(page.status, 200);
                let (action, body) = page_form(&page.text());
                assert_eq!(action, path);
                let r = web.post(&action, &body).await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
            "reply@example.org" => reply(
                &web.dir.path().join("inbox"),
                &format!("1700000000.{}.host", leaver.id),
                leaver.email,
                &format!("<leave-{}@client.test>", leaver.id),
            ),
            other => unreachable!("{other}"),
        }
    }
    let out = run_ok(&web.config, &["inbox", "--once"]);
    assert!(out.contains("unsubscribed 2"), "{out}");
    let after = Utc::now() + Duration::seconds(1);

    for leaver in &leavers {
        let channel = leaver.email.trim_start_matches("pending-");
        let subscriber = web.subscriber(leaver.email).await.unwrap();
        assert_eq!(
            subscriber.status,
            SubscriberStatus::Unsubscribed,
            "{channel}"
        );
        let withdrawn = store.consent_withdrawn(leaver.id).await.unwrap();
        assert_eq!(subscriber.withdrawn, withdrawn, "{}", leaver.email);
        let Withdrawn {
            at,
            source,
            evidence,
        } = withdrawn.unwrap_or_else(|| panic!("{}: no withdrawal recorded", leaver.email));
        assert!(before <= at && at <= after, "{}: {at}", leaver.email);
        let evidence = evidence.unwrap_or_else(|| panic!("{}: no evidence", leaver.email));
        let expected = match channel {
            "cli@example.org" => Withdrawal::CommandLine {
                by: "ops:ada".into(),
            },
            "one-click@example.org" => Withdrawal::OneClick {
                ip: "127.0.0.1".into(),
            },
            "page@example.org" => Withdrawal::Page {
                ip: "127.0.0.1".into(),
            },
            _ => Withdrawal::Reply {
                message: evidence.clone(),
            },
        };
        assert_eq!(source, expected.source(), "{}", leaver.email);
        if channel == "reply@example.org" {
            let id = format!("mid:<leave-{}@client.test> ", leaver.id);
            assert!(evidence.starts_with(&id), "{}: {evidence}", leaver.email);
        } else {
            assert_eq!(evidence, expected.evidence(), "{}", leaver.email);
        }
        match leaver.request {
            // The sign-up request's link dies with the withdrawal.
            Some(request) => {
                let open = store
                    .web_signup_request(request, t0 - Duration::days(1))
                    .await
                    .unwrap()
                    .unwrap()
                    .open;
                assert!(!open, "{}: the sign-up request is still open", leaver.email);
            }
            // The issue still queued for them is skipped.
            None => assert_eq!(
                store.delivery(issue, leaver.id).await.unwrap().unwrap().0,
                DeliveryStatus::Skipped,
                "{}",
                leaver.email
            ),
        }
    }

    // The export shows the record, in the same columns whatever the channel.
    let export = run_ok(&web.config, &["subscribers", "export"]);
    let mut csv = csv::Reader::from_reader(export.as_bytes());
    let header = csv.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (email, source, evidence) = (
        column("email"),
        column("withdrawn_source"),
        column("withdrawn_evidence"),
    );
    let exported: Vec<(String, String, String)> = csv
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[email].to_owned(),
                r[source].to_owned(),
                r[evidence].to_owned(),
            )
        })
        .collect();
    for leaver in &leavers {
        let record = store.consent_withdrawn(leaver.id).await.unwrap().unwrap();
        assert!(
            exported.contains(&(
                leaver.email.to_owned(),
                record.source,
                record.evidence.unwrap()
            )),
            "{}: {exported:?}",
            leaver.email
        );
    }
    assert!(exported.contains(&("stay@example.org".into(), String::new(), String::new())));

    // The next issue goes to the one who stayed, and to none of those who left.
    web.send_now("2021-09-01");
    let next = IssueId::parse("2021-09-01").unwrap();
    assert_eq!(
        store.delivery(next, stay).await.unwrap().unwrap().0,
        DeliveryStatus::Sent
    );
    for leaver in &leavers {
        assert_eq!(
            store.delivery(next, leaver.id).await.unwrap(),
            None,
            "{}",
            leaver.email
        );
        if leaver.request.is_none() {
            assert_eq!(
                store.delivery(issue, leaver.id).await.unwrap().unwrap().0,
                DeliveryStatus::Skipped,
                "{}",
                leaver.email
            );
        }
    }
    web.stop().await;
}

/// Unsubscribing twice, by any channel, keeps the first record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_withdrawal_keeps_the_first_record() {
    let dir = TempDir::new("unsub-twice");
    let config = write_config(dir.path(), &[]);
    let url = crate::support::store_url(dir.path());
    let store = Store::open(&url).await.unwrap();
    let ada = crate::support::add_active(&store, "ada@example.org").await;
    let t0 = Utc::now() - Duration::days(3);
    let page = Withdrawal::Page {
        ip: "192.0.2.1".into(),
    };
    assert_eq!(
        store.unsubscribe(ada, &page, t0).await.unwrap(),
        Some(SubscriberStatus::Active)
    );
    let first = store.consent_withdrawn(ada).await.unwrap().unwrap();
    let out = run_ok(&config, &["subscribers", "remove", "ada@example.org"]);
    assert!(out.contains("already unsubscribed"), "{out}");
    assert_eq!(store.consent_withdrawn(ada).await.unwrap().unwrap(), first);
    assert_eq!(first.source, "web:page");
    assert_eq!(first.evidence.as_deref(), Some("192.0.2.1"));
    assert_eq!(
        store.unsubscribe(ada + 1000, &page, t0).await.unwrap(),
        None,
        "nobody has this id"
    );
    store.close().await;
}

/// A bounced subscriber who asks to leave is unsubscribed: an operator's `reactivate`
/// (meant for mailboxes that work again) must not bring them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounced_subscriber_who_leaves_cannot_be_reactivated() {
    let dir = TempDir::new("unsub-bounced");
    let config = write_config(dir.path(), &[]);
    run_ok(&config, &["subscribers", "add", "bea@example.org"]);
    let url = crate::support::store_url(dir.path());
    let store = Store::open(&url).await.unwrap();
    let bea = id_of(&store, "bea@example.org").await;
    assert_eq!(
        store.record_bounce(bea, 1, Utc::now()).await.unwrap(),
        SubscriberStatus::Bounced
    );
    let one_click = Withdrawal::OneClick {
        ip: "192.0.2.1".into(),
    };
    assert_eq!(
        store
            .unsubscribe(bea, &one_click, Utc::now())
            .await
            .unwrap(),
        Some(SubscriberStatus::Bounced)
    );
    let withdrawn = store.consent_withdrawn(bea).await.unwrap().unwrap();
    assert_eq!(withdrawn.source, "web:one-click");
    let out = gazette_command(&config, &["subscribers", "reactivate", "bea@example.org"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(
        store.subscriber(bea).await.unwrap().unwrap().status,
        SubscriberStatus::Unsubscribed
    );
    store.close().await;
}

/// A store whose withdrawals were recorded in the shapes of earlier versions reads in
/// the one shape after the upgrade: replies keep their message, web records stay `web`,
/// and removals from the command line (which recorded nothing) get a record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_recorded_by_earlier_versions_read_in_the_one_shape() {
    let dir = TempDir::new("unsub-upgrade");
    let (url, pool) = crate::support::store_migrated_before(dir.path(), "0060").await;
    let t = |d| {
        Utc.with_ymd_and_hms(2026, 10, d, 9, 0, 0)
            .unwrap()
            .timestamp()
    };
    // id, email, status, updated_at, withdrawn_at, withdrawn_source
    type Row<'a> = (i64, &'a str, &'a str, i64, Option<i64>, Option<&'a str>);
    let rows: [Row; 5] = [
        (
            1,
            "reply@example.org",
            "unsubscribed",
            t(2),
            Some(t(2)),
            Some("inbox:mid:<r@client.test> content:ab12"),
        ),
        (
            2,
            "web@example.org",
            "unsubscribed",
            t(3),
            Some(t(3)),
            Some("web"),
        ),
        (3, "cli@example.org", "unsubscribed", t(4), None, None),
        (4, "bounced@example.org", "bounced", t(5), None, None),
        (5, "active@example.org", "active", t(6), None, None),
    ];
    for (id, email, status, updated, at, source) in rows {
        sqlx::query(
            "INSERT INTO subscribers (id, email, status, consent_at, consent_source, \
             bounce_count, created_at, updated_at, withdrawn_at, withdrawn_source) \
             VALUES (?1, ?2, ?3, ?4, 'cli', 0, ?4, ?5, ?6, ?7)",
        )
        .bind(id)
        .bind(email)
        .bind(status)
        .bind(t(1))
        .bind(updated)
        .bind(at)
        .bind(source)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = Store::open(&url).await.unwrap();
    let at = |d| -> DateTime<Utc> { Utc.timestamp_opt(t(d), 0).unwrap() };
    let record = |d, source: &str, evidence: Option<&str>| {
        Some(Withdrawn {
            at: at(d),
            source: source.to_owned(),
            evidence: evidence.map(str::to_owned),
        })
    };
    assert_eq!(
        store.consent_withdrawn(1).await.unwrap(),
        record(2, "reply", Some("mid:<r@client.test> content:ab12"))
    );
    assert_eq!(
        store.consent_withdrawn(2).await.unwrap(),
        record(3, "web", None)
    );
    assert_eq!(
        store.consent_withdrawn(3).await.unwrap(),
        record(4, "cli", None)
    );
    assert_eq!(store.consent_withdrawn(4).await.unwrap(), None);
    assert_eq!(store.consent_withdrawn(5).await.unwrap(), None);
    // The active one leaves now, in the one shape.
    let now = Utc::now();
    let by = Withdrawal::CommandLine { by: "ops".into() };
    store.unsubscribe(5, &by, now).await.unwrap();
    let withdrawn = store.consent_withdrawn(5).await.unwrap().unwrap();
    assert_eq!(
        (withdrawn.source.as_str(), withdrawn.evidence.as_deref()),
        ("cli", Some("ops"))
    );
    store.close().await;
}
