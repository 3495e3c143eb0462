//! The short notice that tells a subscriber they were unsubscribed, with a link back.
//!
//! It goes to the subscriber's stored address, never to the request's `From`: a forged
//! request then reaches the real owner, whose resubscribe link undoes it, and we cannot
//! be used to send mail to third parties. `Auto-Submitted: auto-replied` (RFC 3834) keeps
//! well-behaved auto-responders from answering it.

use crate::domain::DkimSigner;
use crate::domain::{TokenKey, TokenPurpose};
use crate::render::{self, Content, Kind, Outgoing};
use crate::send::OutgoingMessage;
use crate::settings::Newsletter;
use crate::store::OwedNotice;
use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use lettre::message::header::{HeaderName, HeaderValue};

/// Why a notice could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("cannot build the notice for {0}: {1}")]
    Build(String, String),
}

fn header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_owned())
}

/// The resubscribe link for `subscriber_id`.
pub fn resubscribe_url(newsletter: &Newsletter, tokens: &TokenKey, subscriber_id: i64) -> String {
    format!(
        "{}/resubscribe/{}",
        newsletter.public_url,
        tokens.sign(TokenPurpose::Resubscribe, subscriber_id)
    )
}

/// Builds the notice for `notice`, DKIM-signed when `dkim` is given.
pub fn build_notice(
    newsletter: &Newsletter,
    tokens: &TokenKey,
    dkim: Option<&DkimSigner>,
    notice: &OwedNotice,
    now: DateTime<Utc>,
) -> Result<OutgoingMessage, NoticeError> {
    let fail =
        |e: &dyn std::fmt::Display| NoticeError::Build(notice.email.to_string(), e.to_string());
    let address = notice.email.as_str().parse().map_err(|e| fail(&e))?;
    let to = Mailbox::new(notice.name.as_ref().map(|n| n.as_str().to_owned()), address);
    let link = resubscribe_url(newsletter, tokens, notice.subscriber_id);
    let greeting = match &notice.name {
        Some(name) => format!("Dear {name},"),
        None => "Hello,".to_owned(),
    };
    let body = format!(
        "{greeting}\n\n\
         You will no longer receive the {list} newsletter at {email}, as you asked.\n\n\
         If you did not ask for this, or you change your mind, this link puts you back on\n\
         the list:\n\n<{link}>\n\n\
         This is an automatic message; there is no need to reply.\n",
        list = newsletter.name,
        email = notice.email,
    );
    let subject = format!("You have been unsubscribed from {}", newsletter.name);
    let message = render::compose(Outgoing {
        kind: Kind::UnsubscribeNotice,
        from: &newsletter.from,
        reply_to: Some(&newsletter.reply_to),
        to: &to,
        subject: &subject,
        date: now,
        // Our domain: if the notice comes back to our mailbox, it is recognised as ours.
        message_id: Some(format!(
            "<notice.{}.{}@{}>",
            notice.id, notice.subscriber_id, newsletter.message_id_domain
        )),
        id_domain: &newsletter.message_id_domain,
        headers: vec![
            header("X-Auto-Response-Suppress", "All"),
            header("List-Id", &format!("<{}>", newsletter.list_id)),
        ],
        content: Content::Text(body),
    })
    .map_err(|e| fail(&e))?;
    let envelope = message.envelope().clone();
    Ok(OutgoingMessage::new(
        envelope,
        render::finish(&message, now, dkim),
    ))
}
