//! A pause in Redis calls after one goes unanswered.
//!
//! A request that needs Redis makes more than one call (the rate limit, then the cooldown or
//! the code): against a server that accepts and never answers, each would wait out the
//! dependency timeout, and the request's 503 would come after two of them. Once a call has
//! run out its timeout, the calls that follow within one more timeout fail at once; the
//! first one after the pause tries the server again, so recovery costs at most that pause
//! (none once a readiness ping has gone through: it closes the breaker).
//! A server that refuses fails fast by itself and opens nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether Redis calls are being failed at once, and until when.
pub(super) struct Breaker {
    open_until: Mutex<Option<Instant>>,
    pause: Duration,
}

impl Breaker {
    /// A closed breaker that, once tripped, stays open for `pause`.
    pub(super) fn new(pause: Duration) -> Self {
        Self {
            open_until: Mutex::new(None),
            pause,
        }
    }

    /// True while a call that timed out did so less than the pause ago.
    pub(super) fn is_open(&self) -> bool {
        let open_until = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        open_until.is_some_and(|until| Instant::now() < until)
    }

    /// A call just ran out its timeout: fail the next ones at once, for the pause.
    pub(super) fn trip(&self) {
        *self.open_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + self.pause);
    }

    /// The server answered (a ping): calls go through again now.
    pub(super) fn close(&self) {
        *self.open_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// How long it stays open once tripped.
    pub(super) fn pause(&self) -> Duration {
        self.pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_when_tripped_and_closes_after_the_pause() {
        let breaker = Breaker::new(Duration::from_millis(50));
        assert!(!breaker.is_open());
        breaker.trip();
        assert!(breaker.is_open());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!breaker.is_open());
    }

    #[test]
    fn a_close_ends_the_pause_at_once() {
        let breaker = Breaker::new(Duration::from_secs(60));
        breaker.trip();
        breaker.close();
        assert!(!breaker.is_open());
    }
}
