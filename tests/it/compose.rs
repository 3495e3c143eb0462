//! Composing and rendering real issues: the two reference issues rewritten as section
//! files, hostile content, bad files, and the `check` / `preview` commands.

use crate::support::{self, TempDir, age_file, copy_sections, describe, fixture, write_config};
use gazette::app::Cli;
use gazette::compose::{self, ComposeOptions};
use gazette::domain::{IssueId, SubscriberEmail, TokenKey, TokenPurpose};
use gazette::render::{Recipient, RecipientLinks, Renderer, TEXT_WIDTH};
use gazette::settings::Settings;
use std::path::Path;

#[derive(serde::Deserialize)]
struct Expected {
    newsletter: String,
    signup_url: String,
    unsubscribe_address: String,
    issues: std::collections::BTreeMap<String, ExpectedIssue>,
}

#[derive(serde::Deserialize)]
struct ExpectedIssue {
    dir: String,
    reference: String,
    date: String,
    subject: String,
    titles: Vec<String>,
    urls: Vec<String>,
}

/// `text` as a TOML string value.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn expected() -> Expected {
    toml::from_str(&std::fs::read_to_string(fixture("expected.toml")).unwrap()).unwrap()
}

/// Settings as the reference newsletter had them: its name (which the subject carries),
/// sign-up link and mailbox.
fn reference_settings(dir: &Path) -> Settings {
    let e = expected();
    let path = write_config(
        dir,
        &[
            ("newsletter.name", &toml_string(&e.newsletter)),
            ("newsletter.signup_url", &format!("\"{}\"", e.signup_url)),
            (
                "newsletter.reply_to",
                &format!("\"{}\"", e.unsubscribe_address),
            ),
        ],
    );
    Settings::load(&path).expect("settings load")
}

struct Rendered {
    html: String,
    text: String,
    subject: String,
    token: String,
}

