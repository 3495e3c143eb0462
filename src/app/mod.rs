//! Wiring: builds what each command needs from settings and runs it.
//!
//! This is the one place that knows the whole pipeline; errors become `anyhow` here,
//! with context saying what was being done.

mod backup;
mod cli;
mod content;
pub mod daemon;
pub mod delivery;
mod doctor;
mod inbox;
pub mod subscribers;
mod web;

pub use web::web_state;

pub use cli::{Cli, Command, SubscribersCommand};
pub use inbox::inbox_worker;

use crate::compose::ComposeOptions;
use crate::domain::{IssueId, TokenKey};
use crate::render::Renderer;
use crate::settings::Settings;
use crate::store::Store;
use anyhow::Context as _;
use std::process::ExitCode;

/// Logs to stderr; `RUST_LOG` (or `GAZETTE_LOG`) picks the level, `info` by default.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("GAZETTE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Everything commands share, built once from settings.
pub struct Context {
    pub settings: Settings,
    pub renderer: Renderer,
    pub tokens: TokenKey,
}

impl Context {
    /// Loads settings and templates; any problem names its key or file.
    pub fn load(cli: &Cli) -> anyhow::Result<Self> {
        Self::from_config(&cli.config)
    }

    /// Loads settings from `path` (with environment overrides) and the templates.
    pub fn from_config(path: &std::path::Path) -> anyhow::Result<Self> {
        let settings = Settings::load(path)?;
        let renderer = Renderer::new(
            settings.content.templates_dir.as_deref(),
            &settings.newsletter.subject,
        )
        .context("loading templates")?;
        let tokens = TokenKey::new(
            settings.web.secret.expose().as_bytes(),
            &settings.newsletter.list_id,
        );
        Ok(Self {
            settings,
            renderer,
            tokens,
        })
    }

    /// The DKIM signing configuration, if `[dkim]` is set.
    pub fn dkim(&self) -> anyhow::Result<Option<lettre::message::dkim::DkimConfig>> {
        self.settings
            .dkim
            .as_ref()
            .map(crate::send::dkim_config)
            .transpose()
            .context("loading the DKIM key")
    }

    /// The DKIM signer for issues, if `[dkim]` is set.
    pub fn dkim_signer(&self) -> anyhow::Result<Option<std::sync::Arc<crate::domain::DkimSigner>>> {
        self.settings
            .dkim
            .as_ref()
            .map(|d| crate::send::dkim_signer(d).map(std::sync::Arc::new))
            .transpose()
            .context("loading the DKIM key")
    }

    /// Compose options from `[content]`.
    pub fn compose_options(&self) -> ComposeOptions {
        ComposeOptions {
            required: self.settings.content.required.clone(),
            settle_time: self.settings.content.settle_time,
        }
    }

    /// Opens the store `[store] url` names (creating it if missing).
    pub async fn open_store(&self) -> anyhow::Result<Store> {
        Store::open(&self.settings.store.url)
            .await
            .with_context(|| format!("opening the store {}", self.settings.store.url))
    }

    /// The id of the next scheduled issue after `now`.
    pub fn next_issue_id(&self, now: chrono::DateTime<chrono::Utc>) -> IssueId {
        let schedule = &self.settings.schedule;
        schedule.send.next_issue_id(schedule.timezone, now)
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context::load(&cli)?;
    match cli.command {
        Command::Check { sections } => content::check(&ctx, sections.as_deref()),
        Command::Preview {
            sections,
            date,
            out,
        } => content::preview(&ctx, sections.as_deref(), date, &out),
        Command::Subscribers { command } => subscribers::run(&ctx, command).await,
        Command::SendNow { date, dry_run } => delivery::send_now(&ctx, date, dry_run).await,
        Command::Status => {
            let store = ctx.open_store().await?;
            daemon::print_schedule(&ctx, &store).await?;
            delivery::status(&ctx).await
        }
        Command::Serve => daemon::serve(&ctx).await,
        Command::Proof => daemon::proof(&ctx).await,
        Command::Web => web::run(&ctx).await,
        Command::Inbox { once } => inbox::run(&ctx, once).await,
        Command::Doctor { resolver } => doctor::run(&ctx, resolver).await,
        Command::Backup { file } => backup::backup(&ctx, &file).await,
        Command::Restore { file } => backup::restore(&ctx, &file).await,
    }
}
