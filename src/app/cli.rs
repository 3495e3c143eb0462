//! Command-line arguments.

use crate::domain::IssueId;
use crate::store::SubscriberStatus;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// gazette: compose a newsletter from Markdown sections and mail it to subscribers.
#[derive(Debug, Parser)]
#[command(name = "gazette", version, about)]
pub struct Cli {
    /// Settings file.
    #[arg(
        long,
        global = true,
        default_value = "config/gazette.toml",
        value_name = "FILE"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the settings and the section files; exit non-zero if the issue would be held.
    ///
    /// Prints every problem with its file and line. Files saved a moment ago (within
    /// `content.settle_time`) are waited for, not reported missing.
    Check {
        /// Sections folder (default: `[content] sections_dir`).
        #[arg(long, value_name = "DIR")]
        sections: Option<PathBuf>,
    },
    /// Write the next issue as issue.html, issue.txt and issue.eml (the whole message as a sample recipient would get it).
    Preview {
        /// Sections folder (default: `[content] sections_dir`).
        #[arg(long, value_name = "DIR")]
        sections: Option<PathBuf>,
        /// Issue date (default: the next scheduled slot).
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<IssueId>,
        /// Folder to write the files into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Add, remove, list, import and export subscribers.
    Subscribers {
        #[command(subcommand)]
        command: SubscribersCommand,
    },
    /// Compose, freeze and send one issue now (default date: today); sending the same issue again sends nothing new.
    SendNow {
        /// Issue date (default: today in `[schedule] timezone`).
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<IssueId>,
        /// Report what would happen and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the next slot, the recent slots, and the last issue's delivery counts (queued, sent, retrying, failed, skipped, unknown) and the relay's state.
    ///
    /// Reads the store without changing it, and says so when there is none yet.
    Status,
    /// Run the daemon (scheduler, delivery worker, inbox worker and web server) until SIGTERM or SIGINT.
    Serve,
    /// Send the proof of the next issue to the editors now.
    Proof,
    /// Serve the web side alone (sign-up, confirm, unsubscribe, archive, preview, health, metrics) on web.bind until SIGTERM or SIGINT.
    ///
    /// `serve` runs it together with everything else.
    Web,
    /// Copy the store to FILE while gazette runs, then check the copy and say what it holds.
    ///
    /// Subscribers, consent records, the suppression list, issues and the ledger, as they
    /// were at one instant.
    Backup {
        /// The backup file to write; it must not exist yet.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Put a backup made by `gazette backup` in place of the store.
    ///
    /// Refused while any gazette process uses the store; the replaced store is kept
    /// beside it.
    Restore {
        /// The backup file to restore.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Move the store to another database: `gazette store copy --to postgres://…`.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Tell what receiving servers will think before the first send.
    ///
    /// Checks the DKIM key in DNS, SPF, DMARC, the public URL and one-click unsubscribe,
    /// the web secret, the relay, and the 2-day unsubscribe rule, each with its fix.
    /// Exits 1 if anything is a problem.
    Doctor {
        /// DNS server to ask (default: the system's resolver).
        #[arg(long, value_name = "IP:PORT")]
        resolver: Option<std::net::SocketAddr>,
    },
    /// Read the newsletter's mailbox: unsubscribe, count bounces, leave the rest unread.
    ///
    /// With --once, process what is there now and exit; otherwise poll every
    /// `inbox.poll_interval` until SIGTERM or SIGINT.
    Inbox {
        /// Process what is in the mailbox now, then exit (else run until interrupted).
        #[arg(long)]
        once: bool,
    },
}

impl Command {
    /// The commands that run until stopped rather than print and exit.
    pub fn is_daemon(&self) -> bool {
        matches!(self, Self::Serve | Self::Web | Self::Inbox { once: false })
    }
}

/// `gazette subscribers …`.
#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// Add an active subscriber (consent recorded as given on the command line).
    ///
    /// An address already known is left as it is: an unsubscribed or bounced one is not
    /// brought back.
    Add {
        /// The address to send to.
        email: String,
        /// The subscriber's name, as greetings and the To header show it.
        #[arg(long)]
        name: Option<String>,
    },
    /// Unsubscribe an address (it stays on the suppression list), recording the
    /// withdrawal of consent.
    ///
    /// The record says when, `cli`, and who did it, as every other way of leaving does.
    Remove {
        /// The address to unsubscribe.
        email: String,
        /// Who is doing it, for the record (default: `cli:$USER`).
        #[arg(long, value_name = "WHO")]
        by: Option<String>,
    },
    /// Make a bounced address active again, recording who did it and when.
    ///
    /// For an address whose mailbox was fixed, or whose bounces were not its fault.
    /// Refuses unsubscribed addresses: those come back only through the subscriber's own
    /// confirmed sign-up.
    Reactivate {
        /// The bounced address to make active again.
        email: String,
        /// Who is doing it, for the record (default: `cli:$USER`).
        #[arg(long, value_name = "WHO")]
        by: Option<String>,
    },
    /// Write subscribers as CSV to stdout.
    ///
    /// All of them, or those with --status. Columns email,name,status,consent_at,
    /// consent_source,consent_ip,bounce_count,created_at,updated_at,reactivated_at,
    /// reactivated_by; a cell a spreadsheet would run as a formula gets a leading '.
    List {
        /// Only subscribers with this status (pending, active, unsubscribed, bounced).
        #[arg(long, value_name = "STATUS")]
        status: Option<SubscriberStatus>,
    },
    /// Import subscribers from a CSV file with an email column (and optional name); every line of the file is accounted for.
    ///
    /// Comma-, semicolon- or tab-separated, UTF-8. New addresses become active
    /// subscribers with consent source "import:FILE". An unsubscribed or bounced address
    /// is never brought back.
    Import {
        /// The CSV file; its header row names the columns.
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
    },
    /// Write subscribers as CSV to stdout.
    ///
    /// Every subscriber, whatever the status; the columns of `list`.
    Export,
}

/// `gazette store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy every row of the store into another, empty database.
    ///
    /// The store is the one `[store] url` names. Subscribers with their consent and withdrawal records, the suppression list,
    /// issues, the ledger, sign-up requests, the schedule: every table, ids kept, so links
    /// in mail already sent keep working. The store is read as it was at one instant; the
    /// target is written in one transaction and must hold no rows. Stop the daemons first,
    /// then copy, then point `[store] url` at the target and start them again.
    Copy {
        /// The database to copy into (`postgres://user@host/db`, or `sqlite://FILE`);
        /// it is brought to this gazette's schema first.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}
