//! The DNS checks: the DKIM public key, SPF and DMARC, and how they align with From.

use super::{Check, CheckKind, DoctorOptions, Verdict};
use crate::settings::Settings;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

/// What a TXT lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TxtAnswer {
    /// The records, each one's strings joined.
    Records(Vec<String>),
    /// The name has no TXT record (NXDOMAIN or no data).
    None,
    /// No answer could be had (no server, a timeout, a refusal).
    Failed(String),
}

/// A resolver: the system's, or the one server given.
pub(super) struct Lookup {
    resolver: Result<TokioResolver, String>,
}

impl Lookup {
    pub(super) fn new(options: &DoctorOptions) -> Self {
        let builder = match options.resolver {
            Some(addr) => {
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                Ok(TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    TokioRuntimeProvider::default(),
                ))
            }
            None => TokioResolver::builder_tokio().map_err(|e| format!("system resolver: {e}")),
        };
        let resolver = builder.and_then(|mut builder| {
            let opts = builder.options_mut();
            opts.timeout = options.timeout;
            opts.attempts = 1;
            // Each question is asked once; a cached "none" would hide a record published
            // a moment ago.
            opts.cache_size = 0;
            builder.build().map_err(|e| e.to_string())
        });
        Self { resolver }
    }

    /// The TXT records at `name`.
    pub(super) async fn txt(&self, name: &str) -> TxtAnswer {
        let resolver = match &self.resolver {
            Ok(r) => r,
            Err(e) => return TxtAnswer::Failed(e.clone()),
        };
        // Fully qualified: the search list in resolv.conf must not be tried.
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match resolver.txt_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let records: Vec<String> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::TXT(txt) => Some(
                            txt.txt_data
                                .iter()
                                .map(|part| String::from_utf8_lossy(part))
                                .collect::<String>(),
                        ),
                        _ => None,
                    })
                    .collect();
                if records.is_empty() {
                    TxtAnswer::None
                } else {
                    TxtAnswer::Records(records)
                }
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => TxtAnswer::None,
            Err(e) => TxtAnswer::Failed(e.to_string()),
        }
    }
}

/// `tag=value` pairs of a DKIM or DMARC record (RFC 6376 3.2), names lower-cased,
/// whitespace inside values removed.
fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|part| part.split_once('='))
        .map(|(name, value)| {
            (
                name.trim().to_ascii_lowercase(),
                value.chars().filter(|c| !c.is_whitespace()).collect(),
            )
        })
        .collect()
}

fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Relaxed alignment (RFC 7489 3.1): the two domains are equal or one is a subdomain of
/// the other, sharing at least two labels. (Without the public suffix list this is how
/// far it can be told; a registrable domain has at least two labels.)
pub(super) fn aligned(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('.').to_ascii_lowercase();
    let b = b.trim_end_matches('.').to_ascii_lowercase();
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.split('.').count() >= 2 && (long == short || long.ends_with(&format!(".{short}")))
}

fn from_domain(settings: &Settings) -> String {
    settings.newsletter.from.email.domain().to_ascii_lowercase()
}

/// One check per configured key, plus the alignment of `d=` with From.
pub(super) async fn check_dkim(settings: &Settings, lookup: &Lookup) -> Vec<Check> {
    let Some(dkim) = &settings.dkim else {
        return vec![
            Check::new(
                CheckKind::DkimKey,
                Verdict::Warning,
                "no [dkim] key is configured: messages go out unsigned",
            )
            .fix(
                "make a key (`openssl genrsa -out dkim.pem 2048`), set [dkim] domain, selector \
                 and private_key_file, and run `gazette doctor` again for the record to publish",
            ),
        ];
    };
    let signer = match crate::send::dkim_signer(dkim) {
        Ok(signer) => signer,
        Err(e) => {
            return vec![
                Check::new(
                    CheckKind::DkimKey,
                    Verdict::Problem,
                    format!("the [dkim] key cannot be used: {e}"),
                )
                .fix("fix [dkim] private_key_file (see the error above)"),
            ];
        }
    };
    let records = signer.dns_records();
    let mut checks = futures::future::join_all(
        records
            .iter()
            .map(|(name, value)| dkim_key(lookup, name, value)),
    )
    .await;
    let from = from_domain(settings);
    let d = dkim.domain.to_ascii_lowercase();
    checks.push(if aligned(&d, &from) {
        Check::new(
            CheckKind::DkimAlignment,
            Verdict::Ok,
            format!("d={d} aligns with the From domain {from}"),
        )
    } else {
        Check::new(
            CheckKind::DkimAlignment,
            Verdict::Problem,
            format!(
                "d={d} does not align with the From domain {from}: DMARC ignores the signature"
            ),
        )
        .fix(format!(
            "sign as the From domain: set [dkim] domain = \"{from}\" (or a parent of it) and \
             publish the key there"
        ))
    });
    checks
}

