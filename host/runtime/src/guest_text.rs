//! Text a guest controls, made fit to leave the sandbox: capped in length with a marker saying
//! so, and with every control character escaped, so that no guest line (a `log` message, a
//! stdout line, an error message, a tool's `describe` text) can pass for one of the host's.
//!
//! **Architecture invariant:** this module knows nothing about wasmtime or guests' interfaces;
//! the interfaces call it on whatever string a guest hands them before it reaches a log, an
//! error, the audit or a CLI.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Longest guest-provided text (an error message, a `describe` field) the host passes on;
/// the rest is cut and replaced by a marker ([`cap`]).
pub(crate) const MAX_GUEST_TEXT: usize = 64 * 1024;

/// Whether `c` must not reach a log or terminal as itself: C0 and C1 control characters
/// (newline, carriage return, NUL, escape, …), DEL, the Unicode line and paragraph separators,
/// and the bidirectional overrides and isolates (which can make text read as something else).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

/// `text` with every control character escaped: `\n`, `\r`, `\t`, `\0` as those two
/// characters, any other as `\u{XX}`. Text without any is returned as it is.
pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` cut to at most `max` bytes (at a character boundary), followed by a marker
/// `… [truncated: N bytes not shown]` when anything was cut.
pub fn cap(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… [truncated: {} bytes not shown]",
        &text[..end],
        text.len() - end
    ))
}

/// `text` capped at `max` bytes ([`cap`]), then with its control characters escaped
/// ([`escape_controls`]): what the host logs, returns or prints of a guest's text.
pub fn sanitize(text: &str, max: usize) -> String {
    escape_controls(&cap(text, max)).into_owned()
}

/// [`sanitize`] with [`MAX_GUEST_TEXT`], in place: for a guest's error message.
pub(crate) fn sanitize_owned(text: String) -> String {
    if text.len() <= MAX_GUEST_TEXT && !text.chars().any(needs_escape) {
        return text;
    }
    sanitize(&text, MAX_GUEST_TEXT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_escapes_every_control_character() {
        for (raw, shown) in [
            ("plain text", "plain text"),
            ("a\nb", "a\\nb"),
            ("a\r\nb", "a\\r\\nb"),
            ("nul\0here", "nul\\0here"),
            ("tab\tx", "tab\\tx"),
            ("\x1b[31mred", "\\u{1b}[31mred"),
            ("bell\x07", "bell\\u{7}"),
            ("del\x7f", "del\\u{7f}"),
            ("c1\u{9b}", "c1\\u{9b}"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
            ("rtl\u{202e}txt", "rtl\\u{202e}txt"),
            ("bom\u{feff}", "bom\\u{feff}"),
            ("ünïcödé ok €", "ünïcödé ok €"),
        ] {
            assert_eq!(escape_controls(raw), shown, "{raw:?}");
            assert!(!escape_controls(raw).contains(['\n', '\r', '\0']));
        }
    }

    #[test]
    fn guest_text_cap_cuts_at_a_char_boundary_and_says_so() {
        assert_eq!(cap("short", 10), "short");
        assert_eq!(cap("0123456789", 4), "0123… [truncated: 6 bytes not shown]");
        // "é" is two bytes: a cut inside it moves back to before it.
        assert_eq!(cap("aé", 2), "a… [truncated: 2 bytes not shown]");
        let big = "x".repeat(MAX_GUEST_TEXT * 4);
        let out = sanitize_owned(big);
        assert!(out.len() < MAX_GUEST_TEXT + 100, "{}", out.len());
        assert!(out.ends_with(&format!(
            "[truncated: {} bytes not shown]",
            MAX_GUEST_TEXT * 3
        )));
    }
}
