//! Render: an issue to HTML and plain text through tera templates, then to messages.
//!
//! The issue-wide part of every message is rendered once ([`RenderedIssue`]); the parts
//! that differ per recipient (address, name, unsubscribe links) are left as slots and
//! filled in per message ([`Personalized::fill`]), so the cost per message is a copy.
//! Message bodies are quoted-printable, and the literal parts of an issue are encoded
//! once too ([`Personalized::fill_quoted_printable`]).

mod mailbox;
mod markdown;
mod message;
mod notice;
mod outgoing;
mod personalize;
mod quoted_printable;
mod templates;

pub use mailbox::{encode_mailbox, mailbox_header};
pub use markdown::{TEXT_WIDTH, link_label, to_html, to_text, wrap};
pub use message::{MessageError, MessageOptions, build_message, message_id};
pub use notice::{EditorNote, editor_notice, hold_text, proof_message};
pub use outgoing::{Content, Kind, Outgoing, compose, finish};
pub use personalize::{
    Personalized, Recipient, RecipientLinks, Slot, escape_html, push_escaped_html,
};
pub use templates::{RenderError, Renderer};

/// Gmail clips messages whose HTML is larger than this; the check warns past it.
pub const HTML_SIZE_LIMIT: usize = 102 * 1024;

/// An issue rendered once, ready to be personalised per recipient.
#[derive(Debug, Clone)]
pub struct RenderedIssue {
    pub subject: crate::domain::HeaderText,
    pub html: Personalized,
    pub text: Personalized,
}

impl RenderedIssue {
    /// The HTML part's size as sent: its quoted-printable bytes, which is what Gmail's
    /// clipping counts (accented letters take 6 bytes there, not 2), without the few
    /// bytes a recipient's own values add.
    pub fn html_size_as_sent(&self) -> usize {
        self.html.encoded_len()
    }

    /// The warning Gmail's clipping calls for, when the HTML part as sent is too large.
    pub fn size_warning(&self) -> Option<crate::compose::Diagnostic> {
        let size = self.html_size_as_sent();
        (size > HTML_SIZE_LIMIT).then(|| {
            crate::compose::Diagnostic::issue_warning(format!(
                "the HTML part is {} KB as sent; Gmail clips messages over 102 KB",
                size / 1024
            ))
        })
    }
}
