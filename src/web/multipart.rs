//! Just enough of multipart/form-data (RFC 7578) to read the one-click POST: the
//! values of the fields named `List-Unsubscribe`. A body we cannot read is no request.

/// The values of every part named `List-Unsubscribe` in `body`, given its
/// `Content-Type` header; `None` when the header has no boundary or the body does not
/// end with the closing delimiter.
pub(super) fn one_click_fields(content_type: &str, body: &[u8]) -> Option<Vec<Vec<u8>>> {
    let boundary = boundary(content_type)?;
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    // The preamble before the first delimiter is ignored, as RFC 2046 says.
    let mut rest = &body[find(body, delimiter)? + delimiter.len()..];
    let mut values = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Some(values);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let end = find(rest, &[b"\r\n", delimiter].concat())?;
        let part = &rest[..end];
        rest = &rest[end + 2 + delimiter.len()..];
        let head_end = find(part, b"\r\n\r\n");
        let (head, value) = match head_end {
            Some(i) => (&part[..i], &part[i + 4..]),
            None => (part, &b""[..]),
        };
        if part_name(head).as_deref() == Some("List-Unsubscribe") {
            values.push(value.to_vec());
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `boundary` parameter of a multipart Content-Type.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty() && b.len() <= 70)
    })
}

/// The `name` of a part's `Content-Disposition: form-data` header.
fn part_name(head: &[u8]) -> Option<String> {
    let head = std::str::from_utf8(head).ok()?;
    let disposition = head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    })?;
    let mut params = disposition.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    params.find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("name")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: &str = "multipart/form-data; boundary=\"b-1\"";

    #[test]
    fn reads_the_named_fields_only() {
        let body = b"preamble\r\n--b-1\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nNo\r\n\
--b-1\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nOne-Click\r\n--b-1--\r\n";
        assert_eq!(one_click_fields(TYPE, body), Some(vec![b"No".to_vec()]));
        let body = b"--b-1\r\nContent-Disposition: form-data; name=List-Unsubscribe\r\n\r\nOne-Click\r\n--b-1--";
        assert_eq!(
            one_click_fields(TYPE, body),
            Some(vec![b"One-Click".to_vec()])
        );
    }

    #[test]
    fn unreadable_bodies_are_none() {
        assert_eq!(one_click_fields("multipart/form-data", b"--x--"), None);
        let unterminated =
            b"--b-1\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click";
        assert_eq!(one_click_fields(TYPE, unterminated), None);
    }
}
