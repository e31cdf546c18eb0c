//! The soak's summary: the samples, each series' first, last and peak values and its trend.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::measure::Usage;

/// One second's sample.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub rss_mib: f64,
    pub open_fds: u64,
    pub db_connections: Option<i64>,
}

/// A sampled series' summary.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: &'static str,
    pub first: f64,
    pub last: f64,
    pub max: f64,
    /// Least-squares slope over the whole soak, per minute.
    pub slope_per_min: f64,
    /// The same over its second half, once start-up growth (caches, pools) is over.
    pub second_half_slope_per_min: f64,
}

/// The soak's results.
#[derive(Debug, Clone, Serialize)]
pub struct Soak {
    pub duration_s: f64,
    pub rate: f64,
    pub requests: u64,
    pub ok: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Answers by `endpoint:status`.
    pub answers: BTreeMap<String, u64>,
    pub usage: Usage,
    pub series: Vec<Series>,
    pub samples: Vec<Sample>,
}

/// Least-squares slope of `(x, y)` points.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den > 0.0 { num / den } else { 0.0 }
}

pub(super) fn series(name: &'static str, points: &[(f64, f64)]) -> Option<Series> {
    let first = points.first()?.1;
    let last = points.last()?.1;
    let max = points.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    Some(Series {
        name,
        first,
        last,
        max,
        slope_per_min: 60.0 * slope(points),
        second_half_slope_per_min: 60.0 * slope(&points[points.len() / 2..]),
    })
}

impl Soak {
    /// The summary as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Soak: {:.0} s at {:.0} req/s (open model): {} requests, {} not the expected answer, p50 {:.2} ms, p99 {:.2} ms; service CPU {:.1} s, peak RSS {:.1} MiB\n",
            self.duration_s,
            self.rate,
            self.requests,
            self.requests - self.ok,
            self.p50_ms,
            self.p99_ms,
            self.usage.service_cpu_s,
            self.usage.peak_rss_kib as f64 / 1024.0
        );
        let _ = writeln!(
            s,
            "| sampled each second | first | last | max | slope /min | second-half slope /min |\n|---|---:|---:|---:|---:|---:|"
        );
        for x in &self.series {
            let _ = writeln!(
                s,
                "| {} | {:.1} | {:.1} | {:.1} | {:+.2} | {:+.2} |",
                x.name, x.first, x.last, x.max, x.slope_per_min, x.second_half_slope_per_min
            );
        }
        let answers: Vec<String> = self
            .answers
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(s, "\nAnswers: {}", answers.join(", "));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_of_a_line_is_its_gradient() {
        let pts: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 1.0)).collect();
        assert!((slope(&pts) - 3.0).abs() < 1e-9);
        assert_eq!(slope(&pts[..1]), 0.0);
        let s = series("x", &pts).map(|s| (s.first, s.last, s.max));
        assert_eq!(s, Some((1.0, 28.0, 28.0)));
    }
}
