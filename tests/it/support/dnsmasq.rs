//! A real DNS server on loopback for tests: Debian's `dnsmasq` (package `dnsmasq-base`,
//! installed by `.ci/install-deps`) answering TXT records given at start, authoritative
//! for the domains named (an unknown name there is NXDOMAIN, not a refusal), and nothing
//! else: no upstream servers, no /etc/hosts, no config file.
//!
//! It runs in the foreground as this process's child and is killed by its pid on drop.
#![allow(dead_code)]

use super::mailstack::{free_port, wait_until_listening};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running dnsmasq.
pub struct Dnsmasq {
    child: Child,
    port: u16,
    log: PathBuf,
}

fn dnsmasq_program() -> PathBuf {
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("dnsmasq not found: install the test dependencies with .ci/install-deps")
}

/// `--txt-record=NAME,TEXT,TEXT…`: each character-string at most 255 bytes long (a DKIM
/// RSA key is longer: it becomes several strings, as in a real zone). Commas separate
/// the strings and quotes would be kept as part of them (no shell unquotes them here).
fn txt_arg(name: &str, value: &str) -> String {
    assert!(!value.contains([',', '"']), "TXT value {value:?}");
    let parts: Vec<&str> = value
        .as_bytes()
        .chunks(255)
        .map(|c| std::str::from_utf8(c).expect("ASCII TXT value"))
        .collect();
    format!("--txt-record={name},{}", parts.join(","))
}

impl Dnsmasq {
    /// Starts dnsmasq on a free 127.0.0.1 port, authoritative for `domains`, with the
    /// TXT `records` (name, value), and returns once it accepts connections.
    pub fn start(domains: &[&str], records: &[(&str, &str)]) -> Dnsmasq {
        for attempt in 1.. {
            let port = free_port();
            let log = std::env::temp_dir()
                .join(format!("gazette-dnsmasq-{}-{port}.log", std::process::id()));
            let mut command = Command::new(dnsmasq_program());
            command.args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--log-queries",
            ]);
            command.arg(format!("--port={port}"));
            command.arg(format!("--log-facility={}", log.display()));
            command.arg(format!(
                "--pid-file={}",
                std::env::temp_dir()
                    .join(format!("gazette-dnsmasq-{port}.pid"))
                    .display()
            ));
            for domain in domains {
                command.arg(format!("--local=/{domain}/"));
            }
            for (name, value) in records {
                command.arg(txt_arg(name, value));
            }
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn dnsmasq");
            let mut server = Dnsmasq { child, port, log };
            match wait_until_listening(port, None, Duration::from_secs(10)) {
                Ok(_) if server.child.try_wait().ok().flatten().is_none() => return server,
                // The UDP port was taken (free_port checks TCP) or it did not start:
                // another port.
                _ => {
                    let log = server.log_text();
                    drop(server);
                    assert!(attempt < 5, "dnsmasq did not start:\n{log}");
                }
            }
        }
        unreachable!()
    }

    /// Where resolvers reach it.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// What dnsmasq logged (the queries it answered), for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(
            std::env::temp_dir().join(format!("gazette-dnsmasq-{}.pid", self.port)),
        );
    }
}
