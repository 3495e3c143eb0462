//! DKIM signatures (RFC 6376), RSA-SHA256 and Ed25519-SHA256 (RFC 8463), made over the
//! finished bytes of any message gazette sends.
//!
//! Signing works on bytes rather than on a message builder so that every kind of
//! message (issues, proofs, notices, confirmations) is signed the same way, after its
//! last header is written. The cryptography is aws-lc's (the library rustls already
//! uses): an RSA-2048 signature costs what OpenSSL's does, where lettre's pure-Rust
//! signer cost 2.75 times that.
//!
//! Canonicalization is relaxed/relaxed, and `l=` is never used: a signature covers the
//! whole body. The signed header list names each header once more than it occurs in
//! the message ("oversigning"), so a second `Subject:` or `List-Unsubscribe:` added on the
//! way breaks the signature instead of riding on it.

use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Headers a signature covers when the message has them, in this order. From is
/// required by RFC 6376; the List-* headers by RFC 8058's one-click unsubscribe.
pub const SIGNED_HEADERS: [&str; 13] = [
    "From",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Auto-Submitted",
];

/// Headers listed once more than they occur, so none can be added after signing.
pub const OVERSIGNED_HEADERS: [&str; 5] = [
    "From",
    "Subject",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Why a DKIM key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("not a PEM file (expected a '-----BEGIN … PRIVATE KEY-----' block)")]
    NotPem,
    #[error("the PEM block is not valid base64")]
    Base64,
    #[error(
        "not an RSA private key of 2048 to 8192 bits in PKCS#1 ('BEGIN RSA PRIVATE KEY') or \
         PKCS#8 ('BEGIN PRIVATE KEY') form: {0}; make one with \
         `openssl genrsa -out dkim.pem 2048`"
    )]
    Rsa(String),
    #[error(
        "not an Ed25519 private key in PKCS#8 form ('BEGIN PRIVATE KEY'): {0}; make one with \
         `openssl genpkey -algorithm ed25519 -out dkim-ed25519.pem`"
    )]
    Ed25519(String),
    #[error("the selector or domain '{0}' is not a valid DNS label sequence")]
    Name(String),
}

enum Key {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// One signing identity: a key, its selector and the signing domain.
struct Identity {
    domain: String,
    selector: String,
    key: Key,
}

/// Signs messages with one RSA key and, optionally, an Ed25519 key beside it (RFC 8463
/// asks for both while receivers that know only RSA remain).
pub struct DkimSigner {
    identities: Vec<Identity>,
}

impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for id in &self.identities {
            let alg = match id.key {
                Key::Rsa(_) => "rsa-sha256",
                Key::Ed25519(_) => "ed25519-sha256",
            };
            list.entry(&format_args!(
                "{alg} {}._domainkey.{}",
                id.selector, id.domain
            ));
        }
        list.finish()
    }
}

fn pem_der(pem: &str) -> Result<Vec<u8>, DkimError> {
    let mut inside = false;
    let mut body = String::new();
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----BEGIN ") {
            inside = true;
        } else if line.starts_with("-----END ") {
            return B64.decode(body.as_bytes()).map_err(|_| DkimError::Base64);
        } else if inside {
            body.push_str(line);
        }
    }
    Err(DkimError::NotPem)
}

fn check_name(name: &str) -> Result<String, DkimError> {
    let ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(DkimError::Name(name.to_owned()))
    }
}

impl DkimSigner {
    /// A signer for `domain` with the RSA key `rsa_pem` published at
    /// `selector._domainkey.domain`.
    pub fn rsa(domain: &str, selector: &str, rsa_pem: &str) -> Result<Self, DkimError> {
        let der = pem_der(rsa_pem)?;
        let key = RsaKeyPair::from_der(&der)
            .or_else(|_| RsaKeyPair::from_pkcs8(&der))
            .map_err(|e| DkimError::Rsa(e.to_string()))?;
        Ok(Self {
            identities: vec![Identity {
                domain: check_name(domain)?,
                selector: check_name(selector)?,
                key: Key::Rsa(key),
            }],
        })
    }

