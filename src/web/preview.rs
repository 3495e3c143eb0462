//! `/preview`: the next issue as it stands in the sections folder, with what `check`
//! would say on top, for editors holding the `[web] preview_password`.

use super::{WebState, error_page, html::esc, security};
use crate::compose::{self, ComposeOptions, Issue};
use crate::domain::IssueId;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// The id of the next scheduled issue after now.
fn next_issue_id(state: &WebState) -> IssueId {
    let schedule = &state.settings().schedule;
    schedule
        .send
        .next_issue_id(schedule.timezone, chrono::Utc::now())
}

pub(super) async fn preview(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let Some(password) = state.settings().web.preview_password.as_ref() else {
        // Not configured: the page does not exist.
        return super::not_found(State(state)).await;
    };
    if !security::basic_auth_matches(&headers, security::PREVIEW_USER, password.expose()) {
        let mut response = error_page(
            &state,
            StatusCode::UNAUTHORIZED,
            "Editors only",
            "The preview needs the editors' user name and password.",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"gazette preview\", charset=\"UTF-8\""),
        );
        return response;
    }
    let content = &state.settings().content;
    let dir = content.sections_dir.clone();
    let options = ComposeOptions::from(content);
    let id = next_issue_id(&state);
    let composed = tokio::task::spawn_blocking(move || {
        compose::compose(&dir, id, &options, std::time::SystemTime::now())
    })
    .await;
    let mut issue = match composed {
        Ok(Ok(issue)) => issue,
        Ok(Err(e)) => {
            return error_page(
                &state,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot read the sections",
                &e.to_string(),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "web: composing the preview panicked");
            return error_page(
                &state,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Preview failed",
                "Composing the issue failed; see the daemon's log.",
            );
        }
    };
    let rendered = match state
        .inner
        .renderer
        .render_issue(&state.settings().newsletter, &issue)
    {
        Ok(r) => r,
        Err(e) => {
            issue
                .diagnostics
                .push(compose::Diagnostic::issue_error(e.to_string()));
            let body = report(&issue, None);
            return (
                StatusCode::OK,
                super::html::page(state.name(), "Preview", &body),
            )
                .into_response();
        }
    };
    issue.diagnostics.extend(rendered.size_warning());
    let banner = report(&issue, Some(rendered.subject.as_str()));
    Html(insert_after_body_tag(
        &rendered.html.without_recipient(),
        &banner,
    ))
    .into_response()
}

/// The check's findings as an HTML block.
fn report(issue: &Issue, subject: Option<&str>) -> String {
    let errors = issue.errors().count();
    let warnings = issue.warnings().count();
    let verdict = if errors > 0 {
        format!("{errors} error(s), {warnings} warning(s): the issue would be held.")
    } else {
        format!("{warnings} warning(s): the issue is ready to send.")
    };
    let colour = if errors > 0 { "#a4000f" } else { "#1b5e20" };
    let mut out = format!(
        "<div style=\"font:15px/1.45 system-ui,sans-serif;border:2px solid {colour};\
padding:10px 14px;margin:8px;background:#fff;color:#1b1b1b\">\n\
<p style=\"margin:0 0 6px\"><strong>Preview of issue {}</strong>{}</p>\n\
<p style=\"margin:0;color:{colour};font-weight:600\">{}</p>\n",
        esc(&issue.id.to_string()),
        subject.map_or(String::new(), |s| format!(" — subject: {}", esc(s))),
        esc(&verdict),
    );
    if !issue.diagnostics.is_empty() {
        out.push_str("<ul style=\"margin:6px 0 0;padding-left:20px\">\n");
        for d in &issue.diagnostics {
            out.push_str(&format!("<li>{}</li>\n", esc(&d.to_string())));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</div>\n");
    out
}

/// `banner` placed at the start of the document's body (or at the start, if none).
fn insert_after_body_tag(document: &str, banner: &str) -> String {
    let lower = document.to_ascii_lowercase();
    let at = lower
        .find("<body")
        .and_then(|start| lower[start..].find('>').map(|end| start + end + 1))
        .unwrap_or(0);
    let mut out = String::with_capacity(document.len() + banner.len());
    out.push_str(&document[..at]);
    out.push_str(banner);
    out.push_str(&document[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_goes_inside_the_body() {
        assert_eq!(
            insert_after_body_tag("<html><BODY class=x><p>a</p>", "<b>!</b>"),
            "<html><BODY class=x><b>!</b><p>a</p>"
        );
        assert_eq!(insert_after_body_tag("<p>a</p>", "B"), "B<p>a</p>");
    }
}
