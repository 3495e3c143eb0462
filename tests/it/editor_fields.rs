//! Editor text reaches readers as the editor wrote it, and never as per-recipient values:
//! every field an editor supplies (title, preheader, author, signature, body) passes the
//! same rule. A subscriber's name is a per-recipient value itself, and fills its slot as
//! text: it cannot pull in another field either.

use crate::delivery_support::file_config;
use crate::support::{TempDir, age_file, describe, gazette_command, write_config};
use gazette::domain::SubscriberEmail;
use gazette::store::Store;
use std::collections::BTreeMap;

/// `issue.html`, `issue.txt` and `issue.eml` of `gazette preview` for these section
/// files.
fn preview(label: &str, files: &[(&str, String)]) -> BTreeMap<&'static str, String> {
    let work = TempDir::new(label);
    let sections = work.path().join("sections");
    std::fs::create_dir_all(&sections).unwrap();
    for (name, text) in files {
        std::fs::write(sections.join(name), text).unwrap();
        age_file(&sections.join(name));
    }
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
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    ["issue.html", "issue.txt", "issue.eml"]
        .into_iter()
        .map(|name| (name, std::fs::read_to_string(out.join(name)).unwrap()))
        .collect()
}

/// An introduction and an article whose every editor field names a recipient's field
/// between `open` and `close`.
fn sections(open: &str, close: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "introduction.md",
            format!(
                "---\n\
                 title: \"T {open}email{close}\"\n\
                 preheader: \"P {open}email{close}\"\n\
                 author: \"A {open}email{close}\"\n\
                 signature: \"S {open}email{close}\"\n\
                 ---\n\nHello readers.\n"
            ),
        ),
        (
            "20-article.md",
            format!(
                "+++\n\
                 title = \"U {open}unsubscribe_url{close}\"\n\
                 author = \"A {open}email{close}\"\n\
                 +++\n\nAn article.\n"
            ),
        ),
    ]
}

#[test]
fn slot_markers_in_author_signature_title_and_preheader_do_not_become_recipient_values() {
    let marked = preview("editor-fields", &sections("\u{e000}", "\u{e001}"));
    let plain = preview("editor-fields-plain", &sections("", ""));
    for (name, part) in &marked {
        // The sample recipient's address appears where the layout puts it (the footer),
        // and nowhere an editor's field would have pulled it in.
        for value in ["reader@example.org", "/unsubscribe/"] {
            assert_eq!(
                part.matches(value).count(),
                plain[name].matches(value).count(),
                "{name}, {value}: {part}"
            );
        }
        assert!(
            !part.contains(['\u{e000}', '\u{e001}']),
            "{name}: marker kept"
        );
    }
    let text = &marked["issue.txt"];
    assert!(
        text.contains("A email"),
        "the author is kept as text: {text}"
    );
    assert!(
        text.contains("S email"),
        "the signature is kept as text: {text}"
    );
    assert!(
        text.contains("T email"),
        "the title is kept as text: {text}"
    );
}

/// The text part of the message to `email` in the file transport's outbox.
async fn text_sent_to(store: &Store, outbox: &std::path::Path, issue: &str, email: &str) -> String {
    let id = store
        .subscriber_by_email(&SubscriberEmail::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    let raw = std::fs::read(outbox.join(issue).join(format!("{id}.eml"))).unwrap();
    let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
    message.body_text(0).unwrap().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_name_with_slot_markers_fills_its_slot_as_text() {
    let dir = TempDir::new("name-markers");
    // An operator's text layout that greets the reader by name.
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    let layout =
        std::fs::read_to_string(crate::support::repo_root().join("templates/issue.txt")).unwrap();
    std::fs::write(
        templates.join("issue.txt"),
        format!("Dear {{{{ recipient.name }}}},\n\n{layout}"),
    )
    .unwrap();
    let templates_dir = format!("\"{}\"", templates.display());
    let config = file_config(&dir, &[("content.templates_dir", &templates_dir)]);
    let run = |args: &[&str]| {
        let out = gazette_command(&config, args).output().unwrap();
        assert!(out.status.success(), "{}", describe(&out));
    };
    let eve = "Eve \u{e000}unsubscribe_url\u{e001} \u{e000}email\u{e001}";
    run(&["subscribers", "add", "eve@example.org", "--name", eve]);
    run(&["subscribers", "add", "ada@example.org", "--name", "Ada"]);
    let csv = dir.path().join("people.csv");
    std::fs::write(
        &csv,
        "email,name\nimp@example.org,\"Imp \u{e000}unsubscribe_mailto\u{e001}\"\n",
    )
    .unwrap();
    run(&["subscribers", "import", csv.to_str().unwrap()]);
    run(&["send-now", "--date", "2021-09-01"]);

    let url = crate::support::store_url(dir.path());
    let store = Store::open(&url).await.unwrap();
    let outbox = dir.path().join("outbox");
    let ada = text_sent_to(&store, &outbox, "2021-09-01", "ada@example.org").await;
    assert!(ada.starts_with("Dear Ada,"), "{ada}");
    for (email, name) in [
        ("eve@example.org", eve),
        ("imp@example.org", "Imp \u{e000}unsubscribe_mailto\u{e001}"),
    ] {
        let text = text_sent_to(&store, &outbox, "2021-09-01", email).await;
        assert!(
            text.starts_with(&format!("Dear {name},")),
            "{email}: the name is not kept as text: {text}"
        );
        // Their own links and address, as many times as anyone's: the footer's.
        for value in ["/unsubscribe/", "mailto:", email] {
            assert_eq!(
                text.matches(value).count(),
                ada.matches(if value == email {
                    "ada@example.org"
                } else {
                    value
                })
                .count(),
                "{email}, {value}: {text}"
            );
        }
    }
    store.close().await;
}