    /// Adds a second signature with the Ed25519 key `pem` published at
    /// `selector._domainkey.<domain>`.
    pub fn with_ed25519(mut self, selector: &str, pem: &str) -> Result<Self, DkimError> {
        let der = pem_der(pem)?;
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| DkimError::Ed25519(e.to_string()))?;
        let domain = self.identities[0].domain.clone();
        self.identities.push(Identity {
            domain,
            selector: check_name(selector)?,
            key: Key::Ed25519(key),
        });
        Ok(self)
    }

    /// The TXT records to publish, one per key: (`selector._domainkey.domain`, value).
    pub fn dns_records(&self) -> Vec<(String, String)> {
        self.identities
            .iter()
            .map(|id| {
                let (k, public) = match &id.key {
                    Key::Rsa(key) => (
                        "rsa",
                        AsDer::<PublicKeyX509Der>::as_der(key.public_key())
                            .map(|der| der.as_ref().to_vec())
                            .unwrap_or_default(),
                    ),
                    Key::Ed25519(key) => ("ed25519", key.public_key().as_ref().to_vec()),
                };
                (
                    format!("{}._domainkey.{}", id.selector, id.domain),
                    format!("v=DKIM1; k={k}; p={}", B64.encode(public)),
                )
            })
            .collect()
    }

    /// `message` (CRLF line ends, headers then a blank line then the body) with the
    /// `DKIM-Signature` headers put in front. `time` is the signature's `t=`.
    pub fn sign(&self, message: &[u8], time: i64) -> Vec<u8> {
        self.sign_shared(message, time, None)
    }

    /// [`DkimSigner::sign`], with the body hash started from `shared` when the body
    /// begins with it: only the rest of the body is hashed. The signature is the same
    /// bytes either way.
    pub fn sign_shared(&self, message: &[u8], time: i64, shared: Option<&SharedBody>) -> Vec<u8> {
        let (head, body) = split(message);
        let fields = header_fields(head);
        let body_hash = match shared {
            Some(shared) => shared.body_hash(body),
            None => relaxed_body_hash(body),
        };
        let plan = signed_headers(&fields);

        // The signed header data is the same for every identity; only the
        // DKIM-Signature header itself differs, added after it and taken off again.
        let mut signed = Vec::with_capacity(head.len() + 512);
        let mut h = String::with_capacity(plan.len() * 12);
        for (name, value) in &plan {
            if !h.is_empty() {
                h.push(':');
            }
            h.extend(name.chars().map(|c| c.to_ascii_lowercase()));
            if let Some(raw) = value {
                relaxed_header(name, raw, &mut signed);
                signed.extend_from_slice(b"\r\n");
            }
        }
        let headers_end = signed.len();

        let mut out = Vec::with_capacity(message.len() + 1024 * self.identities.len());
        for id in &self.identities {
            let alg = match id.key {
                Key::Rsa(_) => "rsa-sha256",
                Key::Ed25519(_) => "ed25519-sha256",
            };
            let unsigned = fold(&format!(
                "v=1; a={alg}; c=relaxed/relaxed; d={}; s={}; t={time}; h={h}; bh={body_hash}; b=",
                id.domain, id.selector
            ));
            signed.truncate(headers_end);
            relaxed_header("DKIM-Signature", unsigned.as_bytes(), &mut signed);
            let data = &signed;
            let signature = match &id.key {
                Key::Rsa(key) => {
                    let mut sig = vec![0; key.public_modulus_len()];
                    let rng = aws_lc_rs::rand::SystemRandom::new();
                    key.sign(&RSA_PKCS1_SHA256, &rng, data, &mut sig)
                        .expect("an RSA signature over any bytes");
                    sig
                }
                Key::Ed25519(key) => {
                    // RFC 8463: Ed25519 signs the SHA-256 hash of the data.
                    let hash = digest::digest(&digest::SHA256, data);
                    key.sign(hash.as_ref()).as_ref().to_vec()
                }
            };
            out.extend_from_slice(b"DKIM-Signature: ");
            out.extend_from_slice(unsigned.as_bytes());
            out.extend_from_slice(fold_base64(&B64.encode(signature)).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(message);
        out
    }
}

/// The start of the body that every message of an issue has in common (the MIME
/// boundary, the text part's headers and its text up to the first personal line), with
/// the SHA-256 state after its canonical form: per message only the rest is hashed.
///
/// SHA-256 can be resumed but not skipped ahead, so only a common *start* can be shared;
/// it ends after a line with text in it, where relaxed canonicalization of the rest does
/// not depend on what came before.
#[derive(Clone)]
pub struct SharedBody {
    raw: Vec<u8>,
    state: digest::Context,
}

impl std::fmt::Debug for SharedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBody")
            .field("len", &self.raw.len())
            .finish_non_exhaustive()
    }
}

