//! The largest message a relay takes, as it announces it (RFC 1870 `SIZE`) in its EHLO
//! reply, asked before an issue is sent so an oversized one is refused here rather than
//! by the relay for every recipient alike.

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Connects to `host:port`, says EHLO, and returns the `SIZE` the relay announces:
/// `None` when it announces none (or `SIZE 0`, "no fixed limit"). Only plain-text EHLO
/// is spoken, which is where STARTTLS relays announce it too; nothing is sent.
pub async fn announced_size(
    host: &str,
    port: u16,
    timeout: Duration,
) -> std::io::Result<Option<u64>> {
    tokio::time::timeout(timeout, ask(host, port))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the relay did not answer in time",
            )
        })?
}

async fn ask(host: &str, port: u16) -> std::io::Result<Option<u64>> {
    let stream = TcpStream::connect((host, port)).await?;
    let mut stream = BufReader::new(stream);
    let greeting = reply(&mut stream).await?;
    expect_code(&greeting, "220")?;
    stream
        .get_mut()
        .write_all(b"EHLO gazette.invalid\r\n")
        .await?;
    let ehlo = reply(&mut stream).await?;
    expect_code(&ehlo, "250")?;
    // Polite, but the answer is already in hand: a failure here changes nothing.
    let _ = stream.get_mut().write_all(b"QUIT\r\n").await;
    Ok(size_from_ehlo(&ehlo))
}

/// One SMTP reply: its lines up to the one with a space after the code.
async fn reply(stream: &mut BufReader<TcpStream>) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the relay closed the connection",
            ));
        }
        let line = line.trim_end().to_owned();
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last || lines.len() > 100 {
            return Ok(lines);
        }
    }
}

fn expect_code(lines: &[String], code: &str) -> std::io::Result<()> {
    match lines.last() {
        Some(line) if line.starts_with(code) => Ok(()),
        other => Err(std::io::Error::other(format!(
            "the relay answered {:?}",
            other.map(String::as_str).unwrap_or("")
        ))),
    }
}

/// `250-SIZE 10240000` → `Some(10240000)`.
fn size_from_ehlo(lines: &[String]) -> Option<u64> {
    lines.iter().find_map(|line| {
        let keyword = line.get(4..)?.trim();
        let mut words = keyword.split_whitespace();
        if !words.next()?.eq_ignore_ascii_case("SIZE") {
            return None;
        }
        words.next()?.parse().ok().filter(|n| *n > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_size_from_an_ehlo_reply() {
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            size_from_ehlo(&lines(&["250-mx", "250-SIZE 10240000", "250 8BITMIME"])),
            Some(10_240_000)
        );
        assert_eq!(size_from_ehlo(&lines(&["250-mx", "250 SIZE"])), None);
        assert_eq!(size_from_ehlo(&lines(&["250-mx", "250 SIZE 0"])), None);
        assert_eq!(size_from_ehlo(&lines(&["250-mx", "250 PIPELINING"])), None);
    }
}
