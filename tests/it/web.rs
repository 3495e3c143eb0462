//! The web side over real HTTP on a real port: pages, headers, the editors' preview,
//! metrics, and what headless Chromium makes of the pages.

use crate::support::http::{self, Response};
use crate::support::{TempDir, chromium, copy_sections, fixture, prometheus, write_config};
use gazette::app::Cli;
use std::net::SocketAddr;

/// A running web side with its own folder, database and port.
struct TestWeb {
    addr: SocketAddr,
    dir: TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestWeb {
    /// Starts the web side on 127.0.0.1:0 with `overrides` on top of the test config;
    /// `[newsletter] public_url` points at the port it got.
    async fn start(overrides: &[(&str, &str)]) -> Self {
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
        let state = gazette::app::web_state(&ctx).expect("web state");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(gazette::web::serve(state, listener, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str) -> Response {
        http::get(self.addr, path).await
    }

    /// Stops the server and waits for it to finish.
    async fn stop(mut self) {
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
    let dom = chromium::dump_dom(web.dir.path(), &web.url("/subscribe")).await;
    assert!(dom.contains("<h1>Subscribe</h1>"), "{dom}");
    assert!(dom.contains("type=\"email\""), "{dom}");
    web.stop().await;
}
