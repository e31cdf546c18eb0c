//! What a new password must be (NIST SP 800-63B, OWASP ASVS 5.0): long enough, not too long,
//! any characters (NFKC), no composition rules, not a common or breached password, and not
//! built from the account's own address or name.

use std::io::Read;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::{EmailAddress, FullName, Password};

/// The shortest minimum the service accepts (NIST SP 800-63B: at least 8).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password accepted, in characters (room for passphrases; bounds Argon2 input).
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Address parts and name words shorter than this are too common to refuse a password for.
const MIN_PERSONAL_CHARS: usize = 3;

/// Why a password was refused: a stable `code` and a message safe to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejection {
    /// Fewer characters than the configured minimum.
    #[error("the password must be at least {0} characters long")]
    TooShort(usize),
    /// More than [`MAX_PASSWORD_CHARS`] characters.
    #[error("the password must be at most 128 characters long")]
    TooLong,
    /// On the list of common and breached passwords.
    #[error(
        "this password is too common: it is on a list of passwords attackers try first; choose another"
    )]
    TooCommon,
    /// Built from the account's own e-mail address.
    #[error("the password must not be built from your e-mail address")]
    ContainsEmail,
    /// Built from the account's own name.
    #[error("the password must not be built from your name")]
    ContainsName,
}

impl PasswordRejection {
    /// The machine-readable code of the error body.
    pub fn code(self) -> &'static str {
        match self {
            Self::TooShort(_) => "password_too_short",
            Self::TooLong => "password_too_long",
            Self::TooCommon => "password_too_common",
            Self::ContainsEmail => "password_contains_email",
            Self::ContainsName => "password_contains_name",
        }
    }
}

/// The shipped list of common and breached passwords: lower-case, NFKC, 8 to 128 characters,
/// sorted by bytes, one per line, gzip-compressed (`assets/README.md` says where it is from).
const EMBEDDED_LIST: &[u8] = include_bytes!("../../assets/common-passwords.txt.gz");

/// A sorted list of common passwords, searched by binary search. The whole list is one string
/// with an offset per entry (about 2 MB of text and 0.8 MB of offsets for the shipped list),
/// loaded once at start-up.
pub struct CommonPasswords {
    text: String,
    /// Byte offset where each entry starts; entries end at the next `\n`.
    starts: Vec<u32>,
}

impl CommonPasswords {
    /// Inflates the list compiled into the binary.
    pub fn embedded() -> std::io::Result<Self> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(EMBEDDED_LIST).read_to_string(&mut text)?;
        Self::from_sorted_lines(text)
    }

    /// A list from `text`: lines sorted by bytes (refused otherwise: binary search needs it).
    pub fn from_sorted_lines(mut text: String) -> std::io::Result<Self> {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let mut starts = Vec::new();
        let mut start = 0usize;
        let mut previous: Option<&str> = None;
        for line in text.split_terminator('\n') {
            if previous.is_some_and(|p| p >= line) {
                return Err(std::io::Error::other(
                    "the common-password list is not sorted",
                ));
            }
            previous = Some(line);
            let offset = u32::try_from(start)
                .map_err(|_| std::io::Error::other("the common-password list is too large"))?;
            starts.push(offset);
            start += line.len() + 1;
        }
        Ok(Self { text, starts })
    }

    /// How many passwords it holds.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// True when `candidate` (lower-case, NFKC) is on the list.
    pub fn contains(&self, candidate: &str) -> bool {
        self.starts
            .binary_search_by(|&start| self.entry(start).cmp(candidate))
            .is_ok()
    }

    fn entry(&self, start: u32) -> &str {
        let rest = self.text.get(start as usize..).unwrap_or("");
        rest.split('\n').next().unwrap_or("")
    }
}

/// The rules a new password is held to.
#[derive(Clone)]
pub struct PasswordPolicy {
    min_chars: usize,
    common: Arc<CommonPasswords>,
}

impl PasswordPolicy {
    /// A policy with a minimum of `min_chars` (raised to [`MIN_PASSWORD_CHARS`]) and `common`.
    pub fn new(min_chars: usize, common: Arc<CommonPasswords>) -> Self {
        Self {
            min_chars: min_chars.clamp(MIN_PASSWORD_CHARS, MAX_PASSWORD_CHARS),
            common,
        }
    }

    /// Checks `raw` as a new password for the account at `email` named `name` (None when the
    /// name is not known yet: check it later with [`Self::check_name`]).
    pub fn check(
        &self,
        raw: &SecretString,
        email: &EmailAddress,
        name: Option<&FullName>,
    ) -> Result<Password, PasswordRejection> {
        let normalized = Password::normalize(raw);
        let password = normalized.expose_secret();
        let chars = password.chars().count();
        if chars < self.min_chars {
            return Err(PasswordRejection::TooShort(self.min_chars));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(PasswordRejection::TooLong);
        }
        let local = email
            .as_str()
            .rsplit_once('@')
            .map_or("", |(local, _)| local);
        built_from(password, local, PasswordRejection::ContainsEmail)?;
        if let Some(name) = name {
            built_from(password, name.as_str(), PasswordRejection::ContainsName)?;
        }
        if self.common.contains(&password.to_lowercase()) {
            return Err(PasswordRejection::TooCommon);
        }
        Ok(Password::accepted(normalized))
    }

    /// The name rule alone, for a password checked before the account's name was known.
    pub fn check_name(
        &self,
        password: &Password,
        name: &FullName,
    ) -> Result<(), PasswordRejection> {
        built_from(
            password.expose(),
            name.as_str(),
            PasswordRejection::ContainsName,
        )
    }
}

