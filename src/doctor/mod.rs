//! Doctor: what a receiving server will think of our mail, checked before the first send.
//!
//! Each check looks at one thing a mailbox provider judges (the DKIM key in DNS, SPF,
//! DMARC and their alignment with From, the one-click unsubscribe URL, the relay, how
//! quickly unsubscribes were honoured) and ends in a [`Verdict`] with a fix. The checks
//! talk to the real world: DNS through a resolver (the system's, or one given), HTTP to
//! `[newsletter] public_url`, SMTP to `[smtp]`, and the store. Nothing is changed.
//!
//! The [`Report`] is typed so that callers (the command, tests) read verdicts rather than
//! sentences; `app` prints it.

mod dns;
mod http;
mod relay;
mod secret;
mod unsubscribes;

pub use secret::weak_secret;

use crate::settings::Settings;
use crate::store::Store;
use std::net::SocketAddr;
use std::time::Duration;

/// How a check came out, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Nothing to fix.
    Ok,
    /// Mail goes out, but a receiver may think less of it.
    Warning,
    /// The check could not be made (no DNS answer, for example); its fix says what to do.
    CouldNotCheck,
    /// Mail will be refused, filed as spam, or a rule (RFC 8058, the 2-day rule) is broken.
    Problem,
}

impl Verdict {
    /// The word printed for it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Problem => "problem",
            Self::CouldNotCheck => "could not check",
        }
    }
}

/// What a check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// The public key at `selector._domainkey.domain` is the configured key's (one
    /// check per key).
    DkimKey,
    /// DKIM's `d=` is the From domain or a parent of it (DMARC relaxed alignment).
    DkimAlignment,
    /// An SPF record at the envelope sender's domain.
    Spf,
    /// A DMARC record for the From domain.
    Dmarc,
    /// `public_url` is https.
    PublicUrl,
    /// `public_url` answers a GET.
    Reachable,
    /// The one-click unsubscribe URL answers a POST (RFC 8058).
    OneClick,
    /// `[web] secret` is neither a placeholder nor short.
    WebSecret,
    /// The transport: the SMTP relay answers EHLO (or the file transport is in use).
    Relay,
    /// The relay offers STARTTLS and the TLS handshake succeeds.
    StartTls,
    /// The relay accepts our AUTH.
    SmtpAuth,
    /// Nobody was mailed more than 2 days after unsubscribing.
    Unsubscribes,
}

impl CheckKind {
    /// The name printed for it.
    pub fn label(self) -> &'static str {
        match self {
            Self::DkimKey => "DKIM key",
            Self::DkimAlignment => "DKIM alignment",
            Self::Spf => "SPF",
            Self::Dmarc => "DMARC",
            Self::PublicUrl => "public URL",
            Self::Reachable => "web reachable",
            Self::OneClick => "one-click",
            Self::WebSecret => "web secret",
            Self::Relay => "relay",
            Self::StartTls => "STARTTLS",
            Self::SmtpAuth => "SMTP AUTH",
            Self::Unsubscribes => "unsubscribes",
        }
    }
}

/// A DNS TXT record to publish: its name and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord {
    pub name: String,
    pub value: String,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    pub verdict: Verdict,
    /// What was found, in a sentence.
    pub finding: String,
    /// What to do about it (none when there is nothing to do).
    pub fix: Option<String>,
    /// The record the fix asks to publish, when there is one.
    pub publish: Option<TxtRecord>,
}

impl Check {
    fn new(kind: CheckKind, verdict: Verdict, finding: impl Into<String>) -> Self {
        Self {
            kind,
            verdict,
            finding: finding.into(),
            fix: None,
            publish: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    fn publish(mut self, name: &str, value: &str) -> Self {
        self.publish = Some(TxtRecord {
            name: name.to_owned(),
            value: value.to_owned(),
        });
        self
    }
}

/// Every check's outcome, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// The checks of one kind.
    pub fn of(&self, kind: CheckKind) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.kind == kind).collect()
    }

    /// The verdict of the one check of `kind` (the worst, if there are several).
    pub fn verdict(&self, kind: CheckKind) -> Option<Verdict> {
        self.of(kind).iter().map(|c| c.verdict).max()
    }

    /// True when any check is a problem: the command then exits 1.
    pub fn has_problem(&self) -> bool {
        self.checks.iter().any(|c| c.verdict == Verdict::Problem)
    }
}

/// Where the checks look.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// The DNS server to ask; `None` for the system's resolver (`/etc/resolv.conf`).
    pub resolver: Option<SocketAddr>,
    /// How long one DNS, HTTP or SMTP exchange may take.
    pub timeout: Duration,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        Self {
            resolver: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Runs every check. `store` is `None` when there is no store yet (nothing was sent).
pub async fn examine(
    settings: &Settings,
    store: Option<&Store>,
    options: &DoctorOptions,
) -> Report {
    let lookup = dns::Lookup::new(options);
    // Side by side: offline, every lookup waits for its timeout, and they need not
    // wait for each other.
    let (dkim, spf, dmarc, web, relay, unsubscribes) = tokio::join!(
        dns::check_dkim(settings, &lookup),
        dns::check_spf(settings, &lookup),
        dns::check_dmarc(settings, &lookup),
        http::check_web(settings, options.timeout),
        relay::check_relay(settings),
        unsubscribes::check_unsubscribes(store),
    );
    let mut checks = dkim;
    checks.push(spf);
    checks.push(dmarc);
    checks.extend(web);
    checks.push(secret::check_secret(settings));
    checks.extend(relay);
    checks.push(unsubscribes);
    Report { checks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_problem_fails_the_report() {
        let check = |verdict| Check::new(CheckKind::Spf, verdict, "");
        let mut report = Report {
            checks: vec![
                check(Verdict::Ok),
                check(Verdict::Warning),
                check(Verdict::CouldNotCheck),
            ],
        };
        assert!(!report.has_problem());
        assert_eq!(report.verdict(CheckKind::Spf), Some(Verdict::CouldNotCheck));
        report.checks.push(check(Verdict::Problem));
        assert!(report.has_problem());
        assert_eq!(report.verdict(CheckKind::Spf), Some(Verdict::Problem));
        assert_eq!(report.verdict(CheckKind::Dmarc), None);
    }
}
