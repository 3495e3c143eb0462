//! `gazette check` and `gazette preview`: what the next issue looks like, and what is wrong.

use super::Context;
use crate::compose::{self, Issue};
use crate::domain::{HeaderText, IssueId, SubscriberEmail};
use crate::render::{self, MessageOptions, Recipient, RecipientLinks, RenderedIssue};
use crate::settings::{SECRET_ADVICE, SecretCheck, Tls, TransportKind, describe_size};
use crate::store::Store;
use anyhow::Context as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// The address previews are made out to.
const SAMPLE_RECIPIENT: &str = "reader@example.org";

/// How long an explicit command waits, at most, for files saved a moment ago: long
/// enough for an editor's save or a checkout (the settle time is seconds), short enough
/// that a long `content.settle_time` or a file written to without pause is reported
/// rather than waited on.
const PATIENCE: Duration = Duration::from_secs(30);

/// Composes the issue `id` from `dir` for a person at the keyboard: files saved a
/// moment ago (a `git checkout`, an editor's save) are waited for, saying so on stderr,
/// instead of being reported missing.
pub async fn compose_settled(ctx: &Context, dir: &Path, id: IssueId) -> anyhow::Result<Issue> {
    let options = ctx.compose_options();
    let give_up = Instant::now() + PATIENCE;
    loop {
        let issue = compose::compose(dir, id, &options, SystemTime::now())
            .with_context(|| format!("composing the issue {id}"))?;
        let Some(unsettled) = issue.unsettled() else {
            return Ok(issue);
        };
        let wait = unsettled
            .until
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            + Duration::from_millis(50);
        if Instant::now() + wait > give_up {
            // Reported as skipped, with the time they need, rather than waited on.
            return Ok(issue);
        }
        let names: Vec<String> = unsettled
            .files
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        eprintln!(
            "waiting {:.1}s for {} file(s) saved a moment ago to settle: {}",
            wait.as_secs_f64(),
            names.len(),
            names.join(", ")
        );
        tokio::time::sleep(wait).await;
    }
}

async fn compose_issue(
    ctx: &Context,
    sections: Option<&Path>,
    date: Option<IssueId>,
) -> anyhow::Result<Issue> {
    let dir = sections.unwrap_or(&ctx.settings.content.sections_dir);
    let id = date.unwrap_or_else(|| ctx.next_issue_id(chrono::Utc::now()));
    compose_settled(ctx, dir, id).await
}

fn report(issue: &Issue, rendered: Option<&RenderedIssue>) {
    for d in &issue.diagnostics {
        eprintln!("{d}");
    }
    println!(
        "Issue {} with {} section(s):",
        issue.id,
        issue.sections.len()
    );
    for (i, s) in issue.sections.iter().enumerate() {
        println!(
            "  {}. {} ({}, {})",
            i + 1,
            s.title,
            s.kind.as_str(),
            s.file_name
        );
    }
    if let Some(r) = rendered {
        println!("Subject: {}", r.subject);
        println!(
            "HTML {:.1} KB ({:.1} KB as sent), text {:.1} KB",
            r.html.literal_len() as f64 / 1024.0,
            r.html_size_as_sent() as f64 / 1024.0,
            r.text.literal_len() as f64 / 1024.0
        );
    }
    let errors = issue.errors().count();
    let warnings = issue.warnings().count();
    if errors > 0 {
        println!("{errors} error(s), {warnings} warning(s): the issue would be held.");
    } else {
        println!("{warnings} warning(s): the issue is ready to send.");
    }
}

