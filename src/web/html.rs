//! The HTML of gazette's own pages: one small layout, no JavaScript, readable on a phone.
//!
//! Every value that did not come from this file goes through [`esc`]; page bodies are
//! built with `format!` from escaped pieces, so there is no template that could forget.

use axum::response::Html;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    crate::render::escape_html(text)
}

/// Inline styles; the CSP allows inline styles and nothing else.
const STYLE: &str = "\
body{margin:0;padding:1rem;font:1.05rem/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;\
color:#1b1b1b;background:#fff}\
main{max-width:36rem;margin:0 auto}\
h1{font-size:1.5rem;line-height:1.25;margin:.5rem 0 1rem}\
label{display:block;font-weight:600;margin:1rem 0 .25rem}\
input[type=email],input[type=text]{box-sizing:border-box;width:100%;padding:.6rem;font:inherit;\
border:1px solid #767676;border-radius:4px}\
button{margin-top:1.25rem;padding:.7rem 1.4rem;font:inherit;font-weight:600;color:#fff;\
background:#1d5fa8;border:0;border-radius:4px;cursor:pointer}\
.note{color:#555;font-size:.95rem}\
.error{color:#a4000f;font-weight:600}\
ul.archive{padding-left:1.2rem}ul.archive li{margin:.4rem 0}\
a{color:#1d5fa8}\
footer{margin-top:2rem;border-top:1px solid #ddd;padding-top:.75rem;color:#555;font-size:.9rem}\
@media (prefers-color-scheme:dark){body{color:#eee;background:#141414}a{color:#8cb8ff}\
.note,footer{color:#bbb}input[type=email],input[type=text]{background:#222;color:#eee}\
.error{color:#ff8a8a}}";

/// A whole page: `title` is plain text (escaped here), `body` is HTML built from escaped
/// parts by the caller.
pub fn page(newsletter: &str, title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"referrer\" content=\"no-referrer\">\n\
<title>{title} · {name}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
<p class=\"note\">{name}</p>\n<h1>{title}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        title = esc(title),
        name = esc(newsletter),
    ))
}

/// The field the unsubscribe page's button sends beside the RFC 8058 one, so the
/// consent record can tell the page from a mail provider's one-click POST.
pub const FROM_PAGE: (&str, &str) = ("from", "page");

/// The unsubscribe page's button: the RFC 8058 field and [`FROM_PAGE`], posting to
/// `action` (a same-site path).
pub fn one_click_form(action: &str, button: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\">\n\
<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n\
<input type=\"hidden\" name=\"{}\" value=\"{}\">\n\
<button type=\"submit\">{}</button>\n</form>",
        esc(action),
        FROM_PAGE.0,
        FROM_PAGE.1,
        esc(button)
    )
}

/// A form with no fields posting to `action`.
pub fn button_form(action: &str, button: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\">\n<button type=\"submit\">{}</button>\n</form>",
        esc(action),
        esc(button)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn page_escapes_its_title() {
        let Html(html) = page("News & <Views>", "<b>", "<p>ok</p>");
        assert!(html.contains("<title>&lt;b&gt; · News &amp; &lt;Views&gt;</title>"));
        assert!(!html.contains("<script"));
    }
}
