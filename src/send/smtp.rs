//! The SMTP transport: lettre's connection over sockets we open ourselves.
//!
//! lettre never sets TCP_NODELAY, and with Nagle's algorithm on, each SMTP command waits
//! for the previous segment's delayed ACK: about 22 messages a second per connection on
//! loopback (NOTES.md). So we open the `TcpStream`, set TCP_NODELAY, and hand it to
//! `AsyncSmtpConnection::connect_with_transport`. Up to `pool_size` connections are used
//! at once; an idle one is reused while it is fresh.
//!
//! Each SMTP command (connect, greeting and EHLO, STARTTLS, AUTH, MAIL FROM, each RCPT
//! TO, DATA, the message and its final dot) has `[smtp] timeout` to be answered. The
//! transaction is driven one command at a time rather than through lettre's `send`, so a
//! failure says where it happened: only the reply to a recipient's RCPT TO is about that
//! recipient; anything else would happen to every message and is the relay's fault.
//!
//! The way to the wire is ours where lettre's costs time:
//! - PIPELINING (RFC 2920): when the relay offers it, MAIL FROM, every RCPT TO and DATA go
//!   out in one write and their replies are read in order, each sorted exactly as if the
//!   commands had gone one by one. Two round trips per message instead of three or more.
//!   lettre does not keep that keyword from the EHLO reply, so each new connection asks
//!   EHLO once more itself (before AUTH) and reads the list.
//! - The message itself is made transparent and CRLF-clean in one pass
//!   ([`smtp_data`](super::smtp_data)) and written with its closing dot in one write,
//!   instead of lettre's byte-at-a-time encoder.
//! - CHUNKING (RFC 3030): when the relay offers it as well as PIPELINING, the message
//!   goes as one `BDAT <size> LAST` chunk in the same write as MAIL FROM and RCPT TO, as
//!   it is (no dot-stuffing): one round trip per message. Its content is then on the
//!   wire before any reply, so a connection lost or silent at any reply of that write
//!   leaves the message unknown (it may have arrived), never a relay fault.

use super::smtp_data::{chunk_text, data_payload};
use super::{OutgoingMessage, SendError, Transport};
use crate::settings::{Smtp, Tls};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// An idle connection older than this is closed rather than reused: servers drop idle
/// sessions, and a message sent into a dead one would only come back as a retry.
const MAX_IDLE: Duration = Duration::from_secs(5);

/// Sends through an SMTP server with a pool of connections.
pub struct SmtpTransport {
    host: String,
    port: u16,
    tls: Tls,
    ca_pem: Option<Vec<u8>>,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    pool_size: usize,
    permits: Semaphore,
    idle: Mutex<Vec<(Session, Instant)>>,
}

/// One open SMTP session and what its relay offers beyond what lettre keeps.
struct Session {
    conn: AsyncSmtpConnection,
    /// The EHLO reply listed PIPELINING.
    pipelining: bool,
    /// The EHLO reply listed CHUNKING (BDAT).
    chunking: bool,
}

/// Text handed to lettre's `command` as it is: several pipelined commands, or a message
/// already made transparent. (`command` writes what it is given in one write and reads
/// one reply; `read_response` reads the next.)
struct Raw<'a>(&'a str);

impl std::fmt::Display for Raw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Whether an EHLO reply lists `keyword` (the first word of one of its lines).
fn offers(reply: &lettre::transport::smtp::response::Response, keyword: &str) -> bool {
    reply.message().any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
    })
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("auth", &self.credentials.is_some())
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

fn reply_code(e: &lettre::transport::smtp::Error) -> Option<u16> {
    e.status().and_then(|c| c.to_string().parse().ok())
}

/// Where in the session a command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before the message: connect, greeting, EHLO, STARTTLS, AUTH, MAIL FROM, DATA.
    Session(&'static str),
    /// The reply to MAIL FROM when RCPT TO and DATA went in the same write: a server
    /// may hold it back until it has read (and answered) the whole group.
    Pipelined,
    /// A recipient's RCPT TO.
    Rcpt,
    /// The message and its final dot: after this was written it may have arrived.
    Dot,
    /// The replies to a write of MAIL FROM, RCPT TO and the whole message as its last
    /// BDAT chunk: to MAIL FROM, to a recipient's RCPT TO, and to the chunk. The
    /// message may have arrived once that write went out.
    ChunkedMail,
    ChunkedRcpt,
    Chunk,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Self::Session(name) => name,
            Self::Pipelined | Self::ChunkedMail => "MAIL FROM",
            Self::Rcpt | Self::ChunkedRcpt => "RCPT TO",
            Self::Dot => "the final dot",
            Self::Chunk => "the message (BDAT LAST)",
        }
    }

    /// What was waited for, when no answer came.
    fn awaited(self) -> &'static str {
        match self {
            Self::Pipelined => "MAIL FROM, RCPT TO and DATA (sent together)",
            Self::ChunkedMail => "MAIL FROM, RCPT TO and the message (BDAT LAST, sent together)",
            other => other.name(),
        }
    }

    /// Whether the message was on the wire when this reply was awaited: then a reply
    /// that never comes leaves it unknown, not undelivered.
    fn message_sent(self) -> bool {
        matches!(
            self,
            Self::Dot | Self::ChunkedMail | Self::ChunkedRcpt | Self::Chunk
        )
    }
}

