//! `gazette subscribers add|remove|reactivate|list|import|export`.
//!
//! Raw input (an address, a name, a CSV row) becomes a [`SubscriberEmail`] and a
//! [`HeaderText`] here, at the edge; what cannot is reported with the reason.

use super::import::import_file;
use super::{Context, SubscribersCommand};
use crate::domain::{HeaderText, SubscriberEmail};
use crate::store::{
    Consent, NewSubscriber, ReactivateOutcome, Store, Subscriber, SubscriberStatus, Withdrawal,
};
use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::TryStreamExt;
use std::borrow::Cow;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Runs one `subscribers` command.
pub async fn run(ctx: &Context, command: SubscribersCommand) -> anyhow::Result<ExitCode> {
    // Listing only looks: it neither creates a store nor writes to one.
    let listing = match &command {
        SubscribersCommand::List { status } => Some(*status),
        SubscribersCommand::Export => Some(None),
        _ => None,
    };
    if let Some(status) = listing {
        let store = ctx.open_store_read_only().await?;
        // Each row is written as the store hands it over: a list of any length takes
        // the same memory.
        let mut csv = SubscriberCsv::new(std::io::stdout())?;
        if let Some(store) = &store {
            let mut rows = std::pin::pin!(store.subscriber_stream(status));
            while let Some(subscriber) = rows.try_next().await? {
                csv.write(&subscriber)?;
            }
        }
        csv.finish()?;
        if let Some(store) = store {
            store.close().await;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = ctx.open_store().await?;
    let now = Utc::now();
    let code = match command {
        SubscribersCommand::Add { email, name } => {
            add(&store, &email, name.as_deref(), now).await?
        }
        SubscribersCommand::Remove { email, by } => {
            remove(&store, &email, by.as_deref(), now).await?
        }
        SubscribersCommand::List { .. } | SubscribersCommand::Export => {
            unreachable!("listing returned above, without opening the store to write")
        }
        SubscribersCommand::Import { file } => import(&store, &file, now).await?,
        SubscribersCommand::Reactivate { email, by } => {
            reactivate(&store, &email, by.as_deref(), now).await?
        }
    };
    store.close().await;
    Ok(code)
}

fn parse_email(raw: &str) -> anyhow::Result<SubscriberEmail> {
    SubscriberEmail::parse(raw).with_context(|| format!("'{raw}' is not a usable address"))
}

fn parse_name(raw: Option<&str>) -> anyhow::Result<Option<HeaderText>> {
    match raw.map(str::trim).filter(|n| !n.is_empty()) {
        None => Ok(None),
        Some(n) => Ok(Some(
            HeaderText::parse(n).map_err(|e| anyhow::anyhow!("the name {e}"))?,
        )),
    }
}

/// `subscribers add`: a new active subscriber. A known address is left as it is: an
/// unsubscribed or bounced one is not brought back from the command line either.
async fn add(
    store: &Store,
    email: &str,
    name: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<ExitCode> {
    let new = NewSubscriber {
        email: parse_email(email)?,
        name: parse_name(name)?,
        status: SubscriberStatus::Active,
        consent: Consent {
            at: Some(now),
            source: Some("cli".into()),
            ip: None,
        },
    };
    let (subscriber, added) = store.add_subscriber(&new, now).await?;
    if added {
        println!("added {} (id {})", subscriber.email, subscriber.id);
        Ok(ExitCode::SUCCESS)
    } else if subscriber.status.is_suppressed() {
        println!(
            "{} is {} and stays suppressed; not added",
            subscriber.email, subscriber.status
        );
        Ok(ExitCode::FAILURE)
    } else {
        println!(
            "{} is already a subscriber ({})",
            subscriber.email, subscriber.status
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// `subscribers remove`: withdraws the subscriber's consent, recording who did it; the
/// address stays on the suppression list.
async fn remove(
    store: &Store,
    email: &str,
    by: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<ExitCode> {
    let email = parse_email(email)?;
    let how = Withdrawal::CommandLine { by: operator(by)? };
    let Some(subscriber) = store.subscriber_by_email(&email).await? else {
        bail!("{email} is not a subscriber");
    };
    let Some(before) = store.unsubscribe(subscriber.id, &how, now).await? else {
        bail!("{email} is not a subscriber");
    };
    if before == SubscriberStatus::Unsubscribed {
        println!("{email} was already unsubscribed");
    } else {
        println!("unsubscribed {email} (was {before})");
    }
    Ok(ExitCode::SUCCESS)
}

/// `subscribers import`: prints the lines that need a look as they are decided (the
/// routine ones are counted), then the totals; exits 2 if any line was invalid.
async fn import(store: &Store, file: &Path, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failed = None;
    let report = import_file(store, file, now, |line| {
        if line.is_notable() && failed.is_none() {
            failed = writeln!(out, "{line}").err();
        }
    })
    .await?;
    if let Some(e) = failed {
        return Err(e).context("writing the import report");
    }
    if report.delimiter != super::import::Delimiter::Comma {
        writeln!(out, "{}: read as {}", file.display(), report.delimiter)?;
    }
    writeln!(out, "{}", report.summary())?;
    out.flush()?;
    Ok(if report.totals.invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Who runs a command that the record names them in: `--by`, else `cli:$USER`, else
/// `cli`.
fn operator(by: Option<&str>) -> anyhow::Result<String> {
    Ok(match by.map(str::trim).filter(|b| !b.is_empty()) {
        Some(by) => HeaderText::parse(by)
            .map_err(|e| anyhow::anyhow!("--by {e}"))?
            .as_str()
            .to_owned(),
        None => std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .map_or_else(|| "cli".to_owned(), |u| format!("cli:{u}")),
    })
}

/// `subscribers reactivate`: brings a bounced address back, recording who did it.
async fn reactivate(
    store: &Store,
    email: &str,
    by: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<ExitCode> {
    let email = parse_email(email)?;
    let by = operator(by)?;
    match store.reactivate(&email, &by, now).await? {
        ReactivateOutcome::Reactivated(s) => {
            println!("reactivated {} (was bounced; by {by})", s.email);
            Ok(ExitCode::SUCCESS)
        }
        ReactivateOutcome::NotBounced(SubscriberStatus::Unsubscribed) => {
            eprintln!(
                "{email} unsubscribed and is not reactivated: only the subscriber can come \
                 back, by signing up again and confirming the mail that sends (double opt-in)"
            );
            Ok(ExitCode::FAILURE)
        }
        ReactivateOutcome::NotBounced(SubscriberStatus::Pending) => {
            eprintln!(
                "{email} is pending and is not reactivated: it becomes active when the \
                 subscriber confirms their sign-up"
            );
            Ok(ExitCode::FAILURE)
        }
        ReactivateOutcome::NotBounced(status) => {
            println!("{email} is {status}; nothing to do");
            Ok(ExitCode::SUCCESS)
        }
        ReactivateOutcome::Unknown => bail!("{email} is not a subscriber"),
    }
}

/// The CSV columns of `list` and `export`.
pub const CSV_HEADER: [&str; 14] = [
    "email",
    "name",
    "status",
    "consent_at",
    "consent_source",
    "consent_ip",
    "bounce_count",
    "created_at",
    "updated_at",
    "reactivated_at",
    "reactivated_by",
    "withdrawn_at",
    "withdrawn_source",
    "withdrawn_evidence",
];

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or CR first)
/// gets a leading `'`, so it is shown as the text it is (OWASP's advice on CSV
/// injection). Names come from strangers through the sign-up form.
pub fn spreadsheet_safe(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// Subscribers written as CSV with [`CSV_HEADER`], one at a time.
pub struct SubscriberCsv<W: Write> {
    writer: csv::Writer<W>,
}

impl<W: Write> SubscriberCsv<W> {
    /// Writes the header.
    pub fn new(out: W) -> anyhow::Result<Self> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(CSV_HEADER)?;
        Ok(Self { writer })
    }

    /// Writes one subscriber's row.
    pub fn write(&mut self, s: &Subscriber) -> anyhow::Result<()> {
        self.writer.write_record([
            &*spreadsheet_safe(s.email.as_str()),
            &*spreadsheet_safe(s.name.as_ref().map_or("", HeaderText::as_str)),
            s.status.as_str(),
            &s.consent.at.map(time).unwrap_or_default(),
            &*spreadsheet_safe(s.consent.source.as_deref().unwrap_or("")),
            &*spreadsheet_safe(s.consent.ip.as_deref().unwrap_or("")),
            &s.bounce_count.to_string(),
            &time(s.created_at),
            &time(s.updated_at),
            &s.reactivated
                .as_ref()
                .map(|r| time(r.at))
                .unwrap_or_default(),
            s.reactivated.as_ref().map_or("", |r| r.by.as_str()),
            &s.withdrawn.as_ref().map(|w| time(w.at)).unwrap_or_default(),
            s.withdrawn.as_ref().map_or("", |w| w.source.as_str()),
            &*spreadsheet_safe(
                s.withdrawn
                    .as_ref()
                    .and_then(|w| w.evidence.as_deref())
                    .unwrap_or(""),
            ),
        ])?;
        Ok(())
    }

    /// Writes out what is buffered.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.writer.flush()?;
        Ok(())
    }
}
