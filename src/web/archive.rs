//! `/archive`: the issues that have gone out, each as its HTML without the parts that
//! differ per recipient.

use super::html;
use super::{WebState, not_found, store_failed};
use crate::domain::IssueId;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};

/// GET `/archive`.
pub(super) async fn list(State(state): State<WebState>) -> Response {
    let issues = match state.store().archived_issues().await {
        Ok(issues) => issues,
        Err(e) => return store_failed(&state, "listing the archive", &e),
    };
    let listed: Vec<_> = issues
        .iter()
        .map(|issue| {
            serde_json::json!({
                "id": issue.id.to_string(),
                "subject": issue.subject,
                "date": issue.sent_at.format("%-d %B %Y").to_string(),
            })
        })
        .collect();
    let mut values = tera::Context::new();
    values.insert("issues", &listed);
    html::page(state.name(), "archive.html", "Past issues", values).into_response()
}

/// Hides the footer lines that only make sense in someone's own copy (the built-in
/// template wraps them in `.recipient-only`; their slots are empty here anyway).
const ARCHIVE_STYLE: &str = "<style>.recipient-only{display:none!important}</style>";

/// `extra` placed just before `</head>` (or at the start, if there is none).
fn insert_in_head(document: &str, extra: &str) -> String {
    let at = document.to_ascii_lowercase().find("</head>").unwrap_or(0);
    let mut out = String::with_capacity(document.len() + extra.len());
    out.push_str(&document[..at]);
    out.push_str(extra);
    out.push_str(&document[at..]);
    out
}

/// GET `/archive/{id}`: the issue's HTML as it went out, every per-recipient slot
/// (address, name, unsubscribe links and tokens) left empty and the lines around them
/// hidden.
pub(super) async fn issue(State(state): State<WebState>, Path(id): Path<String>) -> Response {
    let Ok(id) = IssueId::parse(&id) else {
        return not_found(State(state)).await;
    };
    match state.store().archived_issue(id).await {
        Ok(Some(frozen)) => Html(insert_in_head(
            &frozen.rendered.html.without_recipient(),
            ARCHIVE_STYLE,
        ))
        .into_response(),
        Ok(None) => not_found(State(state)).await,
        Err(e) => store_failed(&state, "reading an archived issue", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn style_goes_in_the_head() {
        assert_eq!(
            insert_in_head("<html><head><title>t</title></HEAD><body>", "<s>"),
            "<html><head><title>t</title><s></HEAD><body>"
        );
        assert_eq!(insert_in_head("<p>x</p>", "<s>"), "<s><p>x</p>");
    }
}
