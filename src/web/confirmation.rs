//! The message a sign-up sends: one link that confirms the subscription.
//!
//! Anyone can type anyone's address into the form, so the message carries nothing the
//! requester typed except that address: no name in the greeting or in `To`. The name
//! waits in the request until the link is used.

use crate::domain::DkimSigner;
use crate::domain::{SubscriberEmail, TokenKey, TokenPurpose};
use crate::render::{self, Content, Kind, Outgoing};
use crate::send::OutgoingMessage;
use crate::settings::Newsletter;
use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use lettre::message::header::{HeaderName, HeaderValue};

/// Why the confirmation could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the confirmation message for subscriber {subscriber}: {reason}")]
pub struct ConfirmationError {
    subscriber: i64,
    reason: String,
}

/// The confirm link for sign-up request `request_id`.
pub fn confirm_url(newsletter: &Newsletter, tokens: &TokenKey, request_id: i64) -> String {
    format!(
        "{}/confirm/{}",
        newsletter.public_url,
        tokens.sign(TokenPurpose::Confirm, request_id)
    )
}

fn header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_owned())
}

/// Who a confirmation goes to.
#[derive(Debug, Clone, Copy)]
pub struct Signup<'a> {
    /// The request the link confirms.
    pub request_id: i64,
    pub subscriber_id: i64,
    pub email: &'a SubscriberEmail,
}

/// The confirmation message for `signup`, its link valid for `valid_days`. Plain text, `Auto-Submitted: auto-generated` so that
/// auto-responders leave it alone, DKIM-signed when `dkim` is given.
pub fn build_confirmation(
    newsletter: &Newsletter,
    tokens: &TokenKey,
    dkim: Option<&DkimSigner>,
    signup: Signup<'_>,
    valid_days: u64,
    now: DateTime<Utc>,
) -> Result<OutgoingMessage, ConfirmationError> {
    let Signup {
        request_id,
        subscriber_id,
        email,
    } = signup;
    let fail = |e: &dyn std::fmt::Display| ConfirmationError {
        subscriber: subscriber_id,
        reason: e.to_string(),
    };
    let address = email.as_str().parse().map_err(|e| fail(&e))?;
    let to = Mailbox::new(None, address);
    let link = confirm_url(newsletter, tokens, request_id);
    let body = format!(
        "Hello,\n\n\
         Someone, probably you, asked to receive the {list} newsletter at {email}.\n\n\
         To confirm, open this link and press the button on the page:\n\n<{link}>\n\n\
         The link works for {valid_days} days. If you did not ask for this, ignore this\n\
         message: you will not hear from us again.\n",
        list = newsletter.name,
    );
    let subject = format!("Confirm your subscription to {}", newsletter.name);
    let message = render::compose(Outgoing {
        kind: Kind::Confirmation,
        from: &newsletter.from,
        reply_to: Some(&newsletter.reply_to),
        to: &to,
        subject: &subject,
        date: now,
        // Our domain: if it comes back to our mailbox it is recognised as ours.
        message_id: Some(format!(
            "<confirm.{request_id}.{}@{}>",
            now.timestamp_micros(),
            newsletter.message_id_domain
        )),
        id_domain: &newsletter.message_id_domain,
        headers: vec![header("X-Auto-Response-Suppress", "All")],
        content: Content::Text(body),
    })
    .map_err(|e| fail(&e))?;
    // Bounces go to the polled mailbox, like an issue's.
    let envelope = lettre::address::Envelope::new(
        Some(newsletter.reply_to.email.clone()),
        message.envelope().to().to_vec(),
    )
    .map_err(|e| fail(&e))?;
    Ok(OutgoingMessage::new(
        envelope,
        render::finish(&message, now, dkim),
    ))
}
