//! What a person typed: the subject without reply prefixes, and the first lines of a reply
//! above anything quoted.
//!
//! Mail clients quote in many ways: `>` prefixes, indentation, an "On … wrote:" line, Outlook's
//! "-----Original Message-----" or "From: … Sent: …" block followed by the original
//! *unquoted*, HTML blockquotes. Our own footer has UNSUBSCRIBE alone on a line, so
//! anything after the first sign of a quotation must never count as a request.

/// How many non-empty lines of a reply are read for a request; a request is short.
pub const REPLY_LINES: usize = 8;
/// Longest line looked at; longer lines are prose, not a one-word request.
const MAX_LINE: usize = 200;
/// How much of a body is looked at, in bytes.
const MAX_BODY: usize = 16 * 1024;

/// The subject with any `Re:`, `AW:`, `Fwd:` … prefixes (and `[tags]`) removed.
pub fn strip_subject_prefixes(subject: &str) -> &str {
    const PREFIXES: &[&str] = &[
        "re", "aw", "fwd", "fw", "wg", "sv", "vs", "antw", "ref", "tr", "rv", "odp", "vl",
    ];
    let mut rest = subject.trim();
    loop {
        let before = rest;
        if let Some(tag_end) = rest.strip_prefix('[').and_then(|r| r.find(']')) {
            rest = rest[tag_end + 2..].trim_start();
        }
        if let Some(colon) = rest.find(':') {
            let head = rest[..colon].trim();
            // "Re[2]:" and "RE(3):" count too.
            let word = head
                .split(['[', '('])
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if PREFIXES.contains(&word.as_str()) && head.len() <= word.len() + 4 {
                rest = rest[colon + 1..].trim_start();
            }
        }
        if rest == before {
            return rest;
        }
    }
}

/// Whether `text` (a subject without its prefixes, or one line a person typed) asks to
/// unsubscribe and says nothing else: `UNSUBSCRIBE`, optionally followed by `me` or by one
/// of our tokens, in any case, with emphasis or a full stop around it. Anything more is
/// prose, a question or a negation ("Unsubscribe? No - keep it coming!"), and a person
/// reads it instead.
pub fn is_request(text: &str) -> bool {
    let text = text.trim_matches(|c: char| c.is_whitespace() || ".!*_\"'«»()[]".contains(c));
    let mut words = text.split_whitespace();
    let Some(first) = words.next() else {
        return false;
    };
    if !first.eq_ignore_ascii_case("unsubscribe") {
        return false;
    }
    match (words.next(), words.next()) {
        (None, _) => true,
        (Some(word), None) => word.eq_ignore_ascii_case("me") || is_token_shaped(word),
        _ => false,
    }
}

