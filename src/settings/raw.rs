//! The settings file as written, before any value is checked.

use super::{
    Content, Delivery, Dkim, Inbox, InboxKind, IpNet, Newsletter, Relay, Schedule, Secret,
    Settings, SettingsError, Smtp, Store, Tls, Transport, TransportKind, Web, parse_duration,
};
use crate::domain::{HeaderText, SendSchedule};
use lettre::message::Mailbox;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    newsletter: RawNewsletter,
    #[serde(default)]
    content: RawContent,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    transport: RawTransport,
    #[serde(default)]
    smtp: RawSmtp,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    dkim: Option<RawDkim>,
    #[serde(default)]
    inbox: RawInbox,
    web: RawWeb,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNewsletter {
    name: String,
    #[serde(default = "default_subject")]
    subject: String,
    from: String,
    reply_to: String,
    signup_url: String,
    public_url: String,
    #[serde(default)]
    editors: Vec<String>,
    list_id: Option<String>,
}

fn default_subject() -> String {
    r#"{{ newsletter.name }} newsletter: {{ issue.date | date(format="%B %Y") }}"#.into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawContent {
    sections_dir: PathBuf,
    archive_dir: PathBuf,
    required: Vec<String>,
    templates_dir: Option<PathBuf>,
    settle_time: String,
    max_section_size: String,
}

