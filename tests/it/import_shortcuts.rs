//! The import's shortcuts give the same answers as looking every row up: a batch that
//! meets no known mailbox is added without a lookup, and the subscribers the file has met
//! are remembered as runs of ids on consecutive lines. A duplicate of a row added earlier
//! in the file (across batches, in another spelling, after a line that broke the run)
//! names its exact first line; a known subscriber met between new ones, and a second
//! import into a store that is no longer empty, are told apart from new rows.

use crate::import_batches::{
    added_in_file_order, assert_duplicates, email, import, store_with_active_and_left, write,
};
use crate::support::TempDir;
use gazette::app::import::LineOutcome;
use gazette::domain::HeaderText;
use gazette::store::SubscriberStatus;

/// Line n (from 2) is `user{n}@example.org` unless `special` says otherwise.
fn file_lines(rows: usize, special: &[(usize, &str)]) -> Vec<String> {
    let mut lines: Vec<String> = std::iter::once("email,name".to_owned())
        .chain((2..=rows + 1).map(|n| format!("user{n}@example.org,User {n}")))
        .collect();
    for (line, text) in special {
        lines[line - 1] = (*text).to_owned();
    }
    lines
}

#[tokio::test]
async fn shortcuts_report_what_a_lookup_of_every_row_would() {
    let dir = TempDir::new("import-shortcuts");
    let (store, left_id) = store_with_active_and_left(
        &dir,
        ("Early@Example.org", "Early"),
        ("left@example.org", "Left"),
    )
    .await;

    // 35 000 rows: four batches. The first is all new; line 4 000 breaks its run of lines
    // (invalid) and line 4 001 is blank, so rows after them are on other lines than
    // their ids alone would say.
    let special = [
        (4_000, "\"broken,x@example.org"),
        (4_001, ","),
        // Second batch: a known subscriber between new rows, and duplicates of rows the
        // first batch added, before and after the broken run, in other spellings.
        (15_000, "EARLY@example.org,Early"),
        (15_001, "USER3999@Example.org,Again"),
        (15_002, "User4002@example.ORG,"),
        (15_003, "user9000@EXAMPLE.org,Again"),
        // The third batch is new rows only. The last: the suppressed one, a duplicate of
        // a row the second batch added and one of the known subscriber's first line.
        (32_000, "left@example.org,Back"),
        (32_001, "user15004@example.org,Again"),
        (34_000, "early@EXAMPLE.org,Other"),
    ];
    let rows = 35_000;
    let file = write(&dir, "first.csv", &file_lines(rows, &special));
    let (_, got) = import(&store, &file).await;
    let outcome = |line: u64| got[(line - 1) as usize].outcome.clone();
    assert!(matches!(outcome(4_000), LineOutcome::Invalid(_)));
    assert_eq!(outcome(4_001), LineOutcome::Blank);
    assert_eq!(
        outcome(15_000),
        LineOutcome::Unchanged(email("EARLY@example.org"))
    );
    assert_eq!(
        outcome(32_000),
        LineOutcome::Suppressed(email("left@example.org"), SubscriberStatus::Unsubscribed)
    );
    assert_duplicates(
        &got,
        &[
            (15_001, "USER3999@Example.org", 3_999),
            (15_002, "User4002@example.ORG", 4_002),
            (15_003, "user9000@EXAMPLE.org", 9_000),
            (32_001, "user15004@example.org", 15_004),
            (34_000, "early@EXAMPLE.org", 15_000),
        ],
    );
    // New subscribers follow the ones there before, in file order, and keep their names.
    let (added, stored) = added_in_file_order(&store, &got, left_id).await;
    assert_eq!(added.len(), rows - 2 - 7);
    let user3999 = store
        .subscriber_by_email(&email("user3999@example.org"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        user3999.name.as_ref().map(HeaderText::as_str),
        Some("User 3999")
    );

    // A second import into the store, no longer empty: rows of the first import are
    // known (one renamed), new ones get ids after every id there is, and a new row
    // repeated later is a duplicate of its line in this file.
    let last_id = stored.last().unwrap().id;
    let second = [
        (2, "user5@example.org,User 5"),
        (3, "USER6@example.org,Renamed"),
        (12_000, "Fresh12000@example.org,Fresh"),
        (12_001, "user12001@example.org,User 12001"),
    ];
    let mut lines = file_lines(12_002, &second);
    for (n, line) in lines.iter_mut().enumerate().skip(3).take(11_995) {
        *line = format!("second{}@example.org,Second {}", n + 1, n + 1);
    }
    lines.push("FRESH12000@EXAMPLE.ORG,Again".to_owned());
    let file = write(&dir, "second.csv", &lines);
    let (_, got) = import(&store, &file).await;
    let outcome = |line: u64| got[(line - 1) as usize].outcome.clone();
    assert_eq!(
        outcome(2),
        LineOutcome::Unchanged(email("user5@example.org"))
    );
    assert!(matches!(outcome(3), LineOutcome::Updated { .. }));
    assert_eq!(outcome(4), LineOutcome::Added(email("second4@example.org")));
    assert_eq!(
        outcome(12_000),
        LineOutcome::Added(email("Fresh12000@example.org"))
    );
    assert_eq!(
        outcome(12_001),
        LineOutcome::Unchanged(email("user12001@example.org"))
    );
    let last = got.len() as u64;
    assert_eq!(last, 12_004);
    assert_eq!(
        outcome(last),
        LineOutcome::Duplicate {
            email: email("FRESH12000@EXAMPLE.ORG"),
            first_line: 12_000
        }
    );
    let second4 = store
        .subscriber_by_email(&email("second4@example.org"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second4.id, last_id + 1);
    let fresh = store
        .subscriber_by_email(&email("fresh12000@example.org"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fresh.id, last_id + 11_995 + 1);
    assert_eq!(fresh.name.as_ref().map(HeaderText::as_str), Some("Fresh"));
}