async fn dkim_key(lookup: &Lookup, name: &str, ours: &str) -> Check {
    let publish = format!("publish a TXT record at {name}: \"{ours}\"");
    let our_p = tag(&tags(ours), "p").unwrap_or_default().to_owned();
    match lookup.txt(name).await {
        TxtAnswer::Failed(why) => Check::new(
            CheckKind::DkimKey,
            Verdict::CouldNotCheck,
            format!("no DNS answer for {name} ({why})"),
        )
        .fix(format!(
            "check again when DNS answers; the record to {publish}"
        )),
        TxtAnswer::None => Check::new(
            CheckKind::DkimKey,
            Verdict::Problem,
            format!("no DKIM key is published at {name}: receivers cannot verify our signature"),
        )
        .fix(publish),
        TxtAnswer::Records(records) => {
            let keys: Vec<String> = records
                .iter()
                .map(|r| tags(r))
                .filter(|t| tag(t, "p").is_some())
                .map(|t| tag(&t, "p").unwrap_or_default().to_owned())
                .collect();
            if keys.contains(&our_p) {
                Check::new(
                    CheckKind::DkimKey,
                    Verdict::Ok,
                    format!("the key published at {name} matches the configured private key"),
                )
            } else if keys.is_empty() {
                Check::new(
                    CheckKind::DkimKey,
                    Verdict::Problem,
                    format!("the TXT record at {name} is not a DKIM key (no p= tag)"),
                )
                .fix(format!("replace it: {publish}"))
            } else {
                Check::new(
                    CheckKind::DkimKey,
                    Verdict::Problem,
                    format!(
                        "the key published at {name} is not the configured private key's: \
                         every signature will fail (published: \"{}\")",
                        records.join("\", \"")
                    ),
                )
                .fix(format!(
                    "replace the record (or point [dkim] at the matching key): {publish}"
                ))
            }
        }
    }
    .publish_if_not_ok(name, ours)
}

impl Check {
    /// Attaches the record to publish unless the check passed.
    fn publish_if_not_ok(self, name: &str, value: &str) -> Self {
        if self.verdict == Verdict::Ok {
            Self {
                publish: None,
                ..self
            }
        } else {
            self.publish(name, value)
        }
    }
}

/// The SPF record of the envelope sender's domain (`reply_to`, where bounces go).
pub(super) async fn check_spf(settings: &Settings, lookup: &Lookup) -> Check {
    let envelope = settings
        .newsletter
        .reply_to
        .email
        .domain()
        .to_ascii_lowercase();
    let from = from_domain(settings);
    let suggestion = spf_suggestion(&settings.smtp.host);
    let records = match lookup.txt(&envelope).await {
        TxtAnswer::Failed(why) => {
            return Check::new(
                CheckKind::Spf,
                Verdict::CouldNotCheck,
                format!("no DNS answer for {envelope} ({why})"),
            )
            .fix(format!(
                "check again when DNS answers; {envelope} needs one TXT record starting \
                 v=spf1 that names the servers sending for it"
            ));
        }
        TxtAnswer::None => Vec::new(),
        TxtAnswer::Records(records) => records,
    };
    let spf: Vec<&String> = records
        .iter()
        .filter(|r| {
            let r = r.trim_start().to_ascii_lowercase();
            r == "v=spf1" || r.starts_with("v=spf1 ")
        })
        .collect();
    let check = match spf.as_slice() {
        [] => Check::new(
            CheckKind::Spf,
            Verdict::Problem,
            format!("{envelope} (the envelope sender's domain) has no SPF record"),
        )
        .fix(format!(
            "publish a TXT record at {envelope} naming the servers that send for it, e.g. \
             \"{suggestion}\" (or your mail provider's include:)"
        ))
        .publish(&envelope, &suggestion),
        [one] => {
            let all = one
                .split_whitespace()
                .find(|t| t.to_ascii_lowercase().ends_with("all"))
                .unwrap_or("")
                .to_ascii_lowercase();
            if all == "+all" || all == "all" {
                Check::new(
                    CheckKind::Spf,
                    Verdict::Problem,
                    format!("the SPF record of {envelope} ends in {all}: anyone may send as it"),
                )
                .fix("end the record with ~all or -all")
            } else {
                Check::new(
                    CheckKind::Spf,
                    Verdict::Ok,
                    format!("{envelope} has an SPF record: {one}"),
                )
            }
        }
        _ => Check::new(
            CheckKind::Spf,
            Verdict::Problem,
            format!(
                "{envelope} has {} SPF records: receivers treat that as an error (RFC 7208)",
                spf.len()
            ),
        )
        .fix("merge them into one TXT record starting v=spf1"),
    };
    if check.verdict == Verdict::Ok && !aligned(&envelope, &from) {
        return Check::new(
            CheckKind::Spf,
            Verdict::Warning,
            format!(
                "the envelope sender's domain {envelope} does not align with the From domain \
                 {from}: only DKIM can pass DMARC"
            ),
        )
        .fix("use a reply_to address at the From domain, or make sure DKIM passes");
    }
    check
}

