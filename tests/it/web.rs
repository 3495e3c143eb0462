//! The web side over real HTTP on a real port: sign-up and confirmation through the
//! file transport, one-click unsubscribe with the URL from a sent message, tokens that
//! must not work, the archive, the editors' preview, metrics, and what headless
//! Chromium makes of the pages.

use crate::support::http::{self, Response, form_encode};
use crate::support::{TempDir, chromium, copy_sections, fixture, prometheus, write_config};
use gazette::app::Cli;
use gazette::domain::{SubscriberEmail, TokenKey, TokenPurpose};
use gazette::store::{Store, Subscriber, SubscriberStatus};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A running web side with its own folder, database and port.
pub(crate) struct TestWeb {
    pub(crate) addr: SocketAddr,
    pub(crate) dir: TempDir,
    pub(crate) config: PathBuf,
    /// A second handle on the server's database, to look at what it did.
    pub(crate) store: Store,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestWeb {
    /// Starts the web side on 127.0.0.1:0 with `overrides` on top of the test config;
    /// `[newsletter] public_url` points at the port it got.
    pub(crate) async fn start(overrides: &[(&str, &str)]) -> Self {
        let dir = TempDir::new("web");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let public = format!("\"http://{addr}\"");
        let signup = format!("\"http://{addr}/subscribe\"");
        let mut all: Vec<(&str, &str)> = vec![
            ("newsletter.public_url", &public),
            ("newsletter.signup_url", &signup),
        ];
        all.extend_from_slice(overrides);
        let config = write_config(dir.path(), &all);
        let cli = <Cli as clap::Parser>::try_parse_from([
            "gazette",
            "--config",
            config.to_str().unwrap(),
            "web",
        ])
        .unwrap();
        let ctx = gazette::app::Context::load(&cli).expect("settings load");
        let state = gazette::app::web_state(&ctx).await.expect("web state");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(gazette::web::serve(state, listener, async {
            let _ = rx.await;
        }));
        let store = Store::open(&ctx.settings.store.url).await.unwrap();
        Self {
            addr,
            dir,
            config,
            store,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The token key the server signs with.
    pub(crate) fn tokens(&self) -> TokenKey {
        let settings = gazette::settings::Settings::load(&self.config).unwrap();
        TokenKey::new(
            settings.web.secret.expose().as_bytes(),
            &settings.newsletter.list_id,
        )
    }

    pub(crate) async fn post(&self, path: &str, body: &str) -> Response {
        http::post_form(self.addr, path, body).await
    }

    /// The subscriber with `email`.
    pub(crate) async fn subscriber(&self, email: &str) -> Option<Subscriber> {
        self.store
            .subscriber_by_email(&SubscriberEmail::parse(email).unwrap())
            .await
            .unwrap()
    }

    pub(crate) async fn status(&self, email: &str) -> Option<SubscriberStatus> {
        self.subscriber(email).await.map(|s| s.status)
    }

    /// Adds an active subscriber the way `gazette subscribers add` does.
    pub(crate) async fn add_active(&self, email: &str) -> i64 {
        crate::support::add_active(&self.store, email).await
    }

    pub(crate) fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    /// Every `.eml` file in the outbox, as (path, text).
    pub(crate) fn outbox_messages(&self) -> Vec<(PathBuf, String)> {
        let mut found = Vec::new();
        let mut dirs = vec![self.outbox()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "eml") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    found.push((path, text));
                }
            }
        }
        found.sort();
        found
    }

