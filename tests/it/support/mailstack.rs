//! Real mail servers on loopback for integration tests, using only the standard library.
//!
//! Two fixtures live here:
//!
//! * [`MailStack`]: a private Postfix (SMTP in, SASL through Dovecot) delivering over LMTP
//!   into a private Dovecot (Maildir storage, IMAP out) for the test domain [`DOMAIN`].
//!   It behaves like a small real mail provider: authenticated or loopback submission,
//!   per-user mailboxes readable over IMAP or straight from disk, and genuine
//!   multipart/report bounces for unknown recipients. Nothing can leave the machine
//!   (`default_transport = error:`).
//! * [`SmtpSink`]: Postfix's `smtp-sink`, an SMTP server that accepts and records mail and
//!   can inject faults (`-r`/`-f` reject commands, `-Q` 421 and hang up, `-q` drop the
//!   connection without a reply). [`run_smtp_source`] drives `smtp-source`, Postfix's load
//!   generator, for a raw-throughput baseline to compare the sender against.
//!
//! Every instance lives in its own fresh directory under [`std::env::temp_dir`] (configs,
//! queue, sockets, pid files, logs, mailboxes) and listens only on 127.0.0.1 ports from
//! [`free_port`]; nothing system-wide is changed, so tests can run in parallel, also across
//! processes. The packages come from `.ci/install-deps`; the tests run as root.
//!
//! Everything here blocks (polling with `thread::sleep`). From an async test, call the
//! waiting helpers through `tokio::task::spawn_blocking` or use a multi-threaded runtime:
//! on a current-thread runtime a blocking wait would also stop the code under test.
//!
//! Set `MAILSTACK_KEEP=1` to keep the directories after a test for a post-mortem.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The mail domain every [`MailStack`] user belongs to (a reserved TLD: never routable).
pub const DOMAIN: &str = "gazette.test";
/// The local part that a [`MailStack`]'s Postfix refuses at RCPT TO (550 5.1.1).
pub const REFUSED_AT_RCPT: &str = "refused";
/// The password of every [`MailStack`] user, for IMAP login and SMTP AUTH alike.
pub const PASSWORD: &str = "secret";

/// How long `start` waits for a server to answer before giving up with its logs.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the polling helpers look again.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

// ---------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------

/// Ports are handed out from here: high enough to avoid well-known services, and below
/// Linux's ephemeral range (32768–60999 by default) so outgoing connections of the tests
/// themselves never occupy a port a server is about to take.
const PORT_LOW: u32 = 20_000;
const PORT_SPAN: u32 = 12_000;

/// Offset of the next port within the range, relative to this process's seed.
static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

/// Returns a 127.0.0.1 port that is free right now.
///
/// Why not simply bind port 0? Postfix binds its listeners with `SO_REUSEPORT`, so two
/// Postfix instances that happen to get the same port both start "successfully" and the
/// kernel then splits connections between them: tests would see each other's mail. The
/// defence is to make collisions unlikely and to detect them:
///
/// * within a process, an atomic counter hands every caller a different port;
/// * across processes, the walk through the range starts at an offset derived from the pid,
///   so concurrent test binaries walk through different parts of the range;
/// * each candidate must be bindable (nobody listens with plain `SO_REUSEADDR`) and must
///   refuse a connection (nobody listens at all, whatever socket options they used);
/// * after a server started, the fixtures count the listening sockets on their ports
///   (see [`listener_count`]) and start over on other ports if there is more than one.
pub fn free_port() -> u16 {
    // Knuth's multiplicative hash spreads neighbouring pids over the whole range.
    let seed = std::process::id().wrapping_mul(2_654_435_761) % PORT_SPAN;
    for _ in 0..PORT_SPAN {
        let offset = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = (PORT_LOW + (seed + offset) % PORT_SPAN) as u16;
        if port_is_free(port) {
            return port;
        }
    }
    panic!(
        "free_port: no free port left in {PORT_LOW}..{}",
        PORT_LOW + PORT_SPAN
    );
}

fn port_is_free(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpListener::bind(addr) {
        Ok(listener) => drop(listener),
        Err(_) => return false,
    }
    // A listener with SO_REUSEPORT on both sides would have let the bind above succeed;
    // a connection attempt notices any listener.
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
        && listener_count(port) == 0
}

/// Counts the sockets listening on `port` (any address, IPv4 and IPv6) in this network
/// namespace, from `/proc/net/tcp{,6}`. One server owns one listening socket per port;
/// two mean that two servers share the port through `SO_REUSEPORT`.
pub fn listener_count(port: u16) -> usize {
    const TCP_LISTEN: &str = "0A";
    let wanted = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .map(|text| {
            text.lines()
                .skip(1)
                .filter(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    fields.len() > 3
                        && fields[3] == TCP_LISTEN
                        && fields[1].rsplit(':').next() == Some(wanted.as_str())
                })
                .count()
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// Waiting for servers
// ---------------------------------------------------------------------------------------

/// Waits until something on 127.0.0.1:`port` accepts a connection and, if `greeting` is
/// given, sends a first line starting with it (`"220"` for SMTP/LMTP, `"* OK"` for IMAP).
/// A bare accept is not enough for Postfix: its master accepts connections before it can
/// spawn an `smtpd` that answers, so the greeting is the real sign of life.
///
/// Returns the greeting line, or the last error once `timeout` has passed.
pub fn wait_until_listening(
    port: u16,
    greeting: Option<&str>,
    timeout: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut last_error;
    loop {
        last_error = match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Err(e) => format!("connect to {addr}: {e}"),
            Ok(stream) => match greeting {
                None => return Ok(String::new()),
                Some(prefix) => match read_greeting(stream) {
                    Ok(line) if line.starts_with(prefix) => return Ok(line),
                    Ok(line) => format!("{addr} greeted with {line:?}, wanted {prefix:?}"),
                    Err(e) => format!("read greeting from {addr}: {e}"),
                },
            },
        };
        if Instant::now() >= deadline {
            return Err(last_error);
        }
        thread::sleep(POLL_INTERVAL * 4);
    }
}

fn read_greeting(stream: TcpStream) -> std::io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Leave politely so servers do not log lost connections; SMTP, LMTP and IMAP all
    // understand one of these (an IMAP server just answers BAD to QUIT).
    let stream = reader.get_mut();
    let _ = stream.write_all(if line.starts_with('*') {
        b"x LOGOUT\r\n"
    } else {
        b"QUIT\r\n"
    });
    Ok(line.trim_end().to_string())
}

