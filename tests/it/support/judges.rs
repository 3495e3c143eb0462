//! Judges of outgoing mail that are not gazette's code: Python's `email` package (the
//! modern `policy.default` parser) and SpamAssassin with local rules only.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// What Python's parser makes of a message's headers.
#[derive(Debug, serde::Deserialize)]
pub struct Parsed {
    /// Display name and address of each From mailbox, decoded.
    pub from: Vec<(String, String)>,
    /// Same for To.
    pub to: Vec<(String, String)>,
    /// Same for Reply-To.
    pub reply_to: Vec<(String, String)>,
    pub subject: String,
    pub message_id: Option<String>,
    pub date: Option<String>,
    pub mime_version: Option<String>,
    pub content_type: String,
    /// Charsets of the text parts.
    pub charsets: Vec<String>,
    /// Headers the parser found defects in, with the defect.
    pub defects: Vec<String>,
    /// Each text part, decoded.
    pub texts: Vec<String>,
}

fn run(program: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Parses `message` with Python's `email` package.
pub fn python_parse(message: &[u8]) -> Parsed {
    const SCRIPT: &str = r#"
import json, sys, email
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
def boxes(name):
    h = m[name]
    return [] if h is None else [[a.display_name, a.addr_spec] for a in h.addresses]
defects = []
for k, v in m.items():
    for d in getattr(v, 'defects', []):
        defects.append('%s: %s' % (k, type(d).__name__))
for part in m.walk():
    for d in part.defects:
        defects.append('part: %s' % type(d).__name__)
texts, charsets = [], []
for part in m.walk():
    if part.get_content_maintype() == 'text':
        texts.append(part.get_content())
        charsets.append(part.get_content_charset() or '')
print(json.dumps({
    'from': boxes('From'), 'to': boxes('To'), 'reply_to': boxes('Reply-To'),
    'subject': str(m['Subject'] or ''), 'message_id': m['Message-ID'] and str(m['Message-ID']),
    'date': m['Date'] and str(m['Date']), 'mime_version': m['MIME-Version'] and str(m['MIME-Version']),
    'content_type': m.get_content_type(), 'charsets': charsets, 'defects': defects, 'texts': texts,
}))
"#;
    let out = run("/usr/bin/python3", &["-c", SCRIPT], message);
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// The names of the SpamAssassin rules that fire on `message` (local rules, no network).
pub fn spamassassin_rules(message: &[u8]) -> Vec<String> {
    let out = run("spamassassin", &["-t", "-L"], message);
    assert!(
        out.status.success(),
        "spamassassin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // X-Spam-Status: No, score=0.0 required=5.0 tests=A,B,\n\tC autolearn=…
    let status: String = text
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .replace("\n\t", " ")
        .lines()
        .find(|l| l.starts_with("X-Spam-Status:"))
        .expect("an X-Spam-Status header")
        .to_owned();
    let tests = status
        .split_whitespace()
        .find_map(|w| w.strip_prefix("tests="))
        .unwrap_or_default()
        .to_owned();
    // The list may continue after a fold as further comma-separated words.
    let mut rules: Vec<String> = tests
        .split(',')
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    let mut after = status
        .split_whitespace()
        .skip_while(|w| !w.starts_with("tests="));
    after.next();
    for word in after.take_while(|w| !w.contains('=')) {
        rules.extend(word.split(',').filter(|t| !t.is_empty()).map(String::from));
    }
    rules
}
