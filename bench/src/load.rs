//! The load loop: one task per connection, each bounded by a deadline and by a shared request
//! budget, recording latency (hdrhistogram) and answers by status.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::http::{Conn, Req, source_address};

/// A connection's work: the next request, and what to make of its answer.
pub trait Job: Send + 'static {
    /// The next request, or `None` when this connection's prepared input is used up.
    fn next(&mut self) -> Option<Req>;
    /// Sees each answer; returns the label it counts under (e.g. `"200"`, or `"200-inactive"`
    /// for a 200 that is not what was asked for).
    fn answer(&mut self, status: u16, body: &[u8]) -> String {
        let _ = body;
        status.to_string()
    }
    /// The answer label that counts as success.
    fn expected(&self) -> &'static str;
    /// Whether an answer's label is a success.
    fn is_ok(&self, label: &str) -> bool {
        label == self.expected()
    }
}

/// How long and how hard to send.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub duration: Duration,
    pub max_requests: u64,
    /// Requests/s across all connections (open model), or as fast as answered.
    pub rate: Option<f64>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Latency in microseconds.
    pub hist: Histogram<u64>,
    /// Answers by label (`"200"`, `"503"`, `"io"` for a failed connection).
    pub answers: BTreeMap<String, u64>,
    pub ok: u64,
    /// Time from the first request to the last answer.
    pub wall: Duration,
}

impl Outcome {
    /// Nothing yet.
    pub fn empty() -> Self {
        Self {
            hist: new_histogram(),
            answers: BTreeMap::new(),
            ok: 0,
            wall: Duration::ZERO,
        }
    }

    /// Every request sent.
    pub fn requests(&self) -> u64 {
        self.hist.len()
    }

    /// Adds `other` (a later round of the same scenario).
    pub fn merge(&mut self, other: &Outcome) {
        let _ = self.hist.add(&other.hist);
        for (k, v) in &other.answers {
            *self.answers.entry(k.clone()).or_default() += v;
        }
        self.ok += other.ok;
        self.wall += other.wall;
    }
}

/// Latencies from 1 µs to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Fails only for bounds or a precision out of range, which these constants are not; an
    // auto-resizing histogram is the same measurement should it ever happen.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .or_else(|_| Histogram::new(3))
        .unwrap_or_else(|_| std::process::abort())
}

/// Runs `jobs`, one connection each, against `server` under `plan`; gives the jobs back (with
/// whatever they learnt, e.g. the newest tokens) and the outcome.
pub async fn run<J: Job>(server: SocketAddr, jobs: Vec<J>, plan: Plan) -> (Outcome, Vec<J>) {
    let budget = Arc::new(AtomicU64::new(plan.max_requests));
    let start = Instant::now();
    let deadline = start + plan.duration;
    let n = jobs.len().max(1);
    let interval = plan.rate.map(|r| Duration::from_secs_f64(n as f64 / r));
    let mut tasks = Vec::with_capacity(n);
    for (i, job) in jobs.into_iter().enumerate() {
        let budget = budget.clone();
        // Open model: connection i starts i/n of an interval late, so sends interleave.
        let first = interval.map(|iv| start + iv.mul_f64(i as f64 / n as f64));
        tasks.push(tokio::spawn(worker(
            server, i, job, deadline, budget, first, interval,
        )));
    }
    let mut outcome = Outcome::empty();
    let mut jobs = Vec::with_capacity(n);
    for task in tasks {
        if let Ok((part, job)) = task.await {
            outcome.merge(&part);
            jobs.push(job);
        }
    }
    outcome.wall = start.elapsed();
    (outcome, jobs)
}

async fn worker<J: Job>(
    server: SocketAddr,
    index: usize,
    mut job: J,
    deadline: Instant,
    budget: Arc<AtomicU64>,
    mut scheduled: Option<Instant>,
    interval: Option<Duration>,
) -> (Outcome, J) {
    let mut out = Outcome::empty();
    let Ok(mut conn) = Conn::new(server, source_address(index)) else {
        return (out, job);
    };
    loop {
        if let Some(at) = scheduled {
            if at >= deadline {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
        }
        if Instant::now() >= deadline || !take_one(&budget) {
            break;
        }
        let Some(req) = job.next() else { break };
        let sent = Instant::now();
        let label = match conn.send(&req).await {
            Ok((status, body)) => job.answer(status, &body),
            Err(_) => {
                // Do not spin on a refused connection: the deadline still bounds the loop.
                tokio::time::sleep(Duration::from_millis(10)).await;
                "io".to_owned()
            }
        };
        // Open model: from the scheduled time, so time spent queued behind a slow answer counts.
        let from = scheduled.unwrap_or(sent);
        let micros = u64::try_from(from.elapsed().as_micros()).unwrap_or(u64::MAX);
        out.hist.saturating_record(micros.max(1));
        if job.is_ok(&label) {
            out.ok += 1;
        }
        *out.answers.entry(label).or_default() += 1;
        if let (Some(at), Some(iv)) = (scheduled.as_mut(), interval) {
            *at += iv;
        }
    }
    (out, job)
}

fn take_one(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_outcomes_add_requests_answers_and_time() {
        let mut a = Outcome::empty();
        a.hist.saturating_record(100);
        a.answers.insert("200".into(), 1);
        a.ok = 1;
        a.wall = Duration::from_secs(1);
        let mut b = a.clone();
        b.answers.insert("503".into(), 2);
        a.merge(&b);
        assert_eq!(a.requests(), 2);
        assert_eq!(a.answers.get("200"), Some(&2));
        assert_eq!(a.answers.get("503"), Some(&2));
        assert_eq!(a.ok, 2);
        assert_eq!(a.wall, Duration::from_secs(2));
    }

    #[test]
    fn the_budget_stops_at_zero() {
        let budget = AtomicU64::new(2);
        assert!(take_one(&budget));
        assert!(take_one(&budget));
        assert!(!take_one(&budget));
    }
}
