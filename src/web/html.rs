//! The HTML of gazette's own pages: tera templates in `templates/web/` (one layout, no
//! JavaScript, readable on a phone), built into the binary.
//!
//! Autoescaping is on for every page, with the same escaping as the issue's templates,
//! so a value from a visitor, the store or the settings can never become markup.

use axum::response::Html;
use std::sync::LazyLock;
use tera::{Context, Tera};

/// Every page template, by name.
const PAGES: &[(&str, &str)] = &[
    (
        "layout.html",
        include_str!("../../templates/web/layout.html"),
    ),
    ("forms.html", include_str!("../../templates/web/forms.html")),
    (
        "message.html",
        include_str!("../../templates/web/message.html"),
    ),
    (
        "subscribe.html",
        include_str!("../../templates/web/subscribe.html"),
    ),
    (
        "check_inbox.html",
        include_str!("../../templates/web/check_inbox.html"),
    ),
    (
        "archive.html",
        include_str!("../../templates/web/archive.html"),
    ),
    (
        "link_spent.html",
        include_str!("../../templates/web/link_spent.html"),
    ),
    (
        "subscribed.html",
        include_str!("../../templates/web/subscribed.html"),
    ),
    (
        "confirm.html",
        include_str!("../../templates/web/confirm.html"),
    ),
    (
        "unsubscribe.html",
        include_str!("../../templates/web/unsubscribe.html"),
    ),
    (
        "unsubscribed.html",
        include_str!("../../templates/web/unsubscribed.html"),
    ),
    (
        "cannot_resubscribe.html",
        include_str!("../../templates/web/cannot_resubscribe.html"),
    ),
    (
        "resubscribe.html",
        include_str!("../../templates/web/resubscribe.html"),
    ),
    (
        "resubscribe_sent.html",
        include_str!("../../templates/web/resubscribe_sent.html"),
    ),
    (
        "preview_banner.html",
        include_str!("../../templates/web/preview_banner.html"),
    ),
    (
        "preview_failed.html",
        include_str!("../../templates/web/preview_failed.html"),
    ),
];

/// The field the unsubscribe page's button sends beside the RFC 8058 one (see
/// `forms.html`), so the consent record can tell the page from a mail provider's
/// one-click POST.
pub const FROM_PAGE: (&str, &str) = ("from", "page");

static TEMPLATES: LazyLock<Tera> = LazyLock::new(|| {
    let mut tera = Tera::default();
    tera.add_raw_templates(PAGES.iter().copied())
        .expect("the built-in page templates parse (a unit test checks it)");
    tera.autoescape_on(vec![".html"]);
    tera.set_escape_fn(crate::render::escape_html);
    tera
});

/// `template` rendered with `context`. The templates are built in and tested, so a
/// failure is a bug: it is logged, and the visitor gets a plain apology.
pub fn render(template: &str, context: &Context) -> String {
    TEMPLATES.render(template, context).unwrap_or_else(|e| {
        let mut chain = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(template, error = chain, "web: a page template failed");
        "<!DOCTYPE html>\n<p>Something went wrong on our side. Please try again later.</p>\n"
            .to_owned()
    })
}

/// A whole page from `template`, titled `title`, with `values` (each escaped by the
/// template) and the newsletter's name.
pub fn page(newsletter: &str, template: &str, title: &str, mut values: Context) -> Html<String> {
    values.insert("newsletter", newsletter);
    values.insert("title", title);
    Html(render(template, &values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_renders_and_escapes_what_it_is_given() {
        let hostile = r#"<script>"a" & 'b'</script>"#;
        for (name, _) in PAGES {
            if matches!(*name, "layout.html" | "forms.html") {
                continue;
            }
            let mut c = Context::new();
            for key in [
                "message",
                "error",
                "email",
                "name",
                "action",
                "resubscribe",
                "subject",
                "issue",
                "verdict",
                "colour",
            ] {
                c.insert(key, hostile);
            }
            c.insert("max_email", &254);
            c.insert("max_name", &100);
            c.insert("days", &7);
            c.insert("diagnostics", &[hostile]);
            c.insert(
                "issues",
                &[serde_json::json!({"id": hostile, "subject": hostile, "date": hostile})],
            );
            let Html(html) = page(hostile, name, hostile, c);
            assert!(!html.contains("<script"), "{name}: {html}");
            assert!(!html.contains("Something went wrong"), "{name}: {html}");
            if matches!(
                *name,
                "confirm.html" | "unsubscribe.html" | "resubscribe.html"
            ) {
                assert!(html.contains("<form method=\"post\""), "{name}: {html}");
            }
            if *name != "preview_banner.html" {
                assert!(
                    html.contains("<title>&lt;script&gt;"),
                    "{name}: the title is escaped: {html}"
                );
            }
        }
    }
}
