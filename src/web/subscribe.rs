//! `/subscribe`: the sign-up form (double opt-in).

use super::WebState;
use super::html::{self, esc};
use axum::extract::State;
use axum::response::Html;

/// Longest address accepted (RFC 5321's path limit).
pub(super) const MAX_EMAIL_CHARS: usize = 254;
/// Longest name accepted.
pub(super) const MAX_NAME_CHARS: usize = 100;

/// The form, with `error` above it and the fields filled with what was sent (escaped).
pub(super) fn form_page(
    state: &WebState,
    email: &str,
    name: &str,
    error: Option<&str>,
) -> Html<String> {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>\n", esc(e))
    });
    let body = format!(
        "<p>Get the {newsletter} newsletter by email. We will send you a message to \
confirm your address first.</p>\n{error}\
<form method=\"post\" action=\"/subscribe\">\n\
<label for=\"email\">Email address</label>\n\
<input id=\"email\" name=\"email\" type=\"email\" required maxlength=\"{MAX_EMAIL_CHARS}\" \
autocomplete=\"email\" inputmode=\"email\" value=\"{email}\">\n\
<label for=\"name\">Name <span class=\"note\">(optional)</span></label>\n\
<input id=\"name\" name=\"name\" type=\"text\" maxlength=\"{MAX_NAME_CHARS}\" \
autocomplete=\"name\" value=\"{name}\">\n\
<button type=\"submit\">Subscribe</button>\n</form>\n\
<p class=\"note\">You can unsubscribe at any time with the link at the foot of every \
issue, or by replying with UNSUBSCRIBE in the subject. \
<a href=\"/archive\">Read past issues</a>.</p>",
        newsletter = esc(state.name()),
        email = esc(email),
        name = esc(name),
    );
    html::page(state.name(), "Subscribe", &body)
}

pub(super) async fn form(State(state): State<WebState>) -> Html<String> {
    form_page(&state, "", "", None)
}
