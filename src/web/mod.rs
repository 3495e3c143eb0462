//! Web: the pages and endpoints gazette serves itself (DESIGN §7).
//!
//! # Layout
//!
//! - [`router`] builds the axum router over a [`WebState`]; [`serve`] runs it on a
//!   listener until a shutdown future completes (the daemon calls it inside
//!   `gazette serve`).
//! - `html`: the page layout and escaping; `security`: headers on every response and
//!   the editors' Basic credential; `limits`: sign-up rate limits; `metrics`: the
//!   Prometheus text; `preview`: the next issue for editors.
//!
//! Nothing here changes state on a GET: every link in a message (confirm, unsubscribe,
//! resubscribe) opens a page with a button, and the button POSTs. Mail scanners that
//! fetch links therefore cannot act for the reader, while the RFC 8058 one-click POST
//! works without cookies or a login.

mod html;
mod limits;
mod metrics;
mod preview;
mod security;
mod subscribe;

pub use limits::{SignupLimits, SignupQuota};
pub use metrics::{StoreFigures, WebCounters};
pub use security::{CONTENT_SECURITY_POLICY, PREVIEW_USER};

use crate::domain::TokenKey;
use crate::render::Renderer;
use crate::settings::Settings;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Request bodies larger than this are refused with 413 before any handler runs; our
/// forms carry an address and a name.
pub const MAX_FORM_BYTES: usize = 4 * 1024;

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct WebState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Arc<Settings>,
    renderer: Arc<Renderer>,
    #[expect(dead_code, reason = "the token routes arrive with the store")]
    tokens: TokenKey,
    limits: SignupLimits,
    counters: WebCounters,
}

impl WebState {
    /// The state for `settings`, rendering with `renderer` and signing with `tokens`.
    pub fn new(settings: Arc<Settings>, renderer: Arc<Renderer>, tokens: TokenKey) -> Self {
        let limits = SignupLimits::new(SignupQuota {
            per_ip_per_hour: settings.web.signups_per_ip_per_hour,
            per_address_per_day: settings.web.confirmations_per_address_per_day,
        });
        Self {
            inner: Arc::new(Inner {
                settings,
                renderer,
                tokens,
                limits,
                counters: WebCounters::default(),
            }),
        }
    }

    fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    fn name(&self) -> &str {
        self.inner.settings.newsletter.name.as_str()
    }

    #[expect(dead_code, reason = "the sign-up handler arrives with the store")]
    /// The client's address: the peer, or the last entry of the configured proxy header.
    fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let from_header = self
            .settings()
            .web
            .client_ip_header
            .as_ref()
            .and_then(|name| headers.get_all(name).iter().next_back())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
        from_header.unwrap_or_else(|| peer.ip())
    }
}

/// The router with every route, the body limit and the security headers.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/subscribe") }))
        .route("/subscribe", get(subscribe::form))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/preview", get(preview::preview))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(security::security_headers))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then finishes the requests
/// in flight. Peer addresses reach the handlers (rate limits, consent records).
pub async fn serve(
    state: WebState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tidy = {
        let limits = state.inner.limits.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
            loop {
                every.tick().await;
                limits.tidy();
            }
        })
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "web: listening");
    }
    let result = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    tidy.abort();
    result
}

async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
}

async fn metrics_text(State(state): State<WebState>) -> Response {
    let figures = StoreFigures::default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&figures, &state.inner.counters),
    )
        .into_response()
}

async fn not_found(State(state): State<WebState>) -> Response {
    error_page(
        &state,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no page here.",
    )
}

/// A page saying what went wrong, with `status`.
fn error_page(state: &WebState, status: StatusCode, title: &str, message: &str) -> Response {
    (
        status,
        html::page(
            state.name(),
            title,
            &format!("<p>{}</p>", html::esc(message)),
        ),
    )
        .into_response()
}
