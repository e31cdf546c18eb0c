use std::fmt;

use unicode_normalization::UnicodeNormalization;

use super::ParseError;

/// An e-mail address in its one canonical form: trimmed, Unicode NFKC, the local part
/// lower-cased, the domain in its ASCII (IDNA/punycode) form, lower-cased.
///
/// The unique index on users is on this form, so `A@X.org` and `a@x.org` are one account, and
/// so are `a@bücher.example` and `a@xn--bcher-kva.example`. Mail goes to this form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

/// RFC 5321 limits: 254 for the path, 64 for the local part.
const MAX_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;

impl EmailAddress {
    /// Normalises and validates `raw`; the only way to make an `EmailAddress`.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let composed: String = raw.trim().nfkc().collect();
        if composed.is_empty() {
            return Err(ParseError("email must not be empty"));
        }
        let Some((local, domain)) = composed.rsplit_once('@') else {
            return Err(ParseError("email must contain '@'"));
        };
        let local = local.to_lowercase();
        if !valid_local(&local) {
            return Err(ParseError("email has an invalid local part"));
        }
        // UTS #46 processing maps case and compatibility forms and punycodes each label.
        let domain = idna::domain_to_ascii(domain)
            .map_err(|_| ParseError("email has an invalid domain"))?
            .to_ascii_lowercase();
        if !valid_domain(&domain) {
            return Err(ParseError("email has an invalid domain"));
        }
        let normalised = format!("{local}@{domain}");
        if normalised.chars().count() > MAX_LEN {
            return Err(ParseError("email must be at most 254 characters"));
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
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
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
    fn internationalised_domains_take_their_ascii_form() {
        let unicode = EmailAddress::parse("Kim@Bücher.Example").unwrap();
        let ascii = EmailAddress::parse("kim@xn--bcher-kva.example").unwrap();
        assert_eq!(unicode, ascii);
        assert_eq!(unicode.as_str(), "kim@xn--bcher-kva.example");
        assert_eq!(
            EmailAddress::parse("사용자@한국.kr").unwrap().as_str(),
            "사용자@xn--3e0b707e.kr"
        );
        assert!(
            EmailAddress::parse("a@xn--a.example").is_err(),
            "invalid punycode"
        );
    }

    #[test]
    fn rejects_overlong_addresses() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(EmailAddress::parse(&long_local).is_err());
        let long = format!("a@{}.com", "b".repeat(260));
        assert!(EmailAddress::parse(&long).is_err());
    }
}
