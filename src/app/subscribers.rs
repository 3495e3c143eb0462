//! `gazette subscribers add|remove|list|import|export`.
//!
//! Raw input (an address, a name, a CSV row) becomes a [`SubscriberEmail`] and a
//! [`HeaderText`] here, at the edge; what cannot is reported with the reason.

use super::{Context, SubscribersCommand};
use crate::domain::{HeaderText, SubscriberEmail};
use crate::store::{
    Consent, ImportAction, ImportRow, NewSubscriber, Store, Subscriber, SubscriberStatus,
};
use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};
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
        let subscribers = match &store {
            Some(store) => store.subscribers(status).await?,
            None => Vec::new(),
        };
        write_csv(&subscribers, std::io::stdout().lock())?;
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
        SubscribersCommand::Remove { email } => remove(&store, &email, now).await?,
        SubscribersCommand::List { status } => {
            write_csv(&store.subscribers(status).await?, std::io::stdout().lock())?;
            ExitCode::SUCCESS
        }
        SubscribersCommand::Export => {
            write_csv(&store.subscribers(None).await?, std::io::stdout().lock())?;
            ExitCode::SUCCESS
        }
        SubscribersCommand::Import { file } => {
            let report = import_file(&store, &file, now).await?;
            print!("{}", report.render());
            if report.invalid.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
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

/// `subscribers remove`: unsubscribes; the address stays on the suppression list.
async fn remove(store: &Store, email: &str, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    let email = parse_email(email)?;
    let Some(subscriber) = store.subscriber_by_email(&email).await? else {
        bail!("{email} is not a subscriber");
    };
    let before = store.unsubscribe(subscriber.id, now).await?;
    if before == SubscriberStatus::Unsubscribed {
        println!("{email} was already unsubscribed");
    } else {
        println!("unsubscribed {email} (was {before})");
    }
    Ok(ExitCode::SUCCESS)
}

/// The CSV columns of `list` and `export`.
pub const CSV_HEADER: [&str; 9] = [
    "email",
    "name",
    "status",
    "consent_at",
    "consent_source",
    "consent_ip",
    "bounce_count",
    "created_at",
    "updated_at",
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

/// Writes subscribers as CSV with [`CSV_HEADER`].
pub fn write_csv(subscribers: &[Subscriber], out: impl Write) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(CSV_HEADER)?;
    for s in subscribers {
        writer.write_record([
            &*spreadsheet_safe(s.email.as_str()),
            &*spreadsheet_safe(s.name.as_ref().map_or("", HeaderText::as_str)),
            s.status.as_str(),
            &s.consent.at.map(time).unwrap_or_default(),
            &*spreadsheet_safe(s.consent.source.as_deref().unwrap_or("")),
            &*spreadsheet_safe(s.consent.ip.as_deref().unwrap_or("")),
            &s.bounce_count.to_string(),
            &time(s.created_at),
            &time(s.updated_at),
        ])?;
    }
    writer.flush()?;
    Ok(())
}

/// What an import did, row by row.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub added: u64,
    pub updated: Vec<(u64, String)>,
    pub unchanged: u64,
    /// Line, address, and the earlier line with the same address.
    pub duplicates: Vec<(u64, String, u64)>,
    /// Line, address, and the status that suppresses it.
    pub suppressed: Vec<(u64, String, SubscriberStatus)>,
    /// Line and why the row was refused.
    pub invalid: Vec<(u64, String)>,
}

impl ImportReport {
    /// The report as printed: one line per row that needs a look, then the totals.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (line, reason) in &self.invalid {
            out.push_str(&format!("line {line}: invalid: {reason}\n"));
        }
        for (line, email, status) in &self.suppressed {
            out.push_str(&format!(
                "line {line}: {email}: skipped, {status} (suppressed; not re-subscribed)\n"
            ));
        }
        for (line, email, first) in &self.duplicates {
            out.push_str(&format!(
                "line {line}: {email}: duplicate of line {first}, ignored\n"
            ));
        }
        for (line, email) in &self.updated {
            out.push_str(&format!("line {line}: {email}: name updated\n"));
        }
        out.push_str(&format!(
            "{} added, {} updated, {} unchanged, {} skipped (suppressed), {} invalid, \
             {} duplicate\n",
            self.added,
            self.updated.len(),
            self.unchanged,
            self.suppressed.len(),
            self.invalid.len(),
            self.duplicates.len()
        ));
        out
    }
}

/// Reads a CSV file with an `email` column (and optionally `name`) and imports it in one
/// transaction. Rows that cannot be parsed are reported, never imported.
pub async fn import_file(
    store: &Store,
    path: &Path,
    now: DateTime<Utc>,
) -> anyhow::Result<ImportReport> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(std::io::BufReader::new(file));
    let headers = reader
        .headers()
        .with_context(|| format!("reading the header row of {}", path.display()))?
        .clone();
    let column = |want: &str| {
        headers.iter().position(|h| {
            h.trim_start_matches('\u{feff}')
                .trim()
                .eq_ignore_ascii_case(want)
        })
    };
    let Some(email_col) = column("email") else {
        bail!(
            "{}: the header row has no `email` column (found: {})",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let name_col = column("name");

    let mut report = ImportReport::default();
    let mut rows = Vec::new();
    let mut emails = std::collections::HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                report.invalid.push((line, format!("unreadable CSV: {e}")));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let raw_email = record.get(email_col).unwrap_or("");
        let email = match SubscriberEmail::parse(raw_email) {
            Ok(e) => e,
            Err(e) => {
                report.invalid.push((line, format!("'{raw_email}': {e}")));
                continue;
            }
        };
        let name = match parse_name(name_col.and_then(|c| record.get(c))) {
            Ok(n) => n,
            Err(e) => {
                report.invalid.push((line, format!("{email}: {e}")));
                continue;
            }
        };
        emails.insert(line, email.to_string());
        rows.push(ImportRow { line, email, name });
    }

    let consent = Consent {
        at: Some(now),
        source: Some(format!(
            "import:{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        )),
        ip: None,
    };
    for (line, action) in store.import_subscribers(&rows, &consent, now).await? {
        let email = emails.remove(&line).unwrap_or_default();
        match action {
            ImportAction::Added => report.added += 1,
            ImportAction::Updated => report.updated.push((line, email)),
            ImportAction::Unchanged => report.unchanged += 1,
            ImportAction::SkippedSuppressed(status) => {
                report.suppressed.push((line, email, status))
            }
            ImportAction::Duplicate(first) => report.duplicates.push((line, email, first)),
        }
    }
    report.invalid.sort();
    Ok(report)
}
