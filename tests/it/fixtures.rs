//! The fixture issues compose into exactly what `tests/fixtures/expected.toml` declares:
//! each section's kind and file, in contents order, the section count and the sign-off;
//! and its other facts hold of the files. A key no test reads is refused.

use crate::support::{TempDir, copy_sections, repo_root};
use gazette::compose::{self, ComposeOptions, SectionKind};
use gazette::domain::IssueId;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    newsletter: String,
    signup_url: String,
    unsubscribe_address: String,
    issues: std::collections::BTreeMap<String, ExpectedIssue>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedIssue {
    dir: String,
    reference: String,
    date: String,
    subject: String,
    urls: Vec<String>,
    sections: usize,
    signature: String,
    titles: Vec<String>,
    kinds: Vec<String>,
    files: Vec<String>,
}

fn expected() -> Expected {
    let path = repo_root().join("tests/fixtures/expected.toml");
    toml::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The facts the rendering tests rely on hold of the files themselves: the URLs are in
/// the section files in the declared order, the footer's link and address are in none
/// of them (gazette adds them), the titles are the reference's, and the subject carries
/// the newsletter's name.
#[test]
fn the_declared_urls_titles_and_footer_hold_of_the_fixture_files() {
    let expected = expected();
    for (name, want) in &expected.issues {
        let dir = repo_root().join(&want.dir);
        let sections: String = want
            .files
            .iter()
            .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
            .collect();
        let mut from = 0;
        for url in &want.urls {
            let at = sections[from..]
                .find(url.as_str())
                .unwrap_or_else(|| panic!("{name}: {url} missing or out of order"));
            from += at + url.len();
        }
        for footer in [&expected.signup_url, &expected.unsubscribe_address] {
            assert!(!sections.contains(footer.as_str()), "{name}: {footer}");
        }
        let reference = std::fs::read_to_string(repo_root().join(&want.reference)).unwrap();
        for title in &want.titles {
            assert!(reference.contains(title.as_str()), "{name}: {title}");
        }
        assert!(
            want.subject.starts_with(&expected.newsletter),
            "{name}: {}",
            want.subject
        );
    }
}

#[test]
fn each_fixture_composes_to_the_declared_kinds_files_and_signature() {
    let expected = expected();
    assert_eq!(expected.issues.len(), 2);
    for (name, want) in &expected.issues {
        let work = TempDir::new("fixture-facts");
        copy_sections(&repo_root().join(&want.dir), work.path());
        let options = ComposeOptions {
            required: vec!["introduction".into()],
            settle_time: std::time::Duration::ZERO,
            max_section_size: 1 << 20,
        };
        let issue = compose::compose(
            work.path(),
            IssueId::parse(&want.date).unwrap(),
            &options,
            std::time::SystemTime::now(),
        )
        .unwrap();
        assert!(issue.is_sendable(), "{name}: {:?}", issue.diagnostics);
        assert_eq!(issue.sections.len(), want.sections, "{name}");
        let got = |f: fn(&compose::Section) -> String| -> Vec<String> {
            issue.sections.iter().map(f).collect()
        };
        assert_eq!(got(|s| s.title.clone()), want.titles, "{name}");
        assert_eq!(got(|s| s.kind.as_str().to_owned()), want.kinds, "{name}");
        assert_eq!(got(|s| s.file_name.clone()), want.files, "{name}");

        // The sign-off: front matter's `signature`, or else the introduction's last line.
        let intro = issue
            .sections
            .iter()
            .find(|s| s.kind == SectionKind::Introduction)
            .expect("an introduction");
        let signed = match &intro.signature {
            Some(signature) => signature.clone(),
            None => intro
                .body
                .trim_end()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_owned(),
        };
        assert_eq!(signed, want.signature, "{name}");
    }
}