impl SharedBody {
    /// The body start common to messages `a` and `b` (whole messages, for two
    /// recipients that differ in every personal field), or None if they share no line.
    pub fn of(a: &[u8], b: &[u8]) -> Option<Self> {
        let (a, b) = (split(a).1, split(b).1);
        let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let mut end = common;
        // Back to the end of the last whole line with text in it.
        loop {
            let crlf = memchr::memmem::rfind(&a[..end], b"\r\n")?;
            let start = memchr::memmem::rfind(&a[..crlf], b"\r\n").map_or(0, |at| at + 2);
            if a[start..crlf].iter().any(|b| !matches!(b, b' ' | b'\t')) {
                end = crlf + 2;
                break;
            }
            end = crlf;
        }
        let raw = a[..end].to_vec();
        let mut state = digest::Context::new(&digest::SHA256);
        hash_canonical(&raw, &mut state);
        Some(Self { raw, state })
    }

    /// Bytes of every body that are hashed once.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether nothing is shared (never true of a value [`SharedBody::of`] made).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The `bh=` of `body`: resumed after the shared start if the body begins with it,
    /// whole otherwise.
    fn body_hash(&self, body: &[u8]) -> String {
        let Some(rest) = body.strip_prefix(self.raw.as_slice()) else {
            return relaxed_body_hash(body);
        };
        let mut state = self.state.clone();
        hash_canonical(rest, &mut state);
        B64.encode(state.finish())
    }
}

/// Where the body of `message` starts (after the blank line that ends the headers).
pub fn body_start(message: &[u8]) -> usize {
    message.len() - split(message).1.len()
}

/// The header block (with its last CRLF) and the body after the blank line.
fn split(message: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &[]),
    }
}

/// Header fields as (name, raw value including folding), in order.
fn header_fields(head: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut fields = Vec::with_capacity(24);
    let mut start = 0;
    for lf in memchr::memchr_iter(b'\n', head) {
        if matches!(head.get(lf + 1), Some(b' ' | b'\t')) {
            continue;
        }
        let line = &head[start..lf + 1];
        if let Some(colon) = memchr::memchr(b':', line) {
            fields.push((line[..colon].trim_ascii(), &line[colon + 1..]));
        }
        start = lf + 1;
    }
    fields
}

/// What `h=` lists, in order, each with the field it signs: each signed header as often
/// as it occurs, from its last instance up (RFC 6376 5.4.2), and the oversigned ones
/// once more with nothing to sign.
fn signed_headers<'m>(fields: &[(&[u8], &'m [u8])]) -> Vec<(&'static str, Option<&'m [u8]>)> {
    let mut plan = Vec::with_capacity(24);
    for wanted in SIGNED_HEADERS {
        let instances = fields
            .iter()
            .rev()
            .filter(|(name, _)| name.eq_ignore_ascii_case(wanted.as_bytes()));
        plan.extend(instances.map(|(_, raw)| (wanted, Some(*raw))));
        if OVERSIGNED_HEADERS.contains(&wanted) {
            plan.push((wanted, None));
        }
    }
    plan
}

