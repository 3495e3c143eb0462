//! The benchmark: how fast gazette gets an issue to everyone, and what it needs to do so.
//!
//! `cargo bench --bench gazette-bench -- [--subscribers N] [--connections C]`
//!
//! In one run, in a fresh temp folder, against Postfix's `smtp-sink` on loopback:
//!
//! 1. render cost: the 2021-09 fixture issue rendered once, then
//!    `MessageFactory::build` (fill, headers, MIME, bytes) timed over many recipients,
//!    in this process;
//! 2. `gazette subscribers import` of N rows into a fresh store (and of `--import-rows`
//!    rows into another fresh store when that is a different number), and the same
//!    `--import-rows` rows put into another fresh store by SQLite's own shell (`sqlite3`:
//!    `.import` into a temp table, then one `INSERT … SELECT` into the same schema, in one
//!    transaction, WAL and `synchronous=FULL` as gazette's), the store's baseline; then
//!    `gazette subscribers export` of each store gazette imported into, its output
//!    checked to hold every subscriber;
//! 3. the ceiling: `smtp-source` sending N messages of the same size over C connections
//!    to a fresh sink, before and after gazette (the better of the two is the ceiling);
//! 4. `gazette send-now` as a child process (the real binary, SMTP transport with
//!    `pool_size = C`, the ledger as durable as in production) sending the issue to the N
//!    subscribers through a fresh sink: time to the first and last message, messages per
//!    second, and the child's CPU time from `wait4` and its own peak RSS from GNU time
//!    (`ru_maxrss` would be at least this process's peak: see tests/it/support/peak.rs);
//! 5. the same send with DKIM on (a fresh RSA-2048 key from openssl), same N, same kind
//!    of sink, with `openssl speed rsa2048`'s signing time measured in the same run as the
//!    hardware's price of one signature; then `--dkim-pairs` − 1 more pairs of sends
//!    without and with DKIM, one after the other on fresh stores, since the machine's
//!    speed drifts between runs: the verdicts on DKIM take the median pair; a sample of
//!    signed messages is then judged by dkimpy (not gazette's code); and, in this
//!    process, what the body hash and the whole signature cost per message;
//! 6. `gazette inbox --once` over 1 000 waiting messages in a Maildir, when this build has
//!    that command;
//! 7. an outage: `send-now` with nothing listening (how soon it returns), then `serve`
//!    with the relay coming back (how soon the first and the last message go out);
//! 8. PostgreSQL: the send of step 4 with the store on PostgreSQL (a private cluster with
//!    `fsync` on, started by this run), by one `send-now` and then by two at once sharing
//!    the issue, each against a fresh sink: rates, their ratio to the ceiling and to
//!    SQLite's send, and each process's peak RSS.
//!
//! Targets are printed beside the figures; nothing here asserts on time.

#[path = "../tests/it/support/dkim.rs"]
mod dkim_judge;
#[path = "../tests/it/support/mailstack.rs"]
mod mailstack;
#[path = "../tests/it/support/peak.rs"]
mod peak;
#[path = "../tests/it/support/postgres.rs"]
mod postgres;

use clap::Parser;
use gazette::app::Context;
use gazette::domain::{HeaderText, IssueId, SubscriberEmail, TokenPurpose};
use gazette::send::MessageFactory;
use gazette::store::{DueDelivery, FrozenIssue, SubscriberStatus};
use mailstack::{SmtpSink, free_port, run_smtp_source};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The issue the fixture sections are composed as.
const ISSUE: &str = "2021-09-01";
/// Where the benchmark's subscribers live (a reserved TLD).
const DOMAIN: &str = "bench.gazette.test";

