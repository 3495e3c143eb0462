//! `gazette doctor` against real servers: DNS answers from dnsmasq on loopback, the web
//! side on a real port, Postfix (with STARTTLS and AUTH) and smtp-sink as relays, and a
//! store on disk. Verdicts are read from the typed report.

use crate::support::dkim::{Key, ed25519_key, rsa_key};
use crate::support::dnsmasq::Dnsmasq;
use crate::support::mailstack::{self, MailStack, SmtpSink, free_port};
use crate::support::{TempDir, describe, freeze_small as freeze, gazette, write_config};
use gazette::doctor::{CheckKind, DoctorOptions, Report, TxtRecord, Verdict, examine};
use gazette::settings::Settings;
use gazette::store::{DeliveryUpdate, Store};
use std::net::SocketAddr;
use std::time::Duration;

/// The From and envelope domain of the shipped settings (`newsletter@example.org`).
const DOMAIN: &str = "example.org";
const SPF: &str = "v=spf1 a:mail.example.org ~all";
const DMARC: &str = "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.org";

/// Settings in `dir` with an RSA and an Ed25519 DKIM key for example.org.
fn dkim_settings(dir: &TempDir, rsa: &Key, ed: &Key, extra: &[(&str, &str)]) -> Settings {
    let rsa_file = format!("\"{}\"", rsa.file.display());
    let ed_file = format!("\"{}\"", ed.file.display());
    let mut overrides: Vec<(&str, &str)> = vec![
        ("dkim.domain", "\"example.org\""),
        ("dkim.selector", "\"news\""),
        ("dkim.private_key_file", &rsa_file),
        ("dkim.ed25519_selector", "\"news-ed\""),
        ("dkim.ed25519_private_key_file", &ed_file),
    ];
    overrides.extend_from_slice(extra);
    Settings::load(&write_config(dir.path(), &overrides)).expect("settings")
}

/// A folder with a fresh RSA-2048 and a fresh Ed25519 DKIM key.
struct Keys {
    dir: TempDir,
    rsa: Key,
    ed: Key,
}

impl Keys {
    fn new(label: &str) -> Self {
        let dir = TempDir::new(label);
        let rsa = rsa_key(dir.path(), 2048);
        let ed = ed25519_key(dir.path());
        Self { dir, rsa, ed }
    }

    /// Settings in the folder that sign with both keys for example.org, plus `extra`.
    fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        dkim_settings(&self.dir, &self.rsa, &self.ed, extra)
    }

    /// DNS for example.org as a good setup publishes it (both keys, SPF, DMARC), but
    /// for the records named in `left_out`.
    fn dns(&self, left_out: &[&str]) -> Dnsmasq {
        let records: Vec<(&str, &str)> = [
            ("news._domainkey.example.org", self.rsa.record.as_str()),
            ("news-ed._domainkey.example.org", self.ed.record.as_str()),
            (DOMAIN, SPF),
            ("_dmarc.example.org", DMARC),
        ]
        .into_iter()
        .filter(|(name, _)| !left_out.contains(name))
        .collect();
        Dnsmasq::start(&[DOMAIN], &records)
    }
}

async fn run(settings: &Settings, store: Option<&Store>, resolver: SocketAddr) -> Report {
    examine(
        settings,
        store,
        &DoctorOptions {
            resolver: Some(resolver),
            timeout: Duration::from_secs(3),
        },
    )
    .await
}

