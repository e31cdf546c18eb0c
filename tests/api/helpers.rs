//! The names the scenario files import (`use crate::helpers::{...}`), re-exported from
//! `support/`, where each job of the harness lives in its own file.

pub(crate) use crate::support::backend::backend_tests;

pub use crate::support::app::{TestApp, TestEnv};
pub use crate::support::backend::Backend;
pub use crate::support::http::{
    PASSWORD, expect_error, expect_invalid_code, expect_json, expect_session, jwks_kids,
    jwt_claims, jwt_header, jwt_kid, refresh_token, session_id, status_and_json, text, token,
    unique_email, wrong_code,
};
pub use crate::support::proxy::{ProxyMode, TcpProxy};
pub use crate::support::servers::smtp::CaughtMail;
pub use crate::support::servers::{POSTGRES_ADDR, REDIS_ADDR, REDIS_URL, smtp};
