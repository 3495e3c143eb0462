//! Settings: one serde tree read from `config/gazette.toml` (or `--config FILE`) and
//! overridden by `GAZETTE__SECTION__KEY` environment variables.
//!
//! Reading happens in two stages, as ripgrep does with its arguments: `raw` mirrors the
//! file (strings, numbers, lists) and `Settings` holds checked values (addresses,
//! durations, paths). Every refusal names the key it came from, so an operator can find
//! the line to fix before anything starts.

mod duration;
mod ipnet;
mod raw;
mod secret;
mod size;

pub use duration::parse_duration;
pub use ipnet::{IpNet, IpNetError};
pub use secret::{MIN_SECRET_BYTES, Secret};
pub use size::{describe_size, parse_size};

use crate::domain::HeaderText;

use lettre::message::Mailbox;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A setting that could not be used, with the key it came from.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file is TOML but its contents do not fit (an unknown key, a wrong type). The
    /// parser's message is kept as text so it is printed once, not again as a cause.
    #[error("settings file {path}: {message}")]
    Read { path: String, message: String },
    #[error("settings file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("settings key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl SettingsError {
    fn invalid(key: &str, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Everything gazette is configured with, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub newsletter: Newsletter,
    pub content: Content,
    pub schedule: Schedule,
    pub store: Store,
    pub transport: Transport,
    pub smtp: Smtp,
    pub delivery: Delivery,
    pub dkim: Option<Dkim>,
    pub inbox: Inbox,
    pub web: Web,
}

/// `[newsletter]`: who sends what, and where links point.
#[derive(Debug, Clone)]
pub struct Newsletter {
    pub name: HeaderText,
    /// A tera template for the subject line; rendered once per issue.
    pub subject: String,
    pub from: Mailbox,
    /// The mailbox the inbox worker polls; replies and UNSUBSCRIBE requests go here.
    pub reply_to: Mailbox,
    pub signup_url: String,
    /// Base of every link gazette makes (unsubscribe, confirm, archive), no trailing `/`.
    pub public_url: String,
    pub editors: Vec<Mailbox>,
    /// `List-Id` value, without angle brackets.
    pub list_id: String,
    /// The domain of our Message-IDs.
    pub message_id_domain: String,
}

/// `[content]`: where editors drop files and where consumed files go.
#[derive(Debug, Clone)]
pub struct Content {
    pub sections_dir: PathBuf,
    pub archive_dir: PathBuf,
    /// Section kinds (or file stems) an issue cannot go out without.
    pub required: Vec<String>,
    /// An operator's template folder; files there replace the built-in ones by name.
    pub templates_dir: Option<PathBuf>,
    /// Files modified more recently than this are still being written and are skipped.
    pub settle_time: Duration,
    /// A section file larger than this (bytes) holds the issue.
    pub max_section_size: u64,
}

/// `[schedule]`: when issues go out.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// When issues go out.
    pub send: crate::domain::SendSchedule,
    pub timezone: chrono_tz::Tz,
    pub proof_lead: Duration,
    /// How long a held issue (missing or broken section) is re-checked before the slot is given up.
    pub hold_window: Duration,
    pub hold_recheck: Duration,
    /// Slots missed while the daemon was down are sent if they are at most this old.
    pub catch_up: Duration,
}

/// `[store]`.
#[derive(Debug, Clone)]
pub struct Store {
    pub url: String,
}

/// Which transport carries messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    File,
    Smtp,
}

/// `[transport]`.
#[derive(Debug, Clone)]
pub struct Transport {
    pub kind: TransportKind,
    pub outbox_dir: PathBuf,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    StartTls,
    Implicit,
    None,
}

/// `[smtp]`.
#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub pool_size: u32,
    pub rate_per_second: u32,
    pub timeout: Duration,
    /// Extra root certificates (PEM) to trust for TLS, e.g. a private relay's own CA.
    pub ca_pem: Option<Vec<u8>>,
    /// The largest message gazette sends (bytes); a bigger issue is held.
    pub max_message_size: u64,
    /// This relay's place in the pool: lower is used first.
    pub priority: u32,
    /// Its share of the load among relays of the same priority.
    pub weight: u32,
    /// `[[smtp.relays]]`: more relays beside this one.
    pub relays: Vec<Relay>,
}

