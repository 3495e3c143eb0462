//! Markdown to email-safe HTML and to wrapped plain text.
//!
//! Both come from the same events, so the two parts of a message say the same thing.
//! Editor content is data: raw HTML in Markdown is shown as text, and links other than
//! http(s) and mailto lose their link and keep their words.

use crate::compose::section::markdown_options;
use crate::domain::is_safe_link;
use pulldown_cmark::{CowStr, Event, HeadingLevel, Parser, Tag, TagEnd};

/// Where plain text wraps, as the samples do: near 76 columns.
pub const TEXT_WIDTH: usize = 76;

/// The longest [`link_label`] before it is shortened with an ellipsis.
const LABEL_WIDTH: usize = 40;

/// A web address as a reader-friendly label: the host without `www.` and the path,
/// without scheme, query or fragment, shortened to about 40 characters.
/// `https://www.bbc.co.uk/sounds/play/m000zdtf` reads `bbc.co.uk/sounds/play/m000zdtf`.
pub fn link_label(url: &str) -> String {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = ["https://", "http://"]
        .iter()
        .find(|scheme| lower.starts_with(*scheme))
        .map(|scheme| &url[scheme.len()..])
    else {
        return url.to_owned();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let rest = rest.trim_end_matches('/');
    let rest = rest
        .strip_prefix("www.")
        .or_else(|| rest.strip_prefix("WWW."))
        .unwrap_or(rest);
    if rest.chars().count() <= LABEL_WIDTH {
        return rest.to_owned();
    }
    let cut: String = rest.chars().take(LABEL_WIDTH - 1).collect();
    // End at a path step or word when one is near, so the label does not stop mid-word.
    let separators = ['/', '-', '_', '.'];
    let at_a_break = rest
        .chars()
        .nth(LABEL_WIDTH - 1)
        .is_some_and(|c| separators.contains(&c));
    let cut = match cut.rfind(separators) {
        Some(at) if !at_a_break && at >= LABEL_WIDTH / 2 => cut[..at].to_owned(),
        _ => cut,
    };
    format!("{cut}…")
}

/// Renders a section body as HTML. Headings inside a body start at `<h3>`, below the
/// section title. A web address written as its own link text (`<https://…>`) is shown as
/// its [`link_label`]: the text part keeps the full address.
pub fn to_html(markdown: &str) -> String {
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    // Per open link: whether it is kept, and its address when it is a web address.
    let mut link_kept: Vec<(bool, Option<String>)> = Vec::new();
    let mut in_image = 0usize;
    let events = Parser::new_ext(markdown, markdown_options()).filter_map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Text(text) => match link_kept.last() {
            Some((true, Some(dest))) if text.trim() == dest => {
                Some(Event::Text(link_label(dest).into()))
            }
            _ => Some(Event::Text(text)),
        },
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let keep = is_safe_link(&dest_url);
            let web = is_web_url(&dest_url).then(|| dest_url.to_string());
            link_kept.push((keep, web));
            keep.then_some(Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }))
        }
        Event::End(TagEnd::Link) => link_kept
            .pop()
            .is_some_and(|(kept, _)| kept)
            .then_some(Event::End(TagEnd::Link)),
        Event::Start(Tag::Image { dest_url, .. }) if !is_web_url(&dest_url) => {
            in_image += 1;
            None
        }
        Event::End(TagEnd::Image) if in_image > 0 => {
            in_image -= 1;
            None
        }
        Event::Start(Tag::Heading {
            level,
            id,
            classes,
            attrs,
        }) => Some(Event::Start(Tag::Heading {
            level: demote(level),
            id,
            classes,
            attrs,
        })),
        Event::End(TagEnd::Heading(level)) => Some(Event::End(TagEnd::Heading(demote(level)))),
        other => Some(other),
    });
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

fn is_web_url(dest: &str) -> bool {
    let lower = dest.to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")) && is_safe_link(dest)
}

