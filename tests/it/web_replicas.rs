//! Web front-ends behind a load balancer: two web servers on one store. The limit on
//! confirmation messages to one address protects a stranger's mailbox, so it holds
//! across replicas (it is counted in the store); the per-client-IP limit is each
//! replica's own. Real HTTP on two loopback ports, one SQLite file.

use crate::support::http::post_form;
use crate::support::{TempDir, files, write_config};
use gazette::app::{Cli, Context, web_state};
use std::net::SocketAddr;

/// Starts a web server for `ctx` on a free loopback port; stops when `stop` is dropped.
async fn replica(ctx: &Context) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = web_state(ctx).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gazette::web::serve(state, listener, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_confirmation_limit_per_address_holds_across_replicas() {
    let dir = TempDir::new("web-replicas");
    let config = write_config(
        dir.path(),
        &[
            ("web.confirmations_per_address_per_day", "2"),
            ("newsletter.public_url", "\"http://127.0.0.1:9\""),
        ],
    );
    let cli = <Cli as clap::Parser>::try_parse_from([
        "gazette",
        "--config",
        config.to_str().unwrap(),
        "web",
    ])
    .unwrap();
    let ctx = Context::load(&cli).unwrap();
    let (a, _stop_a) = replica(&ctx).await;
    let (b, _stop_b) = replica(&ctx).await;

    // Three sign-ups each for one address, alternating between the replicas, as a load
    // balancer would spread them.
    for addr in [a, b, a, b, a, b] {
        let r = post_form(addr, "/subscribe", "email=victim%40example.org").await;
        assert_eq!(r.status, 200);
    }
    let store = gazette::store::Store::open(&ctx.settings.store.url)
        .await
        .unwrap();
    let email = gazette::domain::SubscriberEmail::parse("victim@example.org").unwrap();
    let id = store.subscriber_by_email(&email).await.unwrap().unwrap().id;
    assert_eq!(
        store.web_signup_requests(id).await.unwrap(),
        2,
        "two requests, so two confirmation messages, in a day"
    );
    // And the messages themselves (written after each answer).
    let outbox = dir.path().join("outbox/confirmations");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while files(&outbox).len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(files(&outbox).len(), 2, "{:?}", files(&outbox));
}