/// Refuses `password` with `rejection` when it contains `personal` (compared lower-case and
/// without separators: `Kim.Chulsoo` is in `kimchulsoo!`), or is made of nothing but the
/// words of `personal`, digits and symbols (`chulsoo1988!`).
fn built_from(
    password: &str,
    personal: &str,
    rejection: PasswordRejection,
) -> Result<(), PasswordRejection> {
    let compact = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let password = compact(password);
    let whole = compact(personal);
    if whole.chars().count() >= MIN_PERSONAL_CHARS && password.contains(&whole) {
        return Err(rejection);
    }
    let mut rest = password;
    let mut removed = false;
    for word in personal.split(|c: char| !c.is_alphanumeric()) {
        let word = compact(word);
        if word.chars().count() >= MIN_PERSONAL_CHARS && rest.contains(&word) {
            rest = rest.replace(&word, "");
            removed = true;
        }
    }
    if removed && !rest.chars().any(char::is_alphabetic) {
        return Err(rejection);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min: usize) -> PasswordPolicy {
        let list = "123456789\npassword\npassword1\nqwertyuiop\n".to_owned();
        PasswordPolicy::new(
            min,
            Arc::new(CommonPasswords::from_sorted_lines(list).unwrap()),
        )
    }

    fn check(
        policy: &PasswordPolicy,
        password: &str,
        email: &str,
        name: &str,
    ) -> Result<(), PasswordRejection> {
        let email = EmailAddress::parse(email).unwrap();
        let name = FullName::parse(name).unwrap();
        policy
            .check(&password.into(), &email, Some(&name))
            .map(drop)
    }

    #[test]
    fn length_is_counted_in_characters_after_nfkc_within_the_configured_minimum() {
        let p = policy(8);
        let ok = |pw: &str| check(&p, pw, "a@example.com", "Some One");
        assert_eq!(ok("pass123"), Err(PasswordRejection::TooShort(8)));
        assert_eq!(ok("비밀번호비밀번호"), Ok(()));
        assert_eq!(ok(&"x".repeat(128)), Ok(()));
        assert_eq!(ok(&"x".repeat(129)), Err(PasswordRejection::TooLong));
        // U+FB01 (the "fi" ligature) is two characters once normalised.
        assert_eq!(ok("\u{fb01}\u{fb01}\u{fb01}\u{fb01}"), Ok(()));
        let fifteen = policy(15);
        assert_eq!(
            check(&fifteen, "fourteen chars", "a@example.com", "Some One"),
            Err(PasswordRejection::TooShort(15))
        );
        assert_eq!(policy(3).min_chars, MIN_PASSWORD_CHARS, "never below 8");
    }

    #[test]
    fn no_composition_rules_any_characters() {
        let p = policy(8);
        for pw in [
            "alllowercase words",
            "😀😀😀😀😀😀😀😀",
            "        x       ",
            "ÄÖÜ ßäöü ñ",
        ] {
            assert_eq!(check(&p, pw, "a@example.com", "Some One"), Ok(()), "{pw}");
        }
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        let p = policy(8);
        for pw in ["password", "PassWord1", "123456789", "ＱＷＥＲＴＹＵＩＯＰ"] {
            assert_eq!(
                check(&p, pw, "a@example.com", "Some One"),
                Err(PasswordRejection::TooCommon),
                "{pw}"
            );
        }
    }

    #[test]
    fn passwords_built_from_the_address_or_the_name_are_refused() {
        let p = policy(8);
        let email = "kim.chulsoo@example.com";
        let name = "Lee Younghee";
        for (pw, why) in [
            ("kimchulsoo", PasswordRejection::ContainsEmail),
            ("my Kim.Chulsoo pass", PasswordRejection::ContainsEmail),
            ("chulsoo1988!", PasswordRejection::ContainsEmail),
            ("leeyounghee", PasswordRejection::ContainsName),
            ("Younghee 2024!!", PasswordRejection::ContainsName),
            ("Lee Younghee", PasswordRejection::ContainsName),
        ] {
            assert_eq!(check(&p, pw, email, name), Err(why), "{pw}");
            assert!(why.code().starts_with("password_contains_"));
        }
        // A word of the name inside a longer passphrase is fine.
        assert_eq!(check(&p, "younghee likes green tea", email, name), Ok(()));
        // Short parts are not held against anyone.
        assert_eq!(
            check(&p, "al-in-the-box", "al@example.com", "Al Bo"),
            Ok(())
        );
    }

    #[test]
    fn the_name_rule_can_run_later() {
        let p = policy(8);
        let email = EmailAddress::parse("x@example.com").unwrap();
        let pw = p.check(&"younghee1234".into(), &email, None).unwrap();
        let name = FullName::parse("Younghee").unwrap();
        assert_eq!(
            p.check_name(&pw, &name),
            Err(PasswordRejection::ContainsName)
        );
    }

    #[test]
    fn the_shipped_list_has_over_100_000_sorted_entries_and_finds_them() {
        let list = CommonPasswords::embedded().unwrap();
        assert!(list.len() > 100_000, "{}", list.len());
        for pw in [
            "password",
            "12345678",
            "iloveyou",
            "password123",
            "qwertyuiop",
        ] {
            assert!(list.contains(pw), "{pw}");
        }
        assert!(!list.contains("correct horse battery"));
        assert!(!list.contains("pass123"), "shorter than 8: never needed");
    }

    #[test]
    fn an_unsorted_list_is_refused() {
        assert!(CommonPasswords::from_sorted_lines("b\na\n".to_owned()).is_err());
    }
}
