//! `Bounce`: a delivery status notification (RFC 3464) about one of our messages.

use super::Recognizer;
use crate::domain::{SubscriberEmail, TokenPurpose};
use crate::inbox::dsn::{Action, Status};
use crate::inbox::incoming::{Incoming, Report};

/// What a report says about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BouncedRecipient {
    /// `Final-Recipient`, when it is a valid address.
    pub address: Option<SubscriberEmail>,
    pub action: Action,
    pub status: Option<Status>,
    /// A 5.x.x failure, which counts toward marking the subscriber bounced.
    pub permanent: bool,
}

/// A delivery report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    pub recipients: Vec<BouncedRecipient>,
    /// The subscriber named by our Message-ID in the returned original, if it is there
    /// and genuine: it finds the subscriber when `Final-Recipient` is a forwarding target.
    pub token_subscriber: Option<i64>,
}

impl Bounce {
    pub(super) fn parse(m: &Incoming, r: &Recognizer) -> Option<Self> {
        let Some(Report::DeliveryStatus {
            recipients,
            original_headers,
        }) = &m.report
        else {
            return None;
        };
        Some(Self {
            recipients: recipients
                .iter()
                .map(|s| BouncedRecipient {
                    address: s
                        .recipient
                        .as_deref()
                        .and_then(|a| SubscriberEmail::parse(a).ok()),
                    action: s.action,
                    status: s.status,
                    permanent: s.is_permanent_failure(),
                })
                .collect(),
            token_subscriber: r
                .tokens
                .find_in(TokenPurpose::Unsubscribe, original_headers),
        })
    }

    /// Whether any recipient failed permanently.
    pub fn is_permanent(&self) -> bool {
        self.recipients.iter().any(|r| r.permanent)
    }
}

impl Bounce {
    /// The subscriber `recipient` is: the one our returned Message-ID names when the
    /// report is about a single recipient, else the one with the `Final-Recipient` address.
    pub async fn subscriber(
        &self,
        recipient: &BouncedRecipient,
        store: &crate::store::Store,
    ) -> Result<Option<i64>, crate::store::StoreError> {
        if self.recipients.len() == 1
            && let Some(id) = self.token_subscriber
            && store.subscriber(id).await?.is_some()
        {
            return Ok(Some(id));
        }
        match &recipient.address {
            Some(email) => Ok(store.subscriber_by_email(email).await?.map(|s| s.id)),
            None => Ok(None),
        }
    }
}
