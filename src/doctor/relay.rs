//! The relay checks: with `[transport] kind = "smtp"`, each relay of the pool answers, offers STARTTLS
//! when `tls = "starttls"`, and accepts our AUTH.

use super::{Check, CheckKind, Verdict};
use crate::send::{SmtpTransport, StartTlsProbe};
use crate::settings::{Settings, Smtp, Tls, TransportKind};

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(super) async fn check_relay(settings: &Settings) -> Vec<Check> {
    if settings.transport.kind == TransportKind::File {
        return vec![
            Check::new(
                CheckKind::Relay,
                Verdict::Warning,
                format!(
                    "[transport] kind = \"file\": messages are written to {}, not sent",
                    settings.transport.outbox_dir.display()
                ),
            )
            .fix("set [transport] kind = \"smtp\" and [smtp] host, port, tls and credentials"),
        ];
    }
    let mut checks = Vec::new();
    for smtp in settings.smtp.pool() {
        checks.extend(check_one(settings, &smtp).await);
    }
    checks
}

/// The checks of one relay of the pool (`[smtp]` or one of `[[smtp.relays]]`).
async fn check_one(settings: &Settings, smtp: &Smtp) -> Vec<Check> {
    let relay = format!("{}:{}", smtp.host, smtp.port);
    let probe = SmtpTransport::new(smtp, &settings.newsletter.message_id_domain)
        .probe()
        .await;
    let mut checks = Vec::new();
    match &probe.answered {
        Ok(name) => checks.push(Check::new(
            CheckKind::Relay,
            Verdict::Ok,
            format!("the relay {relay} answers EHLO (it is {name})"),
        )),
        Err(why) => {
            checks.push(
                Check::new(
                    CheckKind::Relay,
                    Verdict::Problem,
                    format!("the relay {relay} does not answer: {why}"),
                )
                .fix("check [smtp] host, port and tls (\"tls\" is for port 465, \"starttls\" for 587)"),
            );
            return checks;
        }
    }
    match (smtp.tls, &probe.starttls) {
        (Tls::StartTls, Some(Ok(()))) => checks.push(Check::new(
            CheckKind::StartTls,
            Verdict::Ok,
            format!("{relay} offers STARTTLS and the TLS handshake succeeds"),
        )),
        (Tls::StartTls, Some(Err(StartTlsProbe::NotOffered))) => checks.push(
            Check::new(
                CheckKind::StartTls,
                Verdict::Problem,
                format!("{relay} does not offer STARTTLS, and [smtp] tls = \"starttls\" needs it"),
            )
            .fix("use the relay's submission port (587) or enable STARTTLS on it"),
        ),
        (Tls::StartTls, Some(Err(StartTlsProbe::Failed(why)))) => checks.push(
            Check::new(
                CheckKind::StartTls,
                Verdict::Problem,
                format!("STARTTLS with {relay} failed: {why}"),
            )
            .fix("for a relay with a private CA set [smtp] ca_file; else check its certificate"),
        ),
        (Tls::Implicit, _) => checks.push(Check::new(
            CheckKind::StartTls,
            Verdict::Ok,
            format!("{relay} speaks TLS from the start (tls = \"tls\")"),
        )),
        (Tls::None, _) if is_loopback(&smtp.host) => checks.push(Check::new(
            CheckKind::StartTls,
            Verdict::Ok,
            format!("tls = \"none\" to a relay on this machine ({relay})"),
        )),
        (Tls::None, _) => checks.push(
            Check::new(
                CheckKind::StartTls,
                Verdict::Warning,
                format!("tls = \"none\": mail and passwords cross the network to {relay} in clear"),
            )
            .fix("set [smtp] tls = \"starttls\" (port 587) or \"tls\" (port 465)"),
        ),
        (Tls::StartTls, None) => {}
    }
    if probe
        .starttls
        .as_ref()
        .is_some_and(|result| result.is_err())
    {
        return checks;
    }
    checks.push(match &probe.auth {
        None => Check::new(
            CheckKind::SmtpAuth,
            Verdict::Ok,
            "no [smtp] credentials: the relay must accept this host by its address",
        ),
        Some(Ok(())) => Check::new(
            CheckKind::SmtpAuth,
            Verdict::Ok,
            format!(
                "{relay} accepts our AUTH as {}",
                smtp.username.as_deref().unwrap_or("")
            ),
        ),
        Some(Err(why)) => Check::new(
            CheckKind::SmtpAuth,
            Verdict::Problem,
            format!("{relay} refuses our AUTH: {why}"),
        )
        .fix("check [smtp] username and password (or password_file)"),
    });
    checks
}
