//! `gazette web`: the web side on its own (the daemon runs the same inside `serve`).

use super::Context;
use crate::send::ConfiguredTransport;
use crate::store::Store;
use crate::web::{self, WebState};
use anyhow::Context as _;
use std::process::ExitCode;
use std::sync::Arc;

/// The web state for `ctx`: opens the store and the configured transport.
pub async fn web_state(ctx: &Context) -> anyhow::Result<WebState> {
    let store = ctx.open_store().await?;
    web_state_with(ctx, store)
}

/// The web state for `ctx` over an already open `store`, sharing `ctx`'s renderer: the
/// daemon's web side uses the same pool and templates as its workers.
pub(crate) fn web_state_with(ctx: &Context, store: Store) -> anyhow::Result<WebState> {
    let dkim = ctx.dkim_signer()?;
    Ok(WebState::new(
        Arc::new(ctx.settings.clone()),
        ctx.renderer.clone(),
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
    web::serve(state, listener, super::shutdown::termination())
        .await
        .context("serving the web")?;
    Ok(ExitCode::SUCCESS)
}
