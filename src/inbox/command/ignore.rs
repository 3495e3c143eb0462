//! `Ignore`: mail that must never be answered nor taken as a request.
//!
//! Answering an auto-reply starts a mail loop; answering a bounce or our own message does
//! too. RFC 3834 lists the signs; we add the common non-standard headers.

use super::Recognizer;
use crate::inbox::incoming::{Incoming, Report, ReturnPath};

/// Why a message is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreReason {
    /// `Auto-Submitted` other than `no`, `Precedence: bulk/junk/list`, `X-Autoreply` …
    AutoReply,
    /// `Return-Path: <>`.
    NullSender,
    /// From MAILER-DAEMON or postmaster.
    MailerDaemon,
    /// From one of our addresses, or carrying one of our Message-IDs.
    OwnMail,
    /// A `multipart/report` that is not about delivery (a read receipt, say).
    Report(String),
    /// A header that may appear once appears twice (`From`, `Subject` …).
    Malformed,
}

impl IgnoreReason {
    pub(super) fn parse(m: &Incoming, r: &Recognizer) -> Option<Self> {
        if m.auto_submitted.as_deref().is_some_and(|v| v != "no")
            || m.precedence
                .as_deref()
                .is_some_and(|p| matches!(p, "bulk" | "junk" | "list" | "auto_reply"))
            || m.autoreply_header
        {
            return Some(Self::AutoReply);
        }
        if m.duplicate_headers {
            return Some(Self::Malformed);
        }
        if m.return_path == ReturnPath::Null {
            return Some(Self::NullSender);
        }
        let local_part = |a: &str| {
            a.rsplit_once('@')
                .map_or(a, |(l, _)| l)
                .to_ascii_lowercase()
        };
        let senders = m.from.iter().chain(match &m.return_path {
            ReturnPath::Address(a) => Some(a),
            _ => None,
        });
        for sender in senders.clone() {
            if matches!(local_part(sender).as_str(), "mailer-daemon" | "postmaster") {
                return Some(Self::MailerDaemon);
            }
        }
        // One of our issue's Message-IDs: our domain and a genuine token. The domain alone
        // is not enough: a subscriber at the newsletter's own domain has Message-IDs there.
        let own_id = m.message_id.as_deref().is_some_and(|id| {
            id.to_ascii_lowercase()
                .trim_end_matches('>')
                .ends_with(&format!("@{}", r.message_id_domain))
                && r.find_message_token(id).is_some()
        });
        if own_id || m.from.as_deref().is_some_and(|f| r.is_own_address(f)) {
            return Some(Self::OwnMail);
        }
        if let Some(Report::Other(kind)) = &m.report {
            return Some(Self::Report(kind.clone()));
        }
        None
    }
}
