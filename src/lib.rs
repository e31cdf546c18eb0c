//! aidlc-auth: registration, e-mailed one-time codes, password and code login, sessions.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod accounts;
pub mod app;
#[cfg(feature = "aws")]
pub mod aws;
pub mod clock;
pub mod config;
mod crypto;
pub mod domain;
pub mod email;
pub mod http;
pub mod metrics;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tokens;
