//! Rate limits as values (`10/1h,50/1d`) and the pure decisions over them: whether one more
//! hit fits, how long the password back-off lasts, and the code-guessing odds they allow.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use time::OffsetDateTime;

/// Windows one limit may combine (`10/1h,50/1d`); the SQL store reads this many at most.
pub const MAX_WINDOWS: usize = 3;

/// At most `limit` hits in any rolling `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Hits allowed in the window.
    pub limit: u32,
    /// Its length.
    pub period: Duration,
}

/// One or more windows, all of which must have room for a hit to be allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit(Vec<Window>);

impl RateLimit {
    /// At most `limit` hits in any rolling `period`.
    pub fn single(limit: u32, period: Duration) -> Self {
        Self(vec![Window { limit, period }])
    }

    /// The windows, shortest first.
    pub fn windows(&self) -> &[Window] {
        &self.0
    }

    /// The longest period: how long a hit must be remembered.
    pub fn longest(&self) -> Duration {
        self.0.iter().map(|w| w.period).max().unwrap_or_default()
    }

    /// The most hits this allows within any `span` (for the guessing arithmetic): the
    /// tightest window's limit times the number of its periods `span` overlaps.
    pub fn most_within(&self, span: Duration) -> u64 {
        self.0
            .iter()
            .map(|w| {
                let periods = span.as_secs().div_ceil(w.period.as_secs().max(1));
                u64::from(w.limit) * periods
            })
            .min()
            .unwrap_or(0)
    }

    /// Whether one more hit at `now` fits, given the earlier hits' times (any order; hits
    /// older than the longest period are ignored): `None` when it does, else how long until
    /// it would. A hit at `t` leaves a window of length `p` at `t + p`.
    pub fn wait(&self, hits: &[OffsetDateTime], now: OffsetDateTime) -> Option<Duration> {
        let mut longest_wait: Option<Duration> = None;
        for window in &self.0 {
            let start = now - window.period;
            let mut inside: Vec<OffsetDateTime> =
                hits.iter().copied().filter(|&t| t > start).collect();
            let limit = usize::try_from(window.limit).unwrap_or(usize::MAX);
            if inside.len() < limit {
                continue;
            }
            // Of the hits inside, enough must leave that `limit - 1` remain: the oldest
            // `len - limit + 1`; the last of those to leave decides.
            inside.sort_unstable();
            let leaving = inside[inside.len() - limit];
            let wait = Duration::try_from(leaving + window.period - now).unwrap_or_default();
            let wait = wait.max(Duration::from_millis(1));
            longest_wait = Some(longest_wait.map_or(wait, |w| w.max(wait)));
        }
        longest_wait
    }
}

impl FromStr for RateLimit {
    type Err = String;

    /// `count/period[,count/period…]`, the period a number and a unit (`s`, `m`, `h`, `d`;
    /// `10/h` means `10/1h`).
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{raw:?} is not a limit such as 10/1h or 10/1h,50/1d");
        let mut windows = Vec::new();
        for part in raw.split(',').map(str::trim) {
            let (count, period) = part.split_once('/').ok_or_else(bad)?;
            let limit: u32 = count.trim().parse().map_err(|_| bad())?;
            let period = period.trim();
            let split = period.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let (number, unit) = period.split_at(split);
            let number: u64 = if number.is_empty() {
                1
            } else {
                number.parse().map_err(|_| bad())?
            };
            let unit_secs = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return Err(bad()),
            };
            let secs = number.checked_mul(unit_secs).ok_or_else(bad)?;
            if limit == 0 || secs == 0 {
                return Err(format!(
                    "{raw:?}: a limit needs a count and a period above 0"
                ));
            }
            windows.push(Window {
                limit,
                period: Duration::from_secs(secs),
            });
        }
        if windows.len() > MAX_WINDOWS {
            return Err(format!("{raw:?}: at most {MAX_WINDOWS} windows"));
        }
        windows.sort_by_key(|w| w.period);
        Ok(Self(windows))
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, w) in self.0.iter().enumerate() {
            let secs = w.period.as_secs();
            let (n, unit) = [(86_400, "d"), (3600, "h"), (60, "m")]
                .into_iter()
                .find(|(size, _)| secs % size == 0)
                .map_or((secs, "s"), |(size, unit)| (secs / size, unit));
            write!(f, "{}{}/{n}{unit}", if i > 0 { "," } else { "" }, w.limit)?;
        }
        Ok(())
    }
}

/// First wait once the password failures reach the limit; it doubles with each further
/// failure, up to the limit's longest period.
pub const PASSWORD_BACKOFF_START: Duration = Duration::from_secs(60);

