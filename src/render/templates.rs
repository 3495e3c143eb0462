//! The tera environment: built-in templates, an operator's overrides, and the filters
//! templates may use. Templates cannot read the environment or files.

use super::{Personalized, RenderedIssue, Slot, markdown};
use crate::compose::{Issue, Section};
use crate::domain::HeaderText;
use crate::settings::Newsletter;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tera::{Tera, Value};

/// Why templates could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read template folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
    #[error("settings key `newsletter.subject`: {0}")]
    Subject(String),
    #[error("CSS inlining failed: {0}")]
    Css(String),
}

/// The templates gazette ships, by name. An operator's folder may replace any of them.
const BUILT_IN: &[(&str, &str)] = &[
    ("issue.html", include_str!("../../templates/issue.html")),
    ("issue.txt", include_str!("../../templates/issue.txt")),
    (
        "sections/introduction.html",
        include_str!("../../templates/sections/introduction.html"),
    ),
    (
        "sections/introduction.txt",
        include_str!("../../templates/sections/introduction.txt"),
    ),
    (
        "sections/article.html",
        include_str!("../../templates/sections/article.html"),
    ),
    (
        "sections/article.txt",
        include_str!("../../templates/sections/article.txt"),
    ),
    (
        "sections/events.html",
        include_str!("../../templates/sections/events.html"),
    ),
    (
        "sections/events.txt",
        include_str!("../../templates/sections/events.txt"),
    ),
    (
        "sections/links.html",
        include_str!("../../templates/sections/links.html"),
    ),
    (
        "sections/links.txt",
        include_str!("../../templates/sections/links.txt"),
    ),
];

const SUBJECT: &str = "subject";

/// Renders issues with one set of templates.
#[derive(Debug)]
pub struct Renderer {
    tera: Tera,
}

fn template_error(name: &str, e: &tera::Error) -> RenderError {
    // tera's Display is the outer message; the cause chain says what went wrong.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    RenderError::Template {
        name: name.to_owned(),
        message,
    }
}

#[derive(Serialize)]
struct NewsletterContext<'a> {
    name: &'a str,
    signup_url: &'a str,
    public_url: &'a str,
    reply_to: String,
    list_id: &'a str,
}

#[derive(Serialize)]
struct SectionContext<'a> {
    number: usize,
    anchor: String,
    kind: &'static str,
    title: &'a str,
    author: Option<&'a str>,
    signature: Option<&'a str>,
    /// The body as HTML (safe to output unescaped) or as wrapped text.
    body: String,
}

#[derive(Serialize)]
struct IssueContext {
    id: String,
    date: String,
    /// The inbox snippet: hidden at the top of the HTML, not in the text part.
    preheader: Option<String>,
    sections: Vec<SectionEntry>,
}

#[derive(Serialize)]
struct SectionEntry {
    number: usize,
    anchor: String,
    kind: &'static str,
    title: String,
    /// The section rendered through its kind's partial.
    rendered: String,
}

