//! `gazette web`: the web side on its own (the daemon runs the same inside `serve`).

use super::Context;
use crate::send::ConfiguredTransport;
use crate::web::{self, WebState};
use anyhow::Context as _;
use std::process::ExitCode;
use std::sync::Arc;

/// The web state for `ctx`: opens the store and the configured transport.
pub async fn web_state(ctx: &Context) -> anyhow::Result<WebState> {
    let renderer = crate::render::Renderer::new(
        ctx.settings.content.templates_dir.as_deref(),
        &ctx.settings.newsletter.subject,
    )
    .context("loading templates")?;
    let store = ctx.open_store().await?;
    let dkim = ctx.dkim()?;
    Ok(WebState::new(
        Arc::new(ctx.settings.clone()),
        Arc::new(renderer),
        ctx.tokens.clone(),
        store,
        Arc::new(ConfiguredTransport::for_side_mail(
            &ctx.settings,
            "confirmations",
        )),
        dkim,
    ))
}

/// Serves on `[web] bind` until SIGINT or SIGTERM.
pub async fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    let state = web_state(ctx).await?;
    let bind = ctx.settings.web.bind;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding [web] bind = {bind}"))?;
    web::serve(state, listener, super::daemon::termination())
        .await
        .context("serving the web")?;
    Ok(ExitCode::SUCCESS)
}
