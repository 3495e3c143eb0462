//! An IMAP mailbox, through async-imap over a tokio `TcpStream`, with rustls where TLS
//! is configured.
//!
//! A poll selects the mailbox, searches `UNSEEN UNKEYWORD $GazetteChecked`, reads each
//! hit with `BODY.PEEK[]<0.N>` (which neither sets `\Seen` nor transfers more than the
//! size cap), and afterwards moves processed messages to the processed folder (`MOVE`, or
//! `COPY` + `\Deleted` + `UID EXPUNGE`) and tags the ones left for a person with the
//! keyword, so they stay unread but are not read again. Servers that refuse keywords get
//! `UNSEEN` alone; the store's record of processed messages then keeps us from acting
//! twice.

use super::{Disposition, MAX_MESSAGE_BYTES, MessageRef, SourceError, Waiting};
use crate::settings::{Secret, Tls};
use futures::StreamExt;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The keyword on messages left for a person.
pub const CHECKED_KEYWORD: &str = "$GazetteChecked";
/// Longest any one IMAP exchange may take before the connection is given up.
const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// UIDs per command line, to keep lines short.
const UIDS_PER_COMMAND: usize = 500;

/// Where and how to log in.
#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: ImapTls,
    pub username: String,
    pub password: Secret,
    pub mailbox: String,
    pub processed: String,
}

/// How the connection is secured; plain text only to a loopback host.
pub type ImapTls = Tls;

trait Conn: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Conn for T {}

type Session = async_imap::Session<Box<dyn Conn>>;

#[derive(Debug, Default, Clone, Copy)]
struct Capabilities {
    idle: bool,
    move_: bool,
    uidplus: bool,
}

/// An IMAP mailbox; connects on first use and again after an error.
#[derive(Debug)]
pub struct ImapSource {
    config: ImapConfig,
    session: Option<Session>,
    caps: Capabilities,
    keywords: bool,
    waiting: VecDeque<(u32, usize)>,
}

fn imap_err(command: &str) -> impl FnOnce(async_imap::error::Error) -> SourceError + '_ {
    move |e| SourceError::Imap {
        command: command.to_owned(),
        reason: e.to_string(),
    }
}

async fn timed<T>(
    what: &str,
    fut: impl Future<Output = Result<T, SourceError>>,
) -> Result<T, SourceError> {
    tokio::time::timeout(OP_TIMEOUT, fut)
        .await
        .map_err(|_| SourceError::Timeout(what.to_owned()))?
}