impl Renderer {
    /// Loads the built-in templates, then any from `override_dir` (same names, e.g.
    /// `issue.html` or `sections/events.txt`), and compiles the subject template.
    pub fn new(override_dir: Option<&Path>, subject: &str) -> Result<Self, RenderError> {
        let mut templates: HashMap<String, String> = BUILT_IN
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        if let Some(dir) = override_dir {
            for (name, _) in BUILT_IN {
                let path = dir.join(name);
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        templates.insert((*name).to_owned(), text);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(RenderError::Folder { path, source }),
                }
            }
            if let Err(source) = std::fs::read_dir(dir) {
                return Err(RenderError::Folder {
                    path: dir.to_owned(),
                    source,
                });
            }
        }
        let mut tera = Tera::default();
        // tera registers `get_env` unconditionally; a template that could call it could
        // read the SMTP password. Replace it with one that refuses.
        tera.register_function("get_env", |_: &HashMap<String, Value>| {
            Err(tera::Error::msg(
                "get_env is not available in gazette templates",
            ))
        });
        tera.register_filter("date", date_filter);
        tera.register_filter("wrap", wrap_filter);
        tera.register_filter("link_label", link_label_filter);
        tera.autoescape_on(vec![".html"]);
        for (name, text) in &templates {
            tera.add_raw_template(name, text)
                .map_err(|e| template_error(name, &e))?;
        }
        tera.add_raw_template(SUBJECT, subject)
            .map_err(|e| RenderError::Subject(template_error(SUBJECT, &e).to_string()))?;
        Ok(Self { tera })
    }

    fn newsletter_context(newsletter: &Newsletter) -> NewsletterContext<'_> {
        NewsletterContext {
            name: newsletter.name.as_str(),
            signup_url: &newsletter.signup_url,
            public_url: &newsletter.public_url,
            reply_to: newsletter.reply_to.email.to_string(),
            list_id: &newsletter.list_id,
        }
    }

    fn render(&self, name: &str, context: &tera::Context) -> Result<String, RenderError> {
        self.tera
            .render(name, context)
            .map_err(|e| template_error(name, &e))
    }

    /// Renders the subject line for `issue`.
    pub fn subject(
        &self,
        newsletter: &Newsletter,
        issue: &Issue,
    ) -> Result<HeaderText, RenderError> {
        let mut context = tera::Context::new();
        context.insert("newsletter", &Self::newsletter_context(newsletter));
        context.insert(
            "issue",
            &serde_json::json!({
                "id": issue.id.to_string(),
                "date": issue.id.to_string(),
            }),
        );
        let subject = self
            .tera
            .render(SUBJECT, &context)
            .map_err(|e| RenderError::Subject(template_error(SUBJECT, &e).to_string()))?;
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        HeaderText::parse(&subject)
            .map_err(|e| RenderError::Subject(format!("the rendered subject {e}")))
    }

    fn sections(
        &self,
        newsletter: &Newsletter,
        sections: &[Section],
        ext: &str,
    ) -> Result<Vec<SectionEntry>, RenderError> {
        let mut entries = Vec::with_capacity(sections.len());
        for (i, section) in sections.iter().enumerate() {
            let anchor = format!("section-{}", i + 1);
            let body = if ext == "html" {
                markdown::to_html(&section.body)
            } else {
                markdown::to_text(&section.body)
            };
            let context_section = SectionContext {
                number: i + 1,
                anchor: anchor.clone(),
                kind: section.kind.as_str(),
                title: &section.title,
                author: section.author.as_deref(),
                signature: section.signature.as_deref(),
                body,
            };
            let mut context = tera::Context::new();
            context.insert("newsletter", &Self::newsletter_context(newsletter));
            context.insert("section", &context_section);
            let name = format!("sections/{}.{ext}", section.kind.as_str());
            let rendered = self.render(&name, &context)?;
            entries.push(SectionEntry {
                number: i + 1,
                anchor,
                kind: section.kind.as_str(),
                title: section.title.clone(),
                rendered,
            });
        }
        Ok(entries)
    }

    fn layout(
        &self,
        newsletter: &Newsletter,
        issue: &Issue,
        ext: &str,
    ) -> Result<String, RenderError> {
        let entries = self.sections(newsletter, &issue.sections, ext)?;
        let mut context = tera::Context::new();
        context.insert("newsletter", &Self::newsletter_context(newsletter));
        context.insert(
            "issue",
            &IssueContext {
                id: issue.id.to_string(),
                date: issue.id.to_string(),
                preheader: preheader(&issue.sections),
                sections: entries,
            },
        );
        context.insert("recipient", &Slot::context());
        self.render(&format!("issue.{ext}"), &context)
    }

    /// Renders `issue` once: subject, HTML (CSS inlined) and text, with per-recipient slots.
    pub fn render_issue(
        &self,
        newsletter: &Newsletter,
        issue: &Issue,
    ) -> Result<RenderedIssue, RenderError> {
        let subject = self.subject(newsletter, issue)?;
        let html = self.layout(newsletter, issue, "html")?;
        let html = css_inline::CSSInliner::options()
            .load_remote_stylesheets(false)
            .build()
            .inline(&html)
            .map_err(|e| RenderError::Css(e.to_string()))?;
        let text = self.layout(newsletter, issue, "txt")?;
        let text = tidy_text(&text);
        Ok(RenderedIssue {
            subject,
            html: Personalized::parse(&html, true),
            text: Personalized::parse(&text, false),
        })
    }
}

/// The longest preheader; inbox snippets show less than this.
const PREHEADER_WIDTH: usize = 140;