/// One more relay in `[[smtp.relays]]`, with what it left out taken from `[smtp]`.
#[derive(Debug, Clone)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_pem: Option<Vec<u8>>,
    pub priority: u32,
    pub weight: u32,
}

impl Smtp {
    /// Every relay, `[smtp]`'s own first, each as a whole `[smtp]` (the shared keys —
    /// pool size, rate, timeout, size limit — from `[smtp]`).
    pub fn pool(&self) -> Vec<Smtp> {
        let mut all = vec![Smtp {
            relays: Vec::new(),
            ..self.clone()
        }];
        for r in &self.relays {
            all.push(Smtp {
                host: r.host.clone(),
                port: r.port,
                tls: r.tls,
                username: r.username.clone(),
                password: r.password.clone(),
                ca_pem: r.ca_pem.clone(),
                priority: r.priority,
                weight: r.weight,
                relays: Vec::new(),
                ..self.clone()
            });
        }
        all
    }
}

/// `[delivery]`: the retry policy for temporary failures.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub retry_initial: Duration,
    pub retry_max_interval: Duration,
    /// After this long since the first attempt a temporarily failing row fails for good.
    pub retry_for: Duration,
    /// Permanent failures (5xx) after which a subscriber is marked bounced.
    pub bounce_threshold: u32,
    /// The first wait after the relay is found down (or the outbox unwritable); doubles
    /// with each failed try up to `relay_retry_max`.
    pub relay_retry_initial: Duration,
    pub relay_retry_max: Duration,
    /// On SIGTERM/SIGINT, how long messages already handed to the relay may take to be
    /// answered; those still unanswered then are recorded as unknown.
    pub stop_grace: Duration,
    /// How long a batch's claim on its ledger rows lasts without renewal (renewed every
    /// third of it while the batch runs). Rows a worker that died had claimed are sent
    /// by the others after this long.
    pub claim_ttl: Duration,
}

/// `[dkim]`: optional DKIM signing.
#[derive(Debug, Clone)]
pub struct Dkim {
    pub domain: String,
    pub selector: String,
    /// RSA key in PEM form (PKCS#1 or PKCS#8).
    pub private_key: Secret,
    /// A second signature with an Ed25519 key (RFC 8463): its selector and PEM key.
    pub ed25519: Option<(String, Secret)>,
}

/// Where the inbox worker reads replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxKind {
    Maildir,
    Imap,
}

/// `[inbox]`.
#[derive(Debug, Clone)]
pub struct Inbox {
    pub kind: InboxKind,
    pub maildir: PathBuf,
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub mailbox: String,
    pub processed: String,
    pub poll_interval: Duration,
    /// Notices sent to one address per day, at most.
    pub notices_per_day: u32,
}

/// `[web]`.
#[derive(Debug, Clone)]
pub struct Web {
    pub bind: std::net::SocketAddr,
    /// HMAC key for unsubscribe and confirmation tokens.
    pub secret: Secret,
    /// Credential for the editors' preview page (HTTP Basic, user `editor`); without
    /// it the preview does not exist.
    pub preview_password: Option<Secret>,
    /// Sign-up form posts allowed per client IP (per /64 for IPv6) per hour.
    pub signups_per_ip_per_hour: u32,
    /// Confirmation messages sent to one address per day; sign-ups past this are
    /// answered as usual but send nothing.
    pub confirmations_per_address_per_day: u32,
    /// Behind a reverse proxy: the header whose last entry is the client's IP
    /// (e.g. `X-Forwarded-For`). Unset, the peer address of the connection is used.
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// Peers whose `client_ip_header` is believed (loopback by default); from any other
    /// peer the connection's own address is the client's.
    pub trusted_proxies: Vec<IpNet>,
}

/// How to make a key, for every message that refuses one.
pub const SECRET_ADVICE: &str = "Make one with `openssl rand -hex 32 > /etc/gazette/secret` \
and point `web.secret_file = \"/etc/gazette/secret\"` at it (or set GAZETTE__WEB__SECRET).";

/// What the `[web] secret` is worth for these settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretCheck {
    /// Good enough to sign links anyone may hold.
    Strong,
    /// Weak, but every link points at this machine (the shipped demo): tolerated.
    WeakOnLoopback { why: String },
    /// Weak, and links leave the machine: a stranger could forge them.
    Weak { why: String },
}