/// `<subscriber id>-<32 hex digits>`: how a token looks. Whether it is genuine decides
/// whom it names, not whether the message is a request: a mangled token still leaves the
/// sender's address to match.
fn is_token_shaped(word: &str) -> bool {
    word.split_once('-').is_some_and(|(id, mac)| {
        !id.is_empty()
            && id.len() <= 19
            && id.bytes().all(|b| b.is_ascii_digit())
            && mac.len() == 32
            && mac.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The first non-empty lines of a plain-text reply, stopping at the first quoted line
/// (`>` or indented), attribution, forwarded-message marker or signature separator.
pub fn reply_lines(body: &str) -> Vec<&str> {
    let body = cut(body, MAX_BODY);
    let mut lines = Vec::new();
    let all: Vec<&str> = body.lines().take(REPLY_LINES * 4).collect();
    for (i, raw) in all.iter().enumerate() {
        let line = raw.trim();
        if starts_quotation(line, all.get(i + 1).map(|l| l.trim())) || is_indented(raw) {
            break;
        }
        if line.is_empty() {
            continue;
        }
        lines.push(if line.len() > MAX_LINE { "" } else { line });
        if lines.len() == REPLY_LINES {
            break;
        }
    }
    lines
}

/// The HTML of a reply with everything from the first quotation on removed, as text.
pub fn html_reply_text(html: &str) -> String {
    let html = cut(html, MAX_BODY * 4);
    let lower = html.to_ascii_lowercase();
    const MARKERS: &[&str] = &[
        "<blockquote",
        "gmail_quote",
        "moz-cite-prefix",
        "divrplyfwdmsg",
        "appendonsend",
        "yahoo_quoted",
        "-----original message-----",
        "<hr",
    ];
    let cut = MARKERS
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .unwrap_or(html.len());
    // `cut` indexes the lower-cased copy, whose byte offsets equal the original's
    // (ASCII lower-casing keeps lengths). A marker inside a tag (a class name) cuts
    // from that tag's start, so no tag is left half open.
    let head = &html[..cut];
    let cut = match (head.rfind('<'), head.rfind('>')) {
        (Some(lt), gt) if gt.is_none_or(|g| g < lt) => lt,
        _ => cut,
    };
    mail_parser::decoders::html::html_to_text(&html[..cut])
}

/// Some clients quote by indenting the original instead of prefixing `>`: a non-empty
/// line that starts with a tab or two spaces is quoted text, not something typed as a
/// reply. (One space is tolerated: format=flowed and stray keystrokes give that.)
fn is_indented(raw: &str) -> bool {
    !raw.trim().is_empty() && (raw.starts_with('\t') || raw.starts_with("  "))
}

fn starts_quotation(line: &str, next: Option<&str>) -> bool {
    let lower = line.to_ascii_lowercase();
    line.starts_with('>')
        || line == "--"
        || line == "-- "
        || lower.starts_with("-----original message")
        || lower.starts_with("----- original message")
        || lower.starts_with("---------- forwarded message")
        || lower.starts_with("-------- original message")
        || lower.starts_with("begin forwarded message")
        || (line.starts_with("____") && line.chars().all(|c| c == '_'))
        // Outlook: "From: Name <addr>" then "Sent:"/"Date:" introduces the original.
        || (lower.starts_with("from:")
            && next.is_some_and(|n| {
                let n = n.to_ascii_lowercase();
                n.starts_with("sent:") || n.starts_with("date:") || n.starts_with("to:")
            }))
        // "On Tue, 1 Sep 2021 at 10:00, Newsletter <…> wrote:" and its translations,
        // possibly wrapped onto two lines.
        || is_attribution(&lower)
        || next.is_some_and(|n| {
            let n = n.to_ascii_lowercase();
            n.starts_with('>') && lower.ends_with(':')
        })
}

fn is_attribution(lower: &str) -> bool {
    // "On … wrote:", "Am … schrieb Name <addr>:", "Le … a écrit :": the verb may come
    // before the name, so any line ending in ':' that has one counts. Stopping early on
    // a false match only makes us read less, never act on a quotation.
    const VERBS: &[&str] = &[
        "wrote",
        "writes",
        "schrieb",
        "a écrit",
        "escribió",
        "scrisse",
        "skrev",
        "napisał",
        "schreef",
        "kirjoitti",
        "escreveu",
        "написал",
    ];
    lower.trim_end().ends_with(':') && VERBS.iter().any(|v| lower.contains(v))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(super) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_prefixes_are_removed() {
        assert_eq!(
            strip_subject_prefixes("Re: AW: Fwd: UNSUBSCRIBE"),
            "UNSUBSCRIBE"
        );
        assert_eq!(
            strip_subject_prefixes("RE[2]: unsubscribe 4-ab"),
            "unsubscribe 4-ab"
        );
        assert_eq!(strip_subject_prefixes("[External] Re: x"), "x");
        assert_eq!(strip_subject_prefixes("Remember: x"), "Remember: x");
        assert_eq!(strip_subject_prefixes("Re:"), "");
        assert_eq!(strip_subject_prefixes("[unclosed"), "[unclosed");
    }

    #[test]
    fn a_request_says_unsubscribe_and_nothing_else() {
        for yes in [
            "UNSUBSCRIBE",
            "unsubscribe",
            "  Unsubscribe. ",
            "*UNSUBSCRIBE*",
            "Unsubscribe me",
            "UNSUBSCRIBE ME!",
            "UNSUBSCRIBE 7-0123456789abcdef0123456789abcdef",
        ] {
            assert!(is_request(yes), "{yes}");
        }
        for no in [
            "Unsubscribe? No - keep it coming!",
            "Unsubscribe?",
            "unsubscribed?",
            "Unsubscribe, please",
            "UNSUBSCRIBE - no, please don't",
            "please unsubscribe me",
            "Why unsubscribe",
            "Don't unsubscribe me",
            "unsub",
            "unsubscribe 7-0123",
            "unsubscribe me now",
            "é",
            "",
        ] {
            assert!(!is_request(no), "{no}");
        }
    }

    #[test]
    fn reply_lines_stop_at_quotes() {
        let body = "Thanks!\n\nOn Tue, 1 Sep 2021, News <n@x.org> wrote:\n> UNSUBSCRIBE\n";
        assert_eq!(reply_lines(body), vec!["Thanks!"]);
        let outlook = "Great issue\r\n\r\nFrom: News <n@x.org>\r\nSent: Monday\r\nUNSUBSCRIBE\r\n";
        assert_eq!(reply_lines(outlook), vec!["Great issue"]);
        let wrapped = "ok\nOn Tue, 1 Sep 2021, Newsletter\n<n@x.org> wrote:\n> hi";
        assert_eq!(
            reply_lines(wrapped),
            vec!["ok", "On Tue, 1 Sep 2021, Newsletter"]
        );
        assert_eq!(reply_lines("unsubscribe\n-- \nAda"), vec!["unsubscribe"]);
        let indented = "Thanks!\n\n    Sign up here\n\n    UNSUBSCRIBE\n";
        assert_eq!(reply_lines(indented), vec!["Thanks!"]);
        assert_eq!(reply_lines("ok\n\tUNSUBSCRIBE"), vec!["ok"]);
        assert_eq!(reply_lines(" UNSUBSCRIBE\n"), vec!["UNSUBSCRIBE"]);
    }

    #[test]
    fn html_quotes_are_cut() {
        let html = "<div>Thanks</div><div class=\"gmail_quote\"><p>UNSUBSCRIBE</p></div>";
        let text = html_reply_text(html);
        assert!(text.contains("Thanks"), "{text}");
        assert!(!text.contains("UNSUBSCRIBE"), "{text}");
    }
}
