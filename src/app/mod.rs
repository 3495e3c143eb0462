//! Wiring: builds what each command needs from settings and runs it.
//!
//! This is the one place that knows the whole pipeline; errors become `anyhow` here,
//! with context saying what was being done.

mod backup;
mod cli;
pub mod content;
pub mod daemon;
pub mod delivery;
mod doctor;
pub mod import;
mod inbox;
mod shutdown;
mod store;
pub mod subscribers;
mod web;

pub use web::web_state;

pub use cli::{Cli, Command, StoreCommand, SubscribersCommand};
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
    /// Shared by every part of a process (the daemon's scheduler and its web side).
    pub renderer: std::sync::Arc<Renderer>,
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
            renderer: std::sync::Arc::new(renderer),
            tokens,
        })
    }

    /// The DKIM signer for every message, if `[dkim]` is set.
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
        ComposeOptions::from(&self.settings.content)
    }

    /// Opens the store `[store] url` names (creating it if missing).
    pub async fn open_store(&self) -> anyhow::Result<Store> {
        Store::open(&self.settings.store.url)
            .await
            .with_context(|| format!("opening the store {}", self.settings.store.url))
    }

    /// Opens the store read-only for a command that only looks: `None` when there is no
    /// store yet (nothing is created), an error saying plainly why when it cannot be read.
    pub async fn open_store_read_only(&self) -> anyhow::Result<Option<Store>> {
        let url = &self.settings.store.url;
        if !Store::exists(url)? {
            return Ok(None);
        }
        match Store::open_read_only(url).await {
            Ok(store) => Ok(Some(store)),
            // Bringing an existing store's schema up to date is what any command does
            // first; only creating one is left to the commands that change something.
            Err(crate::store::StoreError::Outdated) => self.open_store().await.map(Some),
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read the store {url}"))),
        }
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
    // Commands that put our links in front of other people need a real key: with a
    // guessable one anyone can forge unsubscribe and confirmation links.
    let puts_links_out = match &cli.command {
        Command::Serve | Command::Web => true,
        Command::SendNow { dry_run, .. } => {
            !dry_run && ctx.settings.transport.kind == crate::settings::TransportKind::Smtp
        }
        _ => false,
    };
    if puts_links_out {
        ctx.settings.require_strong_secret()?;
    }
    match cli.command {
        Command::Check { sections } => content::check(&ctx, sections.as_deref()).await,
        Command::Preview {
            sections,
            date,
            out,
        } => content::preview(&ctx, sections.as_deref(), date, &out).await,
        Command::Subscribers { command } => subscribers::run(&ctx, command).await,
        Command::SendNow { date, dry_run } => delivery::send_now(&ctx, date, dry_run).await,
        Command::Status => {
            let store = ctx.open_store_read_only().await?;
            daemon::print_schedule(&ctx, store.as_ref()).await?;
            delivery::status(&ctx, store).await
        }
        Command::Serve => daemon::serve(&ctx).await,
        Command::Proof => daemon::proof(&ctx).await,
        Command::Web => web::run(&ctx).await,
        Command::Inbox { once } => inbox::run(&ctx, once).await,
        Command::Doctor { resolver } => doctor::run(&ctx, resolver).await,
        Command::Backup { file } => backup::backup(&ctx, &file).await,
        Command::Restore { file } => backup::restore(&ctx, &file).await,
        Command::Store {
            command: StoreCommand::Copy { to },
        } => store::copy(&ctx, &to).await,
    }
}