/// An SPF record naming the relay: by address, by name, or (a relay on this machine)
/// the domain's mail servers.
fn spf_suggestion(relay: &str) -> String {
    match relay.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => "v=spf1 mx ~all".to_owned(),
        Ok(std::net::IpAddr::V4(ip)) => format!("v=spf1 ip4:{ip} ~all"),
        Ok(std::net::IpAddr::V6(ip)) => format!("v=spf1 ip6:{ip} ~all"),
        Err(_) if relay.eq_ignore_ascii_case("localhost") => "v=spf1 mx ~all".to_owned(),
        Err(_) => format!("v=spf1 a:{relay} ~all"),
    }
}

/// The DMARC record for the From domain: `_dmarc.<domain>`, else the parent domains'
/// (the organizational domain's policy applies to its subdomains).
pub(super) async fn check_dmarc(settings: &Settings, lookup: &Lookup) -> Check {
    let from = from_domain(settings);
    let suggestion = format!(
        "v=DMARC1; p=none; rua=mailto:{}",
        settings.newsletter.reply_to.email
    );
    let missing = || {
        Check::new(
            CheckKind::Dmarc,
            Verdict::Problem,
            format!(
                "{from} has no DMARC record: Gmail and Yahoo refuse or file as spam bulk mail \
                 without one"
            ),
        )
        .fix(format!(
            "publish a TXT record at _dmarc.{from}: \"{suggestion}\" (tighten p= once reports \
             show every message passing)"
        ))
        .publish(&format!("_dmarc.{from}"), &suggestion)
    };
    let labels: Vec<&str> = from.split('.').collect();
    for start in 0..labels.len().saturating_sub(1) {
        let domain = labels[start..].join(".");
        let name = format!("_dmarc.{domain}");
        let records = match lookup.txt(&name).await {
            TxtAnswer::Failed(why) => {
                return Check::new(
                    CheckKind::Dmarc,
                    Verdict::CouldNotCheck,
                    format!("no DNS answer for {name} ({why})"),
                )
                .fix(format!(
                    "check again when DNS answers; the From domain needs a TXT record at \
                     _dmarc.{from} such as \"{suggestion}\""
                ))
                .publish(&format!("_dmarc.{from}"), &suggestion);
            }
            TxtAnswer::None => continue,
            TxtAnswer::Records(records) => records,
        };
        let dmarc: Vec<&String> = records
            .iter()
            .filter(|r| r.trim_start().to_ascii_lowercase().starts_with("v=dmarc1"))
            .collect();
        return match dmarc.as_slice() {
            [] => continue,
            [one] => {
                let t = tags(one);
                match tag(&t, "p").map(str::to_ascii_lowercase).as_deref() {
                    Some(p @ ("none" | "quarantine" | "reject")) => Check::new(
                        CheckKind::Dmarc,
                        Verdict::Ok,
                        format!("{name} publishes DMARC with p={p}"),
                    ),
                    _ => Check::new(
                        CheckKind::Dmarc,
                        Verdict::Problem,
                        format!("the DMARC record at {name} has no valid p= policy: {one}"),
                    )
                    .fix(format!("replace it with \"{suggestion}\""))
                    .publish(&name, &suggestion),
                }
            }
            _ => Check::new(
                CheckKind::Dmarc,
                Verdict::Problem,
                format!(
                    "{name} has {} DMARC records: receivers ignore them all",
                    dmarc.len()
                ),
            )
            .fix("keep exactly one TXT record starting v=DMARC1"),
        };
    }
    missing()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_is_relaxed() {
        assert!(aligned("example.org", "example.org"));
        assert!(aligned("example.org", "news.example.org"));
        assert!(aligned("news.example.org", "example.org"));
        assert!(!aligned("example.org", "example.com"));
        assert!(!aligned("org", "example.org"));
        assert!(!aligned("ample.org", "example.org"));
    }

    #[test]
    fn the_spf_suggestion_names_the_relay() {
        assert_eq!(
            spf_suggestion("smtp.example.net"),
            "v=spf1 a:smtp.example.net ~all"
        );
        assert_eq!(spf_suggestion("192.0.2.7"), "v=spf1 ip4:192.0.2.7 ~all");
        assert_eq!(spf_suggestion("127.0.0.1"), "v=spf1 mx ~all");
    }

    #[test]
    fn tags_ignore_spaces_and_case() {
        let t = tags("v=DKIM1; K=rsa; p=MIIB AQAB ");
        assert_eq!(tag(&t, "k"), Some("rsa"));
        assert_eq!(tag(&t, "p"), Some("MIIBAQAB"));
    }
}