// ---------------------------------------------------------------------------------------
// MailStack
// ---------------------------------------------------------------------------------------

/// A private Postfix + Dovecot pair on loopback, for the users of [`DOMAIN`] it was
/// started with; all of them have the password [`PASSWORD`].
///
/// Mail flow: SMTP client → Postfix smtpd on [`smtp_port`](Self::smtp_port) → LMTP →
/// Dovecot → `<root>/mail/<user>/Maildir` → IMAP on [`imap_port`](Self::imap_port).
///
/// * Clients on 127.0.0.0/8 may send without AUTH; AUTH PLAIN/LOGIN is offered too
///   (Postfix asks Dovecot's auth service), without TLS.
/// * Postfix accepts every address at [`DOMAIN`] but one; Dovecot's LMTP refuses unknown
///   users, so Postfix sends a real RFC 3464 multipart/report bounce to the envelope
///   sender (which lands in a mailbox when the sender is a user here, and is dropped
///   otherwise). This is how a real provider behaves after accepting mail, and what a
///   bounce handler must cope with.
/// * The one exception is the other shape: [`REFUSED_AT_RCPT`] at [`DOMAIN`] gets a 550
///   reply to its RCPT TO, in a session that offers PIPELINING like any other.
/// * Mail to any other domain fails at once (`default_transport = error:`).
///
/// * TLS everywhere it is optional: STARTTLS on both ports, and implicit TLS (port 465
///   and 993 style) on [`smtps_port`](Self::smtps_port) and
///   [`imaps_port`](Self::imaps_port), with a certificate for 127.0.0.1 from a private CA
///   ([`tls_ca`](Self::tls_ca)).
///
/// Dropping the stack stops both servers and removes its directory.
pub struct MailStack {
    root: PathBuf,
    users: Vec<String>,
    options: Options,
    smtp_port: u16,
    smtps_port: u16,
    imap_port: u16,
    imaps_port: u16,
    lmtp_port: u16,
    auth_port: u16,
    dovecot_pid: Option<u32>,
    postfix_pid: Option<u32>,
}

/// How a [`MailStack`] differs from the default one.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Dovecot's `imap_capability`: the capabilities IMAP announces after login, in
    /// place of the full list (to play an older or smaller server). Dovecot still
    /// understands the commands it no longer announces.
    pub imap_capability: Option<String>,
}

impl MailStack {
    /// Starts Dovecot, then Postfix, and returns once both answer on their ports.
    /// `users` are local parts (`"alice"` for `alice@gazette.test`).
    ///
    /// Panics, with both servers' logs, if they are not up within 20 seconds.
    pub fn start(users: &[&str]) -> MailStack {
        MailStack::start_with(users, &Options::default())
    }

