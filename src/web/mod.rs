//! Web: the pages and endpoints gazette serves itself (DESIGN §7).
//!
//! # Layout
//!
//! - [`router`] builds the axum router over a [`WebState`]; [`serve`] runs it on a
//!   listener until a shutdown future completes (the daemon calls it inside
//!   `gazette serve`).
//! - `subscribe`: the sign-up form (double opt-in) and `confirmation`, the message it
//!   sends; `links`: the pages behind the links in our messages (confirm, unsubscribe
//!   with the RFC 8058 one-click POST, resubscribe), with `multipart` reading a
//!   one-click form; `archive`: sent issues;
//!   `preview`: the next issue for editors; `metrics`: Prometheus text.
//! - `html`: the page layout and escaping; `security`: headers on every response and
//!   the editors' Basic credential; `limits`: sign-up rate limits.
//!
//! Nothing here changes state on a GET: every link in a message (confirm, unsubscribe,
//! resubscribe) opens a page with a button, and the button POSTs. Mail scanners that
//! fetch links therefore cannot act for the reader, while the RFC 8058 one-click POST
//! works without cookies or a login. Tokens are checked (in constant time, by
//! [`TokenKey::verify`]) before anything is looked up.

mod archive;
mod confirmation;
mod html;
mod limits;
mod links;
mod metrics;
mod multipart;
mod preview;
mod security;
mod subscribe;

pub use confirmation::{ConfirmationError, Signup, build_confirmation, confirm_url};
pub use limits::{SignupLimits, SignupQuota};
pub use metrics::{ProcessFigures, StoreFigures, WebCounters};
pub use security::{CONTENT_SECURITY_POLICY, PREVIEW_USER};

use crate::domain::DkimSigner;
use crate::domain::{Clock, SystemClock, TokenKey};
use crate::render::Renderer;
use crate::send::{OutgoingMessage, SendError, Transport};
use crate::settings::Settings;
use crate::store::Store;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Request bodies larger than this are refused with 413 before any handler runs; our
/// forms carry an address and a name.
pub const MAX_FORM_BYTES: usize = 4 * 1024;

/// How long a confirmation link works.
pub const CONFIRM_WITHIN_DAYS: u64 = 7;

/// The transport as the web holds it: [`Transport`] is not object-safe, so this is
/// its one method boxed. Every `Transport` is a `Mailer`.
pub trait Mailer: Send + Sync + 'static {
    /// Hands `message` to the transport.
    fn send_message<'a>(
        &'a self,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<(), SendError>>;
}

impl<T: Transport + 'static> Mailer for T {
    fn send_message<'a>(
        &'a self,
        message: &'a OutgoingMessage,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.send(message))
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct WebState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Arc<Settings>,
    renderer: Arc<Renderer>,
    tokens: TokenKey,
    store: Store,
    mailer: Arc<dyn Mailer>,
    dkim: Option<std::sync::Arc<DkimSigner>>,
    clock: Arc<dyn Clock>,
    limits: SignupLimits,
    counters: WebCounters,
    /// Confirmation messages still being sent; [`serve`] waits for them at shutdown.
    background: tokio_util::task::TaskTracker,
    /// The steps of the scheduler running beside the web (`serve`), for `/metrics`.
    scheduler_steps: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl WebState {
    /// The state for `settings`: reads and writes `store`, sends confirmations through
    /// `mailer` (DKIM-signed with `dkim` when given), renders previews with `renderer`
    /// and checks tokens with `tokens`. The system clock tells the time.
    pub fn new(
        settings: Arc<Settings>,
        renderer: Arc<Renderer>,
        tokens: TokenKey,
        store: Store,
        mailer: Arc<dyn Mailer>,
        dkim: Option<std::sync::Arc<DkimSigner>>,
    ) -> Self {
        let limits = SignupLimits::new(SignupQuota {
            per_ip_per_hour: settings.web.signups_per_ip_per_hour,
        });
        Self {
            inner: Arc::new(Inner {
                settings,
                renderer,
                tokens,
                store,
                mailer,
                dkim,
                clock: Arc::new(SystemClock),
                limits,
                counters: WebCounters::default(),
                background: tokio_util::task::TaskTracker::new(),
                scheduler_steps: None,
            }),
        }
    }

    /// The same state telling the time by `clock` (tests).
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        let inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("with_clock is called before the state is shared"));
        Self {
            inner: Arc::new(Inner { clock, ..inner }),
        }
    }

    /// The same state reporting `steps`, the scheduler's step count, in `/metrics`.
    pub fn with_scheduler_steps(self, steps: Arc<std::sync::atomic::AtomicU64>) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|_| {
            panic!("with_scheduler_steps is called before the state is shared")
        });
        Self {
            inner: Arc::new(Inner {
                scheduler_steps: Some(steps),
                ..inner
            }),
        }
    }

    fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    fn name(&self) -> &str {
        self.inner.settings.newsletter.name.as_str()
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.clock.now()
    }

    /// The client's address: the peer's, or, when the peer is one of
    /// `web.trusted_proxies`, the last entry of the configured proxy header. From any
    /// other peer the header is a claim anyone can make, and is ignored.
    fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let web = &self.settings().web;
        let Some(name) = web.client_ip_header.as_ref() else {
            return peer.ip();
        };
        if !web
            .trusted_proxies
            .iter()
            .any(|net| net.contains(peer.ip()))
        {
            return peer.ip();
        }
        headers
            .get_all(name)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| peer.ip())
    }
}

