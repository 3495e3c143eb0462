//! The issue as readers see it: the inbox snippet, Outlook for Windows, phones, link
//! labels, alt text, Gmail's clipping size and long titles in the text part. Issues are
//! made with the real `gazette preview` / `gazette check` and looked at in Chromium.

use crate::support::{self, TempDir, age_file, chromium, copy_sections, describe, fixture};
use gazette::render::TEXT_WIDTH;
use std::path::Path;

/// The sign-up link of the reference newsletter: a long forms URL.
const SIGNUP_URL: &str = "https://forms.office.com/Pages/ResponsePage.aspx?id=yXfS-grGoU2187O4s0qC-UUvX-Et-IBPv5Dtul1r4uNUOVJWUk1OUjFDWlgzV1Y1NkNJTOxUNUNCUC4u";

struct Preview {
    html: String,
    text: String,
    eml: Vec<u8>,
    output: std::process::Output,
}

/// A work folder with a copy of a fixture's sections.
fn work_with(fixture_name: &str) -> TempDir {
    let work = TempDir::new("readers");
    copy_sections(&fixture(fixture_name), &work.path().join("sections"));
    work
}

fn config(work: &Path) -> std::path::PathBuf {
    support::write_config(
        work,
        &[("newsletter.signup_url", &format!("\"{SIGNUP_URL}\""))],
    )
}

/// Writes `text` as the section file `name` (aged, so it is not taken as being written).
fn write_section(work: &Path, name: &str, text: &str) {
    let path = work.join("sections").join(name);
    std::fs::write(&path, text).unwrap();
    age_file(&path);
}

fn preview(work: &Path, date: &str) -> Preview {
    let config = config(work);
    let out = work.join("out");
    let output = support::gazette(&[
        "--config",
        config.to_str().unwrap(),
        "preview",
        "--date",
        date,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    Preview {
        html: std::fs::read_to_string(out.join("issue.html")).unwrap(),
        text: std::fs::read_to_string(out.join("issue.txt")).unwrap(),
        eml: std::fs::read(out.join("issue.eml")).unwrap(),
        output,
    }
}

fn check(work: &Path) -> std::process::Output {
    let config = config(work);
    support::gazette(&["--config", config.to_str().unwrap(), "check"])
}

/// The element that holds `needle`, from its opening tag to the needle.
fn opening_tag_before<'a>(html: &'a str, needle: &str) -> &'a str {
    let at = html
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{html}"));
    let start = html[..at].rfind('<').expect("an opening tag");
    &html[start..at]
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every `<a …>label</a>` in `html`: its href and its visible label.
fn anchors(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<a ") {
        let tag_end = start + rest[start..].find('>').unwrap();
        let tag = &rest[start..tag_end];
        let close = tag_end + rest[tag_end..].find("</a>").unwrap();
        let label = &rest[tag_end + 1..close];
        if let Some(href) = tag.split("href=\"").nth(1) {
            let href = href.split('"').next().unwrap().replace("&amp;", "&");
            let mut visible = String::new();
            let mut in_tag = false;
            for c in label.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => visible.push(c),
                    _ => {}
                }
            }
            let visible = visible
                .replace("&#39;", "'")
                .replace("&quot;", "\"")
                .replace("&amp;", "&");
            out.push((href, squash(&visible)));
        }
        rest = &rest[close..];
    }
    out
}

#[test]
fn the_preheader_is_hidden_in_html_and_absent_from_text() {
    // From front matter.
    let work = work_with("2021-09");
    let intro = std::fs::read_to_string(fixture("2021-09/introduction.md")).unwrap();
    let preheader = "Seven months in: what we heard, where we went and what comes next";
    write_section(
        work.path(),
        "introduction.md",
        &intro.replacen("+++\n", &format!("+++\npreheader = \"{preheader}\"\n"), 1),
    );
    let p = preview(work.path(), "2021-09-01");
    let tag = opening_tag_before(&p.html, preheader);
    for property in [
        "display:none",
        "max-height:0",
        "overflow:hidden",
        "mso-hide:all",
    ] {
        assert!(
            tag.replace(' ', "").contains(property),
            "the preheader's element lacks {property}: {tag}"
        );
    }
    let body_at = p.html.find("<body").unwrap();
    let preheader_at = p.html.find(preheader).unwrap();
    let title_at = p.html.find("<h1").unwrap();
    assert!(
        body_at < preheader_at && preheader_at < title_at,
        "the preheader comes first in the body"
    );
    assert!(!p.text.contains(preheader), "{}", p.text);
    let check = check(work.path());
    assert!(check.status.success(), "{}", describe(&check));
    assert!(
        !describe(&check).contains("preheader"),
        "preheader is a known key: {}",
        describe(&check)
    );

    // From the introduction's first sentence.
    let work = work_with("2021-11");
    let p = preview(work.path(), "2021-11-01");
    let first = "Introduction from Shazia Hussain, Head of Review Team";
    let hidden_at = p.html.find("mso-hide:all").expect("a hidden preheader");
    let hidden_end = hidden_at + p.html[hidden_at..].find("</div>").unwrap();
    assert!(
        p.html[hidden_at..hidden_end].contains(first),
        "the first sentence is the preheader: {}",
        &p.html[hidden_at..hidden_end]
    );
    // The text part has it once: in the introduction itself.
    assert_eq!(p.text.matches(first).count(), 1, "{}", p.text);
}

