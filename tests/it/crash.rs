//! Kill -9 the sending process partway, run it again: everyone gets the issue, and the
//! duplicates are no more than what was in flight.

use crate::delivery_support::{issue_id, smtp_config};
use crate::support::mailstack::SmtpSink;
use crate::support::{
    TempDir, describe, gazette_command as gazette, import_readers, store_url, with_store,
};
use std::process::Stdio;
use std::time::{Duration, Instant};

const SUBSCRIBERS: usize = 3000;
const POOL: usize = 4;
/// Two batches: the worker takes `pool_size × ROWS_PER_CONNECTION` rows and records
/// their results together while it sends the next batch, so at most two batches are
/// sent but unrecorded when the process dies.
const IN_FLIGHT: usize = 2 * POOL * gazette::send::ROWS_PER_CONNECTION;

#[test]
fn a_killed_send_resumes_and_duplicates_stay_within_what_was_in_flight() {
    let sink = SmtpSink::start(&[]);
    let dir = TempDir::new("crash");
    // A rate limit stretches each batch over a fifth of a second, so the kill lands
    // inside a batch (sent, not yet recorded) rather than between two.
    let config = smtp_config(
        &dir,
        sink.port(),
        &[
            ("smtp.pool_size", &POOL.to_string()),
            ("smtp.rate_per_second", "300"),
        ],
    );
    let emails = import_readers(&config, SUBSCRIBERS);

    let mut child = gazette(&config, &["send-now", "--date", "2021-09-01"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let received = sink.received_count();
        if received >= SUBSCRIBERS / 3 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("send-now ended ({status}) before it could be killed; {received} received");
        }
        assert!(
            Instant::now() < deadline,
            "only {received} received after 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reading the sink's dump takes long enough to end on a batch boundary: wait until
    // the count is well inside a batch, so the kill lands there.
    let middle = IN_FLIGHT / 4..IN_FLIGHT * 3 / 4;
    while !middle.contains(&(sink.received_count() % IN_FLIGHT)) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "send-now ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no count inside a batch");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SIGKILL: no destructor, no last transaction, nothing flushed.
    child.kill().unwrap();
    child.wait().unwrap();
    let before_restart = sink.received_count();
    assert!(
        before_restart < SUBSCRIBERS,
        "the kill came too late to test anything ({before_restart} received)"
    );

    let out = gazette(&config, &["send-now", "--date", "2021-09-01"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let counts = with_store(&store_url(dir.path()), async |store| {
        store.delivery_counts(issue_id()).await.unwrap()
    });
    assert_eq!(
        (counts.sent as usize, counts.total() as usize),
        (SUBSCRIBERS, SUBSCRIBERS),
        "{counts:?}"
    );

    let received = sink.wait_for_received(SUBSCRIBERS, Duration::from_secs(30));
    let counts = sink.recipient_counts();
    let missing: Vec<&String> = emails.iter().filter(|e| !counts.contains_key(*e)).collect();
    assert!(missing.is_empty(), "never received: {missing:?}");
    let duplicates = received.len() - SUBSCRIBERS;
    eprintln!(
        "killed after {before_restart} received; {} in all, {duplicates} duplicate(s)",
        received.len()
    );
    assert!(
        duplicates <= IN_FLIGHT,
        "{duplicates} duplicates, more than the {IN_FLIGHT} that can be in flight"
    );
    assert!(
        counts.values().all(|n| *n <= 2),
        "someone got it three times"
    );
}
