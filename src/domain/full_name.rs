use super::ParseError;

/// A person's display name: trimmed, 1..=100 characters, no control characters
/// (a newline in a name would be a header-injection vector in mail).
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
        if trimmed.chars().any(char::is_control) {
            return Err(ParseError("full_name must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The validated name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
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
}
