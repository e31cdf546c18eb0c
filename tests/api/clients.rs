//! The verifier packages other units use (`clients/python`, `clients/typescript`) pass their
//! own test suites against this build of the service: each suite starts the binary, registers
//! users, checks fresh, forged, expired, other-audience and `alg`-confused tokens, follows a
//! key rotation and a revocation, and sees strict mode answer 503 (never 401) when the service
//! is gone.

use std::time::Duration;

use crate::support::process::service_binary;
use crate::support::{node, python};

/// Each suite waits once for a rotated key to start signing (reload + 60 s).
const SUITE_LIMIT: Duration = Duration::from_secs(300);

async fn expect_suite_passes(what: &str, command: &mut tokio::process::Command) {
    let run = command.env("AIDLC_AUTH_BIN", service_binary()).output();
    let out = tokio::time::timeout(SUITE_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {SUITE_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_verifier_package_passes_its_suite_against_this_build() {
    let package = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python");
    expect_suite_passes(
        "pytest clients/python",
        python::command().current_dir(package).args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
        ]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_verifier_package_passes_its_suite_against_this_build() {
    expect_suite_passes("npm test in clients/typescript", node::npm().arg("test")).await;
}
