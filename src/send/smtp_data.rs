//! The bytes that follow an SMTP `DATA` command: the message with CRLF line ends, made
//! transparent (RFC 5321 §4.5.2: a line that starts with "." gets another "."), and the
//! end-of-data line "." after it.
//!
//! lettre does this one byte at a time, pushing each byte into the output and stepping a
//! state machine: about 65 µs for a 30 KB message, more than building the message.
//! Here the buffer is cut at its line feeds (`memchr`, many bytes per step) and copied a
//! line at a time, in one pass.
//!
//! A relay that offers CHUNKING takes the message as it is, in a BDAT chunk
//! ([`chunk_text`]), when every line already ends with CRLF, as gazette builds them.

/// The DATA payload for `message`: every line ended by CRLF (a bare LF becomes CRLF; a
/// last line without an end gets one), every line starting with "." doubled, and the
/// closing ".\r\n" after the last line.
pub(super) fn data_payload(message: &[u8]) -> Vec<u8> {
    // Dots at line starts are rare (quoted-printable never starts a line with one), and
    // bare LFs absent in what gazette builds: a little headroom saves a reallocation.
    let mut out = Vec::with_capacity(message.len() + message.len() / 256 + 8);
    let mut rest = message;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            out.push(b'.');
        }
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
        rest = next;
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// `message` as the text of one BDAT chunk (RFC 3030), which goes as it is: when it is
/// UTF-8 (lettre writes text) and every line ends with CRLF, the last one included.
/// Otherwise `None`, and it goes after DATA as [`data_payload`].
pub(super) fn chunk_text(message: &[u8]) -> Option<&str> {
    let crlf_only =
        memchr::memchr_iter(b'\n', message).all(|at| at > 0 && message[at - 1] == b'\r');
    if !crlf_only || !message.ends_with(b"\r\n") {
        return None;
    }
    std::str::from_utf8(message).ok()
}

#[cfg(test)]
mod tests {
    use super::{chunk_text, data_payload};

    fn payload(message: &str) -> String {
        String::from_utf8(data_payload(message.as_bytes())).unwrap()
    }

    #[test]
    fn a_message_with_crlf_ends_gets_only_the_closing_dot() {
        assert_eq!(
            payload("Subject: hi\r\n\r\nbody\r\n"),
            "Subject: hi\r\n\r\nbody\r\n.\r\n"
        );
    }

    #[test]
    fn lines_starting_with_a_dot_are_doubled() {
        assert_eq!(
            payload(".first\r\nmid.dle\r\n.\r\n..two\r\n"),
            "..first\r\nmid.dle\r\n..\r\n...two\r\n.\r\n"
        );
        // A dot after a bare LF starts a line too.
        assert_eq!(payload("a\n.b\n"), "a\r\n..b\r\n.\r\n");
    }

    #[test]
    fn bare_line_feeds_become_crlf() {
        assert_eq!(payload("a\nb\r\nc\n"), "a\r\nb\r\nc\r\n.\r\n");
        assert_eq!(payload("\n\n"), "\r\n\r\n.\r\n");
    }

    #[test]
    fn a_last_line_without_an_end_gets_crlf_before_the_dot() {
        assert_eq!(payload("body"), "body\r\n.\r\n");
        assert_eq!(payload("body\r\n."), "body\r\n..\r\n.\r\n");
        assert_eq!(payload(""), ".\r\n");
    }

    #[test]
    fn a_carriage_return_inside_a_line_is_kept() {
        assert_eq!(payload("a\rb\r\n"), "a\rb\r\n.\r\n");
    }

    #[test]
    fn the_payload_unstuffs_to_the_message() {
        // What a server does with it: strip the closing line, undouble leading dots.
        let message = "From: a@b\r\n\r\n.hidden\r\n..two\r\n.\r\ntext\r\n";
        let sent = payload(message);
        let body = sent.strip_suffix(".\r\n").unwrap();
        let unstuffed: String = body
            .split_inclusive("\r\n")
            .map(|line| line.strip_prefix('.').unwrap_or(line))
            .collect();
        assert_eq!(unstuffed, message);
    }

    #[test]
    fn a_chunk_is_the_message_as_it_is_only_when_every_line_ends_with_crlf() {
        let message = "Subject: x\r\n\r\n.a line with a dot\r\n";
        assert_eq!(chunk_text(message.as_bytes()), Some(message));
        assert_eq!(chunk_text(b"Subject: x\r\n\r\nbare\nline\r\n"), None);
        assert_eq!(chunk_text(b"\nstarts bare\r\n"), None);
        assert_eq!(chunk_text(b"Subject: x\r\n\r\nno end"), None);
        assert_eq!(chunk_text(b"Subject: \xff\r\n"), None);
    }
}
