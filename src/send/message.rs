//! From a frozen issue and a ledger row to the bytes of one message, DKIM-signed if
//! configured.

use super::OutgoingMessage;
use crate::domain::{
    DkimError, DkimSigner, HeaderText, IssueId, SharedBody, SubscriberEmail, TokenKey,
};
use crate::render::{self, MessageOptions, Recipient, RecipientLinks};
use crate::settings::{Dkim, Newsletter};
use crate::store::{DueDelivery, FrozenIssue};
use lettre::address::Envelope;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a message could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error(transparent)]
    Build(#[from] render::MessageError),
    #[error("settings key `{key}`: {source}")]
    Dkim {
        key: &'static str,
        source: DkimError,
    },
    #[error("cannot make the envelope for {0}")]
    Envelope(String),
}

/// Builds the DKIM signer from `[dkim]`: the RSA key, and the Ed25519 key beside it when
/// one is configured.
pub fn dkim_signer(dkim: &Dkim) -> Result<DkimSigner, MessageError> {
    let signer = DkimSigner::rsa(&dkim.domain, &dkim.selector, dkim.private_key.expose()).map_err(
        |source| MessageError::Dkim {
            key: "dkim.private_key_file",
            source,
        },
    )?;
    match &dkim.ed25519 {
        None => Ok(signer),
        Some((selector, key)) => signer
            .with_ed25519(selector, key.expose())
            .map_err(|source| MessageError::Dkim {
                key: "dkim.ed25519_private_key_file",
                source,
            }),
    }
}

/// Makes each recipient's message: the newsletter's headers, the token key, DKIM.
#[derive(Debug)]
pub struct MessageFactory {
    newsletter: Newsletter,
    tokens: TokenKey,
    dkim: Option<std::sync::Arc<DkimSigner>>,
    /// Per issue, the body start all its messages share, hashed once for DKIM.
    shared: Mutex<HashMap<IssueId, Option<Arc<SharedBody>>>>,
}

impl MessageFactory {
    /// A factory for `newsletter`, signing tokens with `tokens` and messages with `dkim`.
    pub fn new(
        newsletter: Newsletter,
        tokens: TokenKey,
        dkim: Option<std::sync::Arc<DkimSigner>>,
    ) -> Self {
        Self {
            newsletter,
            tokens,
            dkim,
            shared: Mutex::default(),
        }
    }

    /// Whether messages are DKIM-signed (the costly part of building one).
    pub fn signs(&self) -> bool {
        self.dkim.is_some()
    }

    /// The message of `issue` for one ledger row. The same row always gives the same
    /// message (same Message-ID and Date), so a resend after a crash is a true duplicate
    /// that receiving systems can recognise.
    ///
    /// The envelope sender is the polled mailbox (`reply_to`), so bounces reach the
    /// inbox worker.
    pub fn build(
        &self,
        issue: &FrozenIssue,
        row: &DueDelivery,
    ) -> Result<OutgoingMessage, MessageError> {
        let recipient = Recipient {
            id: row.subscriber_id,
            email: row.email.clone(),
            name: row.name.clone(),
        };
        let bytes = self.unsigned(issue, &recipient)?;
        let bytes = match &self.dkim {
            Some(dkim) => dkim.sign_shared(
                &bytes,
                issue.message_date.timestamp(),
                self.shared_body(issue).as_deref(),
            ),
            None => bytes,
        };
        let to = row
            .email
            .as_str()
            .parse()
            .map_err(|_| MessageError::Envelope(row.email.to_string()))?;
        let envelope = Envelope::new(Some(self.newsletter.reply_to.email.clone()), vec![to])
            .map_err(|_| MessageError::Envelope(row.email.to_string()))?;
        Ok(OutgoingMessage::named(
            envelope,
            bytes,
            format!("{}/{}", issue.id, row.subscriber_id),
        ))
    }

    /// The bytes of `issue`'s message to `recipient`, before any signature.
    fn unsigned(
        &self,
        issue: &FrozenIssue,
        recipient: &Recipient,
    ) -> Result<Vec<u8>, MessageError> {
        let links = RecipientLinks::new(&self.newsletter, &self.tokens, recipient.id);
        let message = render::build_message(
            MessageOptions {
                newsletter: &self.newsletter,
                issue: issue.id,
                date: issue.message_date,
            },
            &issue.rendered,
            recipient,
            &links,
        )?;
        Ok(message.formatted())
    }

    /// The body start every message of `issue` shares, found once per issue by building
    /// it for two made-up recipients who differ in every personal field. A message that
    /// does not begin with it (nothing relies on that) is hashed whole.
    pub fn shared_body(&self, issue: &FrozenIssue) -> Option<Arc<SharedBody>> {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared
            .entry(issue.id)
            .or_insert_with(|| {
                let sample = |id: i64, email: &str, name: &str| {
                    let recipient = Recipient {
                        id,
                        email: SubscriberEmail::parse(email).ok()?,
                        name: HeaderText::parse(name).ok(),
                    };
                    self.unsigned(issue, &recipient).ok()
                };
                let a = sample(-1, "first@sample.invalid", "First Sample")?;
                let b = sample(-2, "other@example.invalid", "Other Person")?;
                SharedBody::of(&a, &b).map(Arc::new)
            })
            .clone()
    }
}
