//! One section file: front matter, kind, order, title and the Markdown body.

use super::Diagnostic;
use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};
use std::path::Path;

/// What a section is; each kind has its own template partial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// The opening letter; may carry a signature line.
    Introduction,
    /// An ordinary section.
    Article,
    /// Upcoming events.
    Events,
    /// The "In case you missed it" list: each item a link with a line of text.
    Links,
}

impl SectionKind {
    /// The kind's name in front matter, settings and template file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Introduction => "introduction",
            Self::Article => "article",
            Self::Events => "events",
            Self::Links => "links",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "introduction" | "intro" => Some(Self::Introduction),
            "article" => Some(Self::Article),
            "events" | "event" => Some(Self::Events),
            "links" | "icymi" => Some(Self::Links),
            _ => None,
        }
    }

    /// The kind a file name implies when front matter does not say.
    fn from_stem(stem: &str) -> Self {
        let stem = stem.to_ascii_lowercase();
        if stem.starts_with("intro") {
            Self::Introduction
        } else if stem == "events" || stem == "event" {
            Self::Events
        } else if ["in-case-you-missed-it", "icymi", "links"].contains(&stem.as_str()) {
            Self::Links
        } else {
            Self::Article
        }
    }

    /// Where a section without a numeric prefix or `order` goes: the introduction
    /// first, the links last, events after numbered articles.
    fn default_order(self) -> i64 {
        match self {
            Self::Introduction => 0,
            Self::Article => 500,
            Self::Events => 900,
            Self::Links => 1000,
        }
    }
}

/// One section of an issue, parsed from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The file's name, e.g. `20-deep-dives.md`.
    pub file_name: String,
    pub kind: SectionKind,
    pub order: i64,
    pub title: String,
    pub author: Option<String>,
    pub signature: Option<String>,
    /// The inbox snippet line (`preheader = "…"`), when the editor wrote one.
    pub preheader: Option<String>,
    /// The Markdown body, without front matter or the title heading.
    pub body: String,
    /// The line of the file where `body` starts (1-based), for messages about the body.
    pub body_line: usize,
}

impl Section {
    /// The file name without extension and numeric prefix: `deep-dives`.
    pub fn stem(&self) -> &str {
        let stem = self
            .file_name
            .rsplit_once('.')
            .map_or(self.file_name.as_str(), |(s, _)| s);
        strip_order_prefix(stem).1
    }
}

#[derive(Debug, Default)]
struct FrontMatter {
    title: Option<String>,
    kind: Option<String>,
    order: Option<i64>,
    author: Option<String>,
    signature: Option<String>,
    preheader: Option<String>,
}

/// Splits `20-deep-dives` into `(Some(20), "deep-dives")`.
pub(crate) fn strip_order_prefix(stem: &str) -> (Option<i64>, &str) {
    let digits = stem
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(stem.len());
    if digits == 0 || digits > 9 {
        return (None, stem);
    }
    let rest = stem[digits..].trim_start_matches(['-', '_', ' ', '.']);
    (stem[..digits].parse().ok(), rest)
}

