//! The pages behind the links in our messages: confirm (sign-up message), unsubscribe
//! (every issue, and the RFC 8058 one-click POST to the same URL) and resubscribe (the
//! inbox worker's unsubscribe notice, and the unsubscribe page).
//!
//! Each GET only shows a page with a button; the POST acts. A token that does not
//! verify gets a 404 and touches nothing, whatever the method.
//!
//! Only a confirmation link makes anyone active. Unsubscribe tokens travel in every
//! copy of every issue, forwarded ones included, and a resubscribe link may be
//! forwarded too: pressing "Subscribe again" therefore only mails the address a fresh
//! confirmation, and the subscription comes back when *that* link is used.

use super::html;
use super::multipart::one_click_fields;
use super::subscribe::request_confirmation;
use super::{CONFIRM_WITHIN_DAYS, WebCounters, WebState, error_page, store_failed};
use crate::domain::TokenPurpose;
use crate::store::{ConfirmOutcome, SubscriberStatus, WebSubscriber, Withdrawal};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// The id `token` names for `purpose`; a token that does not verify is counted.
fn verified(state: &WebState, purpose: TokenPurpose, token: &str) -> Option<i64> {
    let id = state.inner.tokens.verify(purpose, token);
    if id.is_none() {
        WebCounters::bump(&state.inner.counters.rejected_tokens);
    }
    id
}

/// The subscriber a link's `token` names, or the page to answer with: 404 for a token
/// that does not verify or names nobody, 503 when the store cannot be read.
async fn subscriber_for(
    state: &WebState,
    purpose: TokenPurpose,
    token: &str,
) -> Result<(i64, WebSubscriber), Response> {
    let Some(id) = verified(state, purpose, token) else {
        return Err(invalid_link(state));
    };
    match state.store().web_subscriber(id).await {
        Ok(Some(s)) => Ok((id, s)),
        Ok(None) => Err(invalid_link(state)),
        Err(e) => Err(store_failed(state, "reading a subscriber", &e)),
    }
}

/// The 404 page for a link that names nobody.
fn invalid_link(state: &WebState) -> Response {
    error_page(
        state,
        StatusCode::NOT_FOUND,
        "This link is not valid",
        "This link is not valid. Please use the link exactly as it appears in the message.",
    )
}

fn page(state: &WebState, template: &str, title: &str, values: tera::Context) -> Response {
    html::page(state.name(), template, title, values).into_response()
}

/// Values for a page template.
fn values<const N: usize>(pairs: [(&str, &str); N]) -> tera::Context {
    let mut c = tera::Context::new();
    for (k, v) in pairs {
        c.insert(k, v);
    }
    c
}

fn since(state: &WebState) -> chrono::DateTime<chrono::Utc> {
    state.now() - chrono::Duration::days(CONFIRM_WITHIN_DAYS as i64)
}

fn link_spent(state: &WebState) -> Response {
    let mut days = tera::Context::new();
    days.insert("days", &CONFIRM_WITHIN_DAYS);
    let mut response = page(state, "link_spent.html", "This link has expired", days);
    *response.status_mut() = StatusCode::GONE;
    response
}

fn subscribed(state: &WebState, email: Option<&str>) -> Response {
    page(
        state,
        "subscribed.html",
        "You are subscribed",
        values([("email", email.unwrap_or_default())]),
    )
}

/// GET `/confirm/{token}`: asks for the press of a button.
pub(super) async fn confirm_page(
    State(state): State<WebState>,
    Path(token): Path<String>,
) -> Response {
    let Some(request_id) = verified(&state, TokenPurpose::Confirm, &token) else {
        return invalid_link(&state);
    };
    let request = match state
        .store()
        .web_signup_request(request_id, since(&state))
        .await
    {
        Ok(Some(request)) => request,
        Ok(None) => return invalid_link(&state),
        Err(e) => return store_failed(&state, "reading a sign-up request", &e),
    };
    if request.open {
        page(
            &state,
            "confirm.html",
            "Confirm your subscription",
            values([
                ("email", request.email.as_str()),
                ("action", &format!("/confirm/{token}")),
            ]),
        )
    } else if request.status == SubscriberStatus::Active {
        subscribed(&state, Some(request.email.as_str()))
    } else {
        link_spent(&state)
    }
}

