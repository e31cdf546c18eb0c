//! Reading `/metrics` with the reference parser (`prometheus_client`, in the checkers' venv)
//! through `tests/support/parse_prometheus.py`, so "it parses" means what Prometheus means.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::python;

const PARSER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/parse_prometheus.py"
);

/// One sample of a scrape.
#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    /// The family's name (`aidlc_auth_logins` for `aidlc_auth_logins_total`).
    pub family: String,
    /// `counter`, `gauge`, `histogram`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The sample's own name (`…_total`, `…_bucket`, `…_count`).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value (None for NaN).
    pub value: Option<f64>,
}

/// A parsed scrape.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The raw text.
    pub text: String,
    /// Every sample.
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parses `text`; panics with the parser's complaint when it is not Prometheus text.
    pub async fn parse(text: String) -> Self {
        let mut child = python::command()
            .arg(PARSER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the Prometheus parser");
        let mut stdin = child.stdin.take().expect("the parser's stdin");
        stdin.write_all(text.as_bytes()).await.expect("writing");
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("the parser did not finish within 30 s")
            .expect("running the parser");
        assert!(
            out.status.success(),
            "{}\n--- the scrape:\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let samples = serde_json::from_slice(&out.stdout).expect("the parser's JSON");
        Self { text, samples }
    }

    /// The sum of the samples named `name` whose labels include `labels` (0 when none).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).filter_map(|s| s.value).sum()
    }

    /// The samples named `name` whose labels include `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The type the scrape declares for the family `family`.
    pub fn kind(&self, family: &str) -> Option<&str> {
        self.samples
            .iter()
            .find(|s| s.family == family)
            .map(|s| s.kind.as_str())
    }
}