fn render_fixture(issue: &ExpectedIssue, settings: &Settings) -> Rendered {
    let work = TempDir::new("fixture");
    copy_sections(&support::repo_root().join(&issue.dir), work.path());
    let options = ComposeOptions::from(&settings.content);
    let composed = compose::compose(
        work.path(),
        IssueId::parse(&issue.date).unwrap(),
        &options,
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert!(composed.is_sendable(), "{:?}", composed.diagnostics);
    assert_eq!(composed.warnings().count(), 0, "{:?}", composed.diagnostics);
    let renderer = Renderer::new(None, &settings.newsletter.subject).unwrap();
    let rendered = renderer
        .render_issue(&settings.newsletter, &composed)
        .unwrap();
    let key = TokenKey::new(
        settings.web.secret.expose().as_bytes(),
        &settings.newsletter.list_id,
    );
    let recipient = Recipient {
        id: 17,
        email: SubscriberEmail::parse("reader@example.org").unwrap(),
        name: None,
    };
    let links = RecipientLinks::new(&settings.newsletter, &key, recipient.id);
    Rendered {
        html: rendered.html.fill(&recipient, &links),
        text: rendered.text.fill(&recipient, &links),
        subject: rendered.subject.to_string(),
        token: links.token,
    }
}

/// Collapses whitespace so wrapped text compares with unwrapped text.
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The visible text of an HTML document: tags dropped, common entities decoded.
fn html_text(html: &str) -> String {
    let body = html.split("<body").nth(1).unwrap_or(html);
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    squash(&decoded)
}

/// The paragraphs of a reference issue that come from its sections: the title line,
/// the contents list, headings and the footer are gazette's own and left out.
fn reference_paragraphs(reference: &str, titles: &[String]) -> Vec<String> {
    let body = reference
        .split("If you know someone who might be interested in receiving this email")
        .next()
        .unwrap();
    let mut out = Vec::new();
    let mut blocks = Vec::new();
    for block in body.split("\n\n") {
        // A list is one block in the reference; each item is its own paragraph here.
        if block.trim_start().starts_with("- ") {
            let mut item = String::new();
            for line in block.trim().lines() {
                if (line.starts_with("- ") || line.trim() == "-") && !item.is_empty() {
                    blocks.push(std::mem::take(&mut item));
                }
                item.push_str(line);
                item.push('\n');
            }
            blocks.push(item);
        } else {
            blocks.push(block.to_owned());
        }
    }
    for (i, block) in blocks.iter().enumerate() {
        let para = squash(block.replace(['<', '>'], " ").trim());
        let para = para.strip_prefix("- ").unwrap_or(&para).to_owned();
        let is_heading = para.split_whitespace().count() <= 8
            && !para.contains("http")
            && titles.iter().any(|t| {
                let (a, b) = (
                    t.to_lowercase(),
                    para.trim_end_matches(['.', ':']).to_lowercase(),
                );
                a.contains(&b) || b.contains(&a)
            });
        let is_contents = titles.contains(&para);
        if i < 2 || para.is_empty() || para == "-" || is_heading || is_contents {
            continue;
        }
        out.push(para);
    }
    out
}

fn without_urls(text: &str) -> String {
    text.split_whitespace()
        .filter(|w| !w.contains("://"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn without_angle_brackets(text: &str) -> String {
    squash(&text.replace(['<', '>'], " "))
}

#[test]
fn reference_issues_render_completely_in_both_parts() {
    let work = TempDir::new("reference");
    let settings = reference_settings(work.path());
    let e = expected();
    for (name, issue) in &e.issues {
        let r = render_fixture(issue, &settings);
        assert_eq!(r.subject, issue.subject, "{name}");

        // Titles: in the contents, then in the body, in order, in both parts.
        let text_lines: Vec<&str> = r.text.lines().collect();
        let mut cursor = 0;
        for title in &issue.titles {
            let pos = text_lines[cursor..]
                .iter()
                .position(|l| *l == format!("- {title}"))
                .unwrap_or_else(|| {
                    panic!("{name}: '{title}' not in the text contents after line {cursor}")
                });
            cursor += pos + 1;
        }
        for title in &issue.titles {
            let pos = text_lines[cursor..]
                .iter()
                .position(|l| l == title)
                .unwrap_or_else(|| {
                    panic!("{name}: section '{title}' not in the text body in order")
                });
            cursor += pos + 1;
        }
        let visible = html_text(&r.html);
        let mut at = 0;
        for title in issue.titles.iter().chain(&issue.titles) {
            let pos = visible[at..]
                .find(title.as_str())
                .unwrap_or_else(|| panic!("{name}: '{title}' not in the HTML in order"));
            at += pos + title.len();
        }

        // Links: every URL in both parts, as a link in HTML and as <url> in text.
        for url in &issue.urls {
            let href = format!("href=\"{}\"", url.replace('&', "&amp;"));
            assert!(r.html.contains(&href), "{name}: HTML lacks {href}");
            assert!(
                r.text.contains(&format!("<{url}>")),
                "{name}: text lacks <{url}>"
            );
        }

        // Paragraphs: every paragraph of the reference survives in both parts.
        let reference =
            std::fs::read_to_string(support::repo_root().join(&issue.reference)).unwrap();
        let text_flat = without_angle_brackets(&r.text);
        let html_flat = without_angle_brackets(&visible);
        let paragraphs = reference_paragraphs(&reference, &issue.titles);
        assert!(
            paragraphs.len() > 15,
            "{name}: only {} paragraphs found",
            paragraphs.len()
        );
        for p in &paragraphs {
            assert!(
                text_flat.contains(p.as_str()),
                "{name}: text lacks paragraph:\n{p}"
            );
            // In HTML a URL may be a link's target rather than visible text (checked above).
            let words = without_urls(p);
            assert!(
                without_urls(&html_flat).contains(&words),
                "{name}: HTML lacks paragraph:\n{p}"
            );
        }

        // Footer: sign-up link, UNSUBSCRIBE instructions, this recipient's one-click link.
        let one_click = format!("{}/unsubscribe/{}", settings.newsletter.public_url, r.token);
        // The text part shows both addresses; the HTML links them under short labels.
        assert!(r.text.contains(&e.signup_url), "{name}: no sign-up link");
        assert!(r.text.contains(&one_click), "{name}: no one-click link");
        for href in [&e.signup_url, &one_click] {
            let href = format!("href=\"{}\"", href.replace('&', "&amp;"));
            assert!(r.html.contains(&href), "{name}: HTML lacks {href}");
        }
        for part in [&r.text, &visible] {
            assert!(
                part.contains("UNSUBSCRIBE in the subject"),
                "{name}: no UNSUBSCRIBE instructions"
            );
            assert!(
                part.contains(&e.unsubscribe_address),
                "{name}: no mailbox to reply to"
            );
        }

        // Wrapping: within 78 columns unless the line holds a longer URL.
        for line in r.text.lines() {
            let width = line.chars().count();
            let long_url = line
                .split_whitespace()
                .any(|w| w.contains("://") && w.chars().count() > TEXT_WIDTH - 4);
            assert!(
                width <= 78 || long_url,
                "{name}: line of {width} columns: {line:?}"
            );
        }

        // Email-safe HTML.
        assert!(
            r.html.len() < 102 * 1024,
            "{name}: HTML is {} bytes",
            r.html.len()
        );
        assert!(!r.html.contains("<style>"), "{name}: CSS not inlined");
        assert!(r.html.contains("style=\""), "{name}: no inline styles");
        assert_no_active_content(&r.html);
    }
}

/// No scripts, no event handlers, no `javascript:` URLs in any real tag.
fn assert_no_active_content(html: &str) {
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "script tag in:\n{html}");
    let mut rest = lower.as_str();
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').map_or(rest.len(), |e| start + e);
        let tag = &rest[start..end];
        for attr in tag.split_whitespace().skip(1) {
            assert!(
                !attr.starts_with("on"),
                "event handler attribute in tag {tag}"
            );
            assert!(
                !attr.contains("javascript:"),
                "javascript: URL in tag {tag}"
            );
        }
        rest = &rest[end..];
    }
}

#[test]
fn hostile_section_content_is_rendered_harmless() {
    let work = TempDir::new("hostile");
    let sections = work.path().join("sections");
    std::fs::create_dir_all(&sections).unwrap();
    std::fs::write(
        sections.join("introduction.md"),
        "# Hello {{ newsletter.name }}\n\nSecret: {{ get_env(name=\"GAZETTE_TEST_SECRET\") }} and {% if true %}tag{% endif %}.\n\n\
         <script>alert('x')</script>\n\n<img src=x onerror=alert(1)> <a href=\"javascript:alert(2)\">raw</a>\n\n\
         [click](javascript:alert(3)) [data](data:text/html;base64,PHNjcmlwdD4=) ![pic](javascript:alert(4))\n\n\
         Private use: \u{e000}email\u{e001}\n",
    )
    .unwrap();
    age_file(&sections.join("introduction.md"));
    let config = write_config(work.path(), &[]);
    let out = work.path().join("out");
    let output = crate::support::gazette_binary()
        .args([
            "--config",
            config.to_str().unwrap(),
            "preview",
            "--date",
            "2022-01-01",
            "--out",
        ])
        .arg(&out)
        .env("GAZETTE_TEST_SECRET", "hunter2-secret-value")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let html = std::fs::read_to_string(out.join("issue.html")).unwrap();
    let text = std::fs::read_to_string(out.join("issue.txt")).unwrap();
    let eml = std::fs::read_to_string(out.join("issue.eml")).unwrap();
    for part in [&html, &text, &eml] {
        assert!(!part.contains("hunter2"), "the environment leaked");
    }
    // Template syntax written by an editor appears literally.
    assert!(
        squash(&text).contains(
            "Secret: {{ get_env(name=\"GAZETTE_TEST_SECRET\") }} and {% if true %}tag{% endif %}."
        ),
        "{text}"
    );
    assert!(text.contains("Hello {{ newsletter.name }}"), "{text}");
    assert!(
        html_text(&html).contains("{{ get_env(name=\"GAZETTE_TEST_SECRET\") }}"),
        "{html}"
    );
    assert!(
        html_text(&html).contains("<script>alert('x')</script>"),
        "raw HTML is shown as text"
    );
    assert_no_active_content(&html);
    assert!(!html.contains("data:text/html"), "data: link kept");
    // The editor cannot reach per-recipient slots.
    assert!(!text.contains("Private use: reader@example.org"), "{text}");
}

#[test]
fn templates_cannot_read_the_environment() {
    let work = TempDir::new("template-env");
    let templates = work.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("issue.txt"),
        "{{ get_env(name=\"GAZETTE_TEST_SECRET\") }}\n",
    )
    .unwrap();
    let config = write_config(
        work.path(),
        &[(
            "content.templates_dir",
            &format!("\"{}\"", templates.display()),
        )],
    );
    copy_sections(&fixture("2021-09"), &work.path().join("sections"));
    let output = crate::support::gazette_binary()
        .args(["--config", config.to_str().unwrap(), "preview", "--out"])
        .arg(work.path().join("out"))
        .env("GAZETTE_TEST_SECRET", "hunter2-secret-value")
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", describe(&output));
    let all = describe(&output);
    assert!(all.contains("get_env is not available"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
    assert!(!work.path().join("out/issue.txt").exists());
}

#[test]
fn bad_front_matter_names_file_and_line() {
    let work = TempDir::new("bad-front");
    let sections = work.path().join("sections");
    copy_sections(&fixture("2021-09"), &sections);
    let bad = sections.join("30-bridge-the-gap.md");
    std::fs::write(
        &bad,
        "+++\ntitle = \"Bridge the Gap\"\norder = thirty\n+++\nText.\n",
    )
    .unwrap();
    age_file(&bad);
    let config = write_config(work.path(), &[]);
    let output = support::gazette(&["--config", config.to_str().unwrap(), "check"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:3: error: front matter", bad.display())),
        "{}",
        describe(&output)
    );
}

#[test]
fn check_reports_missing_required_sections_and_skipped_files() {
    let work = TempDir::new("check");
    let sections = work.path().join("sections");
    copy_sections(&fixture("2021-11"), &sections);
    std::fs::remove_file(sections.join("introduction.md")).unwrap();
    for litter in [".hidden.md", "draft.md~", ".events.md.swp", "#notes.md#"] {
        std::fs::write(sections.join(litter), "# Not a section\n").unwrap();
    }
    std::fs::write(sections.join("photo.jpg"), [0xff, 0xd8]).unwrap();
    std::fs::write(sections.join("60-fresh.md"), "# Being written\n").unwrap();
    let config = write_config(work.path(), &[("content.settle_time", "\"1h\"")]);
    let output = support::gazette(&["--config", config.to_str().unwrap(), "check"]);
    let all = describe(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(
        all.contains("required section 'introduction' is missing"),
        "{all}"
    );
    assert!(all.contains("photo.jpg: warning: ignored"), "{all}");
    assert!(all.contains("60-fresh.md: warning: skipped"), "{all}");
    assert!(
        !all.contains("Not a section") && !all.contains(".hidden.md"),
        "{all}"
    );
    assert!(all.contains("with 5 section(s)"), "{all}");
}

#[test]
fn preview_writes_the_whole_message() {
    let work = TempDir::new("preview");
    copy_sections(&fixture("2021-11"), &work.path().join("sections"));
    let config = write_config(work.path(), &[]);
    let out = work.path().join("out");
    let output = support::gazette(&[
        "--config",
        config.to_str().unwrap(),
        "preview",
        "--date",
        "2021-11-01",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let eml = std::fs::read(out.join("issue.eml")).unwrap();
    let message = mail_parser::MessageParser::default()
        .parse(&eml)
        .expect("parses as mail");
    assert_eq!(
        message.subject(),
        Some("Independent review of children's social care newsletter: November 2021")
    );
    let settings = Settings::load(&config).unwrap();
    let key = TokenKey::new(
        settings.web.secret.expose().as_bytes(),
        &settings.newsletter.list_id,
    );
    let header = |name: &str| {
        message
            .header_raw(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .trim()
            .to_owned()
    };
    assert!(header("From").contains("<newsletter@example.org>"));
    assert!(header("To").contains("reader@example.org"));
    assert_eq!(header("Reply-To"), "newsletter@example.org");
    assert!(!header("Date").is_empty());
    assert_eq!(
        header("List-Unsubscribe-Post"),
        "List-Unsubscribe=One-Click"
    );
    assert!(header("List-Id").contains(&format!("<{}>", settings.newsletter.list_id)));
    let unsubscribe = squash(&header("List-Unsubscribe"));
    let token = key.sign(TokenPurpose::Unsubscribe, 0);
    assert!(
        unsubscribe.contains(&format!("<http://127.0.0.1:8080/unsubscribe/{token}>")),
        "{unsubscribe}"
    );
    assert!(
        unsubscribe.contains(&format!(
            "<mailto:newsletter@example.org?subject=UNSUBSCRIBE%20{token}>"
        )),
        "{unsubscribe}"
    );
    let message_id = message.message_id().unwrap();
    assert!(
        message_id.starts_with("2021-11-01.") && message_id.ends_with("@example.org"),
        "{message_id}"
    );
    assert_eq!(key.find_in(TokenPurpose::Message, message_id), Some(0));
    assert!(
        header("Content-Type").starts_with("multipart/alternative"),
        "{}",
        header("Content-Type")
    );
    let text = message.body_text(0).unwrap();
    let html = message.body_html(0).unwrap();
    assert!(text.contains("Paying the Price"), "{text}");
    assert!(html.contains("<h2"), "{html}");
    assert_eq!(
        std::fs::read_to_string(out.join("issue.txt"))
            .unwrap()
            .trim_end(),
        text.replace("\r\n", "\n").trim_end()
    );
}

#[test]
fn settings_errors_name_the_key_and_environment_overrides_apply() {
    let work = TempDir::new("settings");
    copy_sections(&fixture("2021-09"), &work.path().join("sections"));
    let config = write_config(work.path(), &[]);
    let run = |envs: &[(&str, &str)]| {
        let mut cmd = crate::support::gazette_binary();
        cmd.args(["--config", config.to_str().unwrap(), "check"]);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), describe(&out))
    };
    let (code, all) = run(&[("GAZETTE__SCHEDULE__TIMEZONE", "Mars/Olympus_Mons")]);
    assert_eq!(code, Some(1));
    assert!(
        all.contains("schedule.timezone") && all.contains("Mars/Olympus_Mons"),
        "{all}"
    );
    let (_, all) = run(&[("GAZETTE__SCHEDULE__SEND", "0 9 * *")]);
    assert!(
        all.contains("schedule.send") && all.contains("4 fields"),
        "{all}"
    );
    let (_, all) = run(&[("GAZETTE__NEWSLETTER__FROM", "not an address")]);
    assert!(all.contains("newsletter.from"), "{all}");
    let (_, all) = run(&[("GAZETTE__SMTP__PASSWORD", "pw-without-user")]);
    assert!(
        all.contains("smtp.username") && !all.contains("pw-without-user"),
        "{all}"
    );
    let (_, all) = run(&[("GAZETTE__NEWSLETTER__NAME", "Overridden Gazette")]);
    assert!(
        all.contains("Subject: Overridden Gazette newsletter:"),
        "{all}"
    );
}

#[test]
fn cli_defaults_to_the_shipped_settings_file() {
    use clap::Parser;
    let cli = Cli::parse_from(["gazette", "check"]);
    assert_eq!(cli.config, Path::new("config/gazette.toml"));
    let settings =
        Settings::load(&support::repo_root().join(&cli.config)).expect("shipped settings load");
    assert_eq!(
        settings.transport.kind,
        gazette::settings::TransportKind::File
    );
}