/// `1,2,3,7` → `1:3,7`.
fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn tls_connect(host: &str, tcp: TcpStream) -> Result<Box<dyn Conn>, SourceError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| SourceError::Tls(e.to_string()))?
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| SourceError::Tls(format!("{host}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| SourceError::Tls(e.to_string()))?;
    Ok(Box::new(stream))
}

impl ImapSource {
    /// A source for `config`; nothing is connected until the first poll.
    pub fn new(config: ImapConfig) -> Result<Self, SourceError> {
        if config.tls == Tls::None && !is_loopback(&config.host) {
            return Err(SourceError::Tls(format!(
                "refusing to send the password in plain text to {}: set [inbox] tls = \"tls\" \
                 or \"starttls\" (plain text is allowed to a loopback address only)",
                config.host
            )));
        }
        Ok(Self {
            config,
            session: None,
            caps: Capabilities::default(),
            keywords: false,
            waiting: VecDeque::new(),
        })
    }

    async fn connect(&mut self) -> Result<(), SourceError> {
        let c = &self.config;
        let tcp = timed("connect", async {
            TcpStream::connect((c.host.as_str(), c.port))
                .await
                .map_err(|source| SourceError::Connect {
                    host: c.host.clone(),
                    port: c.port,
                    source,
                })
        })
        .await?;
        let _ = tcp.set_nodelay(true);
        let mut client = match c.tls {
            Tls::Implicit => {
                let mut client = async_imap::Client::new(tls_connect(&c.host, tcp).await?);
                read_greeting(&mut client).await?;
                client
            }
            Tls::None => {
                let mut client = async_imap::Client::new(Box::new(tcp) as Box<dyn Conn>);
                read_greeting(&mut client).await?;
                client
            }
            Tls::StartTls => {
                let mut plain = async_imap::Client::new(tcp);
                timed("greeting", async {
                    plain
                        .read_response()
                        .await
                        .map_err(|e| imap_err("greeting")(e.into()))
                })
                .await?;
                timed("STARTTLS", async {
                    plain
                        .run_command_and_check_ok("STARTTLS", None)
                        .await
                        .map_err(imap_err("STARTTLS"))
                })
                .await?;
                async_imap::Client::new(tls_connect(&c.host, plain.into_inner()).await?)
            }
        };
        let _ = &mut client;
        let session = timed("LOGIN", async {
            client
                .login(&c.username, c.password.expose())
                .await
                .map_err(|(e, _)| SourceError::Login {
                    user: c.username.clone(),
                    reason: e.to_string(),
                })
        })
        .await?;
        let mut session = session;
        let caps = timed("CAPABILITY", async {
            session.capabilities().await.map_err(imap_err("CAPABILITY"))
        })
        .await?;
        self.caps = Capabilities {
            idle: caps.has_str("IDLE"),
            move_: caps.has_str("MOVE"),
            uidplus: caps.has_str("UIDPLUS"),
        };
        // The processed folder may exist already; a failed CREATE then is expected, and a
        // real problem shows up at the first MOVE.
        let processed = self.config.processed.clone();
        let _ = timed("CREATE", async {
            session.create(&processed).await.map_err(imap_err("CREATE"))
        })
        .await;
        self.session = Some(session);
        tracing::debug!(host = %self.config.host, "IMAP connected");
        Ok(())
    }

    async fn session(&mut self) -> Result<&mut Session, SourceError> {
        if self.session.is_none() {
            self.connect().await?;
        }
        Ok(self.session.as_mut().expect("connected above"))
    }

    pub(super) async fn start_poll(&mut self) -> Result<usize, SourceError> {
        let result = self.start_poll_inner().await;
        if result.is_err() {
            // The connection may be in any state; start afresh next time.
            self.session = None;
        }
        result
    }

    async fn start_poll_inner(&mut self) -> Result<usize, SourceError> {
        let mailbox = self.config.mailbox.clone();
        let session = self.session().await?;
        let selected = timed("SELECT", async {
            session.select(&mailbox).await.map_err(imap_err("SELECT"))
        })
        .await?;
        let keywords = selected
            .permanent_flags
            .iter()
            .any(|f| matches!(f, async_imap::types::Flag::MayCreate));
        let query = if keywords {
            format!("UNSEEN UNKEYWORD {CHECKED_KEYWORD}")
        } else {
            "UNSEEN".to_owned()
        };
        let mut uids: Vec<u32> = timed("UID SEARCH", async {
            session
                .uid_search(&query)
                .await
                .map_err(imap_err("UID SEARCH"))
        })
        .await?
        .into_iter()
        .collect();
        uids.sort_unstable();
        let mut waiting = VecDeque::with_capacity(uids.len());
        for chunk in uids.chunks(UIDS_PER_COMMAND) {
            let set = uid_set(chunk);
            let sizes = timed("UID FETCH (RFC822.SIZE)", async {
                let mut stream = session
                    .uid_fetch(&set, "(UID RFC822.SIZE)")
                    .await
                    .map_err(imap_err("UID FETCH"))?;
                let mut sizes = Vec::new();
                while let Some(item) = stream.next().await {
                    let fetch = item.map_err(imap_err("UID FETCH"))?;
                    if let Some(uid) = fetch.uid {
                        sizes.push((uid, fetch.size.unwrap_or(0) as usize));
                    }
                }
                Ok(sizes)
            })
            .await?;
            waiting.extend(sizes);
        }
        waiting.make_contiguous().sort_unstable();
        self.keywords = keywords;
        self.waiting = waiting;
        Ok(self.waiting.len())
    }

    pub(super) async fn next_batch(&mut self) -> Result<Vec<Waiting>, SourceError> {
        let result = self.next_batch_inner().await;
        if result.is_err() {
            self.session = None;
            self.waiting.clear();
        }
        result
    }

    async fn next_batch_inner(&mut self) -> Result<Vec<Waiting>, SourceError> {
        let n = super::first_batch_len(self.waiting.iter().map(|(_, size)| *size));
        if n == 0 {
            return Ok(Vec::new());
        }
        let batch: Vec<(u32, usize)> = self.waiting.drain(..n).collect();
        let set = uid_set(&batch.iter().map(|(uid, _)| *uid).collect::<Vec<_>>());
        let query = format!("(UID RFC822.SIZE BODY.PEEK[]<0.{MAX_MESSAGE_BYTES}>)");
        let session = self.session().await?;
        timed("UID FETCH (BODY.PEEK[])", async {
            let mut stream = session
                .uid_fetch(&set, &query)
                .await
                .map_err(imap_err("UID FETCH"))?;
            let mut out = Vec::with_capacity(batch.len());
            while let Some(item) = stream.next().await {
                let fetch = item.map_err(imap_err("UID FETCH"))?;
                let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) else {
                    continue;
                };
                let size = fetch.size.map_or(body.len(), |s| s as usize);
                let mut raw = body.to_vec();
                raw.truncate(MAX_MESSAGE_BYTES);
                out.push(Waiting {
                    at: MessageRef::Imap(uid),
                    truncated: size > raw.len(),
                    raw,
                });
            }
            out.sort_by_key(|w| match w.at {
                MessageRef::Imap(uid) => uid,
                MessageRef::Maildir(_) => 0,
            });
            Ok(out)
        })
        .await
    }

    pub(super) async fn dispose(
        &mut self,
        done: &[(MessageRef, Disposition)],
    ) -> Result<(), SourceError> {
        let result = self.dispose_inner(done).await;
        if result.is_err() {
            self.session = None;
        }
        result
    }

    async fn dispose_inner(
        &mut self,
        done: &[(MessageRef, Disposition)],
    ) -> Result<(), SourceError> {
        let uids = |want: Disposition| -> Vec<u32> {
            done.iter()
                .filter_map(|(at, d)| match at {
                    MessageRef::Imap(uid) if *d == want => Some(*uid),
                    _ => None,
                })
                .collect()
        };
        let processed = uids(Disposition::Processed);
        let for_person = uids(Disposition::ForAPerson);
        let caps = self.caps;
        let keywords = self.keywords;
        let target = self.config.processed.clone();
        let session = self.session().await?;
        for chunk in processed.chunks(UIDS_PER_COMMAND) {
            let set = uid_set(chunk);
            store_flags(session, &set, "+FLAGS.SILENT (\\Seen)").await?;
            if caps.move_ {
                timed("UID MOVE", async {
                    session
                        .uid_mv(&set, &target)
                        .await
                        .map_err(imap_err("UID MOVE"))
                })
                .await?;
            } else {
                timed("UID COPY", async {
                    session
                        .uid_copy(&set, &target)
                        .await
                        .map_err(imap_err("UID COPY"))
                })
                .await?;
                store_flags(session, &set, "+FLAGS.SILENT (\\Deleted)").await?;
                // Without UIDPLUS a plain EXPUNGE would also remove messages a person
                // deleted but still wants to undelete; leave ours flagged instead.
                if caps.uidplus {
                    timed("UID EXPUNGE", async {
                        let stream = session
                            .uid_expunge(&set)
                            .await
                            .map_err(imap_err("UID EXPUNGE"))?;
                        futures::pin_mut!(stream);
                        while let Some(item) = stream.next().await {
                            item.map_err(imap_err("UID EXPUNGE"))?;
                        }
                        Ok(())
                    })
                    .await?;
                }
            }
        }
        if keywords {
            for chunk in for_person.chunks(UIDS_PER_COMMAND) {
                let set = uid_set(chunk);
                store_flags(session, &set, &format!("+FLAGS.SILENT ({CHECKED_KEYWORD})")).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn wait_for_mail(&mut self, max: Duration) -> Result<(), SourceError> {
        if !self.caps.idle || self.session.is_none() {
            tokio::time::sleep(max).await;
            return Ok(());
        }
        let session = self.session.take().expect("checked above");
        // Mail that arrived while we were busy was announced then; don't wait for more.
        let mut announced = false;
        while let Ok(response) = session.unsolicited_responses.try_recv() {
            announced |= matches!(
                response,
                async_imap::types::UnsolicitedResponse::Exists(_)
                    | async_imap::types::UnsolicitedResponse::Recent(_)
            );
        }
        if announced {
            self.session = Some(session);
            return Ok(());
        }
        let mut idle = session.idle();
        timed("IDLE", async {
            idle.init().await.map_err(imap_err("IDLE"))
        })
        .await?;
        let (wait, _stop) = idle.wait_with_timeout(max);
        let waited = wait.await.map_err(imap_err("IDLE"));
        let session = timed("DONE", async {
            idle.done().await.map_err(imap_err("DONE"))
        })
        .await?;
        waited?;
        self.session = Some(session);
        Ok(())
    }

    pub(super) async fn close(&mut self) {
        if let Some(mut session) = self.session.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
        }
    }
}

async fn read_greeting(client: &mut async_imap::Client<Box<dyn Conn>>) -> Result<(), SourceError> {
    timed("greeting", async {
        match client.read_response().await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(SourceError::Imap {
                command: "greeting".into(),
                reason: "connection closed".into(),
            }),
            Err(e) => Err(imap_err("greeting")(e.into())),
        }
    })
    .await
}

async fn store_flags(session: &mut Session, set: &str, query: &str) -> Result<(), SourceError> {
    timed("UID STORE", async {
        let mut stream = session
            .uid_store(set, query)
            .await
            .map_err(imap_err("UID STORE"))?;
        while let Some(item) = stream.next().await {
            item.map_err(imap_err("UID STORE"))?;
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[3, 1, 2, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn plain_text_only_to_loopback() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("imap.example.org"));
    }
}