/// The router with every route, the body limit and the security headers.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/subscribe") }))
        .route("/subscribe", get(subscribe::form).post(subscribe::signup))
        .route(
            "/confirm/{token}",
            get(links::confirm_page).post(links::confirm),
        )
        .route(
            "/unsubscribe/{token}",
            get(links::unsubscribe_page).post(links::unsubscribe),
        )
        .route(
            "/resubscribe/{token}",
            get(links::resubscribe_page).post(links::resubscribe),
        )
        .route("/archive", get(archive::list))
        .route("/archive/{id}", get(archive::issue))
        .route("/preview", get(preview::preview))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(security::security_headers))
        .with_state(state)
}

/// How long [`serve`] waits at shutdown for confirmation messages still being sent.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `state` on `listener` until `shutdown` completes, then finishes the requests
/// in flight and (for up to 30 s) the confirmation messages still being sent. Peer
/// addresses reach the handlers (rate limits, consent records).
pub async fn serve(
    state: WebState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let background = state.inner.background.clone();
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
    background.close();
    if tokio::time::timeout(DRAIN, background.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = background.len(),
            "web: stopped with confirmation messages unsent"
        );
    }
    result
}

async fn healthz(State(state): State<WebState>) -> Response {
    match state.store().web_ping().await {
        Ok(()) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "ok\n",
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "web: health check cannot reach the store");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "store unavailable\n",
            )
                .into_response()
        }
    }
}

async fn metrics_text(State(state): State<WebState>) -> Response {
    let figures = match state.store().web_figures().await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "web: cannot read figures for /metrics");
            return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response();
        }
    };
    let inbox = match state.store().inbox_figures().await {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!(error = %e, "web: cannot read the inbox figures for /metrics");
            None
        }
    };
    let figures = StoreFigures {
        deliveries: figures
            .deliveries
            .into_iter()
            .map(|(s, n)| (s.to_owned(), n))
            .collect(),
        subscribers: figures
            .subscribers
            .into_iter()
            .map(|(s, n)| (s.to_owned(), n))
            .collect(),
        inbox_processed: inbox.map(|f| f.processed),
        inbox_unverified_reports: inbox.map(|f| f.unverified_reports),
        inbox_last_poll: inbox
            .and_then(|f| f.last_poll)
            .map(|at| at.timestamp() as f64),
        relay: match state.store().relay_status().await {
            Ok(relay) => relay,
            Err(e) => {
                tracing::error!(error = %e, "web: cannot read the relay state for /metrics");
                None
            }
        },
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(
            &figures,
            &state.inner.counters,
            &ProcessFigures {
                confirmations_in_flight: state.inner.background.len() as u64,
                scheduler_steps: state
                    .inner
                    .scheduler_steps
                    .as_ref()
                    .map(|steps| steps.load(std::sync::atomic::Ordering::Relaxed)),
            },
        ),
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
        html::page(state.name(), "message.html", title, {
            let mut values = tera::Context::new();
            values.insert("message", message);
            values
        }),
    )
        .into_response()
}

/// The answer when the store fails: logged with what was being done, and a page that
/// says nothing about it.
fn store_failed(state: &WebState, doing: &str, e: &crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "web: {doing}");
    error_page(
        state,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Something went wrong on our side. Please try again later.",
    )
}