fn demote(level: HeadingLevel) -> HeadingLevel {
    match level {
        HeadingLevel::H1 | HeadingLevel::H2 | HeadingLevel::H3 => HeadingLevel::H3,
        HeadingLevel::H4 => HeadingLevel::H4,
        HeadingLevel::H5 => HeadingLevel::H5,
        HeadingLevel::H6 => HeadingLevel::H6,
    }
}

/// Wraps `text` at [`TEXT_WIDTH`] with the given indents, never breaking a word:
/// a URL longer than the line stays whole on a line of its own.
pub fn wrap(text: &str, first_indent: &str, rest_indent: &str) -> String {
    let options = textwrap::Options::new(TEXT_WIDTH)
        .initial_indent(first_indent)
        .subsequent_indent(rest_indent)
        .break_words(false)
        .word_separator(textwrap::WordSeparator::AsciiSpace)
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
        .wrap_algorithm(textwrap::WrapAlgorithm::FirstFit);
    textwrap::fill(text, options)
}

/// A block being written: its indent for the first and later lines.
struct Block {
    first: String,
    rest: String,
}

/// Plain-text writer over Markdown events.
struct TextWriter {
    out: String,
    /// Inline text of the paragraph, heading or item being collected.
    inline: String,
    /// Enclosing containers (list items, quotes), innermost last.
    blocks: Vec<Block>,
    /// Per open list: the next number, or `None` for bullets.
    lists: Vec<Option<u64>>,
    links: Vec<(Option<String>, usize)>,
    in_code_block: bool,
    table: Option<Table>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Vec<String>>,
    header_rows: usize,
    cell: String,
}

impl TextWriter {
    fn indents(&self) -> (String, String) {
        let mut first = String::new();
        let mut rest = String::new();
        for b in &self.blocks {
            first.push_str(&b.first);
            rest.push_str(&b.rest);
        }
        (first, rest)
    }

    /// Writes the collected inline text as one wrapped block.
    fn flush_inline(&mut self) {
        let text = std::mem::take(&mut self.inline);
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let (first, rest) = self.indents();
        for (i, line) in text.split('\n').enumerate() {
            let lead = if i == 0 { &first } else { &rest };
            self.out.push_str(&wrap(line.trim(), lead, &rest));
            self.out.push('\n');
        }
        // After the first block inside an item, later blocks use the hanging indent.
        if let Some(b) = self.blocks.last_mut() {
            b.first = b.rest.clone();
        }
    }

