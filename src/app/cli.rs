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
    /// Check the settings and the section files; exits non-zero if the issue would be held.
    Check {
        /// Sections folder (default: `[content] sections_dir`).
        #[arg(long, value_name = "DIR")]
        sections: Option<PathBuf>,
    },
    /// Write the next issue as issue.html, issue.txt and issue.eml for a sample recipient.
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
    /// Compose, freeze and send one issue now; sending it again sends nothing new.
    SendNow {
        /// Issue date (default: today in `[schedule] timezone`).
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<IssueId>,
        /// Report what would happen and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the last issue's delivery progress.
    Status,
    /// Run the daemon: send each issue on schedule, until SIGTERM or SIGINT.
    Serve,
    /// Send the proof of the next issue to the editors now.
    Proof,
    /// Serve the web side alone (sign-up, confirm, unsubscribe, archive, preview,
    /// health, metrics) on `[web] bind`; `serve` runs it with everything else.
    Web,
    /// Copy the store (subscribers, consent, suppression list, issues, ledger) to FILE
    /// while gazette runs, then check the copy and say what it holds.
    Backup {
        /// The backup file to write; it must not exist yet.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Put a backup made by `gazette backup` in place of the store. Refused while any
    /// gazette process uses the store; the replaced store is kept beside it.
    Restore {
        /// The backup file to restore.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Check, before the first send, what receiving servers will think: DKIM key, SPF,
    /// DMARC, the public URL and one-click unsubscribe, the web secret, the relay, and the
    /// 2-day unsubscribe rule. Exits 1 if anything is a problem.
    Doctor {
        /// DNS server to ask (default: the system's resolver).
        #[arg(long, value_name = "IP:PORT")]
        resolver: Option<std::net::SocketAddr>,
    },
    /// Read the newsletter's mailbox: unsubscribe, count bounces, leave the rest unread.
    Inbox {
        /// Process what is in the mailbox now, then exit (else run until interrupted).
        #[arg(long)]
        once: bool,
    },
}

/// `gazette subscribers …`.
#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// Add an active subscriber (consent source "cli").
    Add {
        email: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Unsubscribe an address (it stays on the suppression list).
    Remove { email: String },
    /// Write subscribers as CSV (email,name,status,…) to stdout.
    List {
        /// Only subscribers with this status (pending, active, unsubscribed, bounced).
        #[arg(long, value_name = "STATUS")]
        status: Option<SubscriberStatus>,
    },
    /// Import a CSV file with an `email` column and an optional `name` column.
    Import {
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
    },
    /// Write every subscriber as CSV to stdout.
    Export,
}
