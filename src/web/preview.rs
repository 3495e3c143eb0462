//! `/preview`: the next issue as it stands in the sections folder, with what `check`
//! would say on top, for editors holding the `[web] preview_password`.

use super::{WebState, error_page, html, security};
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
            let values = report(&issue, None);
            return html::page(state.name(), "preview_failed.html", "Preview", values)
                .into_response();
        }
    };
    issue.diagnostics.extend(rendered.size_warning());
    let banner = html::render(
        "preview_banner.html",
        &report(&issue, Some(rendered.subject.as_str())),
    );
    Html(insert_after_body_tag(
        &rendered.html.without_recipient(),
        &banner,
    ))
    .into_response()
}

/// The check's findings, for the preview banner.
fn report(issue: &Issue, subject: Option<&str>) -> tera::Context {
    let errors = issue.errors().count();
    let warnings = issue.warnings().count();
    let verdict = if errors > 0 {
        format!("{errors} error(s), {warnings} warning(s): the issue would be held.")
    } else {
        format!("{warnings} warning(s): the issue is ready to send.")
    };
    let colour = if errors > 0 { "#a4000f" } else { "#1b5e20" };
    let mut values = tera::Context::new();
    values.insert("colour", colour);
    values.insert("issue", &issue.id.to_string());
    values.insert("subject", &subject.unwrap_or_default());
    values.insert("verdict", &verdict);
    let diagnostics: Vec<String> = issue.diagnostics.iter().map(ToString::to_string).collect();
    values.insert("diagnostics", &diagnostics);
    values
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
