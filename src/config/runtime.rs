//! The settings of the process around the API: shutdown timing, the metrics listener, CORS.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::ConfigError;
use super::parse::seconds;

/// How the process stops, what it exposes beside the API, and which browsers may call it.
#[derive(Debug, Clone, Args)]
pub struct RuntimeSettings {
    /// After SIGTERM/SIGINT, readiness answers 503 and requests are still served for this long
    /// (so the load balancer stops routing here first), seconds.
    #[arg(long = "shutdown-drain-seconds", env = "AIDLC_SHUTDOWN_DRAIN_SECONDS", default_value = "5", value_parser = seconds)]
    pub shutdown_drain: Duration,
    /// From the signal, the bound on the whole shutdown (drain included): requests still running
    /// then are cut and the process exits anyway, seconds. Keep it below the container's stop
    /// timeout (ECS: 30 s).
    #[arg(long = "shutdown-grace-seconds", env = "AIDLC_SHUTDOWN_GRACE_SECONDS", default_value = "20", value_parser = seconds)]
    pub shutdown_grace: Duration,
    /// Address of the Prometheus `/metrics` listener, e.g. `127.0.0.1:9090`; unset: no metrics.
    #[arg(long, env = "AIDLC_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Browser origins (`https://app.example.com`, comma-separated, exact) that may call the
    /// API with credentials; unset: no CORS headers at all.
    #[arg(long, env = "AIDLC_CORS_ORIGINS", value_delimiter = ',', value_parser = origin)]
    pub cors_origins: Vec<String>,
}

impl RuntimeSettings {
    /// The drain must leave time for in-flight requests within the grace.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.shutdown_grace <= self.shutdown_drain {
            return Err(ConfigError(
                "AIDLC_SHUTDOWN_GRACE_SECONDS must be longer than AIDLC_SHUTDOWN_DRAIN_SECONDS \
                 (the grace counts from the signal and includes the drain)"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// An origin exactly as a browser sends it: `scheme://host[:port]`, no path, no wildcard
/// (credentials are never allowed for `*`).
fn origin(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let parsed = url::Url::parse(raw).map_err(|_| format!("{raw:?} is not an origin"))?;
    let serialized = parsed.origin().ascii_serialization();
    if !matches!(parsed.scheme(), "http" | "https") || serialized != raw {
        return Err(format!(
            "{raw:?} is not an origin like https://app.example.com (scheme, host and port only)"
        ));
    }
    Ok(serialized)
}