/// How long password logins for an address wait, given its `failures` within the failure
/// limit's longest period and when the last one was: nothing below the limit's count; from
/// it, [`PASSWORD_BACKOFF_START`] doubling per further failure, capped at that period,
/// counted from the last failure. Never a lock: the wait always ends.
pub fn password_backoff(
    limit: &RateLimit,
    failures: u32,
    last_failure: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Option<Duration> {
    let threshold = limit.windows().iter().map(|w| w.limit).min()?;
    let last = last_failure?;
    if failures < threshold {
        return None;
    }
    let doublings = (failures - threshold).min(16);
    let backoff = (PASSWORD_BACKOFF_START * 2u32.pow(doublings)).min(limit.longest());
    let ends = last + backoff;
    (ends > now).then(|| Duration::try_from(ends - now).unwrap_or_default())
}

/// Codes a guess can hit: six digits.
pub const CODE_SPACE: f64 = 1_000_000.0;

/// The chance that guessing codes for one address succeeds within a day, at most, when
/// `guesses` bounds the wrong guesses per address: each guess names one of [`CODE_SPACE`]
/// codes, so by the union bound the odds are at most `guesses per day / CODE_SPACE`, however
/// the guesses spread over codes, resends and purposes.
pub fn daily_guess_odds(guesses: &RateLimit) -> f64 {
    let per_day = guesses.most_within(Duration::from_secs(86_400));
    (per_day as f64 / CODE_SPACE).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(s: &str) -> RateLimit {
        s.parse().unwrap()
    }

    #[test]
    fn limits_parse_and_print_in_the_compact_form() {
        let l = limit("50/1d, 10/h");
        assert_eq!(
            l.windows(),
            &[
                Window {
                    limit: 10,
                    period: Duration::from_secs(3600)
                },
                Window {
                    limit: 50,
                    period: Duration::from_secs(86_400)
                }
            ]
        );
        assert_eq!(l.to_string(), "10/1h,50/1d");
        assert_eq!(limit("30/90s").to_string(), "30/90s");
        assert_eq!(limit("30/15m").longest(), Duration::from_secs(900));
        for bad in [
            "",
            "10",
            "10/",
            "0/1h",
            "10/0h",
            "10/1w",
            "x/1h",
            "1/1s,1/2s,1/3s,1/4s",
        ] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_hit_fits_until_a_window_is_full_and_the_wait_is_until_the_oldest_leaves() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let l = limit("3/1m");
        let secs_ago = |s: u64| now - Duration::from_secs(s);
        assert_eq!(l.wait(&[secs_ago(10), secs_ago(20)], now), None);
        let full = [secs_ago(10), secs_ago(50), secs_ago(20)];
        assert_eq!(l.wait(&full, now), Some(Duration::from_secs(10)));
        // Hits that left the window do not count.
        assert_eq!(
            l.wait(&[secs_ago(10), secs_ago(20), secs_ago(60)], now),
            None
        );
        // Over the limit (hits recorded unconditionally): enough must leave.
        let over = [secs_ago(5), secs_ago(10), secs_ago(20), secs_ago(30)];
        assert_eq!(l.wait(&over, now), Some(Duration::from_secs(40)));
        // Both windows must have room; the longer wait wins.
        let two = limit("2/1m,3/1h");
        let hits = [secs_ago(100), secs_ago(200), secs_ago(300)];
        assert_eq!(two.wait(&hits, now), Some(Duration::from_secs(3300)));
    }

    #[test]
    fn password_backoff_starts_at_the_limit_doubles_and_is_capped() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let l = limit("10/15m");
        let at = |failures| password_backoff(&l, failures, Some(now), now);
        assert_eq!(at(9), None);
        assert_eq!(at(10), Some(Duration::from_secs(60)));
        assert_eq!(at(11), Some(Duration::from_secs(120)));
        assert_eq!(at(13), Some(Duration::from_secs(480)));
        assert_eq!(at(14), Some(Duration::from_secs(900)));
        assert_eq!(at(1000), Some(Duration::from_secs(900)));
        let later = now + Duration::from_secs(45);
        assert_eq!(
            password_backoff(&l, 10, Some(now), later),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            password_backoff(&l, 10, Some(now), now + Duration::from_secs(60)),
            None
        );
        assert_eq!(password_backoff(&l, 10, None, now), None);
    }

    #[test]
    fn the_default_guess_budget_keeps_the_daily_odds_below_one_in_ten_thousand() {
        // 10 an hour would allow 240 a day; 50 a day is the tighter bound.
        let budget = limit("10/1h,50/1d");
        assert_eq!(budget.most_within(Duration::from_secs(86_400)), 50);
        let odds = daily_guess_odds(&budget);
        assert!((odds - 5e-5).abs() < 1e-12, "{odds}");
        assert!(odds < 1e-4);
        // Today's 5 tries per code, a code a minute: 7,200 guesses a day, 0.72 %.
        assert!((daily_guess_odds(&limit("5/1m")) - 0.0072).abs() < 1e-12);
    }
}