/// MAIL FROM and a RCPT TO for each recipient, as one text to write together with what
/// follows them (DATA, or a BDAT chunk).
fn envelope_commands(mail: &Mail, envelope: &lettre::address::Envelope) -> String {
    let mut group = mail.to_string();
    for to in envelope.to() {
        group.push_str(&Rcpt::new(to.clone(), vec![]).to_string());
    }
    group
}

/// Sorts a lettre error at `stage` into the kinds the delivery policy knows.
fn classify(stage: Stage, e: &lettre::transport::smtp::Error) -> SendError {
    let text = e.to_string();
    if let Some(code) = reply_code(e) {
        // lettre's text is "transient error (421): <reply text>".
        let reply = text.split_once("): ").map_or(text.as_str(), |(_, r)| r);
        return match stage {
            Stage::Rcpt | Stage::ChunkedRcpt => SendError::from_reply(code, reply),
            _ => SendError::from_session_reply(stage.name(), code, reply),
        };
    }
    // No reply: the connection broke, the server hung up, TLS failed.
    let text = format!("connection lost at {}: {text}", stage.name());
    if stage.message_sent() {
        SendError::Unknown(text)
    } else {
        SendError::Relay(text)
    }
}

impl SmtpTransport {
    /// A transport for `[smtp]`. `hello` is the name given in EHLO (our domain).
    pub fn new(settings: &Smtp, hello: &str) -> Self {
        let credentials = match (&settings.username, &settings.password) {
            // AUTH only when configured: against a server that offers none, lettre would
            // fail with "No compatible authentication mechanism was found".
            (Some(user), Some(password)) => {
                Some(Credentials::new(user.clone(), password.expose().to_owned()))
            }
            _ => None,
        };
        let pool_size = settings.pool_size.max(1) as usize;
        Self {
            host: settings.host.clone(),
            port: settings.port,
            tls: settings.tls,
            ca_pem: settings.ca_pem.clone(),
            credentials,
            timeout: settings.timeout,
            hello: ClientId::Domain(hello.to_owned()),
            pool_size,
            permits: Semaphore::new(pool_size),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs one command (`step`) with the per-command timeout, sorting its failure.
    async fn step<T>(
        &self,
        stage: Stage,
        step: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, SendError> {
        match tokio::time::timeout(self.timeout, step).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(classify(stage, &e)),
            Err(_) => {
                let text = format!(
                    "no answer from {}:{} to {} within {:?}",
                    self.host,
                    self.port,
                    stage.awaited(),
                    self.timeout
                );
                Err(if stage.message_sent() {
                    SendError::Unknown(text)
                } else {
                    SendError::Relay(text)
                })
            }
        }
    }

    async fn connect(&self) -> Result<Session, SendError> {
        let address = format!("{}:{}", self.host, self.port);
        let tcp = match tokio::time::timeout(
            self.timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                return Err(SendError::Relay(format!(
                    "cannot connect to {address}: {e}"
                )));
            }
            Err(_) => {
                return Err(SendError::Relay(format!(
                    "cannot connect to {address}: no answer within {:?}",
                    self.timeout
                )));
            }
        };
        tcp.set_nodelay(true)
            .map_err(|e| SendError::Local(format!("setting TCP_NODELAY: {e}")))?;
        let tls = || {
            // TLS parameters are built from our own settings: a failure is local.
            self.tls_parameters()
        };
        let greeting = Stage::Session("the greeting or EHLO");
        let mut conn = match self.tls {
            Tls::None => {
                self.step(
                    greeting,
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
                )
                .await?
            }
            Tls::StartTls => {
                let mut conn = self
                    .step(
                        greeting,
                        AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
                    )
                    .await?;
                let params = tls()?;
                self.step(
                    Stage::Session("STARTTLS"),
                    conn.starttls(params, &self.hello),
                )
                .await?;
                conn
            }
            Tls::Implicit => {
                let params = tls()?;
                let stream = self
                    .step(
                        Stage::Session("the TLS handshake"),
                        ImplicitTls::handshake(tcp, params),
                    )
                    .await?;
                self.step(
                    greeting,
                    AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello),
                )
                .await?
            }
        };
        // Before AUTH: a new EHLO after it would start the session over.
        let ehlo = self
            .step(
                Stage::Session("the greeting or EHLO"),
                conn.command(Ehlo::new(self.hello.clone())),
            )
            .await?;
        let pipelining = offers(&ehlo, "PIPELINING");
        let chunking = offers(&ehlo, "CHUNKING");
        if let Some(credentials) = &self.credentials {
            self.step(
                Stage::Session("AUTH"),
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials),
            )
            .await?;
        }
        Ok(Session {
            conn,
            pipelining,
            chunking,
        })
    }

    fn tls_parameters(&self) -> Result<TlsParameters, SendError> {
        let mut builder = TlsParameters::builder(self.host.clone());
        if let Some(pem) = &self.ca_pem {
            let cert = lettre::transport::smtp::client::Certificate::from_pem(pem)
                .map_err(|e| SendError::Local(format!("smtp.ca_file: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build_rustls()
            .map_err(|e| SendError::Local(format!("TLS setup: {e}")))
    }

    /// Opens one session step by step, as [`send`](Transport::send) would, and says how
    /// far it got: for `gazette doctor`. Sends no mail; ends with QUIT.
    pub async fn probe(&self) -> RelayProbe {
        let mut probe = RelayProbe {
            answered: Err(String::new()),
            starttls: None,
            auth: None,
        };
        let steps = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("cannot connect to {}:{}: {e}", self.host, self.port))?;
            let conn = match self.tls {
                Tls::Implicit => {
                    let tls = self.tls_parameters().map_err(|e| e.to_string())?;
                    let stream = ImplicitTls::handshake(tcp, tls)
                        .await
                        .map_err(|e| format!("TLS handshake: {e}"))?;
                    AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello).await
                }
                _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await,
            }
            .map_err(|e| format!("no SMTP greeting and EHLO reply: {e}"))?;
            Ok::<_, String>(conn)
        };
        let mut conn = match tokio::time::timeout(self.timeout, steps).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                probe.answered = Err(e);
                return probe;
            }
            Err(_) => {
                probe.answered = Err(format!(
                    "no answer from {}:{} within {:?}",
                    self.host, self.port, self.timeout
                ));
                return probe;
            }
        };
        probe.answered = Ok(conn.server_info().name().to_owned());
        if self.tls == Tls::StartTls {
            let result = if !conn.can_starttls() {
                Err(StartTlsProbe::NotOffered)
            } else {
                match self.tls_parameters() {
                    Err(e) => Err(StartTlsProbe::Failed(e.to_string())),
                    Ok(tls) => {
                        match tokio::time::timeout(self.timeout, conn.starttls(tls, &self.hello))
                            .await
                        {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(e)) => Err(StartTlsProbe::Failed(e.to_string())),
                            Err(_) => Err(StartTlsProbe::Failed("timed out".into())),
                        }
                    }
                }
            };
            let failed = result.is_err();
            probe.starttls = Some(result);
            if failed {
                return probe;
            }
        }
        if let Some(credentials) = &self.credentials {
            let auth = conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials);
            probe.auth = Some(match tokio::time::timeout(self.timeout, auth).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".into()),
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.quit()).await;
        probe
    }

    fn take_idle(&self) -> Option<Session> {
        let mut idle = self.idle.lock().expect("pool lock");
        while let Some((session, since)) = idle.pop() {
            if since.elapsed() < MAX_IDLE && !session.conn.has_broken() {
                return Some(session);
            }
            // Too old: dropped here, which closes the socket.
        }
        None
    }

    /// One message, command by command. On any failure the connection is dropped (its
    /// session state is unknown); on success it goes back to the pool.
    async fn transaction(&self, message: &OutgoingMessage) -> Result<(), SendError> {
        let mut session = match self.take_idle() {
            Some(session) => session,
            None => self.connect().await?,
        };
        let conn = &mut session.conn;
        let envelope = &message.envelope;
        let mut options = Vec::new();
        let non_ascii = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(SendError::Relay(
                    "the relay does not offer SMTPUTF8, needed for a non-ASCII address".into(),
                ));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.bytes.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(SendError::Relay(
                    "the relay does not offer 8BITMIME, needed for this message".into(),
                ));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let mail = Mail::new(envelope.from().cloned(), options);
        // The message as a BDAT chunk, when the relay takes one and it can go as it is.
        let chunk = (session.pipelining && session.chunking)
            .then(|| chunk_text(&message.bytes))
            .flatten();
        if let Some(text) = chunk {
            // One write; the replies are read in order as below. The relay reads the
            // chunk whatever it answered before (RFC 3030), and on a refusal the session
            // is dropped with the rest unread.
            let mut group = envelope_commands(&mail, envelope);
            group.push_str(&format!("BDAT {} LAST\r\n", text.len()));
            group.push_str(text);
            self.step(Stage::ChunkedMail, conn.command(Raw(&group)))
                .await?;
            for _ in envelope.to() {
                self.step(Stage::ChunkedRcpt, conn.read_response()).await?;
            }
            self.step(Stage::Chunk, conn.read_response()).await?;
        } else {
            self.data_transaction(conn, message, mail, session.pipelining)
                .await?;
        }
        self.idle
            .lock()
            .expect("pool lock")
            .push((session, Instant::now()));
        Ok(())
    }

    /// The rest of a transaction without CHUNKING: the envelope, DATA, then the message
    /// made transparent with its closing dot.
    async fn data_transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        message: &OutgoingMessage,
        mail: Mail,
        pipelining: bool,
    ) -> Result<(), SendError> {
        let envelope = &message.envelope;
        if pipelining {
            // One write; then each reply in the order of the commands, sorted as if
            // they had gone one by one. On the first refusal the session is dropped
            // (by the caller) with the replies still unread: its state does not matter.
            let mut group = envelope_commands(&mail, envelope);
            group.push_str(&Data.to_string());
            self.step(Stage::Pipelined, conn.command(Raw(&group)))
                .await?;
            for _ in envelope.to() {
                self.step(Stage::Rcpt, conn.read_response()).await?;
            }
            self.step(Stage::Session("DATA"), conn.read_response())
                .await?;
        } else {
            self.step(Stage::Session("MAIL FROM"), conn.command(mail))
                .await?;
            for to in envelope.to() {
                self.step(Stage::Rcpt, conn.command(Rcpt::new(to.clone(), vec![])))
                    .await?;
            }
            self.step(Stage::Session("DATA"), conn.command(Data))
                .await?;
        }
        let payload = data_payload(&message.bytes);
        match std::str::from_utf8(&payload) {
            Ok(text) => self.step(Stage::Dot, conn.command(Raw(text))).await?,
            // `command` takes text; bytes that are not UTF-8 go through lettre's encoder.
            Err(_) => self.step(Stage::Dot, conn.message(&message.bytes)).await?,
        };
        Ok(())
    }

    /// Closes idle connections politely (QUIT).
    pub async fn close(&self) {
        let idle: Vec<_> = std::mem::take(&mut *self.idle.lock().expect("pool lock"));
        for (mut session, _) in idle {
            let _ = tokio::time::timeout(Duration::from_secs(2), session.conn.quit()).await;
        }
    }
}

