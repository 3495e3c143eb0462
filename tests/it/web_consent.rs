//! Nothing happens to a subscription without its owner: the web secret must be a real
//! one wherever links leave this machine, coming back after an unsubscribe is a fresh
//! double opt-in, confirmation links die, the confirmation carries nothing a stranger
//! typed, one-click takes exactly the RFC 8058 body, and a client-IP header is believed
//! only from the proxies named in the settings. Real HTTP on a real port, a real SQLite
//! file, the real binary for the command line.

use crate::support::http::{self, form_encode};
use crate::support::mailstack::free_port;
use crate::support::{TempDir, describe, gazette, write_config};
use crate::web::{TestWeb, header, link_path, token_of};
use gazette::domain::TokenPurpose;
use gazette::store::SubscriberStatus;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

/// What `gazette` printed and how it ended, for a command that must stop by itself.
/// A command still running after 20 s is killed and reported as such.
fn run_to_end(config: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = crate::support::gazette_binary()
        .arg("--config")
        .arg(config)
        .args(args)
        .env("GAZETTE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gazette");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "gazette {args:?} was still running after 20 s:\n{}",
                describe(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn assert_refused_for_the_secret(code: Option<i32>, output: &str) {
    assert_ne!(code, Some(0), "{output}");
    assert!(output.contains("web.secret"), "{output}");
    assert!(output.contains("openssl rand -hex 32"), "{output}");
    assert!(output.contains("web.secret_file"), "{output}");
}

#[test]
fn the_shipped_secret_is_refused_wherever_links_leave_this_machine() {
    let dir = TempDir::new("secret-public");
    crate::support::copy_sections(
        &crate::support::fixture("2021-09"),
        &dir.path().join("sections"),
    );
    let bind = format!("\"0.0.0.0:{}\"", free_port());
    let smtp_port = free_port().to_string();
    let public = write_config(
        dir.path(),
        &[
            ("newsletter.public_url", "\"https://news.example.org\""),
            (
                "newsletter.signup_url",
                "\"https://news.example.org/subscribe\"",
            ),
            ("web.bind", &bind),
            ("transport.kind", "\"smtp\""),
            ("smtp.port", &smtp_port),
            ("smtp.tls", "\"none\""),
        ],
    );
    for command in [
        &["serve"][..],
        &["web"],
        &["send-now", "--date", "2021-09-01"],
    ] {
        let (code, output) = run_to_end(&public, command);
        assert_refused_for_the_secret(code, &output);
    }
    // Nothing was frozen or queued by the refused send-now.
    let out = gazette(&["--config", public.to_str().unwrap(), "check"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("web.secret"),
        "{}",
        describe(&out)
    );

    // A long secret with hardly any variety is as bad as the placeholder; so is a short one.
    for weak in [
        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
        "\"0f3c9a71be24d58e\"",
    ] {
        let dir = TempDir::new("secret-weak");
        let config = write_config(
            dir.path(),
            &[
                ("newsletter.public_url", "\"https://news.example.org\""),
                ("web.bind", &bind),
                ("web.secret", weak),
            ],
        );
        let (code, output) = run_to_end(&config, &["web"]);
        assert_refused_for_the_secret(code, &output);
    }

    // A secret made as the message says, through web.secret_file, is accepted.
    let dir = TempDir::new("secret-good");
    crate::support::copy_sections(
        &crate::support::fixture("2021-09"),
        &dir.path().join("sections"),
    );
    let secret_file = dir.path().join("secret");
    let made = Command::new("openssl")
        .args(["rand", "-hex", "-out"])
        .arg(&secret_file)
        .arg("32")
        .output()
        .unwrap();
    assert!(made.status.success());
    let file = format!("\"{}\"", secret_file.display());
    let config = write_config(
        dir.path(),
        &[
            ("newsletter.public_url", "\"https://news.example.org\""),
            ("web.bind", &bind),
            ("web.secret_file", &file),
        ],
    );
    // The shipped placeholder `web.secret` is still in the file: the file's key wins.
    let out = gazette(&["--config", config.to_str().unwrap(), "check"]);
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn the_loopback_demo_keeps_working_with_the_shipped_secret() {
    let dir = TempDir::new("secret-demo");
    crate::support::copy_sections(
        &crate::support::fixture("2021-09"),
        &dir.path().join("sections"),
    );
    let config = write_config(dir.path(), &[]);
    let out = gazette(&["--config", config.to_str().unwrap(), "check"]);
    assert!(out.status.success(), "{}", describe(&out));
    crate::support::send_now(&config, "2021-09-01");
}

/// Alice, active, unsubscribed with the one-click POST from her issue's link.
async fn unsubscribed_alice(web: &TestWeb) -> (i64, String) {
    let alice = web.add_active("alice@example.org").await;
    let unsubscribe = format!(
        "/unsubscribe/{}",
        web.tokens().sign(TokenPurpose::Unsubscribe, alice)
    );
    assert_eq!(web.post(&unsubscribe, ONE_CLICK).await.status, 200);
    assert_eq!(
        web.status("alice@example.org").await,
        Some(SubscriberStatus::Unsubscribed)
    );
    (alice, unsubscribe)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coming_back_from_the_unsubscribe_page_needs_the_mailbox() {
    let web = TestWeb::start(&[]).await;
    let (_, unsubscribe) = unsubscribed_alice(&web).await;
    let consent_before = web.subscriber("alice@example.org").await.unwrap().consent;

    // Anyone holding a forwarded issue can open the page and press its button.
    let page = web.get(&unsubscribe).await;
    assert_eq!(page.status, 200);
    let back = link_path(&page.text(), "resubscribe");
    assert_eq!(web.get(&back).await.status, 200);
    let pressed = web.post(&back, "").await;
    assert_eq!(pressed.status, 200, "{}", pressed.text());
    let still = web.subscriber("alice@example.org").await.unwrap();
    assert_eq!(still.status, SubscriberStatus::Unsubscribed);
    assert_eq!(still.consent, consent_before, "consent was rewritten");

    // Only the confirmation mailed to the address brings her back.
    let messages = web.wait_for_messages("alice@example.org", 1).await;
    let confirm = link_path(&messages[0], "confirm");
    let done = web.post(&confirm, "").await;
    assert_eq!(done.status, 200, "{}", done.text());
    let back_again = web.subscriber("alice@example.org").await.unwrap();
    assert_eq!(back_again.status, SubscriberStatus::Active);
    assert_eq!(back_again.consent.source.as_deref(), Some("web"));
    assert_eq!(back_again.consent.ip.as_deref(), Some("127.0.0.1"));
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_confirmation_link_cannot_undo_an_unsubscribe() {
    let web = TestWeb::start(&[]).await;
    let r = web
        .post("/subscribe", "email=bea%40example.org&name=Bea")
        .await;
    assert_eq!(r.status, 200);
    let first = web.wait_for_messages("bea@example.org", 1).await;
    let old_link = link_path(&first[0], "confirm");
    assert_eq!(web.post(&old_link, "").await.status, 200);
    let bea = web.subscriber("bea@example.org").await.unwrap();
    assert_eq!(bea.status, SubscriberStatus::Active);

    // Bea leaves; a stranger then signs her address up again, with another name.
    let unsubscribe = format!(
        "/unsubscribe/{}",
        web.tokens().sign(TokenPurpose::Unsubscribe, bea.id)
    );
    assert_eq!(web.post(&unsubscribe, ONE_CLICK).await.status, 200);
    let stranger = web
        .post(
            "/subscribe",
            &format!("email=bea%40example.org&name={}", form_encode("Mallory")),
        )
        .await;
    assert_eq!(stranger.status, 200);

    // The link from Bea's first confirmation is spent: it brings nobody back.
    let replay = web.post(&old_link, "").await;
    assert_eq!(replay.status, 410, "{}", replay.text());
    let after = web.subscriber("bea@example.org").await.unwrap();
    assert_eq!(after.status, SubscriberStatus::Unsubscribed);
    assert_eq!(after.name.as_ref().map(|n| n.as_str()), Some("Bea"));
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_issued_before_the_unsubscribe_never_works() {
    let web = TestWeb::start(&[]).await;
    let r = web.post("/subscribe", "email=gina%40example.org").await;
    assert_eq!(r.status, 200);
    let messages = web.wait_for_messages("gina@example.org", 1).await;
    let link = link_path(&messages[0], "confirm");
    assert_eq!(web.get(&link).await.status, 200);
    // Before using the link, Gina asks (by mail, say) to hear nothing from us.
    let gina = web.subscriber("gina@example.org").await.unwrap();
    web.store
        .unsubscribe(gina.id, &crate::web::cli_removal(), chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(web.get(&link).await.status, 410);
    assert_eq!(web.post(&link, "").await.status, 410);
    let after = web.subscriber("gina@example.org").await.unwrap();
    assert_eq!(after.status, SubscriberStatus::Unsubscribed);
    assert_eq!(after.consent, gina.consent);
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_confirmation_carries_nothing_the_requester_typed_but_the_address() {
    let web = TestWeb::start(&[]).await;
    let spam = "you won 1000 GBP, claim at https://prize.example.net/claim";
    let r = web
        .post(
            "/subscribe",
            &format!("email=carol%40example.org&name={}", form_encode(spam)),
        )
        .await;
    assert_eq!(r.status, 200);
    let messages = web.wait_for_messages("carol@example.org", 1).await;
    let parsed = mail_parser::MessageParser::default()
        .parse(messages[0].as_bytes())
        .unwrap();
    let to = parsed.to().unwrap().first().unwrap();
    assert_eq!(to.address(), Some("carol@example.org"));
    assert_eq!(to.name(), None, "the name went into To");
    let body = parsed.body_text(0).unwrap();
    for word in ["GBP", "prize.example.net", "1000", "won"] {
        assert!(!body.contains(word), "{word} in the confirmation:\n{body}");
        assert!(
            !messages[0].contains(word),
            "{word} in the confirmation:\n{}",
            messages[0]
        );
    }
    assert_eq!(
        web.subscriber("carol@example.org").await.unwrap().name,
        None
    );

    // Confirmed, the name is stored.
    let confirm = link_path(&messages[0], "confirm");
    assert_eq!(web.post(&confirm, "").await.status, 200);
    let carol = web.subscriber("carol@example.org").await.unwrap();
    assert_eq!(carol.name.as_ref().map(|n| n.as_str()), Some(spam));
    web.stop().await;
}

/// A multipart/form-data body with `fields`, and its Content-Type.
fn multipart(fields: &[(&str, &str)]) -> (String, String) {
    let boundary = "gazette-test-boundary";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_click_takes_exactly_the_rfc_8058_body() {
    let web = TestWeb::start(&[]).await;
    let dan = web.add_active("dan@example.org").await;
    let path = format!(
        "/unsubscribe/{}",
        web.tokens().sign(TokenPurpose::Unsubscribe, dan)
    );
    let post = |content_type: String, body: String| {
        let path = path.clone();
        let addr = web.addr;
        async move {
            http::request(
                addr,
                "POST",
                &path,
                &[("Content-Type", content_type.as_str())],
                body.as_bytes(),
            )
            .await
            .status
        }
    };
    let form = || "application/x-www-form-urlencoded".to_owned();
    for (content_type, body) in [
        multipart(&[("List-Unsubscribe", "No"), ("comment", "One-Click")]),
        multipart(&[("List-Unsubscribe", "One-Click-Not")]),
        multipart(&[("Other", "List-Unsubscribe"), ("List-Unsubscribe", "No")]),
        (form(), "List-Unsubscribe=No&comment=One-Click".to_owned()),
        (form(), "List-Unsubscribe=one-click".to_owned()),
        (form(), "X-List-Unsubscribe=One-Click".to_owned()),
        (
            form(),
            "List-Unsubscribe=One-Click&List-Unsubscribe=No".to_owned(),
        ),
    ] {
        let status = post(content_type, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            web.status("dan@example.org").await,
            Some(SubscriberStatus::Active),
            "{body}"
        );
    }
    let (content_type, body) = multipart(&[("List-Unsubscribe", "One-Click")]);
    assert_eq!(post(content_type, body).await, 200);
    assert_eq!(
        web.status("dan@example.org").await,
        Some(SubscriberStatus::Unsubscribed)
    );
    let eve = web.add_active("eve@example.org").await;
    let eve_path = format!(
        "/unsubscribe/{}",
        web.tokens().sign(TokenPurpose::Unsubscribe, eve)
    );
    assert_eq!(web.post(&eve_path, ONE_CLICK).await.status, 200);
    assert_eq!(
        web.status("eve@example.org").await,
        Some(SubscriberStatus::Unsubscribed)
    );
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_ip_header_is_believed_only_from_trusted_proxies() {
    // Our test client connects from 127.0.0.1, which is not the proxy named here.
    let web = TestWeb::start(&[
        ("web.client_ip_header", "\"X-Forwarded-For\""),
        ("web.trusted_proxies", "[\"192.0.2.10\", \"10.8.0.0/16\"]"),
    ])
    .await;
    let spoofed = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-Forwarded-For", "203.0.113.99"),
    ];
    let r = http::request(
        web.addr,
        "POST",
        "/subscribe",
        &spoofed,
        b"email=frank%40example.org",
    )
    .await;
    assert_eq!(r.status, 200);
    let message = web.wait_for_messages("frank@example.org", 1).await;
    let confirm = link_path(&message[0], "confirm");
    let r = http::request(web.addr, "POST", &confirm, &spoofed, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let frank = web.subscriber("frank@example.org").await.unwrap();
    assert_eq!(frank.consent.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        header(&message[0], "To").as_deref(),
        Some("frank@example.org")
    );
    assert!(!token_of(&confirm).is_empty());
    web.stop().await;
}

#[test]
fn trusted_proxies_are_checked() {
    let dir = TempDir::new("proxies");
    let config = write_config(dir.path(), &[("web.trusted_proxies", "[\"not-an-ip\"]")]);
    let err = gazette::settings::Settings::load(&config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("web.trusted_proxies"), "{err}");
    assert!(err.contains("not-an-ip"), "{err}");
}