    fn blank_line(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            let (_, rest) = self.indents();
            let quote = rest.trim_end();
            if quote.is_empty() {
                self.out.push('\n');
            } else {
                self.out.push_str(quote);
                self.out.push('\n');
            }
        }
    }

    fn text(&mut self, t: &str) {
        if let Some(table) = self.table.as_mut() {
            table.cell.push_str(t);
        } else {
            self.inline.push_str(t);
        }
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) if self.in_code_block => {
                let (_, rest) = self.indents();
                for line in t.lines() {
                    self.out.push_str(&rest);
                    self.out.push_str("    ");
                    self.out.push_str(line);
                    self.out.push('\n');
                }
            }
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
                self.text(&t)
            }
            Event::InlineMath(t) | Event::DisplayMath(t) => self.text(&t),
            Event::SoftBreak => self.text(" "),
            Event::HardBreak => self.text("\n"),
            Event::Rule => {
                self.flush_inline();
                self.blank_line();
                self.out.push_str(&"-".repeat(20));
                self.out.push('\n');
                self.blank_line();
            }
            Event::FootnoteReference(r) => self.text(&format!("[{r}]")),
            Event::TaskListMarker(done) => self.text(if done { "[x] " } else { "[ ] " }),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph | Tag::Heading { .. } => self.flush_inline(),
            Tag::BlockQuote(_) => {
                self.flush_inline();
                self.blank_line();
                self.blocks.push(Block {
                    first: "> ".into(),
                    rest: "> ".into(),
                });
            }
            Tag::CodeBlock(_) => {
                self.flush_inline();
                self.blank_line();
                self.in_code_block = true;
            }
            Tag::List(start) => {
                self.flush_inline();
                if self.lists.is_empty() {
                    self.blank_line();
                }
                self.lists.push(start);
            }
            Tag::Item => {
                self.flush_inline();
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "- ".to_owned(),
                };
                let rest = " ".repeat(marker.len());
                self.blocks.push(Block {
                    first: marker,
                    rest,
                });
            }
            Tag::Link { dest_url, .. } => self.start_link(dest_url),
            Tag::Image { dest_url, .. } => self.start_link(dest_url),
            Tag::Table(_) => {
                self.flush_inline();
                self.blank_line();
                self.table = Some(Table::default());
            }
            Tag::TableHead | Tag::TableRow => {
                if let Some(t) = self.table.as_mut() {
                    t.rows.push(Vec::new());
                }
            }
            Tag::TableCell => {
                if let Some(t) = self.table.as_mut() {
                    t.cell.clear();
                }
            }
            _ => {}
        }
    }

    fn start_link(&mut self, dest: CowStr<'_>) {
        let start = match self.table.as_ref() {
            Some(t) => t.cell.len(),
            None => self.inline.len(),
        };
        let dest = is_safe_link(&dest).then(|| dest.to_string());
        self.links.push((dest, start));
    }

    fn end_link(&mut self) {
        let Some((dest, start)) = self.links.pop() else {
            return;
        };
        let Some(dest) = dest else {
            return;
        };
        let buffer = match self.table.as_mut() {
            Some(t) => &mut t.cell,
            None => &mut self.inline,
        };
        let words = buffer[start.min(buffer.len())..].trim().to_owned();
        let shown = dest.strip_prefix("mailto:").unwrap_or(&dest);
        if words == dest || words == shown {
            if dest.starts_with("mailto:") {
                return;
            }
            buffer.truncate(start);
            buffer.push_str(&format!("<{dest}>"));
        } else if words.is_empty() {
            buffer.push_str(&format!("<{dest}>"));
        } else {
            buffer.push_str(&format!(" <{shown}>"));
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => {
                self.flush_inline();
                self.blank_line();
            }
            TagEnd::Heading(_) => {
                self.flush_inline();
                self.blank_line();
            }
            TagEnd::BlockQuote(_) => {
                self.flush_inline();
                self.blocks.pop();
                self.blank_line();
            }
            TagEnd::CodeBlock => {
                self.in_code_block = false;
                self.blank_line();
            }
            TagEnd::List(_) => {
                self.flush_inline();
                self.lists.pop();
                if self.lists.is_empty() {
                    self.blank_line();
                }
            }
            TagEnd::Item => {
                self.flush_inline();
                self.blocks.pop();
                // Loose list items end with a blank line already; tight ones do not.
            }
            TagEnd::Link | TagEnd::Image => self.end_link(),
            TagEnd::TableCell => {
                if let Some(t) = self.table.as_mut() {
                    let cell = std::mem::take(&mut t.cell).trim().to_owned();
                    if let Some(row) = t.rows.last_mut() {
                        row.push(cell);
                    }
                }
            }
            TagEnd::TableHead => {
                if let Some(t) = self.table.as_mut() {
                    t.header_rows = t.rows.len();
                }
            }
            TagEnd::Table => {
                if let Some(t) = self.table.take() {
                    let (_, rest) = self.indents();
                    self.out.push_str(&t.render(&rest));
                    self.blank_line();
                }
            }
            _ => {}
        }
    }
}

