//! The 2-day rule: an unsubscribe must be honoured within two days (RFC 8058 asks for
//! it promptly; Gmail's sender rules give two days).

use super::{Check, CheckKind, Verdict};
use crate::store::Store;

/// How long after unsubscribing a message may still reach someone.
pub const GRACE_DAYS: i64 = 2;

pub(super) async fn check_unsubscribes(store: Option<&Store>) -> Check {
    let Some(store) = store else {
        return Check::new(
            CheckKind::Unsubscribes,
            Verdict::Ok,
            "no store yet: no issue has gone out",
        );
    };
    match store
        .unsubscribe_audit(chrono::Duration::days(GRACE_DAYS))
        .await
    {
        Err(e) => Check::new(
            CheckKind::Unsubscribes,
            Verdict::CouldNotCheck,
            format!("cannot read the store: {e}"),
        )
        .fix("check [store] url and that the database file is readable"),
        Ok(None) => Check::new(
            CheckKind::Unsubscribes,
            Verdict::Ok,
            "no issue has gone out yet",
        ),
        Ok(Some(audit)) if audit.late.is_empty() => Check::new(
            CheckKind::Unsubscribes,
            Verdict::Ok,
            format!(
                "issue {}: nobody was mailed more than {GRACE_DAYS} days after unsubscribing \
                 ({} unsubscribed since it was frozen)",
                audit.issue, audit.unsubscribes_since
            ),
        ),
        Ok(Some(audit)) => {
            let first = &audit.late[0];
            Check::new(
                CheckKind::Unsubscribes,
                Verdict::Problem,
                format!(
                    "issue {} reached {} subscriber(s) more than {GRACE_DAYS} days after they \
                     unsubscribed (e.g. {}: unsubscribed {}, sent {})",
                    audit.issue,
                    audit.late.len(),
                    first.email,
                    first.unsubscribed_at.format("%Y-%m-%d %H:%M UTC"),
                    first.sent_at.format("%Y-%m-%d %H:%M UTC"),
                ),
            )
            .fix(
                "find how those addresses were mailed after they left (re-added by hand or by \
                 an import without new consent?) and keep `gazette serve` running so replies \
                 and one-click requests are honoured at once",
            )
        }
    }
}