    /// [`MailStack::start`], with `options`.
    pub fn start_with(users: &[&str], options: &Options) -> MailStack {
        for user in users {
            assert!(
                !user.is_empty()
                    && user
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)),
                "MailStack user {user:?}: use a plain lowercase local part like \"alice\""
            );
        }
        // A port collision with another process (see `free_port`) is detected after the
        // start; it is rare, and starting over on new ports cures it.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut stack = MailStack::start_once(users, options);
            let shared: Vec<u16> = stack
                .ports()
                .into_iter()
                .filter(|&port| listener_count(port) > 1)
                .collect();
            if shared.is_empty() {
                return stack;
            }
            let log = stack.log();
            stack.stop();
            assert!(
                attempt < 5,
                "MailStack: ports {shared:?} still shared after {attempt} tries\n{log}"
            );
        }
    }

    fn start_once(users: &[&str], options: &Options) -> MailStack {
        let root = unique_dir("gazette-mailstack");
        let mut stack = MailStack {
            root,
            users: users.iter().map(|u| u.to_string()).collect(),
            options: options.clone(),
            smtp_port: free_port(),
            smtps_port: free_port(),
            imap_port: free_port(),
            imaps_port: free_port(),
            lmtp_port: free_port(),
            auth_port: free_port(),
            dovecot_pid: None,
            postfix_pid: None,
        };
        // Both servers present the same certificate.
        make_self_signed_cert(&stack.root.join("tls"));
        // Dovecot first: Postfix needs its LMTP and auth listeners from the first message.
        stack.start_dovecot();
        stack.start_postfix();
        stack
    }

    /// The CA certificate (PEM) that signed the one Postfix and Dovecot present.
    pub fn tls_ca(&self) -> PathBuf {
        self.root.join("tls/ca.pem")
    }

    /// The Postfix smtpd port on 127.0.0.1 (plain text, STARTTLS offered).
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// The Postfix smtpd port on 127.0.0.1 that speaks TLS from the first byte.
    pub fn smtps_port(&self) -> u16 {
        self.smtps_port
    }

    /// The Dovecot IMAP port on 127.0.0.1 (plaintext LOGIN allowed, STARTTLS offered).
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// The Dovecot IMAP port on 127.0.0.1 that speaks TLS from the first byte.
    pub fn imaps_port(&self) -> u16 {
        self.imaps_port
    }

    /// `user@gazette.test`.
    pub fn address(&self, user: &str) -> String {
        format!("{user}@{DOMAIN}")
    }

    /// The users this stack was started with.
    pub fn users(&self) -> &[String] {
        &self.users
    }

    /// The stack's private directory (configs, queue, logs, mail).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `user`'s Maildir. Dovecot creates it on the first delivery or login, so it may not
    /// exist yet. New mail is in `new/`; IMAP moves what a client has seen to `cur/`.
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.root.join("mail").join(user).join("Maildir")
    }

    /// Waits for `user`'s first message and checks that Postfix took it over TLS: it
    /// writes "with ESMTPS" in its Received header when the session used TLS.
    pub fn assert_first_came_over_tls(&self, user: &str) {
        let raw = self.wait_for_messages(user, 1, Duration::from_secs(30));
        let text = String::from_utf8_lossy(&raw[0]);
        let headers = text.split("\r\n\r\n").next().unwrap_or_default();
        let headers = headers.split("\n\n").next().unwrap_or_default();
        assert!(
            headers.contains("with ESMTPS"),
            "Postfix did not record TLS:\n{headers}"
        );
    }

    /// The raw messages (RFC 5322 bytes, as Dovecot stored them) in `user`'s INBOX now,
    /// oldest first as far as the Maildir file names tell.
    pub fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        read_maildir(&self.maildir(user))
    }

    /// Polls `user`'s INBOX (`new/` and `cur/`) until at least `n` messages are there and
    /// returns all of them (see [`messages`](Self::messages)).
    ///
    /// Panics with the servers' logs after `timeout`: a missing message is then a failed
    /// test anyway, and the logs say what Postfix and Dovecot did with it.
    pub fn wait_for_messages(&self, user: &str, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages(user);
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() >= deadline {
                panic!(
                    "MailStack: {} has {} message(s) after {timeout:?}, expected {n}\n{}",
                    self.address(user),
                    messages.len(),
                    self.log()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The Postfix and Dovecot logs so far, for failure messages.
    pub fn log(&self) -> String {
        let mut out = String::new();
        // The start logs hold what `dovecot` / `postfix start` printed: usually nothing.
        for name in [
            "dovecot-start.log",
            "dovecot.log",
            "postfix-start.log",
            "postfix.log",
        ] {
            let path = self.root.join("log").join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) if text.is_empty() && name.ends_with("-start.log") => {}
                Ok(text) => {
                    let _ = write!(out, "----- {} -----\n{text}", path.display());
                }
                Err(e) => {
                    let _ = writeln!(out, "----- {} ----- ({e})", path.display());
                }
            }
        }
        out
    }

    fn ports(&self) -> [u16; 6] {
        [
            self.smtp_port,
            self.smtps_port,
            self.imap_port,
            self.imaps_port,
            self.lmtp_port,
            self.auth_port,
        ]
    }

    fn start_dovecot(&mut self) {
        let root = &self.root;
        let dir = root.join("dovecot");
        let mail = root.join("mail");
        std::fs::create_dir_all(&dir).expect("create dovecot dir");
        std::fs::create_dir_all(root.join("log")).expect("create log dir");
        std::fs::create_dir_all(&mail).expect("create mail dir");
        // Dovecot refuses to run mail processes as root, so mailboxes belong to the
        // system's `mail` user (uid 8 on Debian); it must be able to create them here.
        let (uid, gid) = passwd_ids("mail").unwrap_or((8, 8));
        std::os::unix::fs::chown(&mail, Some(uid), Some(gid)).expect("chown mail dir");

        let passwd: String = self
            .users
            .iter()
            .map(|user| format!("{user}:{{PLAIN}}{PASSWORD}::::::\n"))
            .collect();
        write_file(&dir.join("users"), &passwd);

        let config = format!(
            r#"# Written by tests/it/support/mailstack.rs: a private Dovecot for one test.
instance_name = {instance}
base_dir = {root}/dovecot/run
state_dir = {root}/dovecot/state
log_path = {root}/log/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
# TLS offered, not required: STARTTLS on the IMAP port, implicit TLS on the IMAPS one.
ssl = yes
ssl_cert = <{root}/tls/cert.pem
ssl_key = <{root}/tls/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# Tests try wrong passwords on purpose; that must not slow down later logins. Dovecot
# delays failure replies (auth_failure_delay, 2 s by default) and, worse, remembers
# failures per client IP in anvil and makes that IP wait 2, 4, 8... s before every later
# attempt, also successful ones. All clients here are 127.0.0.1, so one failed AUTH would
# delay every later AUTH for this stack. Without access to anvil's penalty socket the
# auth process turns the penalty off.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
mail_location = maildir:~/Maildir
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = {uid}
first_valid_gid = {gid}
# Postfix hands over alice@gazette.test; the password file knows "alice".
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {root}/dovecot/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {root}/dovecot/users
  default_fields = uid={uid} gid={gid} home={root}/mail/%n
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    port = {lmtp}
  }}
}}
service auth {{
  # Postfix's smtpd_sasl_type = dovecot speaks the auth client protocol to this.
  inet_listener auth-client {{
    port = {auth}
  }}
}}
"#,
            instance = root.file_name().unwrap().to_string_lossy(),
            root = root.display(),
            imap = self.imap_port,
            imaps = self.imaps_port,
            lmtp = self.lmtp_port,
            auth = self.auth_port,
        );
        let mut config = config;
        if let Some(capability) = &self.options.imap_capability {
            let _ = writeln!(config, "imap_capability = {capability}");
        }
        let conf = dir.join("dovecot.conf");
        write_file(&conf, &config);

        let log = root.join("log").join("dovecot-start.log");
        let (ok, said) =
            run_daemon_starter(Command::new(program("dovecot")).arg("-c").arg(&conf), &log);
        if !ok {
            panic!("MailStack: dovecot did not start: {said}\n{}", self.log());
        }
        let pid_file = dir.join("run").join("master.pid");
        self.dovecot_pid = Some(
            wait_for_pid_file(&pid_file, START_TIMEOUT)
                .unwrap_or_else(|| panic!("MailStack: no {}\n{}", pid_file.display(), self.log())),
        );
        self.wait_for(self.imap_port, Some("* OK"), "Dovecot IMAP");
        self.wait_for(self.imaps_port, None, "Dovecot IMAPS");
        self.wait_for(self.lmtp_port, Some("220"), "Dovecot LMTP");
        self.wait_for(self.auth_port, None, "Dovecot auth");
    }

    fn start_postfix(&mut self) {
        let root = &self.root;
        let dir = root.join("postfix");
        let queue = root.join("postfix-queue");
        std::fs::create_dir_all(&dir).expect("create postfix dir");
        create_postfix_dirs(&queue, &root.join("postfix-data"));

        let main_cf = format!(
            r#"# Written by tests/it/support/mailstack.rs: a private Postfix for one test.
compatibility_level = 3.6
queue_directory = {root}/postfix-queue
data_directory = {root}/postfix-data
# Without syslog in a test environment, log to a file. This needs the postlog service
# in master.cf and the directory listed in maillog_file_prefixes.
maillog_file = {root}/log/postfix.log
maillog_file_prefixes = {root}/log
myhostname = mailstack.{DOMAIN}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
# Every address at the test domain is accepted here and handed to Dovecot, which knows
# the users: unknown ones are refused over LMTP and bounce as a multipart/report DSN.
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps =
smtpd_reject_unlisted_recipient = no
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
# Nothing leaves this machine.
default_transport = error:mail outside {DOMAIN} is disabled in tests
relay_transport = error:mail outside {DOMAIN} is disabled in tests
local_transport = error:local delivery is disabled in tests
smtp_host_lookup = native
lmtp_host_lookup = native
smtpd_peername_lookup = no
# AUTH through Dovecot, without TLS (loopback only).
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{auth}
# STARTTLS is offered (with a certificate for 127.0.0.1 from a private CA, `tls_ca`)
# but not required, so clients may also speak plain SMTP.
smtpd_tls_security_level = may
smtpd_tls_cert_file = {root}/tls/cert.pem
smtpd_tls_key_file = {root}/tls/key.pem
smtp_tls_security_level = none
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
# One address is refused at RCPT TO, the way a provider refuses an unknown user at once.
smtpd_recipient_restrictions = check_recipient_access inline:{{ {{ {refused}@{DOMAIN} = 550 5.1.1 no such user here }} }}
# No artificial slowness: tests provoke errors on purpose, and benchmarks push hard.
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
in_flow_delay = 0
# If Dovecot hiccups, retry within seconds rather than the default minutes.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s
# No postmaster notices: postmaster@{DOMAIN} does not exist.
notify_classes =
biff = no
"#,
            root = root.display(),
            lmtp = self.lmtp_port,
            auth = self.auth_port,
            refused = REFUSED_AT_RCPT,
        );
        write_file(&dir.join("main.cf"), &main_cf);

        // Only the services this setup uses, none chrooted (the chroot would need copies
        // of system files inside the temp queue directory).
        let master_cf = format!(
            "# Written by tests/it/support/mailstack.rs.\n\
             127.0.0.1:{smtp} inet n - n - - smtpd\n\
             127.0.0.1:{smtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n\
             cleanup    unix  n - n - 0 cleanup\n\
             qmgr       unix  n - n 300 1 qmgr\n\
             rewrite    unix  - - n - - trivial-rewrite\n\
             bounce     unix  - - n - 0 bounce\n\
             defer      unix  - - n - 0 bounce\n\
             trace      unix  - - n - 0 bounce\n\
             verify     unix  - - n - 1 verify\n\
             flush      unix  n - n 1000? 0 flush\n\
             proxymap   unix  - - n - - proxymap\n\
             tlsmgr     unix  - - n 1000? 1 tlsmgr\n\
             proxywrite unix  - - n - 1 proxymap\n\
             smtp       unix  - - n - - smtp\n\
             relay      unix  - - n - - smtp\n\
             showq      unix  n - n - - showq\n\
             error      unix  - - n - - error\n\
             retry      unix  - - n - - error\n\
             discard    unix  - - n - - discard\n\
             lmtp       unix  - - n - - lmtp\n\
             anvil      unix  - - n - 1 anvil\n\
             scache     unix  - - n - 1 scache\n\
             postlog    unix-dgram n - n - 1 postlogd\n",
            smtp = self.smtp_port,
            smtps = self.smtps_port,
        );
        write_file(&dir.join("master.cf"), &master_cf);
        // Postfix reads a configuration file again and again, 300 ms apart, for as long as
        // its mtime is not at least a second in the past (a guard against half-written
        // files): 2 s of `postfix start` doing nothing. These files are complete.
        for file in ["main.cf", "master.cf"] {
            backdate(&dir.join(file));
        }

        // Postfix commands report problems on stderr only when it is a terminal (else to
        // syslog, which a test machine may not have), so run the start under `script` to
        // give it a pseudo-terminal and keep what it says.
        let postfix = program("postfix");
        let mut command = match find_program("script") {
            Some(script) => {
                let mut command = Command::new(script);
                command.args([
                    "-qec",
                    &format!("{} -c {} start", shell_quote(&postfix), shell_quote(&dir)),
                    "/dev/null",
                ]);
                command
            }
            None => {
                let mut command = Command::new(&postfix);
                command.arg("-c").arg(&dir).arg("start");
                command
            }
        };
        // `postfix start` normally first runs `post-install create-missing` and a
        // `find`-based integrity check over the whole installation: dozens of processes,
        // 2-3 s on a busy 2-core machine. create_postfix_dirs did the part that matters
        // for a fresh queue, and this file (as left by `postfix quick-stop`) skips the rest.
        write_file(&queue.join("quick-start"), "");
        let log = root.join("log").join("postfix-start.log");
        let (ok, said) = run_daemon_starter(&mut command, &log);
        if !ok {
            panic!("MailStack: postfix did not start: {said}\n{}", self.log());
        }
        let pid_file = queue.join("pid").join("master.pid");
        self.postfix_pid = Some(
            wait_for_pid_file(&pid_file, START_TIMEOUT)
                .unwrap_or_else(|| panic!("MailStack: no {}\n{}", pid_file.display(), self.log())),
        );
        self.wait_for(self.smtp_port, Some("220"), "Postfix smtpd");
        self.wait_for(self.smtps_port, None, "Postfix smtpd (implicit TLS)");
    }

    fn wait_for(&self, port: u16, greeting: Option<&str>, what: &str) {
        if let Err(e) = wait_until_listening(port, greeting, START_TIMEOUT) {
            panic!(
                "MailStack: {what} is not answering on port {port}: {e}\n{}",
                self.log()
            );
        }
    }

    fn stop(&mut self) {
        // Postfix first, so it does not try to deliver into a vanishing Dovecot. Its
        // master stops its children within milliseconds of a SIGTERM.
        if let Some(pid) = self.postfix_pid.take() {
            stop_daemon(pid, Duration::from_secs(5));
        }
        // Dovecot's orderly shutdown takes over a second, and nothing here needs it:
        // delivered mail is on disk (LMTP answers only after saving) and the directory
        // is deleted next. Kill its process group at once.
        if let Some(pid) = self.dovecot_pid.take() {
            stop_daemon(pid, Duration::ZERO);
        }
        remove_dir(&self.root);
    }
}