impl Transport for SmtpTransport {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SendError::Local("the SMTP pool was closed".into()))?;
        self.transaction(message).await
    }

    fn concurrency(&self) -> usize {
        self.pool_size
    }
}

/// How far [`SmtpTransport::probe`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayProbe {
    /// The server's name from its EHLO reply, or why there was none.
    pub answered: Result<String, String>,
    /// With `tls = "starttls"`: whether STARTTLS was offered and the handshake worked.
    pub starttls: Option<Result<(), StartTlsProbe>>,
    /// With credentials configured: whether AUTH was accepted.
    pub auth: Option<Result<(), String>>,
}

/// Why STARTTLS did not work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartTlsProbe {
    /// The EHLO reply did not list STARTTLS.
    NotOffered,
    /// It was offered, but the handshake (or the certificate) failed.
    Failed(String),
}

/// A TLS session over our own socket, for implicit TLS (port 465).
///
/// lettre only opens implicit-TLS sessions on sockets it connects itself (without
/// TCP_NODELAY). Its network stream can upgrade a socket we give it, though, and speaks
/// futures-io; this adapter gives it back to lettre as a tokio stream.
#[allow(deprecated)] // AsyncNetworkStream: public, but "not meant to be"; no other way in.
#[derive(Debug)]
struct ImplicitTls(lettre::transport::smtp::client::AsyncNetworkStream);

#[allow(deprecated)]
impl ImplicitTls {
    async fn handshake(
        tcp: TcpStream,
        tls: TlsParameters,
    ) -> Result<Self, lettre::transport::smtp::Error> {
        let mut stream =
            lettre::transport::smtp::client::AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
        stream.upgrade_tls(tls).await?;
        Ok(Self(stream))
    }
}

impl tokio::io::AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        match futures::io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, unfilled) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        futures::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures::io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures::io::AsyncWrite::poll_close(Pin::new(&mut self.0), cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.peer_addr()
    }
}
