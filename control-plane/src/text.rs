//! Text people type into keygate (names, descriptions, reasons) and that keygate prints back: the
//! characters it refuses on the way in, and escapes on the way out of the CLI.

use std::borrow::Cow;
use std::ops::RangeInclusive;

use crate::store::Refusal;

/// A character that does not show as itself: control characters (a terminal would act on an
/// escape sequence) and the invisible format characters that reorder or hide text (bidi
/// controls and isolates, zero-width characters, the byte-order mark: "Trojan Source").
pub(crate) fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// `text` trimmed, `chars` long, with no [`hidden`] character (line breaks allowed where
/// `line_breaks`); refused with `code` and a message that names `field`.
pub(crate) fn check(
    field: &str,
    code: &'static str,
    text: &str,
    chars: RangeInclusive<usize>,
    line_breaks: bool,
) -> Result<String, Refusal> {
    let text = text.trim();
    let shown = |c: char| !hidden(c) || (line_breaks && c == '\n');
    if !chars.contains(&text.chars().count()) || !text.chars().all(shown) {
        let breaks = if line_breaks {
            " (line breaks allowed)"
        } else {
            ""
        };
        return Err(Refusal::invalid(
            code,
            format!(
                "{field} must be {} to {} characters, with no control, bidi or zero-width characters{breaks}",
                chars.start(),
                chars.end()
            ),
        ));
    }
    Ok(text.to_owned())
}

/// `text` as the CLI prints it: every [`hidden`] character as a visible `\u{..}` escape.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if hidden(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_refused_and_named() {
        for text in [
            "evil\u{1b}[2Jname",
            "a\u{0}b",
            "admin\u{202E}gnp.exe",
            "zero\u{200B}width",
            "\u{2066}isolate\u{2069}",
            "bom\u{FEFF}",
            "two\nlines",
        ] {
            let refused = check("name", "invalid_name", text, 1..=200, false).unwrap_err();
            assert!(refused.to_string().contains("name must be"), "{text:?}");
        }
        assert_eq!(
            check(
                "description",
                "invalid_description",
                " two\nlines ",
                0..=10,
                true
            )
            .unwrap(),
            "two\nlines"
        );
        assert!(check("description", "invalid_description", "a\u{7}", 0..=10, true).is_err());
        assert_eq!(
            check("name", "invalid_name", " Billing sync ", 1..=200, false).unwrap(),
            "Billing sync"
        );
        assert_eq!(
            check("name", "invalid_name", "café ☕ 日本", 1..=200, false).unwrap(),
            "café ☕ 日本"
        );
        assert!(check("name", "invalid_name", "   ", 1..=200, false).is_err());
        assert!(check("name", "invalid_name", "abc", 1..=2, false).is_err());
    }

    #[test]
    fn the_cli_shows_hidden_characters_as_escapes() {
        assert_eq!(printable("plain café"), "plain café");
        assert_eq!(printable("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(printable("x\u{202E}y"), "x\\u{202e}y");
    }
}