#[derive(Debug, Parser)]
#[command(about = "gazette's send, import and render benchmark")]
struct Args {
    /// Subscribers to create and send the issue to.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// SMTP connections (gazette's `smtp.pool_size`, smtp-source's `-s`).
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// Rows in the import benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    import_rows: usize,
    /// Messages built in the render benchmark.
    #[arg(long, default_value_t = 5_000)]
    render_messages: usize,
    /// smtp-source runs for the ceiling (before gazette, and after it when 2 or more);
    /// the best counts.
    #[arg(long, default_value_t = 2)]
    ceiling_runs: usize,
    /// Subscribers in the outage benchmark (send-now with the relay down, then serve
    /// until it is back).
    #[arg(long, default_value_t = 3_000)]
    outage_rows: usize,
    /// Sends without and with DKIM, one after the other, whose rates are compared: the
    /// machine's speed drifts, so the verdicts on DKIM take the median pair.
    #[arg(long, default_value_t = 3)]
    dkim_pairs: usize,
    /// Measure the send with the store on PostgreSQL (step 8); `--postgres false` skips it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    postgres: bool,
    /// Keep the temp folder (stores, configs, logs) afterwards.
    #[arg(long)]
    keep: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What a child process cost: CPU time from `wait4`, peak RSS from GNU time.
#[derive(Debug, Clone, Copy)]
struct ChildCost {
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
}

fn main() {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("gazette-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the temp folder");
    let n = args.subscribers;
    let c = args.connections;
    let mut report = Report::new(&args);
    eprintln!("gazette-bench: N = {n}, C = {c}, in {}", dir.display());

    // 1. Render cost, in this process.
    let config = write_config(&dir, "render", 25, c);
    let (render, samples) = render_cost(&config, args.render_messages);
    report.render = Some(render);
    eprintln!(
        "render: {:.1} µs per message, {} bytes",
        render.micros_per_message, render.message_bytes
    );

    // 2. Imports.
    let csv = dir.join("subscribers.csv");
    write_subscribers_csv(&csv, n);
    let send_config = write_config(&dir, "send", 25, c);
    let import_n = run_gazette(
        &send_config,
        &["subscribers", "import", path_str(&csv)],
        &dir.join("import-n.log"),
    );
    eprintln!("import of {n}: {:.2} s", import_n.wall.as_secs_f64());
    report.imports.push((n, import_n));
    report.exports.push((n, export(&dir, &send_config, n)));
    if args.import_rows != n {
        let csv = dir.join("import.csv");
        write_subscribers_csv(&csv, args.import_rows);
        let config = write_config(&dir, "import", 25, c);
        let cost = run_gazette(
            &config,
            &["subscribers", "import", path_str(&csv)],
            &dir.join("import.log"),
        );
        eprintln!(
            "import of {}: {:.2} s",
            args.import_rows,
            cost.wall.as_secs_f64()
        );
        report.imports.push((args.import_rows, cost));
        report
            .exports
            .push((args.import_rows, export(&dir, &config, args.import_rows)));
        report.import_shell = sqlite_shell_import(&dir, &csv, args.import_rows, c);
        let _ = std::fs::remove_file(&csv);
    } else {
        report.import_shell = sqlite_shell_import(&dir, &csv, n, c);
    }
    if let Some(shell) = report.import_shell {
        eprintln!(
            "sqlite3 shell, the same {} rows: {:.2} s",
            args.import_rows,
            shell.as_secs_f64()
        );
    }

    // 3. The ceiling, before gazette.
    let size = render.message_bytes;
    if args.ceiling_runs > 0 {
        report.ceiling.push(ceiling(n, c, size));
        eprintln!("smtp-source: {:.0} messages/s", rate(n, report.ceiling[0]));
    }

    // 4. gazette send-now against a fresh sink.
    let sink = SmtpSink::start_unrecorded(&[]);
    let send_config = write_config(&dir, "send", sink.port(), c);
    let send = send_now(&send_config, &sink, n, &dir.join("send-now.log"));
    eprintln!(
        "gazette: {:.0} messages/s, {} received",
        send.sending_rate(n),
        send.received
    );
    report.send = Some(send);

    // 3'. The ceiling again, after gazette: the machine is shared, so take the best.
    for _ in 1..args.ceiling_runs {
        report.ceiling.push(ceiling(n, c, size));
        let last = report.ceiling.last().copied().unwrap_or_default();
        eprintln!("smtp-source: {:.0} messages/s", rate(n, last));
    }

    // 5. The same send, DKIM-signed, and what a signature costs the hardware.
    let key = dkim_judge::rsa_key(&dir, 2048);
    let dkim = [
        ("dkim.domain", "\"example.org\"".to_owned()),
        ("dkim.selector", "\"news\"".to_owned()),
        (
            "dkim.private_key_file",
            format!("\"{}\"", key.file.display()),
        ),
    ];
    let signed = fresh_send(&dir, &csv, "send-dkim", n, c, &dkim);
    eprintln!(
        "gazette with DKIM: {:.0} messages/s, {} received",
        signed.sending_rate(n),
        signed.received
    );
    report.send_dkim = Some(signed);
    // More pairs, each a send without DKIM then one with it, on fresh stores.
    for pair in 1..args.dkim_pairs.max(1) {
        let off = fresh_send(&dir, &csv, &format!("send-pair{pair}"), n, c, &[]);
        let on = fresh_send(&dir, &csv, &format!("send-dkim-pair{pair}"), n, c, &dkim);
        eprintln!(
            "pair {}: {:.0} messages/s without DKIM, {:.0} with",
            pair + 1,
            off.sending_rate(n),
            on.sending_rate(n)
        );
        report.more_dkim_pairs.push((off, on));
    }
    report.openssl_sign = openssl_rsa2048_sign_time();
    report.dkim_cost = Some(dkim_cost(&key, &samples));
    report.dkim_sample = Some(dkim_sample(&dir, &key, c));

    // 6. The inbox, if this build has it.
    report.inbox = inbox_poll(&send_config, &dir, n.min(1000));
    drop(sink);

    // 7. An outage: send-now with nothing listening, then `serve` until the relay is back.
    report.outage = Some(outage(&dir, args.outage_rows, c));

    // 8. PostgreSQL, by one daemon and by two sharing the issue.
    if args.postgres {
        postgres::durable();
        for daemons in [1, 2] {
            let label = format!("send-pg{daemons}");
            let database = postgres::database();
            let store = [("store.url", format!("\"{}\"", database.url()))];
            let config = write_config_with(&dir, &label, 25, c, &store);
            run_gazette(
                &config,
                &["subscribers", "import", path_str(&csv)],
                &dir.join(format!("import-{label}.log")),
            );
            let sink = SmtpSink::start_unrecorded(&[]);
            let config = write_config_with(&dir, &label, sink.port(), c, &store);
            let shared = send_shared(&config, &sink, n, daemons, &dir, &label);
            eprintln!(
                "gazette on PostgreSQL, {daemons} daemon(s): {:.0} messages/s",
                shared.sending_rate(n)
            );
            report.postgres.push((daemons, shared));
        }
    }

    report.load_after = load_average();
    println!("{}", report.render());
    if args.keep {
        eprintln!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

// ---------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct RenderCost {
    micros_per_message: f64,
    fill_micros: f64,
    message_bytes: usize,
    messages: usize,
}

/// Times `MessageFactory::build` (what the worker does per message) over `messages`
/// recipients, after a warm-up, and the text+HTML fill alone. Also returns the first
/// few hundred messages, unsigned, for [`dkim_cost`].
fn render_cost(config: &Path, messages: usize) -> (RenderCost, Vec<Vec<u8>>) {
    let ctx = Context::from_config(config).expect("load the settings");
    let id = IssueId::parse(ISSUE).expect("issue id");
    let issue = gazette::compose::compose(
        &ctx.settings.content.sections_dir,
        id,
        &ctx.compose_options(),
        std::time::SystemTime::now(),
    )
    .expect("compose the fixture");
    assert!(issue.is_sendable(), "{:?}", issue.diagnostics);
    let rendered = ctx
        .renderer
        .render_issue(&ctx.settings.newsletter, &issue)
        .expect("render the fixture");
    let frozen = FrozenIssue::new(id, &rendered, Vec::new(), chrono::Utc::now());
    let factory = MessageFactory::new(ctx.settings.newsletter.clone(), ctx.tokens.clone(), None);
    let rows: Vec<DueDelivery> = (1..=messages.max(1) as i64)
        .map(|i| DueDelivery {
            issue: id,
            subscriber_id: i,
            email: SubscriberEmail::parse(&email(i as usize)).expect("address"),
            name: Some(HeaderText::parse(&name(i as usize)).expect("name")),
            subscriber_status: SubscriberStatus::Active,
            attempts: 0,
            first_attempt_at: None,
        })
        .collect();
    let mut samples = Vec::new();
    for row in rows.iter().take(DKIM_SAMPLES) {
        samples.push(factory.build(&frozen, row).expect("build").bytes);
    }
    let bytes = samples.last().map_or(0, Vec::len);
    let started = Instant::now();
    let mut total = 0usize;
    for row in &rows {
        total += factory.build(&frozen, row).expect("build").bytes.len();
    }
    let build = started.elapsed();
    let started = Instant::now();
    for row in &rows {
        let recipient = gazette::render::Recipient {
            id: row.subscriber_id,
            email: row.email.clone(),
            name: row.name.clone(),
        };
        let links = gazette::render::RecipientLinks::new(
            &ctx.settings.newsletter,
            &ctx.tokens,
            row.subscriber_id,
        );
        total += frozen.rendered.html.fill(&recipient, &links).len();
        total += frozen.rendered.text.fill(&recipient, &links).len();
    }
    let fill = started.elapsed();
    std::hint::black_box(total);
    let cost = RenderCost {
        micros_per_message: build.as_secs_f64() * 1e6 / rows.len() as f64,
        fill_micros: fill.as_secs_f64() * 1e6 / rows.len() as f64,
        message_bytes: bytes,
        messages: rows.len(),
    };
    (cost, samples)
}

/// Messages kept from the render step to time the DKIM signer on.
const DKIM_SAMPLES: usize = 300;

/// What signing costs per message, in this process, on one core: the body hash alone
/// (relaxed canonicalization and SHA-256 of the whole ~30 KB body), the whole RSA-2048
/// signature (body hash, headers, RSA), and the signature as the worker makes it, with
/// the body start every message of the issue shares hashed once.
#[derive(Debug, Clone, Copy)]
struct DkimCost {
    body_hash_micros: f64,
    sign_micros: f64,
    shared_sign_micros: f64,
    shared_bytes: usize,
    body_bytes: usize,
    messages: usize,
}

fn dkim_cost(key: &dkim_judge::Key, messages: &[Vec<u8>]) -> DkimCost {
    let pem = std::fs::read_to_string(&key.file).expect("read the DKIM key");
    let signer =
        gazette::domain::DkimSigner::rsa("example.org", "news", &pem).expect("the DKIM key");
    let n = messages.len().max(1) as f64;
    // Warm-up, then several rounds of the cheap part so the figure is not a few µs of
    // noise.
    let mut total = 0usize;
    for m in messages.iter().take(20) {
        total += gazette::domain::body_hash(m).len() + signer.sign(m, 0).len();
    }
    let rounds = 10;
    let started = Instant::now();
    for _ in 0..rounds {
        for m in messages {
            total += gazette::domain::body_hash(m).len();
        }
    }
    let body_hash = started.elapsed();
    // The two signatures are timed message by message in turn, so a change in the
    // machine's load weighs on both alike, and each goes first every other message (the
    // second one finds the message in the cache).
    let shared = gazette::domain::SharedBody::of(&messages[0], &messages[1]);
    let (mut sign, mut shared_sign) = (Duration::ZERO, Duration::ZERO);
    for (i, m) in messages.iter().enumerate() {
        for whole in [i % 2 == 0, i % 2 == 1] {
            let started = Instant::now();
            if whole {
                total += signer.sign(m, 0).len();
                sign += started.elapsed();
            } else {
                total += signer.sign_shared(m, 0, shared.as_ref()).len();
                shared_sign += started.elapsed();
            }
        }
    }
    std::hint::black_box(total);
    let body_bytes = messages
        .iter()
        .map(|m| m.len() - gazette::domain::body_start(m))
        .sum::<usize>()
        / messages.len().max(1);
    DkimCost {
        body_hash_micros: body_hash.as_secs_f64() * 1e6 / (n * rounds as f64),
        sign_micros: sign.as_secs_f64() * 1e6 / n,
        shared_sign_micros: shared_sign.as_secs_f64() * 1e6 / n,
        shared_bytes: shared.as_ref().map_or(0, |s| s.len()),
        body_bytes,
        messages: messages.len(),
    }
}

/// `smtp-source` sending `n` messages of `size` bytes over `c` connections to a fresh
/// sink.
fn ceiling(n: usize, c: usize, size: usize) -> Duration {
    let sink = SmtpSink::start_unrecorded(&[]);
    let took = run_smtp_source(sink.port(), n, c, size);
    let got = wait_for_count(&sink, n, Duration::from_secs(10));
    assert_eq!(got, n, "smtp-source: the sink counted {got} of {n}");
    took
}

#[derive(Debug, Clone, Copy)]
struct SendRun {
    cost: ChildCost,
    first: Option<Duration>,
    last: Option<Duration>,
    received: usize,
    /// The CPU time of the sink it sent to (a fresh one), to the end of the run.
    sink_cpu: Option<Duration>,
}

impl SendRun {
    /// Messages per second between the first and the last message.
    fn sending_rate(&self, n: usize) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) if last > first && n > 1 => {
                (n - 1) as f64 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// When the sink counted its first message and its `n`th, from a start.
struct SinkWatch {
    started: Instant,
    first: Option<Duration>,
    last: Option<Duration>,
}

impl SinkWatch {
    fn new(started: Instant) -> Self {
        Self {
            started,
            first: None,
            last: None,
        }
    }

    /// Reads the sink's count, noting the first and the `n`th message; the count.
    fn poll(&mut self, sink: &SmtpSink, n: usize) -> usize {
        let count = sink.received_count();
        if count > 0 && self.first.is_none() {
            self.first = Some(self.started.elapsed());
        }
        if count >= n && self.last.is_none() {
            self.last = Some(self.started.elapsed());
        }
        count
    }
}

/// A send on a store of its own: `label`'s store gets the subscribers of `csv`, then
/// [`send_now`] sends to them through a fresh sink, with `extra` settings.
fn fresh_send(
    dir: &Path,
    csv: &Path,
    label: &str,
    n: usize,
    connections: usize,
    extra: &[(&str, String)],
) -> SendRun {
    let config = write_config_with(dir, label, 25, connections, extra);
    run_gazette(
        &config,
        &["subscribers", "import", path_str(csv)],
        &dir.join(format!("import-{label}.log")),
    );
    let sink = SmtpSink::start_unrecorded(&[]);
    let config = write_config_with(dir, label, sink.port(), connections, extra);
    send_now(
        &config,
        &sink,
        n,
        &dir.join(format!("send-now-{label}.log")),
    )
}

/// Runs `gazette send-now` and watches the sink's count while it works.
fn send_now(config: &Path, sink: &SmtpSink, n: usize, log: &Path) -> SendRun {
    let child = spawn_measured(config, &["send-now", "--date", ISSUE], log);
    let started = Instant::now();
    let mut watch = SinkWatch::new(started);
    let mut poll = || watch.poll(sink, n);
    let cost = wait_measured(&child, started, Duration::from_millis(1), || {
        poll();
    });
    // The sink may count the last messages a moment after the client had its replies.
    let deadline = Instant::now() + Duration::from_secs(5);
    while poll() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let received = sink.received_count();
    let output = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        received == n,
        "gazette send-now: the sink counted {received} of {n}\n{output}"
    );
    SendRun {
        cost,
        first: watch.first,
        last: watch.last,
        received,
        sink_cpu: sink.cpu_time(),
    }
}

/// One issue sent by several `gazette send-now` processes at once on one store.
#[derive(Debug, Clone)]
struct SharedSend {
    first: Option<Duration>,
    last: Option<Duration>,
    /// Each process's cost, in the order they were started.
    costs: Vec<ChildCost>,
}

impl SharedSend {
    /// Messages per second between the first and the last message.
    fn sending_rate(&self, n: usize) -> f64 {
        SendRun {
            cost: self.costs[0],
            first: self.first,
            last: self.last,
            received: n,
            sink_cpu: None,
        }
        .sending_rate(n)
    }
}

/// Runs `daemons` `gazette send-now` processes at once on the store of `config`, as
/// several daemons share an issue, and watches the sink's count while they work.
fn send_shared(
    config: &Path,
    sink: &SmtpSink,
    n: usize,
    daemons: usize,
    dir: &Path,
    label: &str,
) -> SharedSend {
    let started = Instant::now();
    let children: Vec<Measured> = (0..daemons)
        .map(|i| {
            let log = dir.join(format!("{label}-{i}.log"));
            spawn_measured(config, &["send-now", "--date", ISSUE], &log)
        })
        .collect();
    let mut costs: Vec<Option<ChildCost>> = vec![None; daemons];
    let mut watch = SinkWatch::new(started);
    let mut poll = || watch.poll(sink, n);
    while costs.iter().any(Option::is_none) {
        poll();
        for (child, cost) in children.iter().zip(costs.iter_mut()) {
            if cost.is_none() {
                *cost = try_reap(child, started);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while poll() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let received = sink.received_count();
    assert!(
        received == n,
        "{daemons} send-now on one store: the sink counted {received} of {n}"
    );
    SharedSend {
        first: watch.first,
        last: watch.last,
        costs: costs.into_iter().flatten().collect(),
    }
}

/// `openssl speed rsa2048`'s time for one RSA-2048 signature on this machine, one core.
fn openssl_rsa2048_sign_time() -> Option<Duration> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "3", "rsa2048"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    // "rsa 2048 bits 0.000731s 0.000021s   1368.0  47619.0"
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("rsa 2048 bits"))?;
    let sign = line.split_whitespace().nth(3)?.strip_suffix('s')?;
    sign.parse::<f64>().ok().map(Duration::from_secs_f64)
}

/// Sends the issue to a few subscribers through a sink that keeps every message, and has
/// dkimpy judge each signature: (verified, messages).
fn dkim_sample(dir: &Path, key: &dkim_judge::Key, c: usize) -> (usize, usize) {
    const SAMPLE: usize = 20;
    let sink = SmtpSink::start(&[]);
    let dkim = [
        ("dkim.domain", "\"example.org\"".to_owned()),
        ("dkim.selector", "\"news\"".to_owned()),
        (
            "dkim.private_key_file",
            format!("\"{}\"", key.file.display()),
        ),
    ];
    let config = write_config_with(dir, "dkim-sample", sink.port(), c, &dkim);
    let csv = dir.join("sample.csv");
    write_subscribers_csv(&csv, SAMPLE);
    run_gazette(
        &config,
        &["subscribers", "import", path_str(&csv)],
        &dir.join("sample.log"),
    );
    run_gazette(
        &config,
        &["send-now", "--date", ISSUE],
        &dir.join("sample-send.log"),
    );
    let received = sink.wait_for_received(SAMPLE, Duration::from_secs(30));
    let records = std::collections::BTreeMap::from([(
        "news._domainkey.example.org".to_owned(),
        key.record.clone(),
    )]);
    let verified = received
        .iter()
        // The sink drops every CR; the message went out with CRLF line ends.
        .map(|m| String::from_utf8_lossy(&m.content).replace('\n', "\r\n"))
        .filter(|m| dkim_judge::verify(m.as_bytes(), &records) == [true])
        .count();
    (verified, received.len())
}

/// What an outage cost: send-now's return with the relay down, and `serve`'s way back.
#[derive(Debug, Clone, Copy)]
struct Outage {
    rows: usize,
    /// `send-now` with nothing listening: start to exit (exit code 75 expected).
    send_now_return: Duration,
    /// How long the relay stayed down after `serve` started.
    down_for: Duration,
    /// From the relay's return to its first message, and to the last.
    to_first: Option<Duration>,
    to_last: Option<Duration>,
}

/// `send-now` for `rows` subscribers with nothing listening, then `serve` on the same
/// store while the relay stays down for a while, then the relay comes back on its port.
fn outage(dir: &Path, rows: usize, connections: usize) -> Outage {
    let port = free_port();
    let config = write_config_with(
        dir,
        "outage",
        port,
        connections,
        &[
            // No proof to the editors through the relay meanwhile: only the issue counts.
            ("schedule.proof_lead", "\"0s\"".into()),
            ("web.bind", "\"127.0.0.1:0\"".into()),
        ],
    );
    let csv = dir.join("outage.csv");
    write_subscribers_csv(&csv, rows);
    run_gazette(
        &config,
        &["subscribers", "import", path_str(&csv)],
        &dir.join("outage-import.log"),
    );
    let started = Instant::now();
    let status = gazette_command(
        &config,
        &["send-now", "--date", ISSUE],
        &dir.join("outage-send-now.log"),
    )
    .status()
    .expect("run gazette send-now");
    let send_now_return = started.elapsed();
    assert_eq!(
        status.code(),
        Some(75),
        "send-now with the relay down should exit 75 (see outage-send-now.log, --keep)"
    );
    eprintln!(
        "outage: send-now returned in {:.2} s with {rows} rows queued",
        send_now_return.as_secs_f64()
    );

    let mut serve = gazette_command(&config, &["serve"], &dir.join("outage-serve.log"))
        .env("GAZETTE_LOG", "info")
        .spawn()
        .expect("start gazette serve");
    // Down for 15 s: serve tries at once, after 10 s, and is in its 20 s back-off when
    // the relay returns.
    let down_for = Duration::from_secs(15);
    std::thread::sleep(down_for);
    let sink = SmtpSink::start_unrecorded_on(port, &[]);
    let back = Instant::now();
    let (mut to_first, mut to_last) = (None, None);
    let deadline = back + Duration::from_secs(600);
    while to_last.is_none() && Instant::now() < deadline {
        let count = sink.received_count();
        if count > 0 && to_first.is_none() {
            to_first = Some(back.elapsed());
        }
        if count >= rows {
            to_last = Some(back.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
    eprintln!(
        "outage: relay back after {:.0} s; first message {:?} later, all {rows} {:?} later",
        down_for.as_secs_f64(),
        to_first,
        to_last
    );
    Outage {
        rows,
        send_now_return,
        down_for,
        to_first,
        to_last,
    }
}

/// `gazette inbox --once` over `messages` replies in a Maildir, if the command exists.
fn inbox_poll(config: &Path, dir: &Path, messages: usize) -> Option<(usize, ChildCost)> {
    let help = gazette_command(config, &["inbox", "--help"], &dir.join("inbox-help.log"))
        .status()
        .expect("run gazette");
    if !help.success() {
        eprintln!("inbox: this build has no `gazette inbox`; skipped");
        return None;
    }
    let ctx = Context::from_config(config).expect("load the settings");
    let maildir = &ctx.settings.inbox.maildir;
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("create the Maildir");
    }
    let newsletter = &ctx.settings.newsletter;
    let issue = IssueId::parse(ISSUE).expect("issue id");
    for i in 1..=messages {
        // Subscriber ids follow the import's row order, from 1.
        let token = ctx.tokens.sign(TokenPurpose::Unsubscribe, i as i64);
        let in_reply_to = gazette::render::message_id(newsletter, issue, token.as_str());
        // Every other reply asks to leave; the rest are ordinary replies.
        let body = if i % 2 == 0 {
            "UNSUBSCRIBE\r\n".to_owned()
        } else {
            "Thank you for this month's issue.\r\n".to_owned()
        };
        let message = format!(
            "From: {name} <{email}>\r\nTo: {to}\r\nSubject: Re: the newsletter\r\n\
             Date: Wed, 1 Sep 2021 12:00:00 +0000\r\nMessage-ID: <reply.{i}@{DOMAIN}>\r\n\
             In-Reply-To: {in_reply_to}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}",
            name = name(i),
            email = email(i),
            to = newsletter.reply_to.email,
        );
        let file = maildir.join("new").join(format!("{i}.bench:2,"));
        std::fs::write(file, message).expect("write a reply");
    }
    let child = spawn_measured(config, &["inbox", "--once"], &dir.join("inbox.log"));
    let cost = wait_measured(&child, Instant::now(), Duration::from_millis(1), || {});
    Some((messages, cost))
}

// ---------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------

fn gazette_command(config: &Path, args: &[&str], log: &Path) -> Command {
    with_gazette_args(
        Command::new(env!("CARGO_BIN_EXE_gazette")),
        config,
        args,
        log,
    )
}

/// `command` (gazette, or a program that runs it) given gazette's `args` and `log`.
fn with_gazette_args(mut command: Command, config: &Path, args: &[&str], log: &Path) -> Command {
    let log = std::fs::File::create(log).expect("create a log file");
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log);
    command
}

/// Runs gazette to the end and returns what it cost; panics with its output if it failed.
fn run_gazette(config: &Path, args: &[&str], log: &Path) -> ChildCost {
    let child = spawn_measured(config, args, log);
    wait_measured(&child, Instant::now(), Duration::from_millis(5), || {})
}

/// A gazette process whose cost is measured: it runs under GNU time (see
/// `tests/it/support/peak.rs`), which writes its own peak RSS to `report`.
struct Measured {
    /// GNU time's pid; its CPU time from wait4 includes gazette's, which it reaped.
    pid: libc::pid_t,
    report: PathBuf,
}

/// Starts gazette with `args` and `log`, measured.
// Reaped with wait4 (try_reap), not Child::wait, which cannot tell the resources used.
#[expect(clippy::zombie_processes, reason = "reaped with wait4 in try_reap")]
fn spawn_measured(config: &Path, args: &[&str], log: &Path) -> Measured {
    let stem = log
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a log file name");
    let report = peak::report_file(log.parent().expect("a log folder"), stem);
    let command = peak::command(env!("CARGO_BIN_EXE_gazette"), &report);
    let child = with_gazette_args(command, config, args, log)
        .spawn()
        .expect("start gazette");
    Measured {
        pid: child.id() as libc::pid_t,
        report,
    }
}

/// Waits for `child` to exit, calling `between` every `interval` meanwhile, and returns
/// what it cost (wall time since `started`, CPU time, peak RSS).
fn wait_measured(
    child: &Measured,
    started: Instant,
    interval: Duration,
    mut between: impl FnMut(),
) -> ChildCost {
    loop {
        between();
        if let Some(cost) = try_reap(child, started) {
            return cost;
        }
        std::thread::sleep(interval);
    }
}

/// Reaps `child` if it has exited: its wall time since `started`, CPU time and peak RSS.
/// Panics, with its log, if it failed.
fn try_reap(child: &Measured, started: Instant) -> Option<ChildCost> {
    let pid = child.pid;
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it in for the child it reaps.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid for writes; `pid` is our own child, and
    // nothing else in this process waits for it (its `Child` is never waited on).
    let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
    if reaped == 0 {
        return None;
    }
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let wall = started.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "gazette (under GNU time, pid {pid}) failed with status {status:#x}; see the logs \
         in the temp folder (run with --keep)"
    );
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Some(ChildCost {
        wall,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        // Not usage.ru_maxrss: that would be at least this process's own peak.
        peak_rss_kib: peak::read_kib(&child.report),
    })
}

fn wait_for_count(sink: &SmtpSink, n: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let count = sink.received_count();
        if count >= n || Instant::now() >= deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

fn email(i: usize) -> String {
    format!("subscriber{i}@{DOMAIN}")
}

fn name(i: usize) -> String {
    format!("Subscriber {i}")
}

/// `gazette subscribers export` of the store of `config`, which holds the `rows`
/// subscribers the benchmark imported: what it cost, once its output is checked to have
/// a row for each of them.
fn export(dir: &Path, config: &Path, rows: usize) -> ChildCost {
    let out = dir.join("export.log");
    let cost = run_gazette(config, &["subscribers", "export"], &out);
    let file = std::io::BufReader::new(std::fs::File::open(&out).expect("the export's output"));
    let exported = std::io::BufRead::split(file, b'\n')
        .filter(|line| line.as_ref().is_ok_and(|l| l.starts_with(b"subscriber")))
        .count();
    assert_eq!(
        exported,
        rows,
        "subscribers exported (see {})",
        out.display()
    );
    let _ = std::fs::remove_file(&out);
    eprintln!("export of {rows}: {:.2} s", cost.wall.as_secs_f64());
    cost
}

/// The import's baseline: SQLite's own shell putting the `rows` rows of `csv` into a
/// fresh store (made by gazette, so the schema is the same) in one transaction, with
/// gazette's durability (WAL, `synchronous=FULL`); its wall time, up to the shell's exit
/// (the checkpoint included, as in gazette's). None without `sqlite3` on the PATH.
fn sqlite_shell_import(dir: &Path, csv: &Path, rows: usize, c: usize) -> Option<Duration> {
    let config = write_config(dir, "shell", 25, c);
    let empty = dir.join("empty.csv");
    std::fs::write(&empty, "email,name\n").expect("write the empty CSV");
    run_gazette(
        &config,
        &["subscribers", "import", path_str(&empty)],
        &dir.join("shell-create.log"),
    );
    let db = dir.join("shell.db");
    let script = format!(
        "PRAGMA journal_mode = WAL;\n\
         PRAGMA synchronous = FULL;\n\
         PRAGMA foreign_keys = ON;\n\
         BEGIN IMMEDIATE;\n\
         CREATE TEMP TABLE import_rows (email TEXT, name TEXT);\n\
         .import --csv --skip 1 {} import_rows\n\
         INSERT INTO subscribers (email, name, status, consent_at, consent_source, \
         consent_ip, bounce_count, created_at, updated_at) \
         SELECT email, name, 'active', 1764590000, 'import:import.csv', NULL, 0, \
         1764590000, 1764590000 FROM import_rows ORDER BY rowid;\n\
         COMMIT;\n",
        path_str(csv)
    );
    let started = Instant::now();
    let mut shell = match Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(shell) => shell,
        Err(e) => {
            eprintln!("sqlite3 shell: {e}; its baseline is left out (apt-get install sqlite3)");
            return None;
        }
    };
    shell
        .stdin
        .take()
        .expect("the shell's stdin")
        .write_all(script.as_bytes())
        .expect("write to sqlite3");
    let out = shell.wait_with_output().expect("run sqlite3");
    let wall = started.elapsed();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "sqlite3 shell import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT count(*) FROM subscribers")
        .output()
        .expect("run sqlite3");
    let count = String::from_utf8_lossy(&count.stdout).trim().to_owned();
    assert_eq!(count, rows.to_string(), "rows the sqlite3 shell imported");
    let _ = std::fs::remove_file(&db);
    Some(wall)
}

/// An `email,name` CSV of `n` subscribers.
fn write_subscribers_csv(path: &Path, n: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create the CSV"));
    writeln!(out, "email,name").expect("write the CSV");
    for i in 1..=n {
        writeln!(out, "{},{}", email(i), name(i)).expect("write the CSV");
    }
    out.flush().expect("write the CSV");
}

/// Copies the fixture sections, dated an hour back so none looks half-written.
fn copy_sections(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the sections folder");
    for entry in std::fs::read_dir(from).expect("read the fixture") {
        let entry = entry.expect("read the fixture");
        let dest = to.join(entry.file_name());
        std::fs::copy(entry.path(), &dest).expect("copy a section");
        let past = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&dest)
            .and_then(|f| f.set_modified(past))
            .expect("date a section");
    }
}

/// `config/gazette.toml` with its paths in `dir`, the store `<store>.db`, and SMTP to
/// 127.0.0.1:`port` over `connections` connections without TLS.
fn write_config(dir: &Path, store: &str, port: u16, connections: usize) -> PathBuf {
    write_config_with(dir, store, port, connections, &[])
}

/// [`write_config`] plus `extra` keys.
fn write_config_with(
    dir: &Path,
    store: &str,
    port: u16,
    connections: usize,
    extra: &[(&str, String)],
) -> PathBuf {
    let base = std::fs::read_to_string(repo_root().join("config/gazette.toml"))
        .expect("read config/gazette.toml");
    let mut doc: toml::Table = toml::from_str(&base).expect("parse config/gazette.toml");
    let d = dir.display();
    // Each store gets its own sections: a send archives the ones it was made from.
    copy_sections(
        &repo_root().join("tests/fixtures/2021-09"),
        &dir.join(format!("sections-{store}")),
    );
    let overrides = [
        ("content.sections_dir", format!("\"{d}/sections-{store}\"")),
        ("content.archive_dir", format!("\"{d}/archive\"")),
        ("store.url", format!("\"sqlite://{d}/{store}.db\"")),
        ("transport.kind", "\"smtp\"".into()),
        ("transport.outbox_dir", format!("\"{d}/outbox\"")),
        ("smtp.host", "\"127.0.0.1\"".into()),
        ("smtp.port", port.to_string()),
        ("smtp.tls", "\"none\"".into()),
        ("smtp.pool_size", connections.to_string()),
        ("smtp.timeout", "\"30s\"".into()),
        (
            "newsletter.public_url",
            "\"https://news.example.org\"".into(),
        ),
        ("inbox.kind", "\"maildir\"".into()),
        ("inbox.maildir", format!("\"{d}/inbox\"")),
        (
            "web.secret",
            "\"9f2c4e7a1b3d5f60718293a4b5c6d7e8f9012345\"".into(),
        ),
    ];
    for (key, value) in overrides.into_iter().chain(extra.iter().cloned()) {
        let (table, field) = key.split_once('.').expect("section.key");
        let parsed: toml::Table = toml::from_str(&format!("v = {value}")).expect("a value");
        doc.entry(table.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a table")
            .insert(field.to_owned(), parsed["v"].clone());
    }
    let path = dir.join(format!("{store}.toml"));
    std::fs::write(&path, toml::to_string(&doc).expect("write TOML")).expect("write config");
    path
}

// ---------------------------------------------------------------------------------------
// The machine and the report
// ---------------------------------------------------------------------------------------

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({model}), {mem_gib:.1} GiB RAM")
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64().max(1e-9)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The middle value (the mean of the two middle ones for an even count); 0 for none.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

struct Report {
    subscribers: usize,
    connections: usize,
    command: String,
    machine: String,
    load_before: String,
    load_after: String,
    render: Option<RenderCost>,
    imports: Vec<(usize, ChildCost)>,
    /// SQLite's shell putting the last import's rows into a fresh store.
    import_shell: Option<Duration>,
    /// `subscribers export` of each imported store.
    exports: Vec<(usize, ChildCost)>,
    ceiling: Vec<Duration>,
    send: Option<SendRun>,
    send_dkim: Option<SendRun>,
    /// Sends without and with DKIM after the first two, in the order they ran.
    more_dkim_pairs: Vec<(SendRun, SendRun)>,
    openssl_sign: Option<Duration>,
    dkim_cost: Option<DkimCost>,
    dkim_sample: Option<(usize, usize)>,
    inbox: Option<(usize, ChildCost)>,
    outage: Option<Outage>,
    /// Daemons, and how they sent, with the store on PostgreSQL.
    postgres: Vec<(usize, SharedSend)>,
}

impl Report {
    fn new(args: &Args) -> Self {
        Self {
            subscribers: args.subscribers,
            connections: args.connections,
            command: std::iter::once("cargo bench --bench gazette-bench --".to_owned())
                .chain(std::env::args().skip(1).filter(|a| a != "--bench"))
                .collect::<Vec<_>>()
                .join(" "),
            machine: machine(),
            load_before: load_average(),
            load_after: String::new(),
            render: None,
            imports: Vec::new(),
            import_shell: None,
            exports: Vec::new(),
            ceiling: Vec::new(),
            send: None,
            send_dkim: None,
            more_dkim_pairs: Vec::new(),
            openssl_sign: None,
            dkim_cost: None,
            dkim_sample: None,
            inbox: None,
            outage: None,
            postgres: Vec::new(),
        }
    }

    fn render(&self) -> String {
        let (n, c) = (self.subscribers, self.connections);
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(w, "`{}`", self.command);
        let _ = writeln!(w);
        let _ = writeln!(w, "- machine: {}", self.machine);
        let _ = writeln!(
            w,
            "- load average (1, 5, 15 min): {} before, {} after",
            self.load_before, self.load_after
        );
        let _ = writeln!(w);
        let _ = writeln!(w, "| figure | value | target |");
        let _ = writeln!(w, "| --- | --- | --- |");
        let best = self.ceiling.iter().copied().min().unwrap_or_default();
        let ceiling_rate = rate(n, best);
        if let Some(send) = &self.send {
            let sending = send.sending_rate(n);
            let overall = rate(n, send.cost.wall);
            let ratio = sending / ceiling_rate.max(1e-9);
            let _ = writeln!(
                w,
                "| send rate, first to last message ({n} messages, {c} connections) | {sending:.0} messages/s | |"
            );
            let _ = writeln!(
                w,
                "| smtp-source ceiling (same N, C, size; best of {} run(s): {}) | {ceiling_rate:.0} messages/s | |",
                self.ceiling.len(),
                self.ceiling
                    .iter()
                    .map(|d| format!("{:.0}/s", rate(n, *d)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let _ = writeln!(
                w,
                "| gazette / ceiling | {:.1} % | ≥ 90 %: {} |",
                ratio * 100.0,
                verdict(ratio >= 0.9)
            );
            let _ = writeln!(
                w,
                "| send-now overall (start to exit, freeze and snapshot included) | {overall:.0} messages/s, {:.2} s | |",
                send.cost.wall.as_secs_f64()
            );
            let secs = |d: Option<Duration>| {
                d.map_or("never".into(), |d| format!("{:.3} s", d.as_secs_f64()))
            };
            let _ = writeln!(
                w,
                "| time to first message / last message | {} / {} | |",
                secs(send.first),
                secs(send.last)
            );
            let rss = mib(send.cost.peak_rss_kib);
            // 40 MB, decimal, as the target was set; flat: compare runs at other N.
            let rss_mb = send.cost.peak_rss_kib as f64 * 1024.0 / 1e6;
            let _ = writeln!(
                w,
                "| peak RSS of gazette send-now | {rss:.1} MiB ({rss_mb:.1} MB) | < 40 MB at every N: {} |",
                verdict(rss_mb < 40.0)
            );
            let _ = writeln!(
                w,
                "| CPU of gazette send-now | {:.2} s in all, {:.3} s per 1 000 messages | |",
                send.cost.cpu.as_secs_f64(),
                send.cost.cpu.as_secs_f64() * 1000.0 / n.max(1) as f64
            );
        }
        if let (Some(off), Some(on)) = (&self.send, &self.send_dkim) {
            let pairs: Vec<(&SendRun, &SendRun)> = std::iter::once((off, on))
                .chain(self.more_dkim_pairs.iter().map(|(off, on)| (off, on)))
                .collect();
            let per = |run: &SendRun| run.cost.cpu.as_secs_f64() * 1000.0 / n.max(1) as f64;
            let ratios: Vec<f64> = pairs
                .iter()
                .map(|(off, on)| on.sending_rate(n) / off.sending_rate(n).max(1e-9))
                .collect();
            let ratio = median(&ratios);
            let listed = |values: &[f64], scale: f64, digits: usize| {
                values
                    .iter()
                    .map(|v| format!("{:.digits$}", v * scale))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                w,
                "| send rate with DKIM, RSA-2048 (same N, C, sink), against the rate without in each of {} pairs run one after the other | {:.0} messages/s in the first; {} %: median {:.1} % | ≥ 50 %: {} |",
                pairs.len(),
                on.sending_rate(n),
                listed(&ratios, 100.0, 1),
                ratio * 100.0,
                verdict(ratio >= 0.5)
            );
            let added = per(on) - per(off);
            let added_per_pair: Vec<f64> =
                pairs.iter().map(|(off, on)| per(on) - per(off)).collect();
            let _ = writeln!(
                w,
                "| CPU per message without / with DKIM; added by signing (first pair) | {:.3} ms / {:.3} ms; {added:.3} ms | |",
                per(off),
                per(on)
            );
            let sink_per = |run: &SendRun| {
                run.sink_cpu
                    .map(|cpu| cpu.as_secs_f64() * 1000.0 / n.max(1) as f64)
            };
            if let (Some(sink_off), Some(sink_on)) = (sink_per(off), sink_per(on)) {
                let _ = writeln!(
                    w,
                    "| CPU per message of the sink (`smtp-sink`, one process) without / with DKIM (first pair) | {sink_off:.3} ms / {sink_on:.3} ms | |"
                );
            }
            match self.openssl_sign {
                Some(sign) => {
                    let price = sign.as_secs_f64() * 1000.0;
                    let ratios: Vec<f64> = added_per_pair.iter().map(|a| a / price).collect();
                    let ratio = median(&ratios);
                    let _ = writeln!(
                        w,
                        "| `openssl speed rsa2048`, one signature (same run) | {price:.3} ms | |"
                    );
                    let _ = writeln!(
                        w,
                        "| DKIM's CPU per message / openssl's signature, in each pair | {} ×: median {ratio:.2} × | ≤ 1.3 ×: {} |",
                        listed(&ratios, 1.0, 2),
                        verdict(ratio <= 1.3)
                    );
                    // The signed send at best: signing adds exactly openssl's price,
                    // the rest costs what it does unsigned, and every core is busy
                    // with gazette and the sink and nothing else.
                    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
                    let bounds: Option<Vec<f64>> = pairs
                        .iter()
                        .map(|(off, _)| {
                            let best = cores as f64 * 1000.0 / (price + per(off) + sink_per(off)?);
                            Some(best / off.sending_rate(n).max(1e-9))
                        })
                        .collect();
                    if let Some(bounds) = bounds {
                        let _ = writeln!(
                            w,
                            "| the best signed rate {cores} cores allow: {cores} ÷ (openssl's signature + CPU per message without DKIM + the sink's), against the rate without, in each pair | {} %: median {:.0} % | |",
                            listed(&bounds, 100.0, 0),
                            median(&bounds) * 100.0
                        );
                    }
                }
                None => {
                    let _ = writeln!(w, "| `openssl speed rsa2048` | could not be run | |");
                }
            }
            if let Some(cost) = self.dkim_cost {
                let share = cost.body_hash_micros / cost.sign_micros.max(1e-9);
                let _ = writeln!(
                    w,
                    "| in-process, one core, mean of {} messages: body hash / whole RSA-2048 signature | {:.1} µs / {:.0} µs ({:.1} % of the signature is the body hash) | |",
                    cost.messages,
                    cost.body_hash_micros,
                    cost.sign_micros,
                    share * 100.0
                );
                let _ = writeln!(
                    w,
                    "| in-process, one core: the signature as sent, the body start every message shares ({} of {} body bytes) hashed once per issue | {:.0} µs ({:.0} µs less than the whole) | |",
                    cost.shared_bytes,
                    cost.body_bytes,
                    cost.shared_sign_micros,
                    cost.sign_micros - cost.shared_sign_micros
                );
            }
            if let Some((verified, sent)) = self.dkim_sample {
                let _ = writeln!(
                    w,
                    "| sample of signed messages verified by dkimpy | {verified} of {sent} | all: {} |",
                    verdict(verified == sent && sent > 0)
                );
            }
        }
        let sqlite_rate = self.send.as_ref().map_or(0.0, |s| s.sending_rate(n));
        for (daemons, shared) in &self.postgres {
            let sending = shared.sending_rate(n);
            let peak = shared
                .costs
                .iter()
                .map(|c| c.peak_rss_kib as f64 * 1024.0 / 1e6)
                .fold(0.0, f64::max);
            let _ = writeln!(
                w,
                "| PostgreSQL store, {daemons} send-now at once (same N, C, sink; fsync on) | {sending:.0} messages/s: {:.0} % of the ceiling, {:.2} × SQLite's send; peak RSS per daemon {peak:.1} MB | < 64 MB per daemon: {} |",
                sending / ceiling_rate.max(1e-9) * 100.0,
                sending / sqlite_rate.max(1e-9),
                verdict(peak < 64.0)
            );
        }
        for (rows, cost) in &self.imports {
            let target = if *rows == 1_000_000 {
                format!(
                    "< 5 s and < 64 MiB: {}",
                    verdict(cost.wall < Duration::from_secs(5) && mib(cost.peak_rss_kib) < 64.0)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                w,
                "| subscribers import of {rows} rows (fresh store) | {:.2} s, peak RSS {:.1} MiB | {target} |",
                cost.wall.as_secs_f64(),
                mib(cost.peak_rss_kib)
            );
        }
        if let (Some(shell), Some((rows, cost))) = (self.import_shell, self.imports.last()) {
            let _ = writeln!(
                w,
                "| the same {rows} rows by SQLite's shell (`sqlite3`: `.import`, one `INSERT … SELECT` into the same schema; one transaction, WAL, synchronous=FULL) | {:.2} s; gazette's import takes {:.2} × its time | |",
                shell.as_secs_f64(),
                cost.wall.as_secs_f64() / shell.as_secs_f64().max(1e-9)
            );
        }
        for (rows, cost) in &self.exports {
            let _ = writeln!(
                w,
                "| subscribers export of {rows} rows (to a file) | {:.2} s, peak RSS {:.1} MiB | |",
                cost.wall.as_secs_f64(),
                mib(cost.peak_rss_kib)
            );
        }
        if let Some(r) = &self.render {
            let _ = writeln!(
                w,
                "| render cost per message (MessageFactory::build, mean of {}) | {:.1} µs ({:.1} µs of it filling text and HTML); {} bytes per message | < 100 µs: {} |",
                r.messages,
                r.micros_per_message,
                r.fill_micros,
                r.message_bytes,
                verdict(r.micros_per_message < 100.0)
            );
        }
        if let Some(o) = &self.outage {
            let secs = |d: Option<Duration>| {
                d.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64()))
            };
            let _ = writeln!(
                w,
                "| send-now with nothing listening ({} rows) | returned in {:.2} s, exit 75 | < 20 s: {} |",
                o.rows,
                o.send_now_return.as_secs_f64(),
                verdict(o.send_now_return < Duration::from_secs(20))
            );
            let rate_after = match (o.to_first, o.to_last) {
                (Some(first), Some(last)) if last > first && o.rows > 1 => {
                    format!(
                        ", {:.0} messages/s from first to last",
                        (o.rows - 1) as f64 / (last - first).as_secs_f64()
                    )
                }
                _ => String::new(),
            };
            let _ = writeln!(
                w,
                "| serve, relay back after {:.0} s down: to the first message / to all {} | {} / {}{rate_after} | first within one back-off (≤ 20 s here): {} |",
                o.down_for.as_secs_f64(),
                o.rows,
                secs(o.to_first),
                secs(o.to_last),
                verdict(o.to_first.is_some_and(|d| d <= Duration::from_secs(20)))
            );
        }
        match &self.inbox {
            Some((messages, cost)) => {
                let _ = writeln!(
                    w,
                    "| inbox --once over {messages} waiting messages | {:.2} s, peak RSS {:.1} MiB | |",
                    cost.wall.as_secs_f64(),
                    mib(cost.peak_rss_kib)
                );
            }
            None => {
                let _ = writeln!(
                    w,
                    "| inbox --once over 1 000 waiting messages | not measured: this build has no `gazette inbox` | |"
                );
            }
        }
        out
    }
}
