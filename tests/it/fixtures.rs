//! The fixture issues compose into exactly what `tests/fixtures/expected.toml` declares:
//! each section's kind and file, in contents order, the section count and the sign-off.

use crate::support::{TempDir, copy_sections, repo_root};
use gazette::compose::{self, ComposeOptions, SectionKind};
use gazette::domain::IssueId;

#[derive(serde::Deserialize)]
struct Expected {
    issues: std::collections::BTreeMap<String, ExpectedIssue>,
}

#[derive(serde::Deserialize)]
struct ExpectedIssue {
    dir: String,
    date: String,
    sections: usize,
    signature: String,
    titles: Vec<String>,
    kinds: Vec<String>,
    files: Vec<String>,
}

#[test]
fn each_fixture_composes_to_the_declared_kinds_files_and_signature() {
    let path = repo_root().join("tests/fixtures/expected.toml");
    let expected: Expected = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
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