impl Drop for MailStack {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The messages in a Maildir's `new/` and `cur/`, oldest first by the delivery time that
/// Maildir file names start with (`<seconds>.M<microseconds>P<pid>...`).
fn read_maildir(maildir: &Path) -> Vec<Vec<u8>> {
    // A message can move from new/ to cur/ while we look (an IMAP client saw it); then
    // the listing is stale and we look again.
    'again: loop {
        let mut entries: Vec<((u64, u64), String, PathBuf)> = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(dir) = std::fs::read_dir(maildir.join(sub)) else {
                continue;
            };
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    entries.push((maildir_time(&name), name, entry.path()));
                }
            }
        }
        entries.sort();
        let mut messages = Vec::with_capacity(entries.len());
        for (_, _, path) in entries {
            match std::fs::read(&path) {
                Ok(bytes) => messages.push(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue 'again,
                Err(e) => panic!("read {}: {e}", path.display()),
            }
        }
        return messages;
    }
}

fn maildir_time(name: &str) -> (u64, u64) {
    let mut parts = name.split('.');
    let seconds = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    let micros = parts
        .next()
        .and_then(|unique| unique.strip_prefix('M'))
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0);
    (seconds, micros)
}

// ---------------------------------------------------------------------------------------
// SmtpSink and smtp-source
// ---------------------------------------------------------------------------------------

