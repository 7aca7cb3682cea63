//! Text people type into keygate (names, descriptions, reasons) and that keygate prints back: the
//! characters it refuses on the way in, and escapes on the way out of the CLI.

use std::borrow::Cow;
use std::ops::RangeInclusive;

use crate::store::Refusal;

/// The characters that do not show as themselves: control characters (a terminal would act on an
/// escape sequence) and the invisible format characters that reorder or hide text (bidi
/// controls and isolates, zero-width characters, the byte-order mark: "Trojan Source").
const HIDDEN: &[(char, char)] = &[
    ('\u{0000}', '\u{001F}'),
    ('\u{007F}', '\u{009F}'),
    ('\u{00AD}', '\u{00AD}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
];

pub(crate) fn hidden(c: char) -> bool {
    HIDDEN
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// What the OpenAPI document says a text field may hold, as a regular expression (ECMA-262 and
/// Python alike): no hidden character (but line breaks where `line_breaks`), and at least one
/// that is not white space where `required`. [`check`] refuses exactly what it does not match,
/// once the length is right (a test holds the two together).
pub(crate) fn pattern(line_breaks: bool, required: bool) -> String {
    let mut ranges = String::new();
    for &(first, last) in HIDDEN {
        let escape = |c: char| format!("\\u{:04x}", u32::from(c));
        if line_breaks && first == '\u{0000}' {
            ranges.push_str(&format!(
                "{}-{}{}-{}",
                escape(first),
                escape('\u{0009}'),
                escape('\u{000B}'),
                escape(last)
            ));
        } else if first == last {
            ranges.push_str(&escape(first));
        } else {
            ranges.push_str(&format!("{}-{}", escape(first), escape(last)));
        }
    }
    if required {
        format!("^[^{ranges}]*[^\\s{ranges}][^{ranges}]*$")
    } else {
        format!("^[^{ranges}]*$")
    }
}

/// `text` with no [`hidden`] character (line breaks allowed where `line_breaks`), then trimmed
/// of white space and `chars` long; refused with `code` and a message that names `field`.
pub(crate) fn check(
    field: &str,
    code: &'static str,
    text: &str,
    chars: RangeInclusive<usize>,
    line_breaks: bool,
) -> Result<String, Refusal> {
    let shown = |c: char| !hidden(c) || (line_breaks && c == '\n');
    let visible = text.chars().all(shown);
    let text = text.trim();
    if !visible || !chars.contains(&text.chars().count()) {
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

    /// The document's patterns and `check` agree on every character of the planes that matter,
    /// alone, inside a word and between spaces.
    #[test]
    fn the_patterns_refuse_exactly_what_check_refuses() {
        let chars = (0..0x3100_u32)
            .chain(0xFE00..=0xFFFD)
            .filter_map(char::from_u32);
        let cases = [(false, false), (false, true), (true, false), (true, true)];
        let compiled: Vec<_> = cases
            .iter()
            .map(|&(line_breaks, required)| {
                let pattern = pattern(line_breaks, required);
                (line_breaks, required, regex::Regex::new(&pattern).unwrap())
            })
            .collect();
        for c in chars {
            for text in [
                c.to_string(),
                format!("x{c}y"),
                format!(" {c} "),
                String::new(),
            ] {
                for (line_breaks, required, regex) in &compiled {
                    let least = usize::from(*required);
                    let accepted = check("f", "c", &text, least..=10, *line_breaks).is_ok();
                    assert_eq!(
                        regex.is_match(&text),
                        accepted,
                        "{text:?} line_breaks={line_breaks} required={required}"
                    );
                }
            }
        }
    }

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