#[test]
fn outlook_for_windows_gets_a_fixed_width_table() {
    let work = work_with("2021-09");
    let p = preview(work.path(), "2021-09-01");
    let open = p
        .html
        .find("<!--[if mso]>")
        .expect("an MSO conditional wrapper survives CSS inlining");
    let open_end = open + p.html[open..].find("<![endif]-->").unwrap();
    let wrapper = &p.html[open..open_end];
    assert!(
        wrapper.contains("<table") && wrapper.contains("width=\"640\""),
        "{wrapper}"
    );
    let page = p.html.find("class=\"page\"").unwrap();
    assert!(open < page, "the wrapper opens before the page table");
    let close = p.html.rfind("<!--[if mso]>").unwrap();
    assert!(close > page, "and closes after it");
    assert!(
        p.html[close..].starts_with("<!--[if mso]></td></tr></table><![endif]-->"),
        "{}",
        &p.html[close..close + 60]
    );
    // The page table still stretches to the phone and stops at 640 px elsewhere.
    let page_tag = opening_tag_before(&p.html, "class=\"page\"");
    assert!(!page_tag.contains("width=\"640\""), "{page_tag}");
    let page_tag_end = page + p.html[page..].find('>').unwrap();
    assert!(
        p.html[page..page_tag_end].contains("max-width: 640px"),
        "{}",
        &p.html[page..page_tag_end]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_words_wrap_on_phones() {
    let work = work_with("2021-09");
    let p = preview(work.path(), "2021-09-01");
    for width in [320, 375] {
        let scroll = chromium::scroll_width(work.path(), &p.html, width).await;
        assert!(
            scroll <= width,
            "the issue is {scroll} px wide on a {width} px screen"
        );
    }
    let page = work.path().join("out/issue.html");
    let url = format!("file://{}", page.display());
    for (width, height) in [(700, 1400), (320, 1400)] {
        let shot = work.path().join(format!("issue-{width}.png"));
        chromium::screenshot_at(work.path(), &url, &shot, width, height).await;
        let image = chromium::decode_png(&std::fs::read(&shot).unwrap());
        assert_eq!(image.width, width as usize);
        let (_, ink) = image.ink();
        assert!(ink > 0.02, "{width} px: the page looks blank ({ink})");
        let cut = image.rows_cut_at_right(4);
        assert!(
            cut == 0.0,
            "{width} px: {cut} of the rows run off the right edge"
        );
    }
}

#[test]
fn links_read_as_labels_in_html_and_as_urls_in_text() {
    let work = work_with("2021-09");
    let p = preview(work.path(), "2021-09-01");
    let links = anchors(&p.html);
    let signup =
        "https://www.eventbrite.co.uk/e/care-review-focus-on-kinship-care-tickets-177266227057";
    let icymi = "https://www.bbc.co.uk/sounds/play/m000zdtf";
    for url in [signup, icymi, SIGNUP_URL] {
        let (_, label) = links
            .iter()
            .find(|(href, _)| href == url)
            .unwrap_or_else(|| panic!("no link to {url} in {links:?}"));
        assert!(!label.contains("://"), "{url} is shown raw: {label:?}");
        assert!(
            !label.is_empty() && label.chars().count() <= 48,
            "{url}: label {label:?}"
        );
        assert!(
            !label.to_lowercase().contains("click here"),
            "{url}: label {label:?}"
        );
        assert!(p.text.contains(&format!("<{url}>")), "text lacks <{url}>");
    }
    // No link in the issue shows a raw web address as its words.
    for (href, label) in &links {
        assert!(
            !label.contains("http://") && !label.contains("https://"),
            "{href} is shown raw"
        );
    }

    // Contents: each entry reads as the section's title, and its target is there both
    // as an id and as a named anchor, which older clients that ignore ids still follow.
    let titles = [
        "Chair's introduction",
        "Local area deep dives",
        "Bridge the Gap",
        "Kinship Care week",
        "Engaging and listening",
        "In case you missed it",
    ];
    for (i, title) in titles.iter().enumerate() {
        let anchor = format!("section-{}", i + 1);
        let entry = links
            .iter()
            .find(|(href, _)| *href == format!("#{anchor}"))
            .unwrap_or_else(|| panic!("no contents entry for {anchor}"));
        assert_eq!(entry.1, *title);
        assert!(
            p.html.contains(&format!("id=\"{anchor}\"")),
            "no id {anchor}"
        );
        assert!(
            p.html.contains(&format!("name=\"{anchor}\"")),
            "no named anchor {anchor}"
        );
        assert!(p.text.contains(&format!("- {title}")), "{}", p.text);
    }
}

#[test]
fn images_without_alt_text_are_named_by_check() {
    let work = work_with("2021-09");
    write_section(
        work.path(),
        "60-photos.md",
        "# Photos\n\nFrom the day:\n\n![](https://example.org/day.jpg)\n\n![The panel on stage](https://example.org/panel.jpg)\n",
    );
    let output = check(work.path());
    let all = describe(&output);
    assert!(output.status.success(), "a warning holds nothing: {all}");
    let file = work.path().join("sections/60-photos.md");
    let warnings: Vec<&str> = all.lines().filter(|l| l.contains("alt text")).collect();
    assert_eq!(
        warnings,
        [format!(
            "{}:5: warning: the image 'https://example.org/day.jpg' has no alt text; screen readers and mail that blocks images show nothing",
            file.display()
        )],
        "{all}"
    );
}

/// The HTML part of a message as sent: its encoded body bytes.
fn encoded_html_part(eml: &[u8]) -> usize {
    use mail_parser::MimeHeaders;
    let message = mail_parser::MessageParser::default()
        .parse(eml)
        .expect("parses as mail");
    let part = message
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.c_type == "text" && c.subtype() == Some("html"))
        })
        .expect("an HTML part");
    part.raw_end_offset() as usize - part.raw_body_offset() as usize
}