fn verdicts(report: &Report, kind: CheckKind) -> Vec<Verdict> {
    report.of(kind).iter().map(|c| c.verdict).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_setup_has_dkim_spf_and_dmarc_in_order() {
    let keys = Keys::new("doctor-good");
    let dns = keys.dns(&[]);
    let settings = keys.settings(&[]);
    let report = run(&settings, None, dns.addr()).await;
    let log = dns.log_text();
    assert_eq!(
        verdicts(&report, CheckKind::DkimKey),
        [Verdict::Ok, Verdict::Ok],
        "{report:#?}\n{log}"
    );
    assert!(
        report
            .of(CheckKind::DkimKey)
            .iter()
            .all(|c| c.publish.is_none())
    );
    assert_eq!(report.verdict(CheckKind::DkimAlignment), Some(Verdict::Ok));
    assert_eq!(
        report.verdict(CheckKind::Spf),
        Some(Verdict::Ok),
        "{report:#?}"
    );
    assert_eq!(
        report.verdict(CheckKind::Dmarc),
        Some(Verdict::Ok),
        "{report:#?}"
    );
    // The shipped placeholder secret and the file transport are reported too.
    assert_eq!(report.verdict(CheckKind::WebSecret), Some(Verdict::Problem));
    assert_eq!(report.verdict(CheckKind::Relay), Some(Verdict::Warning));
    // No store yet: nothing was sent, nothing to judge.
    assert_eq!(report.verdict(CheckKind::Unsubscribes), Some(Verdict::Ok));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_published_key_that_is_not_ours_is_a_problem_with_the_record_to_publish() {
    let Keys { dir, rsa, ed } = Keys::new("doctor-wrong-key");
    let other_dir = TempDir::new("doctor-other-key");
    let other = rsa_key(other_dir.path(), 2048);
    let dns = Dnsmasq::start(
        &[DOMAIN],
        &[
            ("news._domainkey.example.org", &other.record),
            ("news-ed._domainkey.example.org", &ed.record),
            (DOMAIN, SPF),
            ("_dmarc.example.org", DMARC),
        ],
    );
    let settings = dkim_settings(&dir, &rsa, &ed, &[]);
    let report = run(&settings, None, dns.addr()).await;
    let keys = report.of(CheckKind::DkimKey);
    assert_eq!(keys[0].verdict, Verdict::Problem, "{report:#?}");
    assert_eq!(
        keys[0].publish,
        Some(TxtRecord {
            name: "news._domainkey.example.org".into(),
            value: rsa.record.clone(),
        })
    );
    assert_eq!(keys[1].verdict, Verdict::Ok, "{report:#?}");
    assert!(report.has_problem());
}

/// A From domain without DMARC is a problem: since 2024 Gmail and Yahoo refuse or
/// file as spam bulk mail from domains without a DMARC record.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_dmarc_record_is_a_problem() {
    let keys = Keys::new("doctor-no-dmarc");
    let dns = keys.dns(&["_dmarc.example.org"]);
    let settings = keys.settings(&[]);
    let report = run(&settings, None, dns.addr()).await;
    let dmarc = report.of(CheckKind::Dmarc);
    assert_eq!(dmarc[0].verdict, Verdict::Problem, "{report:#?}");
    assert_eq!(
        dmarc[0].publish.as_ref().map(|r| r.name.as_str()),
        Some("_dmarc.example.org")
    );
    assert_eq!(report.verdict(CheckKind::Spf), Some(Verdict::Ok));
    assert_eq!(
        verdicts(&report, CheckKind::DkimKey),
        [Verdict::Ok, Verdict::Ok]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_spf_record_and_a_foreign_dkim_domain_are_problems() {
    let Keys { dir, rsa, ed } = Keys::new("doctor-no-spf");
    let dns = Dnsmasq::start(
        &[DOMAIN, "mailer.test"],
        &[
            ("news._domainkey.mailer.test", &rsa.record),
            ("news-ed._domainkey.mailer.test", &ed.record),
            ("_dmarc.example.org", DMARC),
        ],
    );
    let settings = dkim_settings(&dir, &rsa, &ed, &[("dkim.domain", "\"mailer.test\"")]);
    let report = run(&settings, None, dns.addr()).await;
    assert_eq!(
        verdicts(&report, CheckKind::DkimKey),
        [Verdict::Ok, Verdict::Ok]
    );
    assert_eq!(
        report.verdict(CheckKind::DkimAlignment),
        Some(Verdict::Problem)
    );
    assert_eq!(
        report.verdict(CheckKind::Spf),
        Some(Verdict::Problem),
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_dns_answer_it_says_so_and_shows_the_records_to_publish() {
    let Keys { dir, rsa, ed } = Keys::new("doctor-offline");
    let settings = dkim_settings(&dir, &rsa, &ed, &[]);
    // Nothing listens on this port.
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let report = run(&settings, None, nobody).await;
    let keys = report.of(CheckKind::DkimKey);
    assert_eq!(
        keys.iter().map(|c| c.verdict).collect::<Vec<_>>(),
        [Verdict::CouldNotCheck, Verdict::CouldNotCheck],
        "{report:#?}"
    );
    let published: Vec<TxtRecord> = keys.iter().filter_map(|c| c.publish.clone()).collect();
    assert_eq!(
        published,
        [
            TxtRecord {
                name: "news._domainkey.example.org".into(),
                value: rsa.record.clone()
            },
            TxtRecord {
                name: "news-ed._domainkey.example.org".into(),
                value: ed.record.clone()
            },
        ]
    );
    assert_eq!(report.verdict(CheckKind::Spf), Some(Verdict::CouldNotCheck));
    assert_eq!(
        report.verdict(CheckKind::Dmarc),
        Some(Verdict::CouldNotCheck)
    );
}

/// Starts gazette's web side on a real port; `public_url` is its address.
async fn start_web(
    dir: &TempDir,
) -> (
    Settings,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let public = format!("\"http://{addr}\"");
    let config = write_config(dir.path(), &[("newsletter.public_url", &public)]);
    let ctx = gazette::app::Context::from_config(&config).expect("settings");
    let state = gazette::app::web_state(&ctx).await.expect("web state");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(gazette::web::serve(state, listener, async {
        let _ = rx.await;
    }));
    (ctx.settings.clone(), tx, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_one_click_endpoint_of_the_real_web_side_answers_a_post() {
    let dir = TempDir::new("doctor-web");
    let (settings, stop, task) = start_web(&dir).await;
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let report = run(&settings, None, nobody).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    // http:// on loopback: no reader could use the links.
    assert_eq!(report.verdict(CheckKind::PublicUrl), Some(Verdict::Problem));
    assert_eq!(
        report.verdict(CheckKind::Reachable),
        Some(Verdict::Ok),
        "{report:#?}"
    );
    assert_eq!(
        report.verdict(CheckKind::OneClick),
        Some(Verdict::Ok),
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_refuses_post_or_is_down_fails_the_one_click_check() {
    // A server that serves the pages but lets only GET through, as a misconfigured proxy
    // or static host would: POST gets 405.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "home" }))
        .route(
            "/unsubscribe/{token}",
            axum::routing::get(|| async { "unsubscribe?" }),
        );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = TempDir::new("doctor-get-only");
    let public = format!("\"http://{addr}\"");
    let settings = Settings::load(&write_config(
        dir.path(),
        &[("newsletter.public_url", &public)],
    ))
    .unwrap();
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let report = run(&settings, None, nobody).await;
    server.abort();
    assert_eq!(
        report.verdict(CheckKind::Reachable),
        Some(Verdict::Ok),
        "{report:#?}"
    );
    assert_eq!(
        report.verdict(CheckKind::OneClick),
        Some(Verdict::Problem),
        "{report:#?}"
    );

    // Nothing listening at all.
    let down = format!("\"http://127.0.0.1:{}\"", free_port());
    let settings = Settings::load(&write_config(
        dir.path(),
        &[("newsletter.public_url", &down)],
    ))
    .unwrap();
    let report = run(&settings, None, nobody).await;
    assert_eq!(report.verdict(CheckKind::Reachable), Some(Verdict::Problem));
    assert_eq!(report.verdict(CheckKind::OneClick), Some(Verdict::Problem));
}

#[test]
fn the_relay_offers_starttls_and_takes_our_auth_or_refuses_a_wrong_password() {
    let stack = MailStack::start(&["news"]);
    let dir = TempDir::new("doctor-relay");
    let port = stack.smtp_port().to_string();
    let ca = format!("\"{}\"", stack.tls_ca().display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let report_for = |password: &str| {
        let password = format!("\"{password}\"");
        let settings = Settings::load(&write_config(
            dir.path(),
            &[
                ("transport.kind", "\"smtp\""),
                ("smtp.host", "\"127.0.0.1\""),
                ("smtp.port", &port),
                ("smtp.tls", "\"starttls\""),
                ("smtp.ca_file", &ca),
                ("smtp.username", "\"news\""),
                ("smtp.password", &password),
                ("smtp.timeout", "\"10s\""),
            ],
        ))
        .unwrap();
        runtime.block_on(run(&settings, None, nobody))
    };
    let good = report_for(mailstack::PASSWORD);
    assert_eq!(
        good.verdict(CheckKind::Relay),
        Some(Verdict::Ok),
        "{good:#?}\n{}",
        stack.log()
    );
    assert_eq!(
        good.verdict(CheckKind::StartTls),
        Some(Verdict::Ok),
        "{good:#?}"
    );
    assert_eq!(
        good.verdict(CheckKind::SmtpAuth),
        Some(Verdict::Ok),
        "{good:#?}"
    );

    let bad = report_for("not-the-password");
    assert_eq!(
        bad.verdict(CheckKind::StartTls),
        Some(Verdict::Ok),
        "{bad:#?}"
    );
    assert_eq!(
        bad.verdict(CheckKind::SmtpAuth),
        Some(Verdict::Problem),
        "{bad:#?}"
    );
}

#[test]
fn a_relay_without_working_starttls_is_a_problem() {
    let sink = SmtpSink::start(&[]);
    let dir = TempDir::new("doctor-sink");
    let port = sink.port().to_string();
    let settings = Settings::load(&write_config(
        dir.path(),
        &[
            ("transport.kind", "\"smtp\""),
            ("smtp.host", "\"127.0.0.1\""),
            ("smtp.port", &port),
            ("smtp.tls", "\"starttls\""),
            ("smtp.timeout", "\"5s\""),
        ],
    ))
    .unwrap();
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime.block_on(run(&settings, None, nobody));
    assert_eq!(
        report.verdict(CheckKind::Relay),
        Some(Verdict::Ok),
        "{report:#?}"
    );
    assert_eq!(
        report.verdict(CheckKind::StartTls),
        Some(Verdict::Problem),
        "{report:#?}"
    );
    // Nothing was sent while probing.
    assert_eq!(sink.received_count(), 0);

    // And a port where nothing answers.
    let closed = free_port().to_string();
    let settings = Settings::load(&write_config(
        dir.path(),
        &[
            ("transport.kind", "\"smtp\""),
            ("smtp.host", "\"127.0.0.1\""),
            ("smtp.port", &closed),
            ("smtp.timeout", "\"5s\""),
        ],
    ))
    .unwrap();
    let report = runtime.block_on(run(&settings, None, nobody));
    assert_eq!(
        report.verdict(CheckKind::Relay),
        Some(Verdict::Problem),
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unsubscribes_must_be_honoured_within_two_days() {
    use chrono::Duration as Days;
    let dir = TempDir::new("doctor-2-days");
    let settings = Settings::load(&write_config(dir.path(), &[])).unwrap();
    let store = Store::open(&settings.store.url).await.unwrap();
    let alice = crate::support::add_active(&store, "alice@example.net").await;
    let bob = crate::support::add_active(&store, "bob@example.net").await;
    let carol = crate::support::add_active(&store, "carol@example.net").await;
    let t0 = chrono::Utc::now() - Days::days(10);
    let issue = freeze(&store, "2026-11-01", t0).await;

    // Bob leaves and is still mailed a day later (retries): within the rule. Carol stays.
    let one_click = gazette::store::Withdrawal::OneClick {
        ip: "192.0.2.1".into(),
    };
    store.unsubscribe(bob, &one_click, t0).await.unwrap();
    store
        .record_deliveries(&[
            (
                issue,
                bob,
                DeliveryUpdate::Sent {
                    at: t0 + Days::days(1),
                },
            ),
            (
                issue,
                carol,
                DeliveryUpdate::Sent {
                    at: t0 + Days::hours(1),
                },
            ),
        ])
        .await
        .unwrap();
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let report = run(&settings, Some(&store), nobody).await;
    assert_eq!(
        report.verdict(CheckKind::Unsubscribes),
        Some(Verdict::Ok),
        "{report:#?}"
    );

    // Alice leaves and the message reaches her three days later: the rule is broken.
    store.unsubscribe(alice, &one_click, t0).await.unwrap();
    store
        .record_deliveries(&[(
            issue,
            alice,
            DeliveryUpdate::Sent {
                at: t0 + Days::days(3),
            },
        )])
        .await
        .unwrap();
    let report = run(&settings, Some(&store), nobody).await;
    assert_eq!(
        report.verdict(CheckKind::Unsubscribes),
        Some(Verdict::Problem),
        "{report:#?}"
    );
    let audit = store
        .unsubscribe_audit(Days::days(2))
        .await
        .unwrap()
        .expect("an issue went out");
    assert_eq!(audit.issue, issue);
    assert_eq!(
        audit
            .late
            .iter()
            .map(|l| l.subscriber_id)
            .collect::<Vec<_>>(),
        [alice]
    );
    assert_eq!(audit.unsubscribes_since, 2);
}

#[test]
fn the_command_prints_each_check_and_exits_1_on_a_problem() {
    let keys = Keys::new("doctor-cli");
    let dns = keys.dns(&["_dmarc.example.org"]);
    // Writes `gazette.toml` into the folder, for the binary to read.
    keys.settings(&[]);
    let config = keys.dir.path().join("gazette.toml");
    let resolver = dns.addr().to_string();
    let out = gazette(&[
        "--config",
        config.to_str().unwrap(),
        "doctor",
        "--resolver",
        &resolver,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // One line per check, each fix indented under its check.
    let lines: Vec<&str> = stdout.lines().collect();
    let checks = lines.iter().filter(|l| !l.starts_with(' ')).count();
    assert!(checks >= 10, "{}", describe(&out));
    let fix_lines: Vec<&&str> = lines.iter().filter(|l| l.starts_with(' ')).collect();
    assert!(!fix_lines.is_empty(), "{}", describe(&out));
    // Doctor only reads: it made no store.
    assert!(!keys.dir.path().join("gazette.db").exists());
}
