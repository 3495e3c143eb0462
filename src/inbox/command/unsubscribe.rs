//! `Unsubscribe`: a reply or a mailto message asking to leave the list.

use super::Recognizer;
use crate::domain::{SubscriberEmail, TokenPurpose};
use crate::inbox::incoming::Incoming;
use crate::inbox::reply;

/// Where the request was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The subject, after any `Re:`/`AW:`/`Fwd:`, is UNSUBSCRIBE (optionally followed by
    /// `me` or our token) and nothing else.
    Subject,
    /// One of the first lines above any quotation says only that.
    Body,
}

/// A request to unsubscribe, with what names the subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The `From` address, when it is a valid address.
    pub sender: Option<SubscriberEmail>,
    /// The subscriber a genuine token names: the mailto subject's token, else our
    /// Message-ID in `In-Reply-To`/`References`. Preferred over `sender`, so a reply
    /// from an alias or a forwarding address reaches the right subscriber.
    pub token_subscriber: Option<i64>,
    pub via: Via,
}

impl Unsubscribe {
    pub(super) fn parse(m: &Incoming, r: &Recognizer) -> Option<Self> {
        let subject = reply::strip_subject_prefixes(&m.subject);
        let via = if reply::is_request(subject) {
            Via::Subject
        } else if m.reply_lines.iter().any(|l| reply::is_request(l)) {
            Via::Body
        } else {
            return None;
        };
        let token_subscriber = r
            .tokens
            .find_in(TokenPurpose::Unsubscribe, subject)
            .or_else(|| r.find_message_token(&m.thread));
        let sender = m
            .from
            .as_deref()
            .and_then(|f| SubscriberEmail::parse(f).ok());
        if sender.is_none() && token_subscriber.is_none() {
            // Nobody to unsubscribe: a person may make sense of it.
            return None;
        }
        Some(Self {
            sender,
            token_subscriber,
            via,
        })
    }
}

impl Unsubscribe {
    /// The subscribers this request is about: the one a genuine token names, else the
    /// one whose address is the sender's, compared case-insensitively as a whole (every
    /// one, should a store still hold two spellings of one mailbox).
    pub async fn subscribers(
        &self,
        store: &crate::store::Store,
    ) -> Result<Vec<i64>, crate::store::StoreError> {
        if let Some(id) = self.token_subscriber
            && store.subscriber(id).await?.is_some()
        {
            return Ok(vec![id]);
        }
        match &self.sender {
            Some(email) => store.subscribers_with_address(email).await,
            None => Ok(Vec::new()),
        }
    }
}