#[test]
fn the_clipping_check_measures_the_html_part_as_sent() {
    let work = work_with("2021-09");
    // Accented words: 2 bytes each letter in UTF-8, 6 in quoted-printable.
    let paragraph = "Réfléchir à l'écoute, à la confiance et à la sécurité des élèves. ".repeat(12);
    let body: String = (0..80).map(|_| format!("{paragraph}\n\n")).collect();
    write_section(work.path(), "60-long.md", &format!("# Long\n\n{body}"));
    let p = preview(work.path(), "2021-09-01");
    let raw = p.html.len();
    let sent = encoded_html_part(&p.eml);
    assert!(
        raw < 102 * 1024 && sent > 102 * 1024,
        "the fixture must straddle the limit: raw {raw}, sent {sent}"
    );
    let output = check(work.path());
    let all = describe(&output);
    let reported: usize = all
        .split("warning: the HTML part is ")
        .nth(1)
        .and_then(|rest| {
            rest.split(" KB as sent; Gmail clips messages over 102 KB")
                .next()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no clipping warning: {all}"));
    // The check leaves out the preview recipient's own address and links.
    assert!(
        reported.abs_diff(sent / 1024) <= 1,
        "reported {reported} KB, sent {sent} bytes"
    );
    let _ = p.output;
}

#[test]
fn long_titles_wrap_in_the_text_part() {
    let work = work_with("2021-09");
    let title =
        "What we heard from families, carers, social workers and teachers over the summer months.";
    assert_eq!(title.chars().count(), 88);
    write_section(
        work.path(),
        "60-summer.md",
        &format!("# {title}\n\nA short paragraph.\n"),
    );
    let p = preview(work.path(), "2021-09-01");
    for line in p.text.lines() {
        let long_url = line
            .split_whitespace()
            .any(|w| w.contains("://") && w.chars().count() > TEXT_WIDTH - 4);
        assert!(
            line.chars().count() <= TEXT_WIDTH || long_url,
            "a line of {} columns: {line:?}",
            line.chars().count()
        );
    }
    // Both the contents entry and the heading are there, whole, wrapped.
    assert_eq!(squash(&p.text).matches(&format!("- {title}")).count(), 1);
    assert_eq!(squash(&p.text).matches(title).count(), 2, "{}", p.text);
}
