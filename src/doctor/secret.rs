//! The web secret: the key of every unsubscribe and confirmation token.

use super::{Check, CheckKind, Verdict};
use crate::settings::Settings;

/// Shortest secret taken as strong: 32 characters, 128 bits or more for any sensible
/// alphabet (`openssl rand -hex 32` gives 64).
const MIN_LEN: usize = 32;

/// Why `secret` is weak, or `None` when it is not: the shipped placeholder (or any
/// `change-me…` value) or shorter than 32 characters.
pub fn weak_secret(secret: &str) -> Option<String> {
    if secret.trim().to_ascii_lowercase().starts_with("change-me") {
        Some("is the placeholder from the example settings".to_owned())
    } else if secret.chars().count() < MIN_LEN {
        Some(format!(
            "is {} characters long (fewer than {MIN_LEN})",
            secret.chars().count()
        ))
    } else {
        None
    }
}

pub(super) fn check_secret(settings: &Settings) -> Check {
    match weak_secret(settings.web.secret.expose()) {
        None => Check::new(
            CheckKind::WebSecret,
            Verdict::Ok,
            "[web] secret is not a placeholder and is long enough",
        ),
        Some(why) => Check::new(
            CheckKind::WebSecret,
            Verdict::Problem,
            format!("[web] secret {why}: anyone who guesses it can unsubscribe any reader"),
        )
        .fix(
            "put a new secret (`openssl rand -hex 32`) in a file named by [web] secret_file \
             or in GAZETTE__WEB__SECRET (links in messages already sent stop working)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_short_secrets_are_weak() {
        assert!(weak_secret("change-me-this-is-not-a-secret").is_some());
        assert!(weak_secret("Change-Me-0123456789012345678901234567890").is_some());
        assert!(weak_secret("0123456789abcdef").is_some());
        assert!(weak_secret(&"a1".repeat(16)).is_none());
    }
}
