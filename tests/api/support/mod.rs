//! The harness: the real app on port 0 against a fresh store per test, on servers the suite
//! starts itself, with a captured mailbox, a manual clock, a breakable TCP proxy and the
//! outside checker tools in a venv. `cargo test` alone is the whole set-up.

pub mod app;
pub mod at_rest;
pub mod backend;
pub mod database;
pub mod http;
pub mod invariants;
pub mod mailbox;
pub mod node;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod python;
pub mod servers;
pub mod traffic;
