//! The whole message one recipient gets: headers, text part and HTML part.

use super::outgoing::raw_header;
use super::{Recipient, RecipientLinks, RenderedIssue};
use crate::domain::IssueId;
use crate::settings::Newsletter;
use lettre::Message;
use lettre::message::header::ContentTransferEncoding;
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};

/// Why a message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("cannot build the message for {recipient}: {source}")]
    Build {
        recipient: String,
        source: lettre::error::Error,
    },
    #[error("'{0}' cannot be used as a recipient address")]
    Address(String),
    #[error("the subject cannot be a mail header: it {0}")]
    Subject(String),
}

/// Headers that are the same for every message of an issue.
#[derive(Debug, Clone, Copy)]
pub struct MessageOptions<'a> {
    pub newsletter: &'a Newsletter,
    pub issue: IssueId,
    /// The `Date` header.
    pub date: chrono::DateTime<chrono::Utc>,
}

/// Our Message-ID for `issue` to the recipient with `token`. It names the issue and the
/// recipient, so a reply's `In-Reply-To` tells the inbox worker who replied even when the
/// reply comes from another address, and a resend after a crash carries the same id.
pub fn message_id(newsletter: &Newsletter, issue: IssueId, token: &str) -> String {
    format!("<{issue}.{token}@{}>", newsletter.message_id_domain)
}

/// The MIME boundary of `issue`'s messages. It is the same for every recipient, so each
/// message's body starts with the same bytes up to the first personal line, and that
/// start is hashed for DKIM once per issue (see [`crate::domain::SharedBody`]). `=_`
/// never occurs in quoted-printable text, so the boundary cannot clash with a body.
pub fn boundary(issue: IssueId) -> String {
    format!("=_gazette_{issue}")
}

/// Builds the message for one recipient.
pub fn build_message(
    options: MessageOptions<'_>,
    rendered: &RenderedIssue,
    recipient: &Recipient,
    links: &RecipientLinks,
) -> Result<Message, MessageError> {
    let n = options.newsletter;
    let to_address = recipient
        .email
        .as_str()
        .parse()
        .map_err(|_| MessageError::Address(recipient.email.to_string()))?;
    let to = Mailbox::new(
        recipient.name.as_ref().map(|n| n.as_str().to_owned()),
        to_address,
    );
    // Bodies come pre-encoded: lettre would otherwise encode ~30 KB again per message.
    let text = Body::dangerous_pre_encoded(
        rendered.text.fill_quoted_printable(recipient, links),
        ContentTransferEncoding::QuotedPrintable,
    );
    let html = Body::dangerous_pre_encoded(
        rendered.html.fill_quoted_printable(recipient, links),
        ContentTransferEncoding::QuotedPrintable,
    );
    let list_id = if n.name.as_str().is_ascii() {
        format!("{} <{}>", n.name, n.list_id)
    } else {
        format!("<{}>", n.list_id)
    };
    super::outgoing::compose(super::outgoing::Outgoing {
        kind: super::outgoing::Kind::Issue,
        from: &n.from,
        reply_to: Some(&n.reply_to),
        to: &to,
        subject: rendered.subject.as_str(),
        date: options.date,
        message_id: Some(message_id(n, options.issue, &links.message_token)),
        id_domain: &n.message_id_domain,
        headers: vec![
            raw_header("List-Id", list_id),
            raw_header(
                "List-Unsubscribe",
                format!(
                    "<{}>, <{}>",
                    links.unsubscribe_url, links.unsubscribe_mailto
                ),
            ),
            raw_header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".into()),
        ],
        content: super::outgoing::Content::Alternative(
            MultiPart::alternative()
                .boundary(boundary(options.issue))
                .singlepart(SinglePart::plain(text))
                .singlepart(SinglePart::html(html)),
        ),
    })
    .map_err(|source| MessageError::Build {
        recipient: recipient.email.to_string(),
        source,
    })
}