/// One mail transaction that [`SmtpSink`] completed (the client sent the final dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkMessage {
    /// The MAIL FROM address, without angle brackets (empty for the null sender).
    pub sender: String,
    /// The RCPT TO addresses the sink accepted, in order, without angle brackets.
    /// Recipients refused by a fault flag (`-r RCPT`, `-f RCPT`) are not here.
    pub recipients: Vec<String>,
    /// The message as received: header and body, dot-unstuffed, with LF line endings
    /// (`smtp-sink` drops every CR).
    pub content: Vec<u8>,
}

/// Postfix's `smtp-sink` on a free 127.0.0.1 port, recording every completed message.
///
/// Extra flags given to [`start`](Self::start) go straight to `smtp-sink`, so every fault
/// it knows can be injected, for example:
///
/// * `-r RCPT` / `-f RCPT`: answer RCPT with 450 / 500 (also `MAIL`, `DATA`, `.`; implies
///   no PIPELINING);
/// * `-Q DATA`: answer DATA with 421 and hang up;
/// * `-q .`: hang up without answering the final dot (the message *was* received, the
///   client cannot know: the classic source of duplicates);
/// * `-w 5`: wait 5 s before answering DATA; `-A 0`: 550 right after DATA.
///
/// Note that the sink records a message when it reads the final dot, *before* it applies
/// a fault to the dot: with `-r .`, `-f .` or `-q .`, [`received`](Self::received) lists
/// messages the client saw fail. That is what makes at-least-once checks meaningful.
///
/// Recording costs a file per message, which caps the sink at roughly a thousand messages
/// a second on a small machine; for throughput benchmarks use
/// [`start_unrecorded`](Self::start_unrecorded), which only counts.
pub struct SmtpSink {
    child: Child,
    port: u16,
    root: PathBuf,
    dump_dir: PathBuf,
    recorded: bool,
}

impl SmtpSink {
    /// Starts `smtp-sink` with the extra `args`, recording every message, and returns
    /// once it answers SMTP.
    pub fn start(args: &[&str]) -> SmtpSink {
        SmtpSink::start_mode(args, true, None)
    }

    /// Like [`start`](Self::start), but the sink keeps no copies and only counts
    /// completed messages (see [`received_count`](Self::received_count)): as fast as
    /// `smtp-sink` goes, for benchmarks. [`received`](Self::received) is not available.
    pub fn start_unrecorded(args: &[&str]) -> SmtpSink {
        SmtpSink::start_mode(args, false, None)
    }

