//! The web checks: `public_url` is https and answers, and the one-click unsubscribe URL
//! answers a POST the way RFC 8058 asks.
//!
//! One request per connection (`Connection: close`) is all these checks need, so the
//! client is a few lines of HTTP/1.1 over a socket, with rustls and the platform's
//! certificate store for https.

use super::{Check, CheckKind, Verdict};
use crate::settings::Settings;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The parts of an http(s) URL a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    https: bool,
    host: String,
    port: u16,
    /// The path without a trailing `/` (empty for the root).
    path: String,
}

fn parse_url(url: &str) -> Option<Url> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()?),
            None => (authority.to_owned(), default_port),
        }
    };
    (!host.is_empty()).then_some(Url {
        https,
        host,
        port,
        path: path.to_owned(),
    })
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(url: &Url) -> Result<Box<dyn Stream>, String> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", url.host, url.port))?;
    if !url.https {
        return Ok(Box::new(tcp));
    }
    use rustls_platform_verifier::BuilderVerifierExt;
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
        .map_err(|e| format!("{}: {e}", url.host))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {}: {e}", url.host))?;
    Ok(Box::new(tls))
}

/// Sends one request and returns the response's status code.
async fn status(
    url: &Url,
    method: &str,
    path: &str,
    form: Option<&str>,
    timeout: Duration,
) -> Result<u16, String> {
    let exchange = async {
        let mut stream = connect(url).await?;
        let host = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.clone()
        };
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gazette-doctor\r\n\
             Connection: close\r\n"
        );
        if let Some(body) = form {
            request.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            request.push_str("\r\n");
        }
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("sending the request: {e}"))?;
        // Only the status line is needed.
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("reading the answer: {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let line = line.lines().next().unwrap_or("");
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next().and_then(|c| c.parse().ok())) {
            (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
            _ => Err(format!("not an HTTP answer: {line:?}")),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A token of the right shape that names nobody: the server must refuse it without
/// changing anything, and how it refuses shows whether the endpoint takes POSTs.
const UNKNOWN_TOKEN: &str = "0-00000000000000000000000000000000";

/// The https check, the GET and the one-click POST.
pub(super) async fn check_web(settings: &Settings, timeout: Duration) -> Vec<Check> {
    let public = settings.newsletter.public_url.as_str();
    let Some(url) = parse_url(public) else {
        return vec![
            Check::new(
                CheckKind::PublicUrl,
                Verdict::Problem,
                format!("[newsletter] public_url '{public}' is not an http(s) URL"),
            )
            .fix("set [newsletter] public_url to the https address of `gazette web`"),
        ];
    };
    let mut checks = Vec::new();
    checks.push(if !url.https {
        Check::new(
            CheckKind::PublicUrl,
            Verdict::Problem,
            format!(
                "public_url {public} is not https: mailbox providers ignore a one-click \
                 unsubscribe URL that is not https (RFC 8058)"
            ),
        )
        .fix(
            "serve `gazette web` behind a TLS-terminating proxy and set [newsletter] \
             public_url = \"https://…\"",
        )
    } else if is_loopback(&url.host) {
        Check::new(
            CheckKind::PublicUrl,
            Verdict::Problem,
            format!("public_url {public} points at this machine: no reader can open its links"),
        )
        .fix("set [newsletter] public_url to the public https address of `gazette web`")
    } else {
        Check::new(
            CheckKind::PublicUrl,
            Verdict::Ok,
            format!("public_url {public} is https"),
        )
    });

    let root = format!("{}/", url.path);
    checks.push(match status(&url, "GET", &root, None, timeout).await {
        Ok(code) if code < 400 => Check::new(
            CheckKind::Reachable,
            Verdict::Ok,
            format!("GET {public}/ answers {code}"),
        ),
        Ok(code) if code < 500 => Check::new(
            CheckKind::Reachable,
            Verdict::Warning,
            format!("GET {public}/ answers {code}"),
        )
        .fix("check that public_url is where `gazette web` is served (the proxy's path)"),
        Ok(code) => Check::new(
            CheckKind::Reachable,
            Verdict::Problem,
            format!("GET {public}/ answers {code}"),
        )
        .fix("see the web server's and the proxy's logs"),
        Err(why) => Check::new(
            CheckKind::Reachable,
            Verdict::Problem,
            format!("{public} is not reachable: {why}"),
        )
        .fix("start `gazette serve` (or `gazette web`) and make public_url reach it"),
    });

    let path = format!("{}/unsubscribe/{UNKNOWN_TOKEN}", url.path);
    let target = format!("{public}/unsubscribe/…");
    checks.push(
        match status(
            &url,
            "POST",
            &path,
            Some("List-Unsubscribe=One-Click"),
            timeout,
        )
        .await
        {
            Ok(code @ (405 | 500..)) => Check::new(
                CheckKind::OneClick,
                Verdict::Problem,
                format!("POST {target} answers {code}: one-click unsubscribes would fail"),
            )
            .fix(
                "let POST requests to /unsubscribe/ through to `gazette web` (a proxy or \
                 cache may allow only GET)",
            ),
            // Ours answers 404 for a token that names nobody.
            Ok(code) if code < 400 || code == 404 => Check::new(
                CheckKind::OneClick,
                Verdict::Ok,
                format!("POST {target} answers ({code} for a token that names nobody)"),
            ),
            Ok(code) => Check::new(
                CheckKind::OneClick,
                Verdict::Warning,
                format!("POST {target} answers {code}, not what gazette answers"),
            )
            .fix("check that POST requests to /unsubscribe/ reach `gazette web` unchanged"),
            Err(why) => Check::new(
                CheckKind::OneClick,
                Verdict::Problem,
                format!("POST {target} got no answer: {why}"),
            )
            .fix("start `gazette serve` (or `gazette web`) and make public_url reach it"),
        },
    );
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split() {
        assert_eq!(
            parse_url("https://news.example.org/list"),
            Some(Url {
                https: true,
                host: "news.example.org".into(),
                port: 443,
                path: "/list".into()
            })
        );
        let u = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (false, "127.0.0.1", 8080, "")
        );
        let u = parse_url("https://[::1]:8443/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8443, "")
        );
        assert_eq!(parse_url("ftp://x"), None);
    }
}
