//! The TypeScript verifier package's toolchain: its `node_modules` installed by `npm ci` from
//! the committed lock file on first use, and reused while the lock file is unchanged.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::servers;

/// The package, as committed.
pub const PACKAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/typescript");

/// Holds the digest of the lock file `node_modules` was installed from; written last.
const STAMP: &str = "node_modules/.aidlc-lock.sha256";

/// `npm` in the package directory, its dependencies installed; proxies are kept only for the
/// install (the tests talk to 127.0.0.1). A failure to install ends the run with one line.
pub fn npm() -> tokio::process::Command {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| ensure_installed().unwrap_or_else(|e| servers::fatal(&e)));
    let mut command = tokio::process::Command::new("npm");
    for var in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"] {
        command.env_remove(var);
    }
    command
        .current_dir(PACKAGE)
        .env("NO_PROXY", "*")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

fn ensure_installed() -> Result<(), String> {
    let package = Path::new(PACKAGE);
    let lock_file = package.join("package-lock.json");
    let lock = fs::read(&lock_file).map_err(|e| format!("reading {}: {e}", lock_file.display()))?;
    let digest = format!("{:x}", Sha256::digest(&lock));
    let guard_path = package.join(".npm-install.lock");
    let guard =
        File::create(&guard_path).map_err(|e| format!("creating {}: {e}", guard_path.display()))?;
    guard
        .lock()
        .map_err(|e| format!("locking {}: {e}", guard_path.display()))?;
    if fs::read_to_string(package.join(STAMP)).ok().as_deref() == Some(digest.as_str()) {
        return Ok(());
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(package)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("npm ci: {e}: apt-get install nodejs npm (Node 20 or newer)"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(format!(
            "npm ci in clients/typescript failed ({}): {}; check the network or the lock file",
            out.status,
            last.unwrap_or("no output")
        ));
    }
    fs::write(package.join(STAMP), &digest).map_err(|e| format!("writing the npm stamp: {e}"))
}
