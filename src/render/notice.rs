//! Messages to the editors: proofs of the next issue, and notices about held or missed
//! issues. They are not newsletter mail: no list headers, no unsubscribe links.

use super::outgoing::{Content, Kind, Outgoing, compose};
use super::{MessageError, Recipient, RecipientLinks, RenderedIssue, wrap};
use crate::compose::Diagnostic;
use crate::domain::{HeaderText, IssueId, SubscriberEmail};
use crate::settings::Newsletter;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};

fn build_error(to: &Mailbox, source: lettre::error::Error) -> MessageError {
    MessageError::Build {
        recipient: to.email.to_string(),
        source,
    }
}

/// Every message to an editor goes through here. A subject that cannot be a header
/// (a line break from a template) is refused, as for subscribers' messages.
fn editor_message(
    newsletter: &Newsletter,
    kind: Kind,
    editor: &Mailbox,
    subject: &str,
    date: chrono::DateTime<chrono::Utc>,
    content: Content,
) -> Result<Message, MessageError> {
    let subject = HeaderText::parse(subject).map_err(|e| MessageError::Subject(e.to_string()))?;
    compose(Outgoing {
        kind,
        from: &newsletter.from,
        reply_to: None,
        to: editor,
        subject: subject.as_str(),
        date,
        message_id: None,
        id_domain: &newsletter.message_id_domain,
        headers: Vec::new(),
        content,
    })
    .map_err(|e| build_error(editor, e))
}

/// The warnings block put on top of a proof, as text.
fn diagnostics_text(diagnostics: &[Diagnostic]) -> String {
    if diagnostics.is_empty() {
        return "No warnings: the issue is ready to send.".to_owned();
    }
    let mut out = format!(
        "{} problem(s) to look at before the issue goes out:\n\n",
        diagnostics.len()
    );
    for d in diagnostics {
        out.push_str(&wrap(&d.to_string(), "- ", "  "));
        out.push('\n');
    }
    out
}

/// A proof of `rendered` for one editor: the issue as a subscriber would see it, with
/// the warnings and the send time on top. Links in it are made out to `links`, which
/// should belong to no real subscriber (id 0).
#[allow(clippy::too_many_arguments)]
pub fn proof_message(
    newsletter: &Newsletter,
    editor: &Mailbox,
    issue: IssueId,
    send_at: &str,
    rendered: &RenderedIssue,
    diagnostics: &[Diagnostic],
    links: &RecipientLinks,
    date: chrono::DateTime<chrono::Utc>,
) -> Result<Message, MessageError> {
    let recipient = Recipient {
        id: 0,
        email: SubscriberEmail::parse(editor.email.as_ref())
            .map_err(|_| MessageError::Address(editor.email.to_string()))?,
        name: None,
    };
    let banner = format!(
        "PROOF of the issue {issue}, to be sent {send_at}.\n\n{}",
        diagnostics_text(diagnostics)
    );
    let text = format!(
        "{banner}\n\n{}\n\n{}",
        "=".repeat(40),
        rendered.text.fill(&recipient, links)
    );
    let html_banner = format!(
        "<div style=\"border:3px solid #b45309;background:#fffbeb;color:#1f2933;padding:12px 16px;margin:12px;font-family:Arial,sans-serif\"><pre style=\"white-space:pre-wrap;margin:0;font-family:Arial,sans-serif\">{}</pre></div>",
        super::escape_html(&banner)
    );
    let html = rendered.html.fill(&recipient, links);
    let html = match html
        .find("<body")
        .and_then(|b| html[b..].find('>').map(|e| b + e + 1))
    {
        Some(at) => format!("{}{html_banner}{}", &html[..at], &html[at..]),
        None => format!("{html_banner}{html}"),
    };
    editor_message(
        newsletter,
        Kind::Proof,
        editor,
        &format!("[PROOF] {}", rendered.subject),
        date,
        Content::Alternative(MultiPart::alternative_plain_html(text, html)),
    )
}