    /// Like [`start`](Self::start), on a given `port` (checked free by [`free_port`]):
    /// for a relay that comes back where a client was told to find it.
    pub fn start_on(port: u16, args: &[&str]) -> SmtpSink {
        SmtpSink::start_mode(args, true, Some(port))
    }

    /// [`start_unrecorded`](Self::start_unrecorded) on a given `port`.
    pub fn start_unrecorded_on(port: u16, args: &[&str]) -> SmtpSink {
        SmtpSink::start_mode(args, false, Some(port))
    }

    fn start_mode(args: &[&str], recorded: bool, port: Option<u16>) -> SmtpSink {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut sink = SmtpSink::start_once(args, recorded, port);
            if listener_count(sink.port) <= 1 {
                return sink;
            }
            let log = sink.log();
            sink.stop();
            assert!(
                attempt < 5,
                "SmtpSink: port still shared after {attempt} tries\n{log}"
            );
        }
    }

    fn start_once(args: &[&str], recorded: bool, port: Option<u16>) -> SmtpSink {
        let root = unique_dir("gazette-smtpsink");
        let dump_dir = root.join("dump");
        std::fs::create_dir(&dump_dir).expect("create smtp-sink dump dir");
        // As root, smtp-sink must drop to another user (`-u`) after binding; that user
        // then creates the dump files.
        std::fs::set_permissions(&dump_dir, std::fs::Permissions::from_mode(0o777))
            .expect("chmod smtp-sink dump dir");
        let port = port.unwrap_or_else(free_port);
        let log = std::fs::File::create(root.join("smtp-sink.log")).expect("create smtp-sink log");

        let mut command = Command::new(program("smtp-sink"));
        if is_root() {
            command.args(["-u", "nobody"]);
        }
        if recorded {
            // `-d TEMPLATE`: one file per transaction, named TEMPLATE plus a random hex id.
            // The file is created at MAIL FROM and deleted again if the transaction does not
            // reach the final dot (RSET, disconnect), so in-progress files must be skipped:
            // see `received`.
            command.arg("-d").arg(dump_dir.join("msg."));
        } else {
            // `-c`: print "sess=N quit=N mesg=N" (CR-terminated) after every session and
            // every completed message; `received_count` reads the last one.
            command.arg("-c");
        }
        let child = command
            .args(args)
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn smtp-sink (is postfix installed? see .ci/install-deps)");
        // Resolve symlinks once, so paths compare equal with /proc/PID/fd links.
        let dump_dir = dump_dir.canonicalize().expect("canonicalize dump dir");
        let mut sink = SmtpSink {
            child,
            port,
            root,
            dump_dir,
            recorded,
        };

        // With fault flags such as `-r CONNECT` the greeting is an error: then any line will do.
        let greeting = if args
            .iter()
            .any(|a| a.to_ascii_lowercase().contains("connect"))
        {
            ""
        } else {
            "220"
        };
        if let Err(e) = wait_until_listening(port, Some(greeting), START_TIMEOUT) {
            let exited = sink.child.try_wait().ok().flatten();
            let log = sink.log();
            sink.stop();
            panic!("SmtpSink: not answering on port {port} ({e}); exit status {exited:?}\n{log}");
        }
        // The probe's own transaction-less connection left nothing in the dump dir.
        sink
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message whose final dot the sink has read, ordered by the dump files'
    /// modification times. Those come from the kernel's coarse clock (a few ms), so
    /// messages completed close together may come in either order: match on recipients
    /// or content, not on position.
    ///
    /// Safe to call while clients are still sending: a transaction in progress has its
    /// dump file open in `smtp-sink`, and such files are skipped. (Files are only ever
    /// created once, so a file that is not open any more after it was listed is done.)
    pub fn received(&self) -> Vec<SinkMessage> {
        assert!(
            self.recorded,
            "SmtpSink::received: this sink was started unrecorded; use received_count"
        );
        let mut listed: Vec<(SystemTime, PathBuf)> = match std::fs::read_dir(&self.dump_dir) {
            Ok(dir) => dir
                .flatten()
                .filter_map(|entry| {
                    let modified = entry.metadata().ok()?.modified().ok()?;
                    Some((modified, entry.path()))
                })
                .collect(),
            Err(e) => panic!("read {}: {e}", self.dump_dir.display()),
        };
        let open = self.open_files();
        listed.sort();
        listed
            .into_iter()
            .filter(|(_, path)| !open.contains(path))
            // Gone by now: the transaction was abandoned and the sink deleted it.
            .filter_map(|(_, path)| std::fs::read(&path).ok())
            .map(|dump| parse_sink_dump(&dump))
            .collect()
    }

    /// The CPU time the sink has used so far (user and system, from /proc), or `None`
    /// once it is gone.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // After the command name in parentheses (which may hold spaces): the state is
        // field 3, utime and stime fields 14 and 15, in clock ticks.
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf only reads a system setting.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (per_second > 0).then(|| Duration::from_secs_f64(ticks as f64 / per_second as f64))
    }

    /// How many messages the sink has completed (read the final dot of).
    pub fn received_count(&self) -> usize {
        if self.recorded {
            return self.received().len();
        }
        // Only the tail: the log gains a line per message, and benchmarks poll this
        // every millisecond while hundreds of thousands of messages go through.
        let log = read_tail(&self.root.join("smtp-sink.log"), 256);
        let log = String::from_utf8_lossy(&log);
        log.rfind("mesg=")
            .map(|at| {
                log[at + "mesg=".len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(0)
    }

    /// For every recipient address, how many recorded messages were addressed to it:
    /// an exactly-once delivery shows 1 everywhere, an at-least-once one at least 1.
    pub fn recipient_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for message in self.received() {
            for recipient in message.recipients {
                *counts.entry(recipient).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Polls until at least `n` messages are recorded and returns them; panics after
    /// `timeout`. (For an unrecorded sink, poll [`received_count`](Self::received_count).)
    pub fn wait_for_received(&self, n: usize, timeout: Duration) -> Vec<SinkMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            if Instant::now() >= deadline {
                panic!(
                    "SmtpSink: {} message(s) after {timeout:?}, expected {n}\n{}",
                    received.len(),
                    self.log()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// How many transactions are under way right now (past MAIL FROM, before the final
    /// dot): messages a client has in flight.
    pub fn in_progress(&self) -> usize {
        assert!(
            self.recorded,
            "SmtpSink::in_progress: needs a recording sink"
        );
        self.open_files().len()
    }

    /// What `smtp-sink` printed (warnings such as lost connections, fatal errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("smtp-sink.log"))
            .unwrap_or_else(|e| format!("(no smtp-sink log: {e})"))
    }

    /// The dump files `smtp-sink` has open right now: its transactions in progress.
    fn open_files(&self) -> HashSet<PathBuf> {
        let fd_dir = format!("/proc/{}/fd", self.child.id());
        let Ok(fds) = std::fs::read_dir(&fd_dir) else {
            return HashSet::new(); // Not running any more: nothing in progress.
        };
        fds.flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter(|target| target.starts_with(&self.dump_dir))
            .collect()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_dir(&self.root);
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Splits an `smtp-sink` dump into envelope and content. The sink writes its own header
/// lines first (`X-Client-Addr`, `X-Client-Proto`, `X-Helo-Args`, `X-Mail-Args`, one
/// `X-Rcpt-Args` per accepted RCPT) and ends them with a three-line `Received:` header;
/// after the message itself it writes one empty line (the LF of the final dot line).
fn parse_sink_dump(dump: &[u8]) -> SinkMessage {
    let mut sender = String::new();
    let mut recipients = Vec::new();
    let mut rest = dump;
    let mut in_received = false;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        if in_received && !line.starts_with('\t') {
            break; // First line of the client's message.
        }
        rest = &rest[end + 1..];
        if let Some(args) = line.strip_prefix("X-Mail-Args: ") {
            sender = angle_address(args);
        } else if let Some(args) = line.strip_prefix("X-Rcpt-Args: ") {
            recipients.push(angle_address(args));
        } else if line.starts_with("Received: ") {
            in_received = true;
        }
    }
    let content = rest.strip_suffix(b"\n").unwrap_or(rest).to_vec();
    SinkMessage {
        sender,
        recipients,
        content,
    }
}

/// `<a@b> SIZE=10` → `a@b`; an address without brackets is taken up to the first space.
fn angle_address(args: &str) -> String {
    let args = args.trim();
    match (args.find('<'), args.find('>')) {
        (Some(open), Some(close)) if open < close => args[open + 1..close].to_string(),
        _ => args.split_whitespace().next().unwrap_or("").to_string(),
    }
}

/// Where Postfix's `smtp-source` load generator is.
pub fn smtp_source_path() -> PathBuf {
    program("smtp-source")
}

/// Sends `messages` messages of `message_size_bytes` bytes of body each (headers not
/// counted) to the SMTP server on 127.0.0.1:`port` over `connections` parallel
/// connections with `smtp-source`, and returns the wall-clock time it took.
///
/// Each connection stays open for several messages (`-d`), like a sender with a
/// connection pool, and mail goes from `bench@gazette.test` to `sink@gazette.test` (the
/// server decides what happens to it: an [`SmtpSink`] just counts; a [`MailStack`] would
/// bounce an unknown `sink` user). This is the ceiling a sender on this machine can
/// hope for: `smtp-source` is C and does nothing but talk SMTP.
pub fn run_smtp_source(
    port: u16,
    messages: usize,
    connections: usize,
    message_size_bytes: usize,
) -> Duration {
    let started = Instant::now();
    let output = run(Command::new(smtp_source_path())
        .arg("-d")
        .args(["-m", &messages.to_string()])
        .args(["-s", &connections.to_string()])
        .args(["-l", &message_size_bytes.to_string()])
        // Fixed names: otherwise smtp-source looks up this machine's hostname.
        .args(["-M", "bench.gazette.test"])
        .args(["-f", &format!("bench@{DOMAIN}")])
        .args(["-t", &format!("sink@{DOMAIN}")])
        .arg(format!("127.0.0.1:{port}")));
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "smtp-source failed: {}",
        describe(&output)
    );
    elapsed
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// Creates a new, empty directory under the temp dir, named so that parallel tests and
/// processes never share one: `<prefix>-<pid>-<counter>-<nanoseconds>`.
pub fn unique_dir(prefix: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{prefix}-{}-{}-{nanos:09}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        match std::fs::create_dir(&path) {
            Ok(()) => {
                // Unprivileged daemons (postfix, dovecot, mail, nobody) must get through.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod temp dir");
                return path;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("create {}: {e}", path.display()),
        }
    }
}

pub fn remove_dir(path: &Path) {
    if std::env::var_os("MAILSTACK_KEEP").is_some() {
        eprintln!("MAILSTACK_KEEP: keeping {}", path.display());
        return;
    }
    // A daemon that is still exiting may write one last log line: try a few times.
    for _ in 0..20 {
        match std::fs::remove_dir_all(path) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => thread::sleep(POLL_INTERVAL),
        }
    }
    let _ = std::fs::remove_dir_all(path);
}

fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Sets a file's modification time a minute into the past.
fn backdate(path: &Path) {
    let past = SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(past))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

/// The last `bytes` bytes of a file (all of it if shorter; nothing if unreadable).
fn read_tail(path: &Path, bytes: u64) -> Vec<u8> {
    use std::io::{Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut tail = Vec::new();
    if file
        .seek(SeekFrom::Start(len.saturating_sub(bytes)))
        .is_ok()
    {
        let _ = file.read_to_end(&mut tail);
    }
    tail
}

/// Reads a daemon's pid file once it exists and holds a number (Postfix pads it).
fn wait_for_pid_file(path: &Path, timeout: Duration) -> Option<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Some(pid);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Stops a daemon master and all its children. Both Postfix's and Dovecot's masters start
/// a session of their own (`setsid`), so their pid is also their children's process group.
/// With a `grace` period, SIGTERM first lets the master shut down in order; whatever is
/// left of the group after that is killed. Only this stack's processes are touched: the
/// group is only signalled if the master was verified to lead it.
fn stop_daemon(pid: u32, grace: Duration) {
    let leads_group = process_group(pid) == Some(pid);
    if !grace.is_zero() {
        let _ = signal("TERM", &pid.to_string());
        let deadline = Instant::now() + grace;
        while is_alive(pid) && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
    }
    if leads_group {
        let _ = signal("KILL", &format!("-{pid}"));
    } else if is_alive(pid) {
        let _ = signal("KILL", &pid.to_string());
    }
}

/// Sends signal `name` to `target` (a pid, or `-PGID` for a process group). The standard
/// library cannot send signals without `unsafe`, so this asks the shell's builtin `kill`
/// (the `kill` program comes with procps, which a minimal Debian lacks).
pub fn signal(name: &str, target: &str) -> std::io::Result<Output> {
    Command::new("/bin/sh")
        .args(["-c", r#"kill -s "$1" -- "$2""#, "sh", name, target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .output()
}

/// Whether the process is there and not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_field(&stat, 0).is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_field(&stat, 2)?.parse().ok()
}

/// Field `index` of /proc/PID/stat counted from the state (field 3 in proc(5)); the
/// command name before it may contain spaces, so split after its closing parenthesis.
fn stat_field(stat: &str, index: usize) -> Option<&str> {
    stat.rsplit_once(") ")?.1.split_whitespace().nth(index)
}

/// Creates Postfix's queue and data directories with the owners and modes its
/// `postfix-files` prescribes (Postfix refuses to run with others): the queue root and
/// `pid` root-owned, the queues owned by `postfix` and private to it, `maildrop` and
/// `public` shared with the `postdrop` group for the setgid submission programs.
fn create_postfix_dirs(queue: &Path, data: &Path) {
    let (postfix_uid, _) = passwd_ids("postfix").expect("no postfix user: run .ci/install-deps");
    let postdrop_gid = group_id("postdrop").expect("no postdrop group: run .ci/install-deps");
    let mut dirs: Vec<(PathBuf, Option<u32>, Option<u32>, u32)> = vec![
        (queue.to_path_buf(), None, None, 0o755),
        (queue.join("pid"), None, None, 0o755),
        (
            queue.join("maildrop"),
            Some(postfix_uid),
            Some(postdrop_gid),
            0o730,
        ),
        (
            queue.join("public"),
            Some(postfix_uid),
            Some(postdrop_gid),
            0o710,
        ),
        (data.to_path_buf(), Some(postfix_uid), None, 0o700),
    ];
    for private in [
        "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private",
        "saved", "trace",
    ] {
        dirs.push((queue.join(private), Some(postfix_uid), None, 0o700));
    }
    for (dir, uid, gid, mode) in dirs {
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        std::os::unix::fs::chown(&dir, uid, gid)
            .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
    }
}

/// gid of a system group, from /etc/group.
fn group_id(group: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 2 && fields[0] == group {
            fields[2].parse().ok()
        } else {
            None
        }
    })
}

/// uid and gid of a system user, from /etc/passwd.
pub fn passwd_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 3 && fields[0] == user {
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        } else {
            None
        }
    })
}

pub fn is_root() -> bool {
    // The effective uid from /proc: std has no geteuid without unsafe.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Finds a program on PATH or in the sbin directories, which a test's PATH may lack.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn program(name: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        panic!("{name} not found: install the test dependencies with .ci/install-deps")
    })
}