impl Settings {
    /// Whether `[web] secret` may sign links. A weak key is tolerated only while
    /// `newsletter.public_url` names a loopback host and `web.bind` is loopback, since
    /// then nobody else can follow or forge the links.
    pub fn secret_check(&self) -> SecretCheck {
        match secret::weakness(&self.web.secret) {
            None => SecretCheck::Strong,
            Some(why) if self.links_stay_local() => SecretCheck::WeakOnLoopback { why },
            Some(why) => SecretCheck::Weak { why },
        }
    }

    /// The refusal for a weak key where links leave the machine, naming the keys
    /// involved and saying how to make a good one.
    pub fn require_strong_secret(&self) -> Result<(), SettingsError> {
        match self.secret_check() {
            SecretCheck::Weak { why } => Err(SettingsError::invalid(
                "web.secret",
                format!(
                    "{why}. It signs every unsubscribe and confirmation link, and \
newsletter.public_url ({}) or web.bind ({}) is not loopback, so anyone who knows it can \
unsubscribe or sign up your readers. {SECRET_ADVICE}",
                    self.newsletter.public_url, self.web.bind
                ),
            )),
            SecretCheck::Strong | SecretCheck::WeakOnLoopback { .. } => Ok(()),
        }
    }

    fn links_stay_local(&self) -> bool {
        self.web.bind.ip().is_loopback() && url_host_is_loopback(&self.newsletter.public_url)
    }
}

/// Whether an http(s) URL's host is `localhost` or a loopback address.
fn url_host_is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl From<&Content> for crate::compose::ComposeOptions {
    fn from(content: &crate::settings::Content) -> Self {
        Self {
            required: content.required.clone(),
            settle_time: content.settle_time,
            max_section_size: content.max_section_size,
        }
    }
}

impl Settings {
    /// Reads `path`, applies `GAZETTE__…` environment overrides, and checks every value.
    ///
    /// Relative paths in the file are taken relative to the current directory, the way an
    /// operator running `gazette` from the checkout expects.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = read_settings_file(path)?;
        let raw = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("GAZETTE")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("newsletter.editors")
                    .with_list_parse_key("content.required")
                    .with_list_parse_key("web.trusted_proxies")
                    .try_parsing(true),
            )
            .build()
            .and_then(|cfg| cfg.try_deserialize::<raw::RawSettings>())
            .map_err(read_error(&path.display().to_string()))?;
        raw.check()
    }

    /// Reads settings from a TOML string, without environment overrides (for tests).
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        let raw = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|cfg| cfg.try_deserialize::<raw::RawSettings>())
            .map_err(read_error("(text)"))?;
        raw.check()
    }
}

fn read_error(path: &str) -> impl Fn(config::ConfigError) -> SettingsError + '_ {
    move |e| SettingsError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Reads the settings file and checks that it is TOML, so that what is wrong with it is
/// said once, naming the file as the operator gave it, with line and column.
fn read_settings_file(path: &Path) -> Result<String, SettingsError> {
    let fail = |reason: String| SettingsError::File {
        path: path.display().to_string(),
        reason,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(
                "does not exist (give another with --config FILE)".into(),
            ));
        }
        Err(e) => return Err(fail(format!("cannot be read: {e}"))),
    };
    if meta.is_dir() {
        return Err(fail(
            "is a folder, not a settings file (give a file such as config/gazette.toml)".into(),
        ));
    }
    if !meta.is_file() {
        use std::os::unix::fs::FileTypeExt as _;
        let kind = meta.file_type();
        let what = if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_fifo() {
            "a named pipe"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(fail(format!(
            "is not a regular file but {what}; give a TOML settings file"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
    if let Err(e) = text.parse::<toml::Table>() {
        let at = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(":{line}:{column}")
            })
            .unwrap_or_default();
        return Err(SettingsError::File {
            path: format!("{}{at}", path.display()),
            reason: format!(
                "is not valid TOML: {}",
                e.message().trim_end().replace('\n', "; ")
            ),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::url_host_is_loopback;

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "https://LOCALHOST./x",
            "http://[::1]:8080/",
            "http://user@127.0.0.2:80",
        ] {
            assert!(url_host_is_loopback(url), "{url}");
        }
        for url in [
            "https://news.example.org",
            "http://127.0.0.1.example.org",
            "http://localhost.example.org:8080",
            "http://[2001:db8::1]/",
            "http://0.0.0.0:8080",
        ] {
            assert!(!url_host_is_loopback(url), "{url}");
        }
    }
}