/// A plain-text notice to one editor (an issue held, given up, or missed).
pub fn editor_notice(
    newsletter: &Newsletter,
    editor: &Mailbox,
    subject: &str,
    body: &str,
    date: chrono::DateTime<chrono::Utc>,
) -> Result<Message, MessageError> {
    editor_message(
        newsletter,
        Kind::EditorNotice,
        editor,
        &format!("[{}] {subject}", newsletter.name),
        date,
        Content::Text(body.to_owned()),
    )
}

/// The text of a notice listing what holds an issue.
pub fn hold_text(issue: IssueId, diagnostics: &[Diagnostic], until: &str) -> String {
    format!(
        "The issue {issue} is held: nothing has been sent.\n\n{}\n\ngazette checks the sections folder again every few minutes and sends the issue as soon as these are fixed, until {until}; after that it gives up on this issue.\n",
        diagnostics_text(diagnostics)
    )
}

/// A plain notice to the editors about one issue: which outbox folder it goes to (its
/// kind), its subject (the newsletter's name is put in front when it is sent) and text.
/// Every wording the scheduler uses lives here, beside the other messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditorNote {
    pub kind: &'static str,
    pub subject: String,
    pub body: String,
}

impl EditorNote {
    /// The issue is held by errors in the sections folder until `until`.
    pub fn held(issue: IssueId, diagnostics: &[Diagnostic], until: &str) -> Self {
        Self {
            kind: "held",
            subject: format!("Issue {issue} is held"),
            body: hold_text(issue, diagnostics, until),
        }
    }

    /// A held issue's hold window has ended: it will not go out by itself.
    pub fn given_up(issue: IssueId, due: &str) -> Self {
        Self {
            kind: "given-up",
            subject: format!("Issue {issue} was not sent"),
            body: format!(
                "The issue {issue}, due {due}, was held because of errors in the sections folder and the hold window has ended. It has not been sent and will not be sent automatically.\n\nFix the sections and send it with `gazette send-now --date {issue}`, or leave it for the next scheduled issue.\n"
            ),
        }
    }

    /// A slot passed while gazette was not running, beyond the catch-up window.
    pub fn missed(issue: IssueId, due: &str) -> Self {
        Self {
            kind: "missed",
            subject: format!("Issue {issue} was missed"),
            body: format!(
                "The issue {issue}, due {due}, was not sent: gazette was not running at that time and the catch-up window has passed (or a later issue was due).\n\nTo send it anyway: `gazette send-now --date {issue}`.\n"
            ),
        }
    }

    /// A slot whose date already has its issue, with new files waiting in the folder.
    pub fn slot_not_used(slot: &str, note: &str) -> Self {
        Self {
            kind: "missed",
            subject: format!("Slot {slot} not used"),
            body: format!(
                "The slot {slot} was not used: {note}. The files in the sections folder are left where they are, for the next issue.\n"
            ),
        }
    }

    /// A slot claimed but not frozen when gazette stopped, closed for `note`;
    /// `superseded` when its files went out (or will go out) with another issue.
    pub fn interrupted(issue: IssueId, due: &str, superseded: bool, note: &str) -> Self {
        let (kind, subject) = match superseded {
            true => (
                "superseded",
                format!("Issue {issue} was not sent on its own"),
            ),
            false => ("given-up", format!("Issue {issue} was not sent")),
        };
        Self {
            kind,
            subject,
            body: format!(
                "The issue {issue}, due {due}, was being prepared when gazette stopped, before it was frozen. Nothing was sent for it: {note}.\n\nIf it should still go out, put its files in the sections folder and run `gazette send-now --date {issue}`.\n"
            ),
        }
    }

    /// The proof could not be rendered (a template error).
    pub fn proof_failed(
        issue: IssueId,
        error: &dyn std::fmt::Display,
        diagnostics: &[Diagnostic],
        send_at: &str,
    ) -> Self {
        Self {
            kind: "proof",
            subject: format!("Proof of {issue} failed"),
            body: format!(
                "The proof of the issue {issue} could not be rendered: {error}\n\n{}",
                hold_text(issue, diagnostics, send_at)
            ),
        }
    }
}