impl Table {
    /// Aligned columns when they fit the width; otherwise one "Header: value" line
    /// per cell, which reads well on a phone.
    fn render(&self, indent: &str) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = |s: &str| unicode_width::UnicodeWidthStr::width(s);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let total = indent.len() + widths.iter().sum::<usize>() + 3 * columns.saturating_sub(1);
        let mut out = String::new();
        if total <= TEXT_WIDTH {
            for (r, row) in self.rows.iter().enumerate() {
                let mut line = indent.to_owned();
                for (i, cell) in row.iter().enumerate() {
                    if i > 0 {
                        line.push_str(" | ");
                    }
                    line.push_str(cell);
                    if i + 1 < row.len() {
                        line.push_str(&" ".repeat(widths[i] - width(cell)));
                    }
                }
                out.push_str(line.trim_end());
                out.push('\n');
                if r + 1 == self.header_rows {
                    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                    out.push_str(indent);
                    out.push_str(&rule.join("-+-"));
                    out.push('\n');
                }
            }
        } else {
            let header = self.rows.first().filter(|_| self.header_rows > 0);
            for row in self.rows.iter().skip(self.header_rows) {
                for (i, cell) in row.iter().enumerate() {
                    let line = match header.and_then(|h| h.get(i)).filter(|h| !h.is_empty()) {
                        Some(h) => format!("{h}: {cell}"),
                        None => cell.clone(),
                    };
                    out.push_str(&wrap(&line, indent, &format!("{indent}  ")));
                    out.push('\n');
                }
                out.push('\n');
            }
        }
        out
    }
}

/// Renders a section body as plain text wrapped at [`TEXT_WIDTH`], links written as
/// their words followed by `<https://…>`.
pub fn to_text(markdown: &str) -> String {
    let mut writer = TextWriter {
        out: String::with_capacity(markdown.len()),
        inline: String::new(),
        blocks: Vec::new(),
        lists: Vec::new(),
        links: Vec::new(),
        in_code_block: false,
        table: None,
    };
    for event in Parser::new_ext(markdown, markdown_options()) {
        writer.event(event);
    }
    writer.flush_inline();
    writer.out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_raw_html_and_drops_unsafe_links() {
        let html = to_html(
            "Hi <script>alert(1)</script> <img src=x onerror=alert(1)>\n\n[x](javascript:alert(1)) [y](https://ok.example)\n",
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("href=\"javascript"), "{html}");
        assert!(
            html.contains("<a href=\"https://ok.example\">y</a>"),
            "{html}"
        );
    }

    #[test]
    fn bare_web_addresses_read_as_labels_in_html() {
        let html = to_html(
            "Sign up: <https://www.eventbrite.co.uk/e/care-review-focus-on-kinship-care-tickets-177266227057> or [ours](https://example.org/x)\n",
        );
        assert!(
            html.contains(
                "<a href=\"https://www.eventbrite.co.uk/e/care-review-focus-on-kinship-care-tickets-177266227057\">eventbrite.co.uk/e/care-review-focus-on…</a>"
            ),
            "{html}"
        );
        assert!(html.contains(">ours</a>"), "{html}");
        assert_eq!(
            link_label("https://www.bbc.co.uk/sounds/play/m000zdtf"),
            "bbc.co.uk/sounds/play/m000zdtf"
        );
        assert_eq!(link_label("https://example.org/"), "example.org");
        assert_eq!(link_label("mailto:a@example.org"), "mailto:a@example.org");
    }

    #[test]
    fn text_shows_links_after_their_words() {
        let text =
            to_text("Read [the post](https://example.org/post) now. Or <https://example.org/x>.\n");
        assert_eq!(
            text,
            "Read the post <https://example.org/post> now. Or <https://example.org/x>."
        );
    }

    #[test]
    fn text_wraps_but_keeps_long_urls_whole() {
        let long = format!("https://example.org/{}", "a".repeat(90));
        let text = to_text(&format!("{} see <{long}> end\n", "word ".repeat(30)));
        for line in text.lines() {
            assert!(
                line.chars().count() <= TEXT_WIDTH || line.contains(&long),
                "{line:?}"
            );
        }
        assert!(text.contains(&format!("<{long}>")));
    }

    #[test]
    fn lists_hang_their_continuation_lines() {
        let text = to_text(&format!("- {}\n- second\n", "word ".repeat(20)));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("- word"));
        assert!(lines[1].starts_with("  word"));
        assert_eq!(lines[2], "- second");
    }

    #[test]
    fn tables_align_when_they_fit() {
        let text = to_text("| Date | Topic |\n|---|---|\n| 9 Dec | Freedom |\n");
        assert_eq!(text, "Date  | Topic\n------+--------\n9 Dec | Freedom");
    }
}
