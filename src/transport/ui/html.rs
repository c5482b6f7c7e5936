//! HTML output of the dashboard. Every value that did not come from this file goes through
//! [`esc`] (text and attribute values alike), so nothing a task holds (commands, output, file
//! names, plans, decisions) can become markup. Pages carry no inline script or style: the
//! Content-Security-Policy (`mod.rs`) allows only the compiled-in assets.

use std::fmt::{self, Display, Write};

/// A value escaped for HTML text or a quoted attribute.
pub struct Esc<'a>(&'a str);

pub fn esc(text: &str) -> Esc<'_> {
    Esc(text)
}

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'', '\0']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => "\u{fffd}",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// At most `max` bytes of `text`, cut at a character boundary, with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A whole page: the shared head (stylesheet, scripts named by the caller), the header with
/// the owner and the sign-out form, and `body`.
pub fn page(title: &str, owner: Option<&str>, csrf: Option<&str>, scripts: &[&str], body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · taskbox</title><link rel=\"stylesheet\" href=\"/ui/assets/dashboard.css\">",
        esc(title)
    );
    for script in scripts {
        let _ = write!(out, "<script src=\"/ui/assets/{}\" defer></script>", esc(script));
    }
    out.push_str("</head><body><header><a class=\"brand\" href=\"/ui/\">taskbox</a>");
    if let (Some(owner), Some(csrf)) = (owner, csrf) {
        let _ = write!(
            out,
            "<span class=\"owner\">signed in as <b id=\"owner\">{}</b></span>\
             <form method=\"post\" action=\"/ui/logout\" class=\"logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign out</button></form>",
            esc(owner),
            esc(csrf)
        );
    }
    out.push_str("</header><main>");
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\"").to_string(),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc("plain ünïcode").to_string(), "plain ünïcode");
        assert_eq!(esc("a\0b").to_string(), "a\u{fffd}b");
        let page = page("<t>", Some("o\"wner"), Some("c<s"), &["task.js"], "");
        assert!(page.contains("<title>&lt;t&gt; · taskbox</title>"), "{page}");
        assert!(
            page.contains(">o&quot;wner</b>") && page.contains("value=\"c&lt;s\""),
            "{page}"
        );
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        assert_eq!(cut("héllo", 2), "h…");
        assert_eq!(cut("héllo", 3), "hé…");
        assert_eq!(cut("hi", 10), "hi");
    }
}
