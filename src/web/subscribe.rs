//! `/subscribe`: the sign-up form (double opt-in). A sign-up records a request and
//! sends a confirmation link; nothing the visitor sees depends on whether the address
//! was known.

use super::html;
use super::{
    CONFIRM_WITHIN_DAYS, Signup, WebCounters, WebState, build_confirmation, error_page,
    store_failed,
};
use crate::domain::{HeaderText, SubscriberEmail};
use crate::store::SignupOutcome;
use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};

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
    let mut values = tera::Context::new();
    values.insert("email", email);
    values.insert("name", name);
    values.insert("error", &error);
    values.insert("max_email", &MAX_EMAIL_CHARS);
    values.insert("max_name", &MAX_NAME_CHARS);
    html::page(state.name(), "subscribe.html", "Subscribe", values)
}

pub(super) async fn form(State(state): State<WebState>) -> Html<String> {
    form_page(&state, "", "", None)
}

/// The sign-up form's fields; missing ones are empty.
#[derive(Debug, serde::Deserialize)]
pub(super) struct SignupForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
}

/// What the visitor sees after a sign-up that was not refused outright: the same page
/// whether the address was new, pending, suppressed, already active or over its limit.
fn check_your_inbox(state: &WebState, email: &SubscriberEmail) -> Response {
    let mut values = tera::Context::new();
    values.insert("email", email.as_str());
    values.insert("days", &CONFIRM_WITHIN_DAYS);
    html::page(state.name(), "check_inbox.html", "Check your inbox", values).into_response()
}

pub(super) async fn signup(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignupForm>,
) -> Response {
    let ip = state.client_ip(peer, &headers);
    if !state.inner.limits.allow_ip(ip) {
        WebCounters::bump(&state.inner.counters.signups_rate_limited);
        let mut response = error_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-ups",
            "There have been too many sign-ups from your network. Please try again in an hour.",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("3600"));
        return response;
    }
    let raw_email = form.email.trim();
    let raw_name = form.name.trim();
    let refuse = |message: &str| {
        (
            StatusCode::BAD_REQUEST,
            form_page(&state, raw_email, raw_name, Some(message)),
        )
            .into_response()
    };
    if raw_email.chars().count() > MAX_EMAIL_CHARS {
        return refuse("That address is too long.");
    }
    let Ok(email) = SubscriberEmail::parse(raw_email) else {
        return refuse("Please enter an email address, like name@example.org.");
    };
    if raw_name.chars().count() > MAX_NAME_CHARS {
        return refuse("Please shorten your name to 100 characters or fewer.");
    }
    let name = if raw_name.is_empty() {
        None
    } else {
        match HeaderText::parse(raw_name) {
            Ok(name) => Some(name),
            Err(_) => return refuse("Your name cannot contain line breaks or control characters."),
        }
    };
    WebCounters::bump(&state.inner.counters.signups);
    // Limited or not, the same page: saying so would tell a stranger that the address
    // was signed up before.
    if let Err(response) = request_confirmation(&state, &email, name.as_ref(), ip).await {
        return response;
    }
    check_your_inbox(&state, &email)
}

/// Records a sign-up request for `email` from `ip` and, unless the address is already
/// active or has had its day's confirmations (`web.confirmations_per_address_per_day`,
/// counted in the store), mails it the link that confirms that request. The message is
/// sent after the answer: how long the transport takes must not tell the visitor whether
/// this address needed one. True when a message is on its way; `Err` is the page to
/// answer with when the store fails.
pub(super) async fn request_confirmation(
    state: &WebState,
    email: &SubscriberEmail,
    name: Option<&HeaderText>,
    ip: IpAddr,
) -> Result<bool, Response> {
    let now = state.now();
    let per_day = state.settings().web.confirmations_per_address_per_day;
    let outcome = match state
        .store()
        .web_signup_at_most(email, name, &ip.to_string(), now, per_day)
        .await
    {
        Ok(outcome) => outcome,
        Err(e) => return Err(store_failed(state, "recording a sign-up", &e)),
    };
    if outcome == SignupOutcome::Limited {
        WebCounters::bump(&state.inner.counters.signups_rate_limited);
    }
    if let SignupOutcome::Confirm {
        request_id,
        subscriber_id,
        email: to,
        ..
    } = outcome
    {
        let task_state = state.clone();
        state.inner.background.spawn(async move {
            let state = task_state;
            send_confirmation(&state, request_id, subscriber_id, &to, now).await;
        });
        return Ok(true);
    }
    Ok(false)
}

async fn send_confirmation(
    state: &WebState,
    request_id: i64,
    subscriber_id: i64,
    email: &SubscriberEmail,
    now: chrono::DateTime<chrono::Utc>,
) {
    let message = match build_confirmation(
        &state.settings().newsletter,
        &state.inner.tokens,
        state.inner.dkim.as_deref(),
        Signup {
            request_id,
            subscriber_id,
            email,
        },
        CONFIRM_WITHIN_DAYS,
        now,
    ) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "web: confirmation not sent");
            return;
        }
    };
    match state.inner.mailer.send_message(&message).await {
        Ok(()) => tracing::info!(subscriber = subscriber_id, "web: confirmation sent"),
        Err(e) => {
            tracing::error!(subscriber = subscriber_id, error = %e, "web: confirmation not sent")
        }
    }
}