/// `in-case-you-missed-it` → `In case you missed it`.
fn title_from_stem(stem: &str) -> String {
    // A file name is editor text too.
    let words: String = stem
        .chars()
        .filter(|c| !is_hidden_character(*c))
        .map(|c| if matches!(c, '-' | '_') { ' ' } else { c })
        .collect();
    let mut chars = words.trim().chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Parses one section file. `Err` is a problem that makes the file unusable; the
/// warnings that come with `Ok` are things an editor should look at.
pub fn parse_section(path: &Path, text: &str) -> Result<(Section, Vec<Diagnostic>), Diagnostic> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (cleaned, mut warnings) = strip_hidden_characters(path, text);
    let text = cleaned.as_ref();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let full_stem = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (prefix_order, stem) = strip_order_prefix(&full_stem);

    let (front, body, body_line, front_warnings) = split_front_matter(path, text)?;
    warnings.extend(front_warnings);
    let kind = match &front.kind {
        Some(raw) => SectionKind::parse(raw).ok_or_else(|| {
            Diagnostic::error(
                path,
                front_line(text, "kind"),
                format!(
                    "front matter: kind '{raw}' is not one of introduction, article, events, links"
                ),
            )
        })?,
        None => SectionKind::from_stem(stem),
    };
    for (key, value) in [
        ("title", &front.title),
        ("author", &front.author),
        ("signature", &front.signature),
        ("preheader", &front.preheader),
    ] {
        if value.as_deref().is_some_and(|v| v.contains(['\r', '\n'])) {
            return Err(Diagnostic::error(
                path,
                front_line(text, key),
                format!("front matter: {key} must be one line"),
            ));
        }
    }
    if front.signature.is_some() && kind != SectionKind::Introduction {
        warnings.push(Diagnostic::warning(
            path,
            front_line(text, "signature"),
            "only the introduction carries a signature; this one is ignored",
        ));
    }

    // A title in front matter leaves a leading heading in the body, where the editor put it.
    let (heading, body, body_line) = if front.title.is_some() {
        (None, body, body_line)
    } else {
        take_title_heading(body, body_line)
    };
    let title = front
        .title
        .clone()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .or(heading)
        .unwrap_or_else(|| title_from_stem(stem));
    if body.trim().is_empty() {
        let what = if kind == SectionKind::Events {
            "the events section is empty"
        } else {
            "the section has a title but no text"
        };
        warnings.push(Diagnostic::warning(path, None, what));
    }
    warnings.extend(lint_body(path, body, body_line, kind));

    Ok((
        Section {
            file_name,
            kind,
            order: front.order.or(prefix_order).unwrap_or(kind.default_order()),
            title,
            author: front
                .author
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty()),
            signature: front
                .signature
                .filter(|_| kind == SectionKind::Introduction)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            preheader: front
                .preheader
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty()),
            body: body.to_owned(),
            body_line,
        },
        warnings,
    ))
}

/// The 1-based line of `key = …` (TOML) or `key: …` (YAML) in the front matter, if it
/// is there.
fn front_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(['=', ':']))
        })
        .map(|i| i + 1)
}

/// Characters that do not belong in a newsletter and can hide what a text says: C0/C1
/// control characters other than tab and line ends (NUL, ESC, …), the bidirectional
/// overrides and isolates (U+202A–U+202E, U+2066–U+2069) that reorder text on screen,
/// and the two private-use characters rendering marks per-recipient slots with
/// ([`SLOT_MARKERS`]).
fn is_hidden_character(c: char) -> bool {
    (c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
        || SLOT_MARKERS.contains(&c)
}

/// What rendering puts around a recipient's field (`render::personalize`). Editor text
/// that kept them could make a title or a signature print each reader's address or
/// unsubscribe link, so they go with the other hidden characters.
const SLOT_MARKERS: [char; 2] = ['\u{e000}', '\u{e001}'];

/// Removes hidden characters from the whole file, before the front matter is read: every
/// field an editor supplies (title, author, signature, preheader, body) passes this one
/// rule. A warning for each line that had some.
fn strip_hidden_characters<'a>(
    path: &Path,
    text: &'a str,
) -> (std::borrow::Cow<'a, str>, Vec<Diagnostic>) {
    if !text.contains(is_hidden_character) {
        return (std::borrow::Cow::Borrowed(text), Vec::new());
    }
    let mut warnings = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let mut found: Vec<String> = Vec::new();
        for c in line.chars().filter(|c| is_hidden_character(*c)) {
            let name = format!("U+{:04X}", u32::from(c));
            if !found.contains(&name) {
                found.push(name);
            }
        }
        if !found.is_empty() {
            warnings.push(Diagnostic::warning(
                path,
                Some(i + 1),
                format!(
                    "invisible characters ({}) are removed; they are not sent",
                    found.join(", ")
                ),
            ));
        }
    }
    let cleaned = text.chars().filter(|c| !is_hidden_character(*c)).collect();
    (std::borrow::Cow::Owned(cleaned), warnings)
}