/// The inbox snippet: the introduction's `preheader`, else its first sentence. Without
/// an introduction, the first section stands in for it.
fn preheader(sections: &[Section]) -> Option<String> {
    let intro = sections
        .iter()
        .find(|s| s.kind == crate::compose::SectionKind::Introduction)
        .or_else(|| sections.first())?;
    if let Some(p) = &intro.preheader {
        return Some(p.clone());
    }
    let text = markdown::to_text(&intro.body);
    let paragraph = text.split("\n\n").find(|p| !p.trim().is_empty())?;
    let paragraph = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
    let sentence = first_sentence(&paragraph);
    if sentence.chars().count() <= PREHEADER_WIDTH {
        return Some(sentence.to_owned());
    }
    let mut out = String::new();
    for word in sentence.split(' ') {
        if out.chars().count() + word.chars().count() + 1 > PREHEADER_WIDTH - 1 {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.push('…');
    Some(out)
}

/// `text` up to and including its first `.`, `!` or `?` that ends a word.
fn first_sentence(text: &str) -> &str {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|(_, n)| n.is_whitespace()) {
            return &text[..i + c.len_utf8()];
        }
    }
    text
}

/// Collapses runs of blank lines a template's tags leave behind and trims line ends.
fn tidy_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 2 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_start_matches('\n').to_owned()
}

/// `{{ issue.date | date(format="%B %Y") }}`: formats a `YYYY-MM-DD` date.
fn date_filter(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let raw = value
        .as_str()
        .ok_or_else(|| tera::Error::msg("date: expects a date string like 2021-09-01"))?;
    let date = chrono::NaiveDate::parse_from_str(raw.get(..10).unwrap_or(raw), "%Y-%m-%d")
        .map_err(|_| tera::Error::msg(format!("date: '{raw}' is not a date like 2021-09-01")))?;
    let format = args
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or("%Y-%m-%d");
    // chrono panics when displaying an invalid format; check it first.
    let items: Vec<_> = chrono::format::StrftimeItems::new(format).collect();
    if items
        .iter()
        .any(|i| matches!(i, chrono::format::Item::Error))
    {
        return Err(tera::Error::msg(format!(
            "date: '{format}' is not a valid strftime format"
        )));
    }
    Ok(Value::String(
        date.format_with_items(items.into_iter()).to_string(),
    ))
}

/// `{{ text | wrap(indent="  ") }}`: wraps text at 76 columns, keeping URLs whole.
/// `first="- "` starts the first line differently, for list entries.
fn wrap_filter(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let raw = value
        .as_str()
        .ok_or_else(|| tera::Error::msg("wrap: expects text"))?;
    let indent = args.get("indent").and_then(Value::as_str).unwrap_or("");
    let first = args.get("first").and_then(Value::as_str).unwrap_or(indent);
    let wrapped: Vec<String> = raw
        .split('\n')
        .enumerate()
        .map(|(i, line)| markdown::wrap(line.trim(), if i == 0 { first } else { indent }, indent))
        .collect();
    Ok(Value::String(wrapped.join("\n")))
}

/// `{{ url | link_label }}`: a web address as a short label (see [`markdown::link_label`]).
fn link_label_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let raw = value
        .as_str()
        .ok_or_else(|| tera::Error::msg("link_label: expects a web address"))?;
    Ok(Value::String(markdown::link_label(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_env_is_refused() {
        let r = Renderer::new(None, "{{ get_env(name=\"HOME\") }}");
        assert!(r.is_ok(), "compiles; fails when rendered");
        let mut tera = r.unwrap().tera;
        let err = tera
            .render_str("{{ get_env(name=\"HOME\") }}", &tera::Context::new())
            .unwrap_err();
        assert!(format!("{err:?}").contains("not available"), "{err:?}");
    }

    #[test]
    fn date_filter_rejects_bad_formats_instead_of_panicking() {
        let mut args = HashMap::new();
        args.insert("format".to_owned(), Value::String("%B %Y".into()));
        assert_eq!(
            date_filter(&Value::String("2021-09-01".into()), &args).unwrap(),
            "September 2021"
        );
        args.insert("format".to_owned(), Value::String("%Q".into()));
        assert!(date_filter(&Value::String("2021-09-01".into()), &args).is_err());
    }

    #[test]
    fn first_sentences_end_at_a_full_stop_followed_by_space() {
        assert_eq!(first_sentence("It is 3.5 km. Then more."), "It is 3.5 km.");
        assert_eq!(first_sentence("No stop at all"), "No stop at all");
        assert_eq!(first_sentence("Why? Because."), "Why?");
    }
}