/// Relaxed header canonicalization (RFC 6376 3.4.2): lower-case name, unfolded value
/// with runs of whitespace as one space, none at either end. Appends without CRLF.
fn relaxed_header(name: &str, raw_value: &[u8], out: &mut Vec<u8>) {
    out.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
    out.push(b':');
    let mut pending_space = false;
    let mut started = false;
    for &b in raw_value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => pending_space = started,
            _ => {
                if pending_space {
                    out.push(b' ');
                    pending_space = false;
                }
                out.push(b);
                started = true;
            }
        }
    }
}

/// The `bh=` tag a signature of `message` carries: the SHA-256 of its body in relaxed
/// canonicalization, in base64. (Part of [`DkimSigner::sign`]; public so its cost can be
/// measured on its own.)
pub fn body_hash(message: &[u8]) -> String {
    relaxed_body_hash(split(message).1)
}

/// Every recipient's body differs (links and tokens are personal, and quoted-printable
/// spreads them over the lines), so the body is hashed for each message (after the start
/// an issue's messages share, see [`SharedBody`]).
fn relaxed_body_hash(body: &[u8]) -> String {
    let mut state = digest::Context::new(&digest::SHA256);
    hash_canonical(body, &mut state);
    B64.encode(state.finish())
}

/// Feeds the relaxed canonical form of `body` to `state`, in as few pieces as it can:
/// per-line hash updates cost several times the SHA-256 itself. Lines that are canonical
/// already (nearly all) are hashed where they lie; the others are rewritten in a buffer
/// each thread keeps.
fn hash_canonical(body: &[u8], state: &mut digest::Context) {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|scratch| {
        relaxed_body_pieces(body, scratch, &mut |piece| state.update(piece));
        // A body far larger than usual does not keep its buffer for the thread's life.
        if scratch.capacity() > 1 << 20 {
            *scratch = Vec::new();
        }
    });
}

/// The searchers for the two runs a canonical line cannot hold, made once: making one
/// per search cost as much as the search.
static TWO_SPACES: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"  "));
static SPACE_AT_LINE_END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b" \r\n"));

/// Relaxed body canonicalization (RFC 6376 3.4.4) of `body`, handed to `feed` in order,
/// in pieces: whitespace runs as one space, none at line ends, no empty lines at the end,
/// and a final CRLF unless the body is empty.
///
/// Everything before the last line with text ends in CRLF in a message gazette builds,
/// and each of those lines is canonical unless it holds a tab, two spaces in a row or a
/// space before its CRLF: one search for each over the whole body (not a few per line)
/// finds the lines to rewrite, and the runs between them are fed as they are. The last
/// line with text and the blank lines after it go through [`relaxed_body_into`], as does
/// a body with a line feed not after a carriage return.
fn relaxed_body_pieces(body: &[u8], scratch: &mut Vec<u8>, feed: &mut dyn FnMut(&[u8])) {
    let last_text = body
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    let tail_start = last_text.map_or(0, |at| {
        memchr::memrchr(b'\n', &body[..at]).map_or(0, |lf| lf + 1)
    });
    let (head, tail) = body.split_at(tail_start);
    let bare_lf = memchr::memchr_iter(b'\n', head).any(|lf| lf == 0 || head[lf - 1] != b'\r');
    if bare_lf {
        scratch.clear();
        relaxed_body_into(body, scratch);
        feed(scratch);
        return;
    }
    // Where the next line to rewrite is found by each search, from `at` on.
    let find = |search: usize, from: usize| -> usize {
        let rest = &head[from..];
        let found = match search {
            0 => memchr::memchr(b'\t', rest),
            1 => TWO_SPACES.find(rest),
            _ => SPACE_AT_LINE_END.find(rest),
        };
        found.map_or(usize::MAX, |i| from + i)
    };
    let mut next = [find(0, 0), find(1, 0), find(2, 0)];
    let mut at = 0;
    while at < head.len() {
        for (search, position) in next.iter_mut().enumerate() {
            if *position < at {
                *position = find(search, at);
            }
        }
        let problem = next.iter().copied().min().unwrap_or(usize::MAX);
        if problem == usize::MAX {
            feed(&head[at..]);
            break;
        }
        let line_start = memchr::memrchr(b'\n', &head[at..problem]).map_or(at, |lf| at + lf + 1);
        // Every line of `head` ends in CRLF.
        let line_end = problem
            + memchr::memchr(b'\n', &head[problem..]).expect("head ends with a line feed")
            + 1;
        if line_start > at {
            feed(&head[at..line_start]);
        }
        scratch.clear();
        relaxed_line(&head[line_start..line_end - 2], scratch);
        scratch.extend_from_slice(b"\r\n");
        feed(scratch);
        at = line_end;
    }
    if !tail.is_empty() {
        scratch.clear();
        relaxed_body_into(tail, scratch);
        feed(scratch);
    }
}