impl Default for RawContent {
    fn default() -> Self {
        Self {
            sections_dir: "var/sections".into(),
            archive_dir: "var/archive".into(),
            required: vec!["introduction".into()],
            templates_dir: None,
            settle_time: "5s".into(),
            max_section_size: "1MB".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSchedule {
    send: String,
    timezone: String,
    proof_lead: String,
    hold_window: String,
    hold_recheck: String,
    catch_up: String,
}

impl Default for RawSchedule {
    fn default() -> Self {
        Self {
            send: "0 10 1 * *".into(),
            timezone: "Europe/London".into(),
            proof_lead: "24h".into(),
            hold_window: "48h".into(),
            hold_recheck: "10m".into(),
            catch_up: "24h".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    url: String,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            url: "sqlite://var/gazette.db".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTransport {
    kind: String,
    outbox_dir: PathBuf,
}

impl Default for RawTransport {
    fn default() -> Self {
        Self {
            kind: "file".into(),
            outbox_dir: "var/outbox".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSmtp {
    host: String,
    port: u16,
    tls: String,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    pool_size: u32,
    rate_per_second: u32,
    timeout: String,
    ca_file: Option<PathBuf>,
    max_message_size: String,
    priority: u32,
    weight: u32,
    relays: Vec<RawRelay>,
}

/// One more relay in `[[smtp.relays]]`; what it leaves out is taken from `[smtp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    priority: u32,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

impl Default for RawSmtp {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 25,
            tls: "starttls".into(),
            username: None,
            password: None,
            password_file: None,
            pool_size: 4,
            rate_per_second: 0,
            timeout: "30s".into(),
            ca_file: None,
            max_message_size: "10MB".into(),
            priority: 0,
            weight: 1,
            relays: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDelivery {
    retry_initial: String,
    retry_max_interval: String,
    retry_for: String,
    bounce_threshold: u32,
    relay_retry_initial: String,
    relay_retry_max: String,
    stop_grace: String,
    claim_ttl: String,
}

impl Default for RawDelivery {
    fn default() -> Self {
        Self {
            retry_initial: "5m".into(),
            retry_max_interval: "6h".into(),
            retry_for: "3d".into(),
            bounce_threshold: 3,
            relay_retry_initial: "10s".into(),
            relay_retry_max: "5m".into(),
            stop_grace: "10s".into(),
            claim_ttl: "60s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    domain: String,
    selector: String,
    private_key_file: PathBuf,
    ed25519_selector: Option<String>,
    ed25519_private_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawInbox {
    kind: String,
    maildir: PathBuf,
    host: String,
    port: u16,
    tls: String,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    mailbox: String,
    processed: String,
    poll_interval: String,
    notices_per_day: u32,
}

impl Default for RawInbox {
    fn default() -> Self {
        Self {
            kind: "maildir".into(),
            maildir: "var/inbox".into(),
            host: "127.0.0.1".into(),
            port: 993,
            tls: "tls".into(),
            username: None,
            password: None,
            password_file: None,
            mailbox: "INBOX".into(),
            processed: "Processed".into(),
            poll_interval: "60s".into(),
            notices_per_day: 3,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    #[serde(default = "default_bind")]
    bind: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    preview_password: Option<String>,
    preview_password_file: Option<PathBuf>,
    #[serde(default = "default_signups_per_ip_per_hour")]
    signups_per_ip_per_hour: u32,
    #[serde(default = "default_confirmations_per_address_per_day")]
    confirmations_per_address_per_day: u32,
    #[serde(default)]
    client_ip_header: Option<String>,
    #[serde(default = "default_trusted_proxies")]
    trusted_proxies: Vec<String>,
}

fn default_trusted_proxies() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1".into()]
}

fn default_bind() -> String {
    "127.0.0.1:8080".into()
}

fn default_signups_per_ip_per_hour() -> u32 {
    20
}

fn default_confirmations_per_address_per_day() -> u32 {
    3
}

fn duration(key: &str, raw: &str) -> Result<Duration, SettingsError> {
    parse_duration(raw).map_err(|e| SettingsError::invalid(key, e))
}

fn size(key: &str, raw: &str) -> Result<u64, SettingsError> {
    match super::parse_size(raw) {
        Ok(0) => Err(SettingsError::invalid(key, "must be more than zero")),
        Ok(n) => Ok(n),
        Err(e) => Err(SettingsError::invalid(key, e)),
    }
}

fn mailbox(key: &str, raw: &str) -> Result<Mailbox, SettingsError> {
    if raw.contains(['\r', '\n']) {
        return Err(SettingsError::invalid(key, "contains a line break"));
    }
    let mb: Mailbox = raw.parse().map_err(|e| {
        SettingsError::invalid(key, format!("'{raw}' is not an email address ({e})"))
    })?;
    crate::domain::SubscriberEmail::parse(mb.email.as_ref())
        .map_err(|e| SettingsError::invalid(key, format!("'{raw}': {e}")))?;
    Ok(mb)
}

fn url(key: &str, raw: &str) -> Result<String, SettingsError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let ok = (trimmed.starts_with("https://") || trimmed.starts_with("http://"))
        && trimmed.len() > "https://".len()
        && !trimmed.contains(|c: char| {
            c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>'
        });
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err(SettingsError::invalid(
            key,
            format!("'{raw}' is not an http(s) URL"),
        ))
    }
}

/// The PEM certificates in `path`, for `key`.
fn ca_pem(key: &str, path: Option<&std::path::Path>) -> Result<Option<Vec<u8>>, SettingsError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let pem = std::fs::read(path)
        .map_err(|e| SettingsError::invalid(key, format!("{}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(SettingsError::invalid(
            key,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(Some(pem))
}

fn tls(key: &str, raw: &str) -> Result<Tls, SettingsError> {
    match raw {
        "starttls" => Ok(Tls::StartTls),
        "tls" => Ok(Tls::Implicit),
        "none" => Ok(Tls::None),
        other => Err(SettingsError::invalid(
            key,
            format!("'{other}' is not one of \"starttls\", \"tls\", \"none\""),
        )),
    }
}

/// A secret given inline or through a `*_file` key; both at once is an error.
fn secret(
    key: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<Secret>, SettingsError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(SettingsError::invalid(
            key,
            format!("set either `{key}` or `{key}_file`, not both"),
        )),
        (Some(v), None) => Ok(Some(Secret::new(v))),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(|s| Some(Secret::new(s.trim_end_matches(['\r', '\n']))))
            .map_err(|e| {
                SettingsError::invalid(&format!("{key}_file"), format!("{}: {e}", path.display()))
            }),
        (None, None) => Ok(None),
    }
}

/// Lower-case letters, digits and dashes: the shape of a List-Id label.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

impl RawSettings {
    pub(super) fn check(self) -> Result<Settings, SettingsError> {
        let n = self.newsletter;
        let name =
            HeaderText::parse(&n.name).map_err(|e| SettingsError::invalid("newsletter.name", e))?;
        if name.as_str().is_empty() {
            return Err(SettingsError::invalid("newsletter.name", "is empty"));
        }
        let from = mailbox("newsletter.from", &n.from)?;
        let reply_to = mailbox("newsletter.reply_to", &n.reply_to)?;
        let editors = n
            .editors
            .iter()
            .enumerate()
            .map(|(i, e)| mailbox(&format!("newsletter.editors[{i}]"), e))
            .collect::<Result<Vec<_>, _>>()?;
        let message_id_domain = from.email.domain().to_ascii_lowercase();
        let list_id = match n.list_id {
            Some(id) => {
                let id = id
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned();
                if id.is_empty() || id.contains(|c: char| c.is_whitespace() || c.is_control()) {
                    return Err(SettingsError::invalid(
                        "newsletter.list_id",
                        "must be a dotted name like news.example.org without spaces",
                    ));
                }
                id
            }
            None => format!("{}.{}", slug(name.as_str()), message_id_domain),
        };
        let newsletter = Newsletter {
            name,
            subject: n.subject,
            from,
            reply_to,
            signup_url: url("newsletter.signup_url", &n.signup_url)?,
            public_url: url("newsletter.public_url", &n.public_url)?,
            editors,
            list_id,
            message_id_domain,
        };

        let c = self.content;
        let known_kinds = ["introduction", "article", "events", "links"];
        for (i, r) in c.required.iter().enumerate() {
            if r.trim().is_empty() {
                return Err(SettingsError::invalid(
                    &format!("content.required[{i}]"),
                    format!(
                        "is empty; name a section kind ({}) or a file name",
                        known_kinds.join(", ")
                    ),
                ));
            }
        }
        let content = Content {
            sections_dir: c.sections_dir,
            archive_dir: c.archive_dir,
            required: c.required,
            templates_dir: c.templates_dir,
            settle_time: duration("content.settle_time", &c.settle_time)?,
            max_section_size: size("content.max_section_size", &c.max_section_size)?,
        };

        let s = self.schedule;
        let send =
            SendSchedule::parse(&s.send).map_err(|e| SettingsError::invalid("schedule.send", e))?;
        let schedule = Schedule {
            timezone: s.timezone.parse().map_err(|_| {
                SettingsError::invalid(
                    "schedule.timezone",
                    format!(
                        "'{}' is not an IANA time zone like \"Europe/London\"",
                        s.timezone
                    ),
                )
            })?,
            send,
            proof_lead: duration("schedule.proof_lead", &s.proof_lead)?,
            hold_window: duration("schedule.hold_window", &s.hold_window)?,
            hold_recheck: duration("schedule.hold_recheck", &s.hold_recheck)?,
            catch_up: duration("schedule.catch_up", &s.catch_up)?,
        };
        if schedule.hold_recheck.is_zero() {
            return Err(SettingsError::invalid(
                "schedule.hold_recheck",
                "must be more than zero",
            ));
        }

        if crate::store::Dialect::of(&self.store.url).is_err() {
            // Only the scheme is shown: the rest may hold a password.
            let scheme = self.store.url.split(':').next().unwrap_or_default();
            return Err(SettingsError::invalid(
                "store.url",
                format!(
                    "'{scheme}:' is not a store gazette knows; use sqlite://PATH or \
                     postgres://USER@HOST/DATABASE"
                ),
            ));
        }

        let transport = Transport {
            kind: match self.transport.kind.as_str() {
                "file" => TransportKind::File,
                "smtp" => TransportKind::Smtp,
                other => {
                    return Err(SettingsError::invalid(
                        "transport.kind",
                        format!("'{other}' is not one of \"file\", \"smtp\""),
                    ));
                }
            },
            outbox_dir: self.transport.outbox_dir,
        };

        let m = self.smtp;
        if m.pool_size == 0 {
            return Err(SettingsError::invalid(
                "smtp.pool_size",
                "must be at least 1",
            ));
        }
        if m.weight == 0 {
            return Err(SettingsError::invalid("smtp.weight", "must be at least 1"));
        }
        let mut smtp = Smtp {
            tls: tls("smtp.tls", &m.tls)?,
            password: secret("smtp.password", m.password, m.password_file)?,
            username: m.username.filter(|u| !u.is_empty()),
            host: m.host,
            port: m.port,
            pool_size: m.pool_size,
            rate_per_second: m.rate_per_second,
            timeout: duration("smtp.timeout", &m.timeout)?,
            max_message_size: size("smtp.max_message_size", &m.max_message_size)?,
            ca_pem: ca_pem("smtp.ca_file", m.ca_file.as_deref())?,
            priority: m.priority,
            weight: m.weight,
            relays: Vec::new(),
        };
        if smtp.password.is_some() != smtp.username.is_some() {
            return Err(SettingsError::invalid(
                "smtp.username",
                "set both smtp.username and smtp.password (or neither)",
            ));
        }
        for (i, r) in m.relays.into_iter().enumerate() {
            let key = |name: &str| format!("smtp.relays[{i}].{name}");
            if r.host.trim().is_empty() {
                return Err(SettingsError::invalid(&key("host"), "must not be empty"));
            }
            if r.weight == 0 {
                return Err(SettingsError::invalid(&key("weight"), "must be at least 1"));
            }
            let password = secret(&key("password"), r.password, r.password_file)?;
            let username = r.username.filter(|u| !u.is_empty());
            let (username, password) = match (username, password) {
                (None, None) => (smtp.username.clone(), smtp.password.clone()),
                (Some(u), Some(p)) => (Some(u), Some(p)),
                _ => {
                    return Err(SettingsError::invalid(
                        &key("username"),
                        "set both username and password for this relay (or neither, to use [smtp]'s)",
                    ));
                }
            };
            let relay = Relay {
                tls: match &r.tls {
                    Some(raw) => tls(&key("tls"), raw)?,
                    None => smtp.tls,
                },
                ca_pem: match &r.ca_file {
                    Some(path) => ca_pem(&key("ca_file"), Some(path))?,
                    None => smtp.ca_pem.clone(),
                },
                port: r.port.unwrap_or(smtp.port),
                host: r.host,
                username,
                password,
                priority: r.priority,
                weight: r.weight,
            };
            smtp.relays.push(relay);
        }

        let d = self.delivery;
        let delivery = Delivery {
            retry_initial: duration("delivery.retry_initial", &d.retry_initial)?,
            retry_max_interval: duration("delivery.retry_max_interval", &d.retry_max_interval)?,
            retry_for: duration("delivery.retry_for", &d.retry_for)?,
            bounce_threshold: d.bounce_threshold.max(1),
            relay_retry_initial: duration("delivery.relay_retry_initial", &d.relay_retry_initial)?,
            relay_retry_max: duration("delivery.relay_retry_max", &d.relay_retry_max)?,
            stop_grace: duration("delivery.stop_grace", &d.stop_grace)?,
            claim_ttl: duration("delivery.claim_ttl", &d.claim_ttl)?,
        };
        if delivery.relay_retry_initial.is_zero() {
            return Err(SettingsError::invalid(
                "delivery.relay_retry_initial",
                "must be more than 0s (a relay that is down would be hammered)",
            ));
        }
        if delivery.relay_retry_max < delivery.relay_retry_initial {
            return Err(SettingsError::invalid(
                "delivery.relay_retry_max",
                "must be at least delivery.relay_retry_initial",
            ));
        }
        if delivery.claim_ttl < Duration::from_secs(10) {
            return Err(SettingsError::invalid(
                "delivery.claim_ttl",
                "at least 10s: a claim is renewed every third of it, and a shorter one could \
                 run out under a busy store while its worker still sends (two copies)",
            ));
        }
        if delivery.stop_grace > Duration::from_secs(60) {
            return Err(SettingsError::invalid(
                "delivery.stop_grace",
                "at most 60s: a service manager kills a process that takes longer to stop \
                 (raise TimeoutStopSec in packaging/gazette.service along with it)",
            ));
        }

        let dkim = match self.dkim {
            None => None,
            Some(k) => Some(Dkim {
                private_key: secret("dkim.private_key", None, Some(k.private_key_file))?
                    .expect("a file was given"),
                ed25519: match (k.ed25519_selector, k.ed25519_private_key_file) {
                    (None, None) => None,
                    (Some(selector), Some(file)) => Some((
                        selector,
                        secret("dkim.ed25519_private_key", None, Some(file))?
                            .expect("a file was given"),
                    )),
                    _ => {
                        return Err(SettingsError::invalid(
                            "dkim.ed25519_selector",
                            "set both `ed25519_selector` and `ed25519_private_key_file`, or neither"
                                .to_owned(),
                        ));
                    }
                },
                domain: k.domain,
                selector: k.selector,
            }),
        };

        let i = self.inbox;
        let inbox = Inbox {
            kind: match i.kind.as_str() {
                "maildir" => InboxKind::Maildir,
                "imap" => InboxKind::Imap,
                other => {
                    return Err(SettingsError::invalid(
                        "inbox.kind",
                        format!("'{other}' is not one of \"maildir\", \"imap\""),
                    ));
                }
            },
            tls: tls("inbox.tls", &i.tls)?,
            password: secret("inbox.password", i.password, i.password_file)?,
            username: i.username.filter(|u| !u.is_empty()),
            maildir: i.maildir,
            host: i.host,
            port: i.port,
            mailbox: i.mailbox,
            processed: i.processed,
            poll_interval: duration("inbox.poll_interval", &i.poll_interval)?,
            notices_per_day: i.notices_per_day,
        };

        let w = self.web;
        // The shipped file sets a placeholder `secret`; an operator who adds
        // `secret_file` (as the refusal tells them to) means the file.
        let inline_secret = w
            .secret
            .filter(|s| w.secret_file.is_none() || super::secret::placeholder_mark(s).is_none());
        let secret_value =
            secret("web.secret", inline_secret, w.secret_file)?.ok_or_else(|| {
                SettingsError::invalid("web.secret", "is required (the key for unsubscribe tokens)")
            })?;
        if secret_value.expose().len() < 16 {
            return Err(SettingsError::invalid(
                "web.secret",
                "must be at least 16 characters",
            ));
        }
        let web = Web {
            bind: w.bind.parse().map_err(|_| {
                SettingsError::invalid(
                    "web.bind",
                    format!("'{}' is not an address like 127.0.0.1:8080", w.bind),
                )
            })?,
            secret: secret_value,
            preview_password: secret(
                "web.preview_password",
                w.preview_password,
                w.preview_password_file,
            )?
            .filter(|p| !p.expose().is_empty()),
            signups_per_ip_per_hour: w.signups_per_ip_per_hour,
            confirmations_per_address_per_day: w.confirmations_per_address_per_day,
            client_ip_header: match w.client_ip_header.map(|h| h.trim().to_owned()) {
                None => None,
                Some(h) if h.is_empty() => None,
                Some(h) => Some(axum::http::HeaderName::try_from(h.as_str()).map_err(|_| {
                    SettingsError::invalid(
                        "web.client_ip_header",
                        format!("'{h}' is not a header name like X-Forwarded-For"),
                    )
                })?),
            },
            trusted_proxies: w
                .trusted_proxies
                .iter()
                .map(|p| {
                    p.parse::<IpNet>().map_err(|e| {
                        SettingsError::invalid("web.trusted_proxies", format!("'{p}': {e}"))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        for (key, value) in [
            ("web.signups_per_ip_per_hour", web.signups_per_ip_per_hour),
            (
                "web.confirmations_per_address_per_day",
                web.confirmations_per_address_per_day,
            ),
        ] {
            if value == 0 {
                return Err(SettingsError::invalid(key, "must be at least 1"));
            }
        }

        Ok(Settings {
            newsletter,
            content,
            schedule,
            store: Store {
                url: self.store.url,
            },
            transport,
            smtp,
            delivery,
            dkim,
            inbox,
            web,
        })
    }
}
