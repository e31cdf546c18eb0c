use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use super::ParseError;

/// A person's display name: trimmed, 1..=100 characters, no control, format or separator
/// characters: a newline in a name would be a header-injection vector in mail, and invisible
/// (U+200B) or direction-changing (U+202E) characters let a name pose as another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

const MAX_CHARS: usize = 100;

impl FullName {
    /// Validates `raw`; the only way to make a `FullName`.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ParseError("full_name must not be empty"));
        }
        if trimmed.chars().count() > MAX_CHARS {
            return Err(ParseError("full_name must be at most 100 characters"));
        }
        if trimmed.chars().any(is_hidden) {
            return Err(ParseError(
                "full_name must not contain control, invisible or direction-changing characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The validated name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Control (Cc), format (Cf: zero-width, bidirectional overrides) and line or paragraph
/// separator (Zl, Zp) characters.
fn is_hidden(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_accepts_unicode_names() {
        assert_eq!(FullName::parse("  김철수 ").unwrap().as_str(), "김철수");
    }

    #[test]
    fn rejects_empty_long_and_control_characters() {
        assert!(FullName::parse("   ").is_err());
        assert!(FullName::parse(&"x".repeat(101)).is_err());
        assert!(FullName::parse("Eve\r\nBcc: all@x.org").is_err());
    }

    #[test]
    fn rejects_invisible_and_direction_changing_characters() {
        for bad in [
            "Admin\u{202E}nimda",
            "Ad\u{200B}min",
            "\u{2066}Kim\u{2069}",
            "Kim\u{2028}Lee",
            "Kim\u{FEFF}Lee",
            "Kim\u{0085}Lee",
        ] {
            assert!(FullName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(FullName::parse("José María O'Neil-Smith").is_ok());
    }
}