/// The known key closest to a mistyped one, if it is close enough to be a typo.
fn suggest_key(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    FRONT_MATTER_KEYS
        .iter()
        .map(|known| (edit_distance(&key, known), *known))
        .filter(|(d, known)| *d <= 2 && *d < known.len() / 2 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

/// Levenshtein distance, counting a swap of neighbours (`titel`) as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// The keys front matter may carry.
const FRONT_MATTER_KEYS: [&str; 6] = ["title", "kind", "order", "author", "signature", "preheader"];

/// A front-matter value, whichever language it was written in.
enum FrontValue {
    Text(String),
    Integer(i64),
    /// Anything else, by the name of its type.
    Other(&'static str),
}

/// The front matter's delimiter line and language.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FrontLanguage {
    /// `+++` … `+++`
    Toml,
    /// `---` … `---` (or `...`), as Hugo and Jekyll write it.
    Yaml,
}

/// Splits `+++` (TOML) or `---` (YAML) front matter from the body. Both carry the same
/// keys. A key gazette does not know is a warning (and ignored), so a typo shows up in
/// `check` without holding the issue; a known key with the wrong type is an error.
fn split_front_matter<'a>(
    path: &Path,
    text: &'a str,
) -> Result<(FrontMatter, &'a str, usize, Vec<Diagnostic>), Diagnostic> {
    let first_line_end = text.find('\n').map_or(text.len(), |i| i + 1);
    let language = match text[..first_line_end].trim_end() {
        "+++" => FrontLanguage::Toml,
        "---" => FrontLanguage::Yaml,
        _ => return Ok((FrontMatter::default(), text, 1, Vec::new())),
    };
    let closes = |line: &str| match language {
        FrontLanguage::Toml => line == "+++",
        FrontLanguage::Yaml => line == "---" || line == "...",
    };
    let mut offset = first_line_end;
    let mut line_no = 2;
    let mut closed = None;
    while offset < text.len() {
        let end = text[offset..]
            .find('\n')
            .map_or(text.len(), |i| offset + i + 1);
        if closes(text[offset..end].trim_end()) {
            closed = Some((offset, end));
            break;
        }
        offset = end;
        line_no += 1;
    }
    let inner_end = closed.map_or(text.len(), |(start, _)| start);
    let inner = &text[first_line_end..inner_end];
    let Some((_, body_start)) = closed else {
        if language == FrontLanguage::Yaml && !looks_like_yaml(inner) {
            // A Markdown rule (`---`) at the top of a file, not front matter.
            return Ok((FrontMatter::default(), text, 1, Vec::new()));
        }
        let mark = if language == FrontLanguage::Toml {
            "+++"
        } else {
            "---"
        };
        return Err(Diagnostic::error(
            path,
            Some(1),
            format!("front matter opened with {mark} on line 1 is never closed with a {mark} line"),
        ));
    };
    let entries = match language {
        FrontLanguage::Toml => toml_entries(path, inner)?,
        FrontLanguage::Yaml => match yaml_entries(path, inner)? {
            Some(entries) => entries,
            // `---` / text / `---`: Markdown (a rule, then a heading), not front matter.
            None => return Ok((FrontMatter::default(), text, 1, Vec::new())),
        },
    };
    let mut warnings = Vec::new();
    let mut front = FrontMatter::default();
    for (key, value) in entries {
        let line = front_line(text, &key);
        let text_value = |value: FrontValue| match value {
            FrontValue::Text(s) => Ok(s),
            FrontValue::Integer(_) => Err(Diagnostic::error(
                path,
                line,
                format!("front matter: {key} must be text in quotes, not a number"),
            )),
            FrontValue::Other(kind) => Err(Diagnostic::error(
                path,
                line,
                format!("front matter: {key} must be text in quotes, not {kind}"),
            )),
        };
        match key.as_str() {
            "title" => front.title = Some(text_value(value)?),
            "kind" => front.kind = Some(text_value(value)?),
            "author" => front.author = Some(text_value(value)?),
            "signature" => front.signature = Some(text_value(value)?),
            "preheader" => front.preheader = Some(text_value(value)?),
            "order" => match value {
                FrontValue::Integer(n) => front.order = Some(n),
                FrontValue::Text(_) => {
                    return Err(Diagnostic::error(
                        path,
                        line,
                        "front matter: order must be a whole number, not text",
                    ));
                }
                FrontValue::Other(kind) => {
                    return Err(Diagnostic::error(
                        path,
                        line,
                        format!("front matter: order must be a whole number, not {kind}"),
                    ));
                }
            },
            _ => warnings.push(Diagnostic::warning(
                path,
                line,
                match suggest_key(&key) {
                    Some(known) => format!(
                        "front matter: '{key}' is not a key gazette knows; did you mean '{known}'? It is ignored"
                    ),
                    None => format!(
                        "front matter: '{key}' is not a key gazette knows ({}); it is ignored",
                        FRONT_MATTER_KEYS.join(", ")
                    ),
                },
            )),
        }
    }
    Ok((front, &text[body_start..], line_no + 1, warnings))
}

/// True when the first non-blank line is a `key: value` pair.
fn looks_like_yaml(inner: &str) -> bool {
    inner
        .lines()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| l.split_once(':'))
        .is_some_and(|(key, _)| {
            let key = key.trim();
            !key.is_empty()
                && !key.starts_with(['-', '#'])
                && key
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        })
}

