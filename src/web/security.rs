//! Headers every response carries, and the editors' HTTP Basic credential check.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// No scripts, frames, fonts or remote anything; inline styles only (our pages and the
/// archived issues carry their CSS inline), forms post back to us.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every response, errors included.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Tokens live in our URLs: never send them on to another site.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The user name the preview expects.
pub const PREVIEW_USER: &str = "editor";

/// True when `headers` carry HTTP Basic credentials for `user` with `password`.
///
/// Both sides are hashed before the comparison so it takes the same time whatever the
/// lengths and contents, and the user name is checked the same way.
pub fn basic_auth_matches(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
    else {
        return false;
    };
    let Some(colon) = given.iter().position(|&b| b == b':') else {
        return false;
    };
    let (given_user, given_password) = (&given[..colon], &given[colon + 1..]);
    let user_ok = Sha256::digest(given_user).ct_eq(&Sha256::digest(user.as_bytes()));
    let password_ok = Sha256::digest(given_password).ct_eq(&Sha256::digest(password.as_bytes()));
    bool::from(user_ok & password_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    fn basic(user_password: &str) -> HeaderMap {
        with_auth(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_password)
        ))
    }

    #[test]
    fn accepts_only_the_right_pair() {
        assert!(basic_auth_matches(
            &basic("editor:s3cret:x"),
            "editor",
            "s3cret:x"
        ));
        assert!(!basic_auth_matches(
            &basic("editor:s3cret"),
            "editor",
            "s3cret:x"
        ));
        assert!(!basic_auth_matches(
            &basic("admin:s3cret:x"),
            "editor",
            "s3cret:x"
        ));
        assert!(!basic_auth_matches(&basic("editor"), "editor", ""));
        assert!(!basic_auth_matches(&with_auth("Bearer abc"), "editor", "x"));
        assert!(!basic_auth_matches(&with_auth("Basic !!!"), "editor", "x"));
        assert!(!basic_auth_matches(&HeaderMap::new(), "editor", "x"));
    }
}
