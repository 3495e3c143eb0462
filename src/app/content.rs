//! `gazette check` and `gazette preview`: what the next issue looks like, and what is wrong.

use super::Context;
use crate::compose::{self, Issue};
use crate::domain::{HeaderText, IssueId, SubscriberEmail};
use crate::render::{self, MessageOptions, Recipient, RecipientLinks, RenderedIssue};
use anyhow::Context as _;
use std::path::Path;
use std::process::ExitCode;

/// The address previews are made out to.
const SAMPLE_RECIPIENT: &str = "reader@example.org";

fn compose_issue(
    ctx: &Context,
    sections: Option<&Path>,
    date: Option<IssueId>,
) -> anyhow::Result<Issue> {
    let dir = sections.unwrap_or(&ctx.settings.content.sections_dir);
    let id = date.unwrap_or_else(|| ctx.next_issue_id(chrono::Utc::now()));
    Ok(compose::compose(
        dir,
        id,
        &ctx.compose_options(),
        std::time::SystemTime::now(),
    )?)
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

/// Adds the size warning Gmail's clipping calls for.
fn size_warning(issue: &mut Issue, rendered: &RenderedIssue) {
    issue.diagnostics.extend(rendered.size_warning());
}

/// `gazette check`.
pub fn check(ctx: &Context, sections: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut issue = compose_issue(ctx, sections, None)?;
    let rendered = ctx
        .renderer
        .render_issue(&ctx.settings.newsletter, &issue)
        .context("rendering the issue")?;
    size_warning(&mut issue, &rendered);
    report(&issue, Some(&rendered));
    Ok(if issue.is_sendable() {
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
pub fn preview(
    ctx: &Context,
    sections: Option<&Path>,
    date: Option<IssueId>,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let mut issue = compose_issue(ctx, sections, date)?;
    let rendered = ctx
        .renderer
        .render_issue(&ctx.settings.newsletter, &issue)
        .context("rendering the issue")?;
    size_warning(&mut issue, &rendered);
    let recipient = sample_recipient();
    let links = RecipientLinks::new(&ctx.settings.newsletter, &ctx.tokens, recipient.id);
    let message = render::build_message(
        MessageOptions {
            newsletter: &ctx.settings.newsletter,
            issue: issue.id,
            date: chrono::Utc::now(),
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
    write("issue.eml", &message.formatted())?;
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
