use std::fmt;

use unicode_normalization::UnicodeNormalization;

use super::ParseError;

/// An e-mail address in its one canonical form: trimmed, Unicode NFKC, lower-cased.
///
/// The unique index on users is on this form, so `A@X.org` and `a@x.org` are one account.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

/// RFC 5321 limits: 254 for the path, 64 for the local part.
const MAX_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;

impl EmailAddress {
    /// Normalises and validates `raw`; the only way to make an `EmailAddress`.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let normalised: String = raw.trim().nfkc().collect::<String>().to_lowercase();
        if normalised.is_empty() {
            return Err(ParseError("email must not be empty"));
        }
        if normalised.chars().count() > MAX_LEN {
            return Err(ParseError("email must be at most 254 characters"));
        }
        let Some((local, domain)) = normalised.rsplit_once('@') else {
            return Err(ParseError("email must contain '@'"));
        };
        if !valid_local(local) {
            return Err(ParseError("email has an invalid local part"));
        }
        if !valid_domain(domain) {
            return Err(ParseError("email has an invalid domain"));
        }
        Ok(Self(normalised))
    }

    /// The canonical form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn valid_local(local: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~.";
    !local.is_empty()
        && local.chars().count() <= MAX_LOCAL_LEN
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || SPECIALS.contains(c))
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.chars().count() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_whitespace_and_compatibility_forms() {
        let parsed = EmailAddress::parse("  Ｔest.User@Example.ORG ").unwrap();
        assert_eq!(parsed.as_str(), "test.user@example.org");
    }

    #[test]
    fn accepts_ordinary_addresses() {
        for ok in [
            "a@b.co",
            "first.last+tag@sub.example.com",
            "x_y-z@xn--bcher-kva.example",
        ] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a..b@example.com",
            ".a@example.com",
            "a.@example.com",
            "a b@example.com",
            "a@-x.com",
            "a@x..com",
            "a@ex ample.com",
            "a\n@example.com",
            "<a>@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejects_overlong_addresses() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(EmailAddress::parse(&long_local).is_err());
        let long = format!("a@{}.com", "b".repeat(260));
        assert!(EmailAddress::parse(&long).is_err());
    }
}