/// Relaxed body canonicalization (RFC 6376 3.4.4), appended to `out`, a line at a time.
fn relaxed_body_into(body: &[u8], out: &mut Vec<u8>) {
    let mut empty_lines = 0usize;
    let mut rest = Some(body);
    while let Some(text) = rest {
        let line = match memchr::memchr(b'\n', text) {
            Some(at) => {
                rest = Some(&text[at + 1..]);
                &text[..at]
            }
            None => {
                rest = None;
                text
            }
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Empty lines are only kept when a line with text follows: written ahead, and
        // taken back if this line turns out empty too.
        let start = out.len();
        for _ in 0..empty_lines {
            out.extend_from_slice(b"\r\n");
        }
        let content = out.len();
        relaxed_line(line, out);
        if out.len() == content {
            out.truncate(start);
            empty_lines += 1;
            continue;
        }
        empty_lines = 0;
        out.extend_from_slice(b"\r\n");
    }
}

/// One line (without its line end) in relaxed form, appended to `out`: each run of
/// whitespace as one space, none at the end.
fn relaxed_line(mut line: &[u8], out: &mut Vec<u8>) {
    // Most lines are canonical already: words with single spaces between them.
    // Checking that is a few SIMD scans; folding word by word is not.
    if memchr::memchr(b'\t', line).is_none()
        && !line.ends_with(b" ")
        && TWO_SPACES.find(line).is_none()
    {
        out.extend_from_slice(line);
        return;
    }
    loop {
        match memchr::memchr2(b' ', b'\t', line) {
            None => {
                out.extend_from_slice(line);
                return;
            }
            Some(at) => {
                out.extend_from_slice(&line[..at]);
                match line[at..].iter().position(|&b| b != b' ' && b != b'\t') {
                    // Whitespace at the end of the line is dropped.
                    None => return,
                    Some(run) => {
                        out.push(b' ');
                        line = &line[at + run..];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    relaxed_body_into(body, &mut out);
    out
}

/// The canonicalization as first written (byte by byte), kept to check the one above
/// against.
#[cfg(test)]
fn relaxed_body_reference(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut empty_lines = 0usize;
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut canonical = Vec::with_capacity(line.len());
        let mut pending_space = false;
        for &b in line {
            if b == b' ' || b == b'\t' {
                pending_space = true;
            } else {
                if pending_space {
                    canonical.push(b' ');
                    pending_space = false;
                }
                canonical.push(b);
            }
        }
        if canonical.is_empty() {
            empty_lines += 1;
            continue;
        }
        for _ in 0..empty_lines {
            out.extend_from_slice(b"\r\n");
        }
        empty_lines = 0;
        out.extend_from_slice(&canonical);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Folds the tag list so no line passes 78 columns: breaks go before a tag, and long
/// values (`h=`) break at their colons.
fn fold(tags: &str) -> String {
    const WIDTH: usize = 76;
    let mut out = String::with_capacity(tags.len() + 32);
    let mut column = "DKIM-Signature: ".len();
    let count = tags.split("; ").count();
    for (i, tag) in tags.split("; ").enumerate() {
        let piece = if i == 0 {
            tag.to_owned()
        } else {
            format!(" {tag}")
        };
        // The last tag is `b=`, whose value follows it directly.
        let sep = if i + 1 == count { "" } else { ";" };
        if column + piece.len() + 1 > WIDTH && column > 1 {
            out.push_str("\r\n\t");
            column = 1;
            let piece = piece.trim_start();
            // A long h= list breaks after its colons.
            for (j, part) in piece.split_inclusive(':').enumerate() {
                if j > 0 && column + part.len() > WIDTH {
                    out.push_str("\r\n\t");
                    column = 1;
                }
                out.push_str(part);
                column += part.len();
            }
        } else {
            out.push_str(&piece);
            column += piece.len();
        }
        out.push_str(sep);
        column += sep.len();
    }
    out
}

/// The signature value on lines of its own, 72 characters each (whitespace inside and
/// around the `b=` value is ignored by verifiers).
fn fold_base64(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + b64.len() / 36);
    for chunk in b64.as_bytes().chunks(72) {
        out.push_str("\r\n\t");
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_body_follows_rfc_6376() {
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b"a\r\n\r\nb"), b"a\r\n\r\nb\r\n");
        assert_eq!(relaxed_body(b" \t \r\nx\n \n"), b"\r\nx\r\n");
    }

    #[test]
    fn the_run_copying_canonicalization_equals_the_byte_copying_one() {
        let samples: [&[u8]; 9] = [
            b"",
            b"a \t b\t\tc  \r\n \t \r\nd\r\n \r\n",
            b"\n",
            b"plain\r\nlines\r\n",
            b"  lead\r\ntrail \t\r\n\r\n \r\nmid  dle\r\n",
            b"bare\nlf\n\nend",
            b"a\rb c\r\r\n",
            b"\t\r\n\r\nx",
            b"last line without end   ",
        ];
        for body in samples {
            assert_eq!(
                relaxed_body(body),
                relaxed_body_reference(body),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let message = b"Subject: x\r\n\r\n  body \r\n\r\n";
        assert_eq!(
            body_hash(message),
            B64.encode(digest::digest(
                &digest::SHA256,
                &relaxed_body_reference(b"  body \r\n\r\n")
            ))
        );
    }

    /// The pieces [`relaxed_body_pieces`] feeds, joined.
    fn relaxed_body_in_pieces(body: &[u8]) -> Vec<u8> {
        let mut joined = Vec::new();
        relaxed_body_pieces(body, &mut Vec::new(), &mut |piece| {
            joined.extend_from_slice(piece)
        });
        joined
    }

    #[test]
    fn the_body_fed_in_pieces_is_the_byte_copying_canonicalization() {
        // Every body of up to seven bytes from text, blanks and line ends, and longer
        // ones with lines to rewrite between canonical ones.
        let alphabet = [b'a', b' ', b'\t', b'\r', b'\n'];
        let mut bodies: Vec<Vec<u8>> = vec![Vec::new()];
        let mut last: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..7 {
            last = last
                .iter()
                .flat_map(|body| {
                    alphabet.iter().map(move |&b| {
                        let mut longer = body.clone();
                        longer.push(b);
                        longer
                    })
                })
                .collect();
            bodies.extend(last.iter().cloned());
        }
        let lines: [&[u8]; 8] = [
            b"words in a line\r\n",
            b"  indented\r\n",
            b"tab\there\r\n",
            b"trailing space \r\n",
            b"\r\n",
            b" \t \r\n",
            b"a\rb\r\n",
            b"=3D soft break=\r\n",
        ];
        for a in lines {
            for b in lines {
                for c in lines {
                    for end in [&b""[..], b"last", b"last \r\n\r\n \r\n", b"bare\nlf\r\n"] {
                        bodies.push([a, b, c, a, end].concat());
                    }
                }
            }
        }
        for body in &bodies {
            assert_eq!(
                relaxed_body_in_pieces(body),
                relaxed_body_reference(body),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn canonical_lines_are_hashed_where_they_lie() {
        let body = b"one line\r\nanother  one\r\nthird\r\nfourth\r\nend\r\n\r\n";
        let within = body.as_ptr_range();
        let mut pieces: Vec<(bool, Vec<u8>)> = Vec::new();
        relaxed_body_pieces(body, &mut Vec::new(), &mut |piece| {
            let inside = within.contains(&piece.as_ptr());
            pieces.push((inside, piece.to_vec()));
        });
        // The two canonical runs are the message's own bytes; the rewritten line and
        // the last line with text are copies.
        let expected: [(bool, &[u8]); 4] = [
            (true, b"one line\r\n"),
            (false, b"another one\r\n"),
            (true, b"third\r\nfourth\r\n"),
            (false, b"end\r\n"),
        ];
        let expected: Vec<(bool, Vec<u8>)> = expected
            .iter()
            .map(|(inside, p)| (*inside, p.to_vec()))
            .collect();
        assert_eq!(pieces, expected);
    }

    #[test]
    fn a_body_hash_resumed_after_the_shared_start_equals_the_whole_one() {
        let head = b"From: a@x.org\r\n\r\n";
        let message = |tail: &str| {
            let mut m = head.to_vec();
            m.extend_from_slice(b"--=_b\r\nshared  line \r\n\r\n \t\r\nwords\r\n\r\n  \r\n");
            m.extend_from_slice(tail.as_bytes());
            m
        };
        let (a, b) = (message("for  Ann \r\n\r\n"), message("for Bob\r\nend\r\n"));
        let shared = SharedBody::of(&a, &b).expect("a shared start");
        // It ends after the last line with text: the blank lines after it may be
        // dropped or kept depending on what follows, so they are not shared.
        assert_eq!(
            shared.raw,
            b"--=_b\r\nshared  line \r\n\r\n \t\r\nwords\r\n".to_vec()
        );
        let third = message("for Cy\r\n\r\n\r\n");
        for m in [&a, &b, &third] {
            let body = split(m).1;
            assert_eq!(shared.body_hash(body), relaxed_body_hash(body));
        }
        // A body that does not begin with it is hashed whole.
        let other = b"--=_c\r\nshared  line \r\n".to_vec();
        assert_eq!(shared.body_hash(&other), relaxed_body_hash(&other));
        // Nothing in common, or only blank lines: nothing to share.
        assert!(SharedBody::of(b"H: x\r\n\r\nab\r\n", b"H: x\r\n\r\ncd\r\n").is_none());
        assert!(SharedBody::of(b"H: x\r\n\r\n \r\nab", b"H: x\r\n\r\n \r\ncd").is_none());
    }

    #[test]
    fn relaxed_headers_follow_rfc_6376() {
        // The example of RFC 6376 3.4.5.
        let mut out = Vec::new();
        relaxed_header("a", b" X\r\n", &mut out);
        assert_eq!(out, b"a:X");
        out.clear();
        relaxed_header("b", b" Y\t\r\n\tZ  \r\n", &mut out);
        assert_eq!(out, b"b:Y Z");
    }

    #[test]
    fn folded_headers_are_read_whole_and_names_oversigned() {
        let head = b"From: A <a@x.org>\r\nSubject: one\r\n two\r\nTo: b@y.org\r\n";
        let fields = header_fields(head);
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[1], (&b"Subject"[..], &b" one\r\n two\r\n"[..]));
        let plan = signed_headers(&fields);
        let names: Vec<String> = plan.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
        // Absent oversigned headers are listed once: none may be added later.
        assert_eq!(
            names,
            [
                "from",
                "from",
                "reply-to",
                "to",
                "subject",
                "subject",
                "list-unsubscribe",
                "list-unsubscribe-post"
            ]
        );
    }

    #[test]
    fn folding_keeps_lines_short() {
        let tags = format!(
            "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=news; t=1; h={}; bh={}; b=",
            SIGNED_HEADERS.join(":").to_ascii_lowercase(),
            "A".repeat(43) + "="
        );
        let folded = fold(&tags);
        let first = format!("DKIM-Signature: {}", folded.split("\r\n").next().unwrap());
        assert!(first.len() <= 78, "{first}");
        assert!(folded.split("\r\n").all(|l| l.len() <= 78), "{folded}");
        assert!(folded.ends_with("b="), "{folded}");
        let unfolded: String = folded.replace("\r\n\t", " ");
        assert!(unfolded.contains("d=example.org;"), "{unfolded}");
        assert!(unfolded.contains("A=; b="), "{unfolded}");
        assert!(unfolded.contains("A=; b="), "{unfolded}");
    }
}