/// POST `/confirm/{token}`: the subscriber becomes active, with consent recorded.
pub(super) async fn confirm(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let Some(request_id) = verified(&state, TokenPurpose::Confirm, &token) else {
        return invalid_link(&state);
    };
    let ip = state.client_ip(peer, &headers).to_string();
    match state
        .store()
        .web_confirm(request_id, &ip, since(&state), state.now())
        .await
    {
        Ok(ConfirmOutcome::Confirmed { subscriber_id, was }) => {
            WebCounters::bump(&state.inner.counters.confirmations);
            tracing::info!(subscriber = subscriber_id, was = %was, "web: subscription confirmed");
            subscribed(&state, None)
        }
        Ok(ConfirmOutcome::AlreadyActive) => subscribed(&state, None),
        Ok(ConfirmOutcome::NotOpen) => link_spent(&state),
        Ok(ConfirmOutcome::Unknown) => invalid_link(&state),
        Err(e) => store_failed(&state, "confirming a subscription", &e),
    }
}

/// Where the "Subscribe again" button on an unsubscribed page posts to.
fn resubscribe_action(state: &WebState, id: i64) -> String {
    let token = state.inner.tokens.sign(TokenPurpose::Resubscribe, id);
    format!("/resubscribe/{token}")
}

/// GET `/unsubscribe/{token}`: the page behind the link in every issue.
pub(super) async fn unsubscribe_page(
    State(state): State<WebState>,
    Path(token): Path<String>,
) -> Response {
    let (id, subscriber) = match subscriber_for(&state, TokenPurpose::Unsubscribe, &token).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match subscriber.status {
        SubscriberStatus::Active | SubscriberStatus::Pending => page(
            &state,
            "unsubscribe.html",
            "Unsubscribe",
            values([
                ("email", subscriber.email.as_str()),
                ("action", &format!("/unsubscribe/{token}")),
            ]),
        ),
        SubscriberStatus::Unsubscribed => page(
            &state,
            "unsubscribed.html",
            "You are unsubscribed",
            values([
                ("email", subscriber.email.as_str()),
                ("resubscribe", &resubscribe_action(&state, id)),
            ]),
        ),
        SubscriberStatus::Bounced => page(
            &state,
            "unsubscribed.html",
            "You are unsubscribed",
            values([("email", subscriber.email.as_str())]),
        ),
    }
}

/// True for exactly the RFC 8058 body: a field `List-Unsubscribe` whose value is
/// `One-Click`, form-encoded (what our button and mail providers send) or as a
/// multipart/form-data field. Every `List-Unsubscribe` field must say `One-Click`:
/// `List-Unsubscribe=No` next to the word elsewhere is no request.
fn is_one_click(headers: &HeaderMap, body: &[u8]) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let values: Vec<Vec<u8>> = if content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        match one_click_fields(content_type, body) {
            Some(values) => values,
            None => return false,
        }
    } else {
        form_urlencoded::parse(body.trim_ascii())
            .filter(|(key, _)| key == ONE_CLICK_KEY)
            .map(|(_, value)| value.into_owned().into_bytes())
            .collect()
    };
    !values.is_empty() && values.iter().all(|v| v == ONE_CLICK_VALUE.as_bytes())
}

const ONE_CLICK_KEY: &str = "List-Unsubscribe";
const ONE_CLICK_VALUE: &str = "One-Click";

/// Whether a one-click body came from our unsubscribe page's button, which adds
/// [`html::FROM_PAGE`] beside the RFC 8058 field; for the consent record only.
fn is_from_page(body: &[u8]) -> bool {
    let (key, value) = html::FROM_PAGE;
    form_urlencoded::parse(body.trim_ascii()).any(|(k, v)| k == key && v == value)
}