fn toml_entries(path: &Path, inner: &str) -> Result<Vec<(String, FrontValue)>, Diagnostic> {
    let table: toml::Table = toml::from_str(inner).map_err(|e| {
        let line = e
            .span()
            .map(|s| 2 + inner[..s.start.min(inner.len())].matches('\n').count());
        Diagnostic::error(
            path,
            line,
            format!("front matter: {}", e.message().trim_end()),
        )
    })?;
    Ok(table
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                toml::Value::String(s) => FrontValue::Text(s),
                toml::Value::Integer(n) => FrontValue::Integer(n),
                other => FrontValue::Other(other.type_str()),
            };
            (key, value)
        })
        .collect())
}

/// The YAML front matter's keys and values; `None` when the text between the `---`
/// lines is not meant as YAML at all (Markdown that starts with a rule).
fn yaml_entries(path: &Path, inner: &str) -> Result<Option<Vec<(String, FrontValue)>>, Diagnostic> {
    use serde_yaml_ng::Value;
    let value: Value = match serde_yaml_ng::from_str(inner) {
        Ok(value) => value,
        Err(_) if !looks_like_yaml(inner) => return Ok(None),
        Err(e) => {
            let line = e.location().map(|l| l.line() + 1);
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message);
            return Err(Diagnostic::error(
                path,
                line,
                format!("YAML front matter: {message}"),
            ));
        }
    };
    let mapping = match value {
        Value::Mapping(m) => m,
        Value::Null => return Ok(Some(Vec::new())),
        _ if !looks_like_yaml(inner) => return Ok(None),
        _ => {
            return Err(Diagnostic::error(
                path,
                Some(2),
                "YAML front matter must be `key: value` lines",
            ));
        }
    };
    let mut entries = Vec::new();
    for (key, value) in mapping {
        let key = match key {
            Value::String(k) => k,
            other => {
                return Err(Diagnostic::error(
                    path,
                    Some(2),
                    format!("YAML front matter: the key {other:?} is not a name"),
                ));
            }
        };
        // YAML writers leave scalars unquoted: `title: 2024` is a title, not a number.
        let value = match value {
            Value::String(s) => FrontValue::Text(s),
            Value::Number(n) if key == "order" => match n.as_i64() {
                Some(n) => FrontValue::Integer(n),
                None => FrontValue::Other("a fraction"),
            },
            Value::Number(n) => FrontValue::Text(n.to_string()),
            Value::Bool(b) if key != "order" => FrontValue::Text(b.to_string()),
            Value::Bool(_) => FrontValue::Other("true/false"),
            Value::Null => FrontValue::Other("empty"),
            Value::Sequence(_) => FrontValue::Other("a list"),
            Value::Mapping(_) => FrontValue::Other("a table"),
            Value::Tagged(_) => FrontValue::Other("a tagged value"),
        };
        entries.push((key, value));
    }
    Ok(Some(entries))
}

