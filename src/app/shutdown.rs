//! The process's stop signal: SIGTERM or SIGINT, as a future any command can wait on.
//!
//! Kept apart from the commands so that each of them (daemon, web, inbox, delivery)
//! depends on this small file rather than on one another.

/// Resolves when the process gets SIGTERM or SIGINT.
pub(crate) async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
}