/// Runs a command that starts a daemon and returns whether it succeeded and what it said.
/// Its output goes to the file `out`, not to pipes: the daemon inherits the descriptors,
/// so reading a pipe to its end would wait for the daemon to exit.
fn run_daemon_starter(command: &mut Command, out: &Path) -> (bool, String) {
    let file =
        std::fs::File::create(out).unwrap_or_else(|e| panic!("create {}: {e}", out.display()));
    let status = command
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone file handle"))
        .stderr(file)
        .status()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let said = std::fs::read_to_string(out).unwrap_or_default();
    (status.success(), format!("{status}: {}", said.trim_end()))
}

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"))
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end()
    )
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Reads from `stream` until `done` says the bytes so far are complete, for the raw
/// SMTP/IMAP conversations tests may want; gives up after `timeout`.
pub fn read_until(
    stream: &mut TcpStream,
    timeout: Duration,
    done: impl Fn(&[u8]) -> bool,
) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !done(&buffer) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("timed out; got {:?}", String::from_utf8_lossy(&buffer)),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed; got {:?}",
                    String::from_utf8_lossy(&buffer)
                ),
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(buffer)
}

/// A private CA (ca.pem) and a certificate for 127.0.0.1 signed by it (cert.pem, key.pem)
/// in `dir`. rustls refuses a self-signed CA certificate used as the server's own, so the
/// server gets a leaf certificate and clients trust the CA.
fn make_self_signed_cert(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create tls dir");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=gazette test CA",
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write leaf.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
}
