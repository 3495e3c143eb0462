//! The short notice that tells a subscriber they were unsubscribed, with a link back.
//!
//! It goes to the subscriber's stored address, never to the request's `From`: a forged
//! request then reaches the real owner, whose resubscribe link undoes it, and we cannot
//! be used to send mail to third parties. `Auto-Submitted: auto-replied` (RFC 3834) keeps
//! well-behaved auto-responders from answering it.

use crate::domain::{IssueId, TokenKey, TokenPurpose};
use crate::send::OutgoingMessage;
use crate::settings::Newsletter;
use crate::store::OwedNotice;
use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::dkim::DkimConfig;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};

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
    dkim: Option<&DkimConfig>,
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
    let mut message = Message::builder()
        .from(newsletter.from.clone())
        .reply_to(newsletter.reply_to.clone())
        .to(to)
        .subject(format!(
            "You have been unsubscribed from {}",
            newsletter.name
        ))
        .date(now.into())
        // Our domain: if the notice comes back to our mailbox, it is recognised as ours.
        .message_id(Some(format!(
            "<notice.{}.{}@{}>",
            notice.id, notice.subscriber_id, newsletter.message_id_domain
        )))
        .raw_header(header("Auto-Submitted", "auto-replied"))
        .raw_header(header("X-Auto-Response-Suppress", "All"))
        .raw_header(header("List-Id", &format!("<{}>", newsletter.list_id)))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| fail(&e))?;
    if let Some(dkim) = dkim {
        message.sign(dkim);
    }
    let envelope = message.envelope().clone();
    Ok(OutgoingMessage {
        // The transport files messages by issue; notices are filed by the day they go.
        issue: IssueId::new(now.date_naive()),
        subscriber_id: notice.subscriber_id,
        envelope,
        bytes: message.formatted(),
    })
}