    /// The messages to `to` in the outbox, waiting up to 10 s for `count` of them
    /// (confirmations are written after the response).
    pub(crate) async fn wait_for_messages(&self, to: &str, count: usize) -> Vec<String> {
        for _ in 0..100 {
            let mine: Vec<String> = self
                .outbox_messages()
                .into_iter()
                .map(|(_, text)| text)
                .filter(|text| header(text, "To").is_some_and(|v| v.contains(to)))
                .collect();
            if mine.len() >= count {
                return mine;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no {count} message(s) to {to} in the outbox: {:?}",
            self.outbox_messages()
        );
    }

    /// Waits (10 s at most) until `/metrics` shows no confirmation still being sent:
    /// everything the requests so far asked to mail has been handed to the transport.
    pub(crate) async fn wait_until_mail_handed_over(&self) {
        for _ in 0..200 {
            let metrics = prometheus::parse(&self.get("/metrics").await.text()).unwrap();
            if metrics.value("gazette_web_confirmations_in_flight", &[]) == Some(0.0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("confirmations still in flight after 10 s");
    }

    /// Runs `gazette send-now` for `date` against this server's settings, with the
    /// reference sections in the sections folder.
    pub(crate) fn send_now(&self, date: &str) {
        copy_sections(&fixture("2021-09"), &self.dir.path().join("sections"));
        crate::support::send_now(&self.config, date);
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        http::get(self.addr, path).await
    }

    /// Stops the server and waits for it to finish.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

fn assert_security_headers(r: &Response) {
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers_and_no_scripts() {
    let web = TestWeb::start(&[]).await;
    let page = web.get("/subscribe").await;
    assert_eq!(page.status, 200);
    assert_security_headers(&page);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text();
    assert!(
        html.contains("<form method=\"post\" action=\"/subscribe\">"),
        "{html}"
    );
    assert!(html.contains("name=\"email\"") && html.contains("name=\"name\""));
    assert!(html.contains("name=\"viewport\""));
    assert!(!html.to_ascii_lowercase().contains("<script"));

    let missing = web.get("/no/such/page").await;
    assert_eq!(missing.status, 404);
    assert_security_headers(&missing);

    let health = web.get("/healthz").await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert_security_headers(&health);

    let root = web.get("/").await;
    assert_eq!(root.status, 303);
    assert_eq!(root.header("location"), Some("/subscribe"));
    web.stop().await;
}

fn basic(user_password: &str) -> String {
    use std::fmt::Write as _;
    // A tiny base64 encoder, so the test does not lean on the code it tests.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = user_password.as_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = write!(
                    out,
                    "{}",
                    ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char
                );
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_is_for_editors_only() {
    // Not configured: there is no preview.
    let web = TestWeb::start(&[]).await;
    assert_eq!(web.get("/preview").await.status, 404);
    web.stop().await;

    let web = TestWeb::start(&[("web.preview_password", "\"correct horse\"")]).await;
    copy_sections(&fixture("2021-09"), &web.dir.path().join("sections"));
    let anonymous = web.get("/preview").await;
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic ")
    );
    for wrong in [
        "editor:correct",
        "editor:correct horse ",
        "admin:correct horse",
    ] {
        let r = http::request(
            web.addr,
            "GET",
            "/preview",
            &[("Authorization", &basic(wrong))],
            b"",
        )
        .await;
        assert_eq!(r.status, 401, "{wrong}");
    }
    let r = http::request(
        web.addr,
        "GET",
        "/preview",
        &[("Authorization", &basic("editor:correct horse"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_security_headers(&r);
    let html = r.text();
    assert!(html.contains("Preview of issue"), "{html}");
    assert!(html.contains("the issue is ready to send"), "{html}");
    assert!(
        html.contains("Bridge the gap") || html.contains("Bridge the Gap"),
        "{html}"
    );
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_shows_what_check_would_say() {
    let web = TestWeb::start(&[("web.preview_password", "\"pw-for-preview\"")]).await;
    let sections = web.dir.path().join("sections");
    std::fs::create_dir_all(&sections).unwrap();
    std::fs::write(
        sections.join("30-story.md"),
        "# A <story>\n\nText & more.\n",
    )
    .unwrap();
    crate::support::age_file(&sections.join("30-story.md"));
    let r = http::request(
        web.addr,
        "GET",
        "/preview",
        &[("Authorization", &basic("editor:pw-for-preview"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(html.contains("the issue would be held"), "{html}");
    assert!(html.contains("introduction"), "{html}");
    assert!(html.contains("A &lt;story&gt;"), "{html}");
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text() {
    let web = TestWeb::start(&[]).await;
    let r = web.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text();
    let exposition = prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        exposition
            .types
            .get("gazette_web_signups_total")
            .map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        exposition.value("gazette_web_signups_total", &[]),
        Some(0.0)
    );
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_signup_page() {
    let web = TestWeb::start(&[]).await;
    let shot = web.dir.path().join("subscribe.png");
    chromium::screenshot(web.dir.path(), &web.url("/subscribe"), &shot).await;
    let image = chromium::decode_png(&std::fs::read(&shot).unwrap());
    assert_eq!((image.width, image.height), (420, 900));
    let (background, ink) = image.ink();
    assert!(
        ink > 0.01,
        "the page looks blank: {:.4} of pixels inked",
        ink
    );
    assert!(image.colours() > 8, "only {} colours", image.colours());
    // The heading, the fields and the button sit in the top third on a phone.
    assert!(image.rows_with_ink(0..300, background) > 0.2);
    assert!(
        image.rows_cut_at_right(6) < 0.01,
        "the page runs off the right edge"
    );
    let dom = chromium::dump_dom(web.dir.path(), &web.url("/subscribe")).await;
    assert!(dom.contains("<h1>Subscribe</h1>"), "{dom}");
    assert!(dom.contains("type=\"email\""), "{dom}");
    web.stop().await;
}

/// A header of a raw message, unfolded.
/// An unsubscribe from the command line, for a test's set-up.
pub(crate) fn cli_removal() -> gazette::store::Withdrawal {
    gazette::store::Withdrawal::CommandLine { by: "test".into() }
}

pub(crate) fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\r\n\r\n").next().unwrap_or(message);
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(v) = value.as_mut() {
                v.push_str(line.trim_start());
                continue;
            }
        } else if value.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_owned());
        }
    }
    value
}

/// The path of the first `<http://…/prefix/…>` link in `text` (soft line breaks of
/// quoted-printable undone).
pub(crate) fn link_path(text: &str, prefix: &str) -> String {
    let text = text.replace("=\r\n", "");
    let start = text
        .find(&format!("/{prefix}/"))
        .unwrap_or_else(|| panic!("no /{prefix}/ link in {text}"));
    let end = start + text[start..].find(['>', '"', '\r', '\n', ' ']).unwrap();
    text[start..end].to_owned()
}

/// The token at the end of a link path.
pub(crate) fn token_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

/// `token` with its last hex digit changed.
pub(crate) fn altered(token: &str) -> String {
    let mut t = token.to_owned();
    let last = t.pop().unwrap();
    t.push(if last == '0' { '1' } else { '0' });
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_confirmation_and_consent() {
    let web = TestWeb::start(&[]).await;
    let r = web
        .post(
            "/subscribe",
            &format!(
                "email={}&name={}",
                form_encode("Ada@Example.ORG"),
                form_encode("Ada <Lovelace>")
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_security_headers(&r);
    assert!(r.text().contains("Check your inbox"));
    assert!(!r.text().contains("<Lovelace>"));
    let pending = web
        .subscriber("Ada@example.org")
        .await
        .expect("a pending subscriber");
    assert_eq!(pending.status, SubscriberStatus::Pending);
    assert_eq!(pending.name, None, "the name waits for the confirmation");

    let messages = web.wait_for_messages("Ada@example.org", 1).await;
    let message = &messages[0];
    assert!(
        header(message, "Subject")
            .unwrap()
            .starts_with("Confirm your subscription")
    );
    assert_eq!(
        header(message, "Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    let confirm = link_path(message, "confirm");
    assert!(
        message.contains(&format!("http://{}{confirm}", web.addr)),
        "{message}"
    );

    // The link opens a page; only its button confirms.
    let page = web.get(&confirm).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains(&format!("action=\"{confirm}\"")),
        "{}",
        page.text()
    );
    assert_eq!(
        web.status("Ada@example.org").await,
        Some(SubscriberStatus::Pending)
    );

    // A forged confirmation changes nothing.
    let forged = format!("/confirm/{}", altered(token_of(&confirm)));
    assert_eq!(web.post(&forged, "").await.status, 404);
    assert_eq!(
        web.status("Ada@example.org").await,
        Some(SubscriberStatus::Pending)
    );

    let done = web.post(&confirm, "").await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(done.text().contains("You are subscribed"));
    let active = web.subscriber("Ada@example.org").await.unwrap();
    assert_eq!(active.status, SubscriberStatus::Active);
    assert_eq!(
        active.name.as_ref().map(|n| n.as_str()),
        Some("Ada <Lovelace>")
    );
    assert_eq!(active.consent.source.as_deref(), Some("web"));
    assert_eq!(active.consent.ip.as_deref(), Some("127.0.0.1"));
    let at = active.consent.at.expect("consent time");
    assert!((chrono::Utc::now() - at).num_seconds().abs() < 60);

    // Used once: a second press says so and changes nothing.
    let again = web.post(&confirm, "").await;
    assert_eq!(again.status, 200);
    assert!(again.text().contains("You are subscribed"));
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signups_reveal_nothing_and_suppressed_addresses_need_the_confirmation() {
    let web = TestWeb::start(&[("web.confirmations_per_address_per_day", "2")]).await;
    web.add_active("known@example.org").await;
    let left = web.add_active("left@example.org").await;
    web.store
        .unsubscribe(left, &cli_removal(), chrono::Utc::now())
        .await
        .unwrap();

    let body_for = |email: &str| format!("email={}&name=", form_encode(email));
    let known = web.post("/subscribe", &body_for("known@example.org")).await;
    let new = web.post("/subscribe", &body_for("new@example.org")).await;
    let suppressed = web.post("/subscribe", &body_for("left@example.org")).await;
    assert_eq!(
        (known.status, new.status, suppressed.status),
        (200, 200, 200)
    );
    let scrub = |r: &Response, email: &str| r.text().replace(email, "ADDRESS");
    assert_eq!(
        scrub(&known, "known@example.org"),
        scrub(&new, "new@example.org")
    );
    assert_eq!(
        scrub(&known, "known@example.org"),
        scrub(&suppressed, "left@example.org")
    );

    // The suppressed address stays suppressed until its owner confirms.
    let messages = web.wait_for_messages("left@example.org", 1).await;
    assert_eq!(
        web.status("left@example.org").await,
        Some(SubscriberStatus::Unsubscribed)
    );
    web.wait_for_messages("new@example.org", 1).await;
    web.wait_until_mail_handed_over().await;
    assert!(
        web.outbox_messages()
            .iter()
            .all(|(_, m)| !m.contains("known@example.org")),
        "an active subscriber was mailed"
    );
    let confirm = link_path(&messages[0], "confirm");
    assert_eq!(web.post(&confirm, "").await.status, 200);
    assert_eq!(
        web.status("left@example.org").await,
        Some(SubscriberStatus::Active)
    );

    // Per address: the third sign-up in a day gets the same page and no message.
    let second = web.post("/subscribe", &body_for("new@example.org")).await;
    let third = web.post("/subscribe", &body_for("new@example.org")).await;
    assert_eq!((second.status, third.status), (200, 200));
    assert_eq!(
        scrub(&third, "new@example.org"),
        scrub(&new, "new@example.org")
    );
    web.wait_until_mail_handed_over().await;
    // Files are named by day and subscriber, so repeated confirmations to one
    // address overwrite each other: count what the metrics saw instead.
    let metrics = prometheus::parse(&web.get("/metrics").await.text()).unwrap();
    assert_eq!(
        metrics.value("gazette_web_signups_rate_limited_total", &[]),
        Some(1.0)
    );

    // Bad input comes back escaped, with a 400, and stores nothing.
    let bad = web
        .post(
            "/subscribe",
            &format!("email={}&name=x", form_encode("<script>alert(1)</script>")),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!bad.text().contains("<script>"));
    let line_break = web
        .post(
            "/subscribe",
            &format!("email=a%40example.org&name={}", form_encode("A\r\nBcc: x")),
        )
        .await;
    assert_eq!(line_break.status, 400);
    assert_eq!(web.status("a@example.org").await, None);
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signups_are_limited_per_client_address() {
    let web = TestWeb::start(&[("web.signups_per_ip_per_hour", "3")]).await;
    for i in 0..3 {
        let r = web
            .post("/subscribe", &format!("email=p{i}%40example.org"))
            .await;
        assert_eq!(r.status, 200);
    }
    let refused = web.post("/subscribe", "email=p9%40example.org").await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("3600"));
    assert_eq!(web.status("p9@example.org").await, None);
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_form_changes_nothing() {
    let web = TestWeb::start(&[]).await;
    let id = web.add_active("big@example.org").await;
    let padding = "x".repeat(64 * 1024);
    let r = web
        .post(
            "/subscribe",
            &format!("email=huge%40example.org&name={padding}"),
        )
        .await;
    assert_eq!(r.status, 413);
    assert_security_headers(&r);
    assert_eq!(web.status("huge@example.org").await, None);

    // Also on the one-click URL, with a genuine token.
    let tokens = gazette::domain::TokenKey::new(
        b"change-me-this-is-not-a-secret",
        &gazette::settings::Settings::load(&web.config)
            .unwrap()
            .newsletter
            .list_id,
    );
    let path = format!(
        "/unsubscribe/{}",
        tokens.sign(gazette::domain::TokenPurpose::Unsubscribe, id)
    );
    let r = web
        .post(&path, &format!("List-Unsubscribe=One-Click&pad={padding}"))
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(
        web.status("big@example.org").await,
        Some(SubscriberStatus::Active)
    );
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_click_unsubscribe_with_the_url_from_a_sent_message() {
    let web = TestWeb::start(&[]).await;
    let alice = web.add_active("alice@example.org").await;
    let bob = web.add_active("bob@example.org").await;
    web.send_now("2021-09-01");

    let message = std::fs::read_to_string(web.outbox().join(format!("2021-09-01/{alice}.eml")))
        .expect("send-now wrote alice's message");
    assert_eq!(
        header(&message, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let list_unsubscribe = header(&message, "List-Unsubscribe").unwrap();
    let url = list_unsubscribe
        .split(',')
        .map(|part| part.trim().trim_start_matches('<').trim_end_matches('>'))
        .find(|u| u.starts_with("http"))
        .unwrap_or_else(|| panic!("no http URL in {list_unsubscribe}"))
        .to_owned();
    let prefix = format!("http://{}", web.addr);
    let path = url
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{url}"))
        .to_owned();
    let token = token_of(&path).to_owned();
    let one_click = "List-Unsubscribe=One-Click";

    // A GET on the one-click URL shows a page and changes nothing.
    let page = web.get(&path).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text()
            .contains("name=\"List-Unsubscribe\" value=\"One-Click\"")
    );
    assert!(page.text().contains("alice@example.org"));
    assert_eq!(
        web.status("alice@example.org").await,
        Some(SubscriberStatus::Active)
    );

    // A forged token changes nothing.
    let forged = web
        .post(&format!("/unsubscribe/{}", altered(&token)), one_click)
        .await;
    assert_eq!(forged.status, 404);
    // Alice's token relabelled for Bob changes nothing.
    let (_, mac) = token.split_once('-').unwrap();
    let for_bob = web
        .post(&format!("/unsubscribe/{bob}-{mac}"), one_click)
        .await;
    assert_eq!(for_bob.status, 404);
    // A confirm token is not an unsubscribe token.
    let wrong_purpose = web.post(&format!("/confirm/{token}"), "").await;
    assert_eq!(wrong_purpose.status, 404);
    // A POST without the RFC 8058 body changes nothing.
    assert_eq!(web.post(&path, "").await.status, 400);
    assert_eq!(
        web.status("alice@example.org").await,
        Some(SubscriberStatus::Active)
    );
    assert_eq!(
        web.status("bob@example.org").await,
        Some(SubscriberStatus::Active)
    );

    // The one-click POST, as a mail provider sends it: no cookie, no login.
    let done = web.post(&path, one_click).await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(done.text().contains("You are unsubscribed"));
    assert_eq!(
        web.status("alice@example.org").await,
        Some(SubscriberStatus::Unsubscribed)
    );
    assert_eq!(
        web.status("bob@example.org").await,
        Some(SubscriberStatus::Active)
    );

    // The page offers the way back, which also takes a button press.
    let back = link_path(&done.text(), "resubscribe");
    assert_eq!(web.get(&back).await.status, 200);
    assert_eq!(
        web.status("alice@example.org").await,
        Some(SubscriberStatus::Unsubscribed)
    );
    let forged_back = format!("/resubscribe/{}", altered(token_of(&back)));
    assert_eq!(web.post(&forged_back, "").await.status, 404);
    assert_eq!(
        web.status("alice@example.org").await,
        Some(SubscriberStatus::Unsubscribed)
    );
    // The button mails Alice a fresh confirmation; its link brings her back.
    assert_eq!(web.post(&back, "").await.status, 200);
    assert_eq!(
        web.status("alice@example.org").await,
        Some(SubscriberStatus::Unsubscribed)
    );
    // The issue is the first message to Alice; the confirmation the second.
    let confirmation = web
        .wait_for_messages("alice@example.org", 2)
        .await
        .into_iter()
        .find(|m| m.contains("/confirm/"))
        .expect("a confirmation");
    let confirm = link_path(&confirmation, "confirm");
    assert_eq!(web.post(&confirm, "").await.status, 200);
    let alice_now = web.subscriber("alice@example.org").await.unwrap();
    assert_eq!(alice_now.status, SubscriberStatus::Active);
    assert_eq!(alice_now.consent.source.as_deref(), Some("web"));

    // The archive lists the issue and shows it without anyone's links.
    let archive = web.get("/archive").await;
    assert_eq!(archive.status, 200);
    let subject = header(&message, "Subject").unwrap();
    assert!(
        archive.text().contains("href=\"/archive/2021-09-01\""),
        "{}",
        archive.text()
    );
    assert!(
        archive.text().contains("September 2021"),
        "{}",
        archive.text()
    );
    let issue = web.get("/archive/2021-09-01").await;
    assert_eq!(issue.status, 200);
    assert_security_headers(&issue);
    let html = issue.text();
    assert!(html.contains("Bridge the gap") || html.contains("Bridge the Gap"));
    assert!(
        !html.contains(&token),
        "the archive carries a recipient's token"
    );
    assert!(!html.contains("alice@example.org") && !html.contains("bob@example.org"));
    assert!(
        !html.contains("/unsubscribe/"),
        "the archive carries an unsubscribe link"
    );
    assert!(!subject.is_empty());
    assert_eq!(web.get("/archive/2021-10-01").await.status, 404);
    assert_eq!(web.get("/archive/not-a-date").await.status, 404);

    // Metrics count the ledger and the subscribers.
    let text = web.get("/metrics").await.text();
    let m = prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        m.value("gazette_messages", &[("status", "sent")]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        m.value("gazette_messages", &[("status", "failed")]),
        Some(0.0)
    );
    assert_eq!(
        m.value("gazette_messages", &[("status", "retrying")]),
        Some(0.0)
    );
    assert_eq!(
        m.value("gazette_subscribers", &[("status", "active")]),
        Some(2.0)
    );
    assert_eq!(m.value("gazette_web_unsubscribes_total", &[]), Some(1.0));
    assert_eq!(m.value("gazette_web_resubscribes_total", &[]), Some(1.0));
    assert!(m.value("gazette_web_rejected_tokens_total", &[]).unwrap() >= 3.0);
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_an_archived_issue() {
    let web = TestWeb::start(&[]).await;
    web.add_active("reader@example.org").await;
    web.send_now("2021-09-01");
    let url = web.url("/archive/2021-09-01");
    let shot = web.dir.path().join("issue.png");
    chromium::screenshot(web.dir.path(), &url, &shot).await;
    let image = chromium::decode_png(&std::fs::read(&shot).unwrap());
    assert_eq!((image.width, image.height), (420, 900));
    let (background, ink) = image.ink();
    assert!(
        ink > 0.02,
        "the issue looks blank: {ink:.4} of pixels inked"
    );
    assert!(image.colours() > 8, "only {} colours", image.colours());
    assert!(image.rows_with_ink(0..900, background) > 0.3);
    // Readable on a phone: nothing runs off the right edge (long URLs wrap).
    let cut = image.rows_cut_at_right(6);
    assert!(cut < 0.01, "{:.3} of rows run off the right edge", cut);
    let dom = chromium::dump_dom(web.dir.path(), &url).await;
    assert!(
        dom.contains("Bridge the gap") || dom.contains("Bridge the Gap"),
        "{dom}"
    );
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_link_expires_and_is_spent_once_used() {
    let web = TestWeb::start(&[]).await;
    let email = SubscriberEmail::parse("late@example.org").unwrap();
    let eight_days_ago = chrono::Utc::now() - chrono::Duration::days(8);
    let outcome = web
        .store
        .web_signup(&email, None, "192.0.2.7", eight_days_ago)
        .await
        .unwrap();
    let gazette::store::SignupOutcome::Confirm {
        request_id,
        subscriber_id,
        ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    let stale = format!(
        "/confirm/{}",
        web.tokens().sign(TokenPurpose::Confirm, request_id)
    );
    assert_eq!(web.get(&stale).await.status, 410);
    assert_eq!(web.post(&stale, "").await.status, 410);
    assert_eq!(
        web.status("late@example.org").await,
        Some(SubscriberStatus::Pending)
    );

    // A fresh sign-up sends a new link; the stale one stays dead, the new one works once.
    assert_eq!(
        web.post("/subscribe", "email=late%40example.org")
            .await
            .status,
        200
    );
    let messages = web.wait_for_messages("late@example.org", 1).await;
    let confirm = link_path(&messages[0], "confirm");
    assert_eq!(web.post(&stale, "").await.status, 410);
    assert_eq!(web.post(&confirm, "").await.status, 200);
    assert_eq!(
        web.status("late@example.org").await,
        Some(SubscriberStatus::Active)
    );
    // Unsubscribed later, the used link cannot bring them back.
    web.store
        .unsubscribe(subscriber_id, &cli_removal(), chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(web.post(&confirm, "").await.status, 410);
    assert_eq!(
        web.status("late@example.org").await,
        Some(SubscriberStatus::Unsubscribed)
    );
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_configured_header_names_the_client() {
    let web = TestWeb::start(&[
        ("web.client_ip_header", "\"X-Forwarded-For\""),
        ("web.signups_per_ip_per_hour", "1"),
    ])
    .await;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let via = |ip: &'static str| [form[0], ("X-Forwarded-For", ip)];
    let first = http::request(
        web.addr,
        "POST",
        "/subscribe",
        &via("198.51.100.1, 203.0.113.9"),
        b"email=proxied%40example.org",
    )
    .await;
    assert_eq!(first.status, 200);
    // Another client behind the same proxy has its own allowance.
    let other = http::request(
        web.addr,
        "POST",
        "/subscribe",
        &via("203.0.113.10"),
        b"email=other%40example.org",
    )
    .await;
    assert_eq!(other.status, 200);
    let again = http::request(
        web.addr,
        "POST",
        "/subscribe",
        &via("203.0.113.9"),
        b"email=third%40example.org",
    )
    .await;
    assert_eq!(again.status, 429);

    let message = web.wait_for_messages("proxied@example.org", 1).await;
    let confirm = link_path(&message[0], "confirm");
    let r = http::request(web.addr, "POST", &confirm, &via("203.0.113.9"), b"").await;
    assert_eq!(r.status, 200);
    let s = web.subscriber("proxied@example.org").await.unwrap();
    assert_eq!(s.consent.ip.as_deref(), Some("203.0.113.9"));
    web.stop().await;
}

#[test]
fn web_settings_are_checked() {
    let dir = TempDir::new("web-settings");
    for (key, value, expected) in [
        (
            "web.signups_per_ip_per_hour",
            "0",
            "web.signups_per_ip_per_hour",
        ),
        (
            "web.confirmations_per_address_per_day",
            "0",
            "web.confirmations_per_address_per_day",
        ),
        (
            "web.client_ip_header",
            "\"not a header\"",
            "web.client_ip_header",
        ),
    ] {
        let config = write_config(dir.path(), &[(key, value)]);
        let err = gazette::settings::Settings::load(&config)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{key} = {value}: {err}");
    }
    let config = write_config(dir.path(), &[("web.preview_password", "\"\"")]);
    let settings = gazette::settings::Settings::load(&config).unwrap();
    assert!(
        settings.web.preview_password.is_none(),
        "an empty password is no password"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_signups_and_confirmations_all_succeed() {
    let web = TestWeb::start(&[]).await;
    let addr = web.addr;
    let emails: Vec<String> = (0..12).map(|i| format!("crowd{i}@example.org")).collect();
    let signups = emails.iter().map(|e| {
        let body = format!("email={}", form_encode(e));
        tokio::spawn(async move { http::post_form(addr, "/subscribe", &body).await.status })
    });
    for status in futures::future::join_all(signups).await {
        assert_eq!(status.unwrap(), 200);
    }
    let mut links = Vec::new();
    for e in &emails {
        let message = web.wait_for_messages(e, 1).await;
        links.push(link_path(&message[0], "confirm"));
    }
    let confirms = links
        .into_iter()
        .map(|path| tokio::spawn(async move { http::post_form(addr, &path, "").await.status }));
    for status in futures::future::join_all(confirms).await {
        assert_eq!(status.unwrap(), 200);
    }
    for e in &emails {
        assert_eq!(web.status(e).await, Some(SubscriberStatus::Active), "{e}");
    }
    web.stop().await;
}
