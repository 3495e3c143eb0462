//! From a frozen issue and a ledger row to the bytes of one message, DKIM-signed if
//! configured.

use super::OutgoingMessage;
use crate::domain::{DkimError, DkimSigner, TokenKey};
use crate::render::{self, MessageOptions, Recipient, RecipientLinks};
use crate::settings::{Dkim, Newsletter};
use crate::store::{DueDelivery, FrozenIssue};
use lettre::address::Envelope;

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
        let links = RecipientLinks::new(&self.newsletter, &self.tokens, row.subscriber_id);
        let message = render::build_message(
            MessageOptions {
                newsletter: &self.newsletter,
                issue: issue.id,
                date: issue.message_date,
            },
            &issue.rendered,
            &recipient,
            &links,
        )?;
        let to = row
            .email
            .as_str()
            .parse()
            .map_err(|_| MessageError::Envelope(row.email.to_string()))?;
        let envelope = Envelope::new(Some(self.newsletter.reply_to.email.clone()), vec![to])
            .map_err(|_| MessageError::Envelope(row.email.to_string()))?;
        Ok(OutgoingMessage::named(
            envelope,
            render::finish(&message, issue.message_date, self.dkim.as_deref()),
            format!("{}/{}", issue.id, row.subscriber_id),
        ))
    }
}
