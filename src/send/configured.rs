//! The transport `[transport] kind` names, as one type the worker can hold.

use super::{FileTransport, OutgoingMessage, RelayPool, SendError, SmtpTransport, Transport};
use crate::settings::{Settings, TransportKind};

/// The file or SMTP transport, chosen by settings.
#[derive(Debug)]
pub enum ConfiguredTransport {
    File(FileTransport),
    Smtp(RelayPool<SmtpTransport>),
}

impl ConfiguredTransport {
    /// The transport `[transport]` (and `[smtp]`) describe. EHLO names our Message-ID
    /// domain.
    pub fn from_settings(settings: &Settings) -> Self {
        match settings.transport.kind {
            TransportKind::File => Self::File(FileTransport::new(&settings.transport.outbox_dir)),
            TransportKind::Smtp => Self::Smtp(RelayPool::new(
                settings
                    .smtp
                    .pool()
                    .iter()
                    .map(|relay| {
                        (
                            format!("{}:{}", relay.host, relay.port),
                            SmtpTransport::new(relay, &settings.newsletter.message_id_domain),
                            relay.priority,
                            relay.weight,
                        )
                    })
                    .collect(),
                settings.delivery.relay_retry_initial,
                settings.delivery.relay_retry_max,
            )),
        }
    }

    /// The transport for mail that is not an issue (notices, confirmations, proofs): SMTP
    /// as configured, or with the file transport the `folder` of the outbox, so such a
    /// message never takes the place of an issue's file for the same recipient.
    pub fn for_side_mail(settings: &Settings, folder: &str) -> Self {
        match settings.transport.kind {
            TransportKind::File => Self::File(FileTransport::new(
                settings.transport.outbox_dir.join(folder),
            )),
            TransportKind::Smtp => Self::from_settings(settings),
        }
    }

    /// Where messages go, for reports.
    pub fn describe(&self, settings: &Settings) -> String {
        match self {
            Self::File(_) => format!("files in {}", settings.transport.outbox_dir.display()),
            Self::Smtp(pool) => format!(
                "SMTP {}",
                pool.relays()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Closes idle connections (SMTP); nothing for files.
    pub async fn close(&self) {
        if let Self::Smtp(pool) = self {
            for (_, smtp) in pool.relays() {
                smtp.close().await;
            }
        }
    }
}

impl Transport for ConfiguredTransport {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError> {
        match self {
            Self::File(t) => t.send(message).await,
            Self::Smtp(t) => t.send(message).await,
        }
    }

    fn concurrency(&self) -> usize {
        match self {
            Self::File(t) => t.concurrency(),
            Self::Smtp(t) => t.concurrency(),
        }
    }
}