/// Adds what the rendered issue's size calls for: Gmail's clipping warning, and an
/// error when the message would be larger than `[smtp] max_message_size` (a relay
/// refuses such a message for every recipient alike).
pub fn size_checks(ctx: &Context, issue: &mut Issue, rendered: &RenderedIssue) {
    issue.diagnostics.extend(rendered.size_warning());
    let limit = ctx.settings.smtp.max_message_size;
    match message_size(ctx, issue.id, rendered) {
        Ok(bytes) => {
            if bytes > limit {
                issue.diagnostics.insert(
                    0,
                    compose::Diagnostic::issue_error(format!(
                        "each message would be {}, more than the {} that smtp.max_message_size allows; shorten the sections or move material to a web page and link to it",
                        describe_size(bytes),
                        describe_size(limit)
                    )),
                );
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot build a sample message to measure"),
    }
}

/// The relay's own limit: with `[transport] kind = "smtp"`, an issue larger than the
/// `SIZE` the relay announces is an error too, and a relay that cannot be asked is a
/// warning. Only explicit commands ask; the daemon goes by `smtp.max_message_size`.
pub async fn relay_size_check(ctx: &Context, issue: &mut Issue, rendered: &RenderedIssue) {
    if ctx.settings.transport.kind != TransportKind::Smtp {
        return;
    }
    let Ok(bytes) = message_size(ctx, issue.id, rendered) else {
        return;
    };
    // Every relay of the pool may carry the issue: each one's limit counts.
    for smtp in ctx.settings.smtp.pool() {
        if smtp.tls == Tls::Implicit {
            continue;
        }
        let timeout = smtp.timeout.min(Duration::from_secs(10));
        match crate::send::announced_size(&smtp.host, smtp.port, timeout).await {
            Ok(Some(relay)) if bytes > relay => issue.diagnostics.insert(
                0,
                compose::Diagnostic::issue_error(format!(
                    "each message would be {}, more than the {} the relay at {}:{} accepts (its SIZE); shorten the sections",
                    describe_size(bytes),
                    describe_size(relay),
                    smtp.host,
                    smtp.port
                )),
            ),
            Ok(_) => {}
            Err(e) => issue
                .diagnostics
                .push(compose::Diagnostic::issue_warning(format!(
                    "cannot ask the relay at {}:{} for its size limit: {e}",
                    smtp.host, smtp.port
                ))),
        }
    }
}

/// Renders `issue` and adds [`size_checks`]; an issue that cannot be rendered is left
/// for the step that renders it to report.
pub fn with_size_checks(ctx: &Context, mut issue: Issue) -> Issue {
    if let Ok(rendered) = ctx.renderer.render_issue(&ctx.settings.newsletter, &issue) {
        size_checks(ctx, &mut issue, &rendered);
    }
    issue
}

/// The size in bytes of the issue's message as the sample recipient would get it.
fn message_size(
    ctx: &Context,
    id: IssueId,
    rendered: &RenderedIssue,
) -> Result<u64, render::MessageError> {
    Ok(sample_message(ctx, id, rendered)?.formatted().len() as u64)
}

/// The issue's message as the sample recipient would get it.
fn sample_message(
    ctx: &Context,
    id: IssueId,
    rendered: &RenderedIssue,
) -> Result<lettre::Message, render::MessageError> {
    let recipient = sample_recipient();
    let links = RecipientLinks::new(&ctx.settings.newsletter, &ctx.tokens, recipient.id);
    render::build_message(
        MessageOptions {
            newsletter: &ctx.settings.newsletter,
            issue: id,
            date: chrono::Utc::now(),
        },
        rendered,
        &recipient,
        &links,
    )
}

/// Adds an error when the folder holds exactly the files of an issue already sent: the
/// daemon would hold it and `send-now` refuse it. Looks only at a store that exists.
async fn already_sent_error(ctx: &Context, issue: &mut Issue) -> anyhow::Result<()> {
    if issue.sources.is_empty() || !Store::exists(&ctx.settings.store.url)? {
        return Ok(());
    }
    let store = ctx.open_store().await?;
    let earlier = store.issue_with_sources(&issue.source_pairs()).await?;
    store.close().await;
    if let Some(earlier) = earlier {
        issue.diagnostics.insert(
            0,
            compose::Diagnostic::issue_error(format!(
                "these section files are the same as those of the issue {earlier}, which has been sent; put the next issue's files in the folder"
            )),
        );
    }
    Ok(())
}

/// `gazette check`.
pub async fn check(ctx: &Context, sections: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut issue = compose_issue(ctx, sections, None).await?;
    already_sent_error(ctx, &mut issue).await?;
    let rendered = ctx
        .renderer
        .render_issue(&ctx.settings.newsletter, &issue)
        .context("rendering the issue")?;
    size_checks(ctx, &mut issue, &rendered);
    relay_size_check(ctx, &mut issue, &rendered).await;
    report(&issue, Some(&rendered));
    let secret_ok = match ctx.settings.secret_check() {
        SecretCheck::Strong => true,
        SecretCheck::WeakOnLoopback { why } => {
            eprintln!(
                "note: web.secret {why}; that is fine while every link stays on this machine \
(loopback public_url and web.bind), not once readers can reach it. {SECRET_ADVICE}"
            );
            true
        }
        SecretCheck::Weak { .. } => {
            if let Err(e) = ctx.settings.require_strong_secret() {
                eprintln!("error: {e}");
            }
            false
        }
    };
    Ok(if issue.is_sendable() && secret_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The sample recipient a preview is made out to.
pub fn sample_recipient() -> Recipient {
    Recipient {
        id: 0,
        email: SubscriberEmail::parse(SAMPLE_RECIPIENT).expect("a valid address"),
        name: Some(HeaderText::parse("Sample Reader").expect("valid header text")),
    }
}

/// `gazette preview`.
pub async fn preview(
    ctx: &Context,
    sections: Option<&Path>,
    date: Option<IssueId>,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let mut issue = compose_issue(ctx, sections, date).await?;
    let rendered = ctx
        .renderer
        .render_issue(&ctx.settings.newsletter, &issue)
        .context("rendering the issue")?;
    size_checks(ctx, &mut issue, &rendered);
    let recipient = sample_recipient();
    let links = RecipientLinks::new(&ctx.settings.newsletter, &ctx.tokens, recipient.id);
    let date = chrono::Utc::now();
    let message = render::build_message(
        MessageOptions {
            newsletter: &ctx.settings.newsletter,
            issue: issue.id,
            date,
        },
        &rendered,
        &recipient,
        &links,
    )?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write(
        "issue.html",
        rendered.html.fill(&recipient, &links).as_bytes(),
    )?;
    write(
        "issue.txt",
        rendered.text.fill(&recipient, &links).as_bytes(),
    )?;
    // Signed as it would be sent, so any verifier can check it.
    let dkim = ctx.dkim_signer()?;
    write(
        "issue.eml",
        &render::finish(&message, date, dkim.as_deref()),
    )?;
    report(&issue, Some(&rendered));
    println!(
        "Wrote issue.html, issue.txt and issue.eml to {}",
        out.display()
    );
    Ok(if issue.is_sendable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