/// Takes a leading heading off the body as the section's title: `# Title` (any level),
/// or `Title` underlined with `===` or `---`.
fn take_title_heading(body: &str, body_line: usize) -> (Option<String>, &str, usize) {
    let mut offset = 0;
    let mut line = body_line;
    let mut lines = body.split_inclusive('\n');
    while let Some(raw) = lines.next() {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            offset += raw.len();
            line += 1;
            continue;
        }
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with([' ', '\t']) {
            let title = trimmed[hashes..]
                .trim()
                .trim_end_matches('#')
                .trim()
                .to_owned();
            if !title.is_empty() {
                return (Some(title), &body[offset + raw.len()..], line + 1);
            }
        }
        if let Some(next) = lines.next() {
            let underline = next.trim();
            let is_underline = !underline.is_empty()
                && (underline.chars().all(|c| c == '=') || underline.chars().all(|c| c == '-'));
            if is_underline && !trimmed.starts_with(['-', '*', '+', '>', '|']) {
                let rest = offset + raw.len() + next.len();
                return (Some(trimmed.to_owned()), &body[rest..], line + 2);
            }
        }
        break;
    }
    (None, body, body_line)
}

/// Markdown options used everywhere a section body is read.
pub(crate) fn markdown_options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH
}

/// What is worth telling an editor about a body: links that go nowhere, raw HTML,
/// link-list items without a link, images without alt text.
fn lint_body(path: &Path, body: &str, body_line: usize, kind: SectionKind) -> Vec<Diagnostic> {
    let line_at = |offset: usize| body_line + body[..offset.min(body.len())].matches('\n').count();
    let mut out = Vec::new();
    let mut broken = Vec::new();
    let mut callback = |link: pulldown_cmark::BrokenLink<'_>| {
        broken.push((link.span.start, link.reference.to_string()));
        None
    };
    let parser =
        Parser::new_with_broken_link_callback(body, markdown_options(), Some(&mut callback));
    let mut link_text: Option<(usize, String, String)> = None;
    let mut item_depth = 0usize;
    let mut item_has_link = Vec::new();
    // An image being read: where it starts, its address and its alt text so far.
    let mut image: Option<(usize, String, String)> = None;
    for (event, range) in parser.into_offset_iter() {
        if let Some((_, _, alt)) = image.as_mut()
            && let Event::Text(t) | Event::Code(t) = &event
        {
            alt.push_str(t);
        }
        match event {
            Event::Start(Tag::Image { dest_url, .. }) => {
                image = Some((range.start, dest_url.to_string(), String::new()));
            }
            Event::End(TagEnd::Image) => {
                if let Some((start, dest, alt)) = image.take()
                    && alt.trim().is_empty()
                {
                    out.push(Diagnostic::warning(
                        path,
                        Some(line_at(start)),
                        format!(
                            "the image '{dest}' has no alt text; screen readers and mail that blocks images show nothing"
                        ),
                    ));
                }
            }
            Event::Start(Tag::Link {
                dest_url,
                link_type,
                ..
            }) => {
                link_text = Some((range.start, String::new(), dest_url.to_string()));
                if let Some(flag) = item_has_link.last_mut() {
                    *flag = true;
                }
                let _ = link_type == LinkType::Autolink;
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, text, _)) = link_text.as_mut() {
                    text.push_str(&t);
                }
            }
            Event::End(TagEnd::Link) => {
                if let Some((start, text, dest)) = link_text.take() {
                    let dest = dest.trim();
                    if dest.is_empty() {
                        out.push(Diagnostic::warning(
                            path,
                            Some(line_at(start)),
                            format!("the link '{text}' has no URL; it will be shown as plain text"),
                        ));
                    } else if !crate::domain::is_safe_link(dest) {
                        out.push(Diagnostic::warning(
                            path,
                            Some(line_at(start)),
                            format!(
                                "the link '{text}' points to '{dest}', which is not an http(s) or mailto address; it will be shown as plain text"
                            ),
                        ));
                    }
                }
            }
            Event::Html(_) | Event::InlineHtml(_) => out.push(Diagnostic::warning(
                path,
                Some(line_at(range.start)),
                "raw HTML is shown as text, not interpreted",
            )),
            Event::Start(Tag::Item) => {
                item_depth += 1;
                item_has_link.push(false);
            }
            Event::End(TagEnd::Item) => {
                item_depth -= 1;
                let had = item_has_link.pop().unwrap_or(true);
                if kind == SectionKind::Links && item_depth == 0 && !had {
                    out.push(Diagnostic::warning(
                        path,
                        Some(line_at(range.start)),
                        "this item in the links list has no link",
                    ));
                }
            }
            _ => {}
        }
    }
    for (start, reference) in broken {
        out.push(Diagnostic::warning(
            path,
            Some(line_at(start)),
            format!("the link reference [{reference}] is not defined anywhere in the file"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, text: &str) -> Result<(Section, Vec<Diagnostic>), Diagnostic> {
        parse_section(Path::new(name), text)
    }

    #[test]
    fn infers_kind_order_and_title_without_front_matter() {
        let (s, w) = parse("20-deep-dives.md", "# Local area deep dives\n\nText.\n").unwrap();
        assert_eq!(
            (s.kind, s.order, s.title.as_str()),
            (SectionKind::Article, 20, "Local area deep dives")
        );
        assert_eq!(s.body.trim(), "Text.");
        assert_eq!(s.body_line, 2);
        assert!(w.is_empty(), "{w:?}");
        let (s, _) = parse("in-case-you-missed-it.md", "- [a](https://a.example)\n").unwrap();
        assert_eq!(
            (s.kind, s.title.as_str()),
            (SectionKind::Links, "In case you missed it")
        );
        assert_eq!(
            parse("introduction.md", "Hi").unwrap().0.kind,
            SectionKind::Introduction
        );
        assert_eq!(parse("events.md", "x").unwrap().0.kind, SectionKind::Events);
        assert_eq!(
            parse("icymi.markdown", "x").unwrap().0.kind,
            SectionKind::Links
        );
    }

    #[test]
    fn front_matter_wins() {
        let text = "+++\ntitle = \"Chair's introduction\"\nkind = \"introduction\"\norder = 5\nsignature = \"Josh\"\n+++\n# Ignored? no: kept as body\n";
        let (s, _) = parse("a.md", text).unwrap();
        assert_eq!(s.title, "Chair's introduction");
        assert_eq!(s.order, 5);
        assert_eq!(s.signature.as_deref(), Some("Josh"));
        assert!(
            s.body.contains("# Ignored"),
            "a title from front matter leaves the heading in the body"
        );
    }

    #[test]
    fn bad_front_matter_names_the_line() {
        let text = "+++\ntitle = \"ok\"\norder = \"first\"\n+++\nbody\n";
        let err = parse("var/sections/20-x.md", text).unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(
            err.to_string()
                .starts_with("var/sections/20-x.md:3: error: front matter"),
            "{err}"
        );

        let (s, warnings) = parse("x.md", "+++\ntitel = \"typo\"\n+++\n# Heading\n").unwrap();
        assert_eq!(s.title, "Heading");
        assert_eq!(warnings[0].line, Some(2), "{warnings:?}");
        assert!(
            warnings[0].message.contains("'titel' is not a key"),
            "{warnings:?}"
        );
        assert!(
            warnings[0].message.contains("did you mean 'title'"),
            "{warnings:?}"
        );
        let (_, warnings) = parse(
            "x.md",
            "+++
date = \"2024-01-01\"\n+++\nx\n",
        )
        .unwrap();
        assert!(
            !warnings[0].message.contains("did you mean"),
            "{warnings:?}"
        );

        let err = parse("x.md", "+++\ntitle = 3\n+++\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("title must be text"), "{err}");

        let err = parse("x.md", "+++\ntitle = \"never closed\"\n").unwrap_err();
        assert_eq!(err.line, Some(1));

        let err = parse("x.md", "+++\nkind = \"poem\"\n+++\n").unwrap_err();
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn warns_about_links_to_nowhere_with_their_line() {
        let text = "# T\n\nfine [a](https://a.example)\n\n[empty]() and [js](javascript:alert(1))\n\n[ref][nope]\n";
        let (_, w) = parse("x.md", text).unwrap();
        let lines: Vec<_> = w.iter().map(|d| (d.line, d.message.clone())).collect();
        assert!(
            lines
                .iter()
                .any(|(l, m)| *l == Some(5) && m.contains("'empty' has no URL")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|(l, m)| *l == Some(5) && m.contains("javascript:")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|(l, m)| *l == Some(7) && m.contains("[nope]")),
            "{lines:?}"
        );
    }

    #[test]
    fn titles_come_from_any_leading_heading() {
        let (s, _) = parse("20-x.md", "## Bridge the Gap\n\nText.\n").unwrap();
        assert_eq!(
            (s.title.as_str(), s.body.trim()),
            ("Bridge the Gap", "Text.")
        );
        let (s, _) = parse("20-x.md", "Bridge the Gap\n==============\n\nText.\n").unwrap();
        assert_eq!(
            (s.title.as_str(), s.body.trim(), s.body_line),
            ("Bridge the Gap", "Text.", 3)
        );
        let (s, _) = parse("20-x.md", "- a list\n- --\n").unwrap();
        assert_eq!(s.title, "X");
        let (s, _) = parse("20-x.md", "#hashtag is not a heading\n").unwrap();
        assert_eq!(s.title, "X");
    }

    #[test]
    fn empty_events_and_linkless_items_are_flagged() {
        let (_, w) = parse("events.md", "# Events\n\n").unwrap();
        assert!(
            w.iter()
                .any(|d| d.message.contains("events section is empty"))
        );
        let (_, w) = parse(
            "links.md",
            "- [a](https://a.example) text\n- no link here\n",
        )
        .unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].line, Some(2));
    }

    #[test]
    fn yaml_front_matter_or_a_markdown_rule() {
        let (s, w) = parse(
            "a.md",
            "---\ntitle: Chair's introduction\nkind: introduction\norder: 2\ndraft: false\n---\nHello\n",
        )
        .unwrap();
        assert_eq!((s.title.as_str(), s.order), ("Chair's introduction", 2));
        assert_eq!(s.kind, SectionKind::Introduction);
        assert_eq!(s.body.trim(), "Hello");
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].line, Some(5));
        // A rule at the top of a Markdown file is not front matter.
        let (s, _) = parse("20-x.md", "---\n\nJust text.\n").unwrap();
        assert!(s.body.contains("Just text."));
        let (s, _) = parse("20-x.md", "---\nA heading\n---\nText\n").unwrap();
        assert!(s.body.contains("A heading"), "{s:?}");
        // Front matter that is never closed is an error, not published.
        let err = parse("x.md", "---\ntitle: x\n\nBody\n").unwrap_err();
        assert_eq!(err.line, Some(1));
        let err = parse("x.md", "---\ntitle: x\norder: first\n---\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
    }

    #[test]
    fn hidden_characters_are_removed_with_a_warning_per_line() {
        let (s, w) = parse("x.md", "# A\u{202e}B\n\nok\nNUL\0 ESC\u{1b}\n").unwrap();
        assert_eq!(s.title, "AB");
        assert_eq!(s.body.trim(), "ok\nNUL ESC");
        let lines: Vec<_> = w.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![Some(1), Some(4)], "{w:?}");
        assert!(w[1].message.contains("U+0000, U+001B"), "{w:?}");
    }

    #[test]
    fn slot_markers_leave_every_field_with_a_warning() {
        let text = "+++\ntitle = \"T \u{e000}email\u{e001}\"\nauthor = \"A \u{e000}name\u{e001}\"\n\
                    signature = \"S \u{e000}email\u{e001}\"\npreheader = \"P \u{e001}\"\n+++\n\
                    Body \u{e000}unsubscribe_url\u{e001}\n";
        let (s, w) = parse("introduction.md", text).unwrap();
        assert_eq!(s.title, "T email");
        assert_eq!(s.author.as_deref(), Some("A name"));
        assert_eq!(s.signature.as_deref(), Some("S email"));
        assert_eq!(s.preheader.as_deref(), Some("P"));
        assert_eq!(s.body.trim(), "Body unsubscribe_url");
        let lines: Vec<_> = w.iter().map(|d| d.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 7].map(Some), "{w:?}");
        assert!(w[0].message.contains("U+E000, U+E001"), "{w:?}");
        // A file name that gives the title is editor text too.
        let (s, _) = parse("20-\u{e000}email\u{e001}.md", "Body\n").unwrap();
        assert_eq!(s.title, "Email");
    }
}