/// POST `/unsubscribe/{token}`: RFC 8058 one-click, and the page's button.
pub(super) async fn unsubscribe(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(id) = verified(&state, TokenPurpose::Unsubscribe, &token) else {
        return invalid_link(&state);
    };
    if !is_one_click(&headers, &body) {
        return error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Nothing changed",
            "This address takes the one-click unsubscribe request \
(List-Unsubscribe=One-Click). Use the button on the unsubscribe page.",
        );
    }
    let ip = state.client_ip(peer, &headers).to_string();
    let how = if is_from_page(&body) {
        Withdrawal::Page { ip }
    } else {
        Withdrawal::OneClick { ip }
    };
    match state.store().unsubscribe(id, &how, state.now()).await {
        Ok(Some(was)) => {
            if was != SubscriberStatus::Unsubscribed {
                WebCounters::bump(&state.inner.counters.unsubscribes);
                tracing::info!(subscriber = id, "web: unsubscribed");
            }
            // A bounced address cannot come back by a button: its mailbox did not work.
            let resubscribe = match was {
                SubscriberStatus::Bounced => String::new(),
                _ => resubscribe_action(&state, id),
            };
            page(
                &state,
                "unsubscribed.html",
                "You are unsubscribed",
                values([("resubscribe", &resubscribe)]),
            )
        }
        Ok(None) => invalid_link(&state),
        Err(e) => store_failed(&state, "unsubscribing", &e),
    }
}

fn cannot_resubscribe(state: &WebState) -> Response {
    page(
        state,
        "cannot_resubscribe.html",
        "Please sign up again",
        tera::Context::new(),
    )
}

/// GET `/resubscribe/{token}`: the link in the unsubscribe notice and on the
/// unsubscribe page.
pub(super) async fn resubscribe_page(
    State(state): State<WebState>,
    Path(token): Path<String>,
) -> Response {
    let (_, subscriber) = match subscriber_for(&state, TokenPurpose::Resubscribe, &token).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match subscriber.status {
        SubscriberStatus::Unsubscribed => page(
            &state,
            "resubscribe.html",
            "Subscribe again",
            values([
                ("email", subscriber.email.as_str()),
                ("action", &format!("/resubscribe/{token}")),
            ]),
        ),
        SubscriberStatus::Active => subscribed(&state, Some(subscriber.email.as_str())),
        SubscriberStatus::Pending | SubscriberStatus::Bounced => cannot_resubscribe(&state),
    }
}

/// POST `/resubscribe/{token}`: an unsubscribed address is mailed a fresh
/// confirmation; nothing else changes until its link is used.
pub(super) async fn resubscribe(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let (id, subscriber) = match subscriber_for(&state, TokenPurpose::Resubscribe, &token).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match subscriber.status {
        SubscriberStatus::Unsubscribed => {}
        SubscriberStatus::Active => return subscribed(&state, None),
        SubscriberStatus::Pending | SubscriberStatus::Bounced => {
            return cannot_resubscribe(&state);
        }
    }
    let ip = state.client_ip(peer, &headers);
    if state.inner.limits.allow_ip(ip) {
        match request_confirmation(&state, &subscriber.email, None, ip).await {
            Err(response) => return response,
            Ok(true) => {
                WebCounters::bump(&state.inner.counters.resubscribes);
                tracing::info!(
                    subscriber = id,
                    "web: asked to come back; confirmation on its way"
                );
            }
            // The address's daily limit, counted by `request_confirmation`.
            Ok(false) => {}
        }
    } else {
        WebCounters::bump(&state.inner.counters.signups_rate_limited);
    }
    let mut sent = values([("email", subscriber.email.as_str())]);
    sent.insert("days", &CONFIRM_WITHIN_DAYS);
    page(&state, "resubscribe_sent.html", "Check your inbox", sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_type(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
        h
    }

    #[test]
    fn recognises_rfc_8058_bodies() {
        let form = with_type("application/x-www-form-urlencoded");
        assert!(is_one_click(&form, b"List-Unsubscribe=One-Click"));
        assert!(is_one_click(&form, b"a=b&List-Unsubscribe=One-Click\r\n"));
        assert!(!is_one_click(&form, b""));
        assert!(!is_one_click(&form, b"List-Unsubscribe=Two-Clicks"));
        let multipart = with_type("multipart/form-data; boundary=x");
        assert!(is_one_click(
            &multipart,
            b"--x\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--x--\r\n"
        ));
        assert!(!is_one_click(
            &multipart,
            b"--x\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nNo\r\n\
--x\r\nContent-Disposition: form-data; name=\"c\"\r\n\r\nOne-Click\r\n--x--\r\n"
        ));
        assert!(!is_one_click(&form, b"List-Unsubscribe=No&c=One-Click"));
        assert!(!is_one_click(
            &form,
            b"List-Unsubscribe=One-Click&List-Unsubscribe=No"
        ));
        assert!(is_one_click(&form, b"List-Unsubscribe=One%2DClick"));
    }
}
