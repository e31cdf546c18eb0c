//! The languages mail is written in, and the choice of one from an `Accept-Language` header.

use std::fmt;
use std::str::FromStr;

/// A language the service writes mail in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Locale {
    /// Korean (`ko`), the product's first language.
    Ko,
    /// English (`en`).
    En,
}

impl Locale {
    /// Every locale, for tests and template checks.
    pub const ALL: [Locale; 2] = [Locale::Ko, Locale::En];

    /// The language tag: `ko` or `en`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ko => "ko",
            Self::En => "en",
        }
    }

    /// The locale a language tag names by its primary subtag (`ko-KR` is `ko`), if we have it.
    fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        match primary.to_ascii_lowercase().as_str() {
            "ko" => Some(Self::Ko),
            "en" => Some(Self::En),
            _ => None,
        }
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Locale {
    type Err = String;

    /// `ko` or `en` (a region such as `ko-KR` is accepted and ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_tag(s.trim()).ok_or_else(|| format!("must be ko or en, not {s:?}"))
    }
}

/// The supported language an `Accept-Language` header value settles on by itself, or None when
/// the choice would fall to the service's default (no header, `*`, nothing supported).
pub fn preferred_locale(header: Option<&str>) -> Option<Locale> {
    let (ko, en) = (
        from_accept_language(header, Locale::Ko),
        from_accept_language(header, Locale::En),
    );
    (ko == en).then_some(ko)
}

/// The locale an `Accept-Language` header value asks for: the supported language with the
/// highest q-value (the earlier one on a tie); `*` stands for `default`; a language with
/// `q=0` is refused; no header, or nothing supported, gives `default`. Malformed entries are
/// skipped, never an error: a client's header must not break sending its mail.
pub fn from_accept_language(header: Option<&str>, default: Locale) -> Locale {
    let Some(header) = header else {
        return default;
    };
    let mut best: Option<(Locale, u16)> = None;
    let mut refused = Vec::new();
    for entry in header.split(',') {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let Some(q) = quality(parts) else {
            continue;
        };
        let locale = if tag == "*" {
            default
        } else if let Some(locale) = Locale::from_tag(tag) {
            locale
        } else {
            continue;
        };
        if q == 0 {
            refused.push(locale);
        } else if best.is_none_or(|(_, best_q)| q > best_q) {
            best = Some((locale, q));
        }
    }
    match best {
        Some((locale, _)) if !refused.contains(&locale) => locale,
        // The only acceptable match was refused elsewhere in the header (`en, en;q=0` is
        // contradictory): fall back rather than guess.
        _ => default,
    }
}

/// The q-value among an entry's parameters, in thousandths (`q=0.8` is 800); 1000 when there
/// is none; None when it is malformed.
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    for param in params {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let value: f32 = value.trim().parse().ok()?;
        if !(0.0..=1.0).contains(&value) {
            return None;
        }
        // In range by the check above, so the cast cannot truncate.
        return Some((value * 1000.0).round() as u16);
    }
    Some(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_header_that_settles_the_language_by_itself_is_a_preference() {
        assert_eq!(preferred_locale(Some("en-GB,en;q=0.8")), Some(Locale::En));
        assert_eq!(preferred_locale(Some("ko-KR")), Some(Locale::Ko));
        assert_eq!(preferred_locale(None), None);
        assert_eq!(preferred_locale(Some("*")), None);
        assert_eq!(preferred_locale(Some("fr, de;q=0.5")), None);
    }

    fn pick(header: &str) -> Locale {
        from_accept_language(Some(header), Locale::Ko)
    }

    #[test]
    fn no_header_or_nothing_supported_gives_the_default() {
        assert_eq!(from_accept_language(None, Locale::Ko), Locale::Ko);
        assert_eq!(from_accept_language(None, Locale::En), Locale::En);
        assert_eq!(pick(""), Locale::Ko);
        assert_eq!(pick("fr-FR, de;q=0.9"), Locale::Ko);
        assert_eq!(from_accept_language(Some("ja"), Locale::En), Locale::En);
    }

    #[test]
    fn regions_and_case_are_ignored() {
        assert_eq!(pick("ko-KR"), Locale::Ko);
        assert_eq!(from_accept_language(Some("KO-kr"), Locale::En), Locale::Ko);
        assert_eq!(pick("en-US"), Locale::En);
        assert_eq!(pick("en_GB"), Locale::En);
    }

    #[test]
    fn the_highest_q_value_wins_and_ties_go_to_the_first() {
        assert_eq!(pick("ko;q=0.5, en;q=0.9"), Locale::En);
        assert_eq!(pick("fr, en;q=0.8, ko;q=0.7"), Locale::En);
        assert_eq!(pick("en-US,en;q=0.9,ko-KR;q=0.8,ko;q=0.7"), Locale::En);
        assert_eq!(pick("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7"), Locale::Ko);
        assert_eq!(pick("en;q=0.5, ko;q=0.5"), Locale::En);
        assert_eq!(pick("en ; Q=0.3 , ko;q=0.2"), Locale::En);
    }

    #[test]
    fn q_zero_refuses_and_the_wildcard_means_the_default() {
        assert_eq!(pick("en;q=0"), Locale::Ko);
        assert_eq!(from_accept_language(Some("en;q=0"), Locale::En), Locale::En);
        assert_eq!(pick("*;q=0.5, en;q=0.9"), Locale::En);
        assert_eq!(from_accept_language(Some("*"), Locale::En), Locale::En);
        assert_eq!(pick("en, en;q=0"), Locale::Ko);
    }

    #[test]
    fn malformed_entries_are_skipped() {
        assert_eq!(pick("en;q=abc, ko;q=0.1"), Locale::Ko);
        assert_eq!(
            from_accept_language(Some("ko;q=2, en"), Locale::Ko),
            Locale::En
        );
        assert_eq!(pick(",,;;,en;q=0.4"), Locale::En);
        assert_eq!(pick("en;q=-1"), Locale::Ko);
    }

    #[test]
    fn settings_values_parse() {
        assert_eq!("ko".parse::<Locale>().unwrap(), Locale::Ko);
        assert_eq!(" EN ".parse::<Locale>().unwrap(), Locale::En);
        assert!("fr".parse::<Locale>().is_err());
    }
}
