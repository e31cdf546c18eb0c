//! The soak: mixed traffic over every endpoint for a long time, sampling the service's
//! resident memory, open files and database connections each second, to see that none grows
//! without bound.

mod summary;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;

use crate::backend::Backend;
use crate::http::Req;
use crate::load::{self, Job, Plan};
use crate::mailbox::Mailbox;
use crate::procfs;
use crate::scenarios::Run;
use crate::scenarios::jobs::{Account, FULL_NAME, PASSWORD, deal};
use summary::series;
pub use summary::{Sample, Soak};

/// Requests/s of the soak when `--rate` is not given: steady traffic, not saturation (the mix's
/// 4.5 % of hashing requests make 9 Argon2 runs a second, well under the floor).
pub const DEFAULT_RATE: f64 = 200.0;

/// The mix, per thousand requests (codes that have arrived are verified first, on top).
const MIX: [(Op, u32); 7] = [
    (Op::Me, 550),
    (Op::Refresh, 200),
    (Op::Introspect, 100),
    (Op::LoginPassword, 30),
    (Op::LoginCode, 40),
    (Op::Register, 15),
    (Op::BadInput, 65),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Me,
    Refresh,
    Introspect,
    LoginPassword,
    LoginCode,
    VerifyLogin,
    Register,
    VerifyRegistration,
    BadInput,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Me => "me",
            Op::Refresh => "refresh",
            Op::Introspect => "introspect",
            Op::LoginPassword => "login-password",
            Op::LoginCode => "login-code",
            Op::VerifyLogin => "verify-login",
            Op::Register => "register",
            Op::VerifyRegistration => "verify-registration",
            Op::BadInput => "bad-input",
        }
    }

    fn expected(self) -> u16 {
        match self {
            Op::LoginCode | Op::Register => 202,
            Op::BadInput => 422,
            _ => 200,
        }
    }
}

/// The service's resend cooldown in the benchmark (1 s), with a margin.
const COOLDOWN: Duration = Duration::from_millis(1500);

type Codes = Arc<Mutex<HashMap<String, String>>>;

/// One connection's mixed traffic: its own refresh chain (never signed in again, so never
/// ended by the per-user session limit), a few accounts that log in, and its registrations.
struct Mixed {
    chain: Account,
    logins: Vec<Account>,
    codes: Codes,
    waiting_login: VecDeque<String>,
    waiting_registration: VecDeque<String>,
    /// When each login account last asked for a code (the resend cooldown is 1 s).
    asked_at: HashMap<String, Instant>,
    prefix: String,
    n: usize,
    rng: StdRng,
    last: Op,
}

impl Mixed {
    fn arrived(&mut self, registration: bool) -> Option<(String, String)> {
        let queue = if registration {
            &mut self.waiting_registration
        } else {
            &mut self.waiting_login
        };
        let mut codes = self.codes.lock().ok()?;
        let i = queue.iter().position(|e| codes.contains_key(e))?;
        let email = queue.remove(i)?;
        let code = codes.remove(&email)?;
        Some((email, code))
    }
}

impl Job for Mixed {
    fn next(&mut self) -> Option<Req> {
        for registration in [false, true] {
            if let Some((email, code)) = self.arrived(registration) {
                let (op, path) = if registration {
                    (Op::VerifyRegistration, "/api/auth/verify-registration")
                } else {
                    (Op::VerifyLogin, "/api/auth/verify-login")
                };
                self.last = op;
                return Some(Req::post(
                    path,
                    &json!({ "email": email, "verification_code": code }),
                ));
            }
        }
        let mut roll = self.rng.random_range(0..1000u32);
        let op = MIX
            .iter()
            .find(|(_, w)| {
                let hit = roll < *w;
                roll = roll.saturating_sub(*w);
                hit
            })
            .map_or(Op::Me, |(op, _)| *op);
        let login = (!self.logins.is_empty()).then(|| {
            self.logins[self.rng.random_range(0..self.logins.len())]
                .email
                .clone()
        });
        // An account with a code on its way, or asked within the resend cooldown, does not ask.
        let may_ask = login.as_ref().is_some_and(|e| {
            !self.waiting_login.contains(e)
                && self.asked_at.get(e).is_none_or(|t| t.elapsed() > COOLDOWN)
        });
        let op = match op {
            Op::LoginPassword if login.is_none() => Op::Me,
            Op::LoginCode if !may_ask => Op::Me,
            _ => op,
        };
        self.last = op;
        let c = &self.chain;
        Some(match op {
            Op::Me => Req::get("/api/auth/me", &c.access),
            Op::Refresh => Req::post("/api/auth/refresh", &json!({ "refresh_token": c.refresh })),
            Op::Introspect => Req::post("/api/auth/introspect", &json!({ "token": c.access })),
            Op::LoginPassword => Req::post(
                "/api/auth/login",
                &json!({ "email": login, "password": PASSWORD }),
            ),
            Op::LoginCode => {
                let email = login.unwrap_or_default();
                self.asked_at.insert(email.clone(), Instant::now());
                self.waiting_login.push_back(email.clone());
                Req::post("/api/auth/login", &json!({ "email": email }))
            }
            Op::Register => {
                self.n += 1;
                let email = format!("{}-{}@example.com", self.prefix, self.n);
                self.waiting_registration.push_back(email.clone());
                Req::post(
                    "/api/auth/register",
                    &json!({ "email": email, "password": PASSWORD, "full_name": FULL_NAME }),
                )
            }
            Op::BadInput | Op::VerifyLogin | Op::VerifyRegistration => Req::post(
                "/api/auth/register",
                &json!({ "email": "not-an-address", "password": PASSWORD, "full_name": FULL_NAME }),
            ),
        })
    }

    fn answer(&mut self, status: u16, body: &[u8]) -> String {
        match (self.last, status) {
            (Op::Refresh, 200) => {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
                    && let (Some(a), Some(r)) =
                        (v["access_token"].as_str(), v["refresh_token"].as_str())
                {
                    self.chain.access = a.to_owned();
                    self.chain.refresh = r.to_owned();
                }
            }
            // No code is coming.
            (Op::LoginCode, s) if s != 202 => {
                self.waiting_login.pop_back();
            }
            (Op::Register, s) if s != 202 => {
                self.waiting_registration.pop_back();
            }
            _ => {}
        }
        format!("{}:{status}", self.last.name())
    }

    fn expected(&self) -> &'static str {
        ""
    }

    fn is_ok(&self, label: &str) -> bool {
        label.rsplit_once(':').is_some_and(|(op, status)| {
            MIX.iter()
                .map(|(o, _)| *o)
                .chain([Op::VerifyLogin, Op::VerifyRegistration])
                .any(|o| o.name() == op && o.expected().to_string() == status)
        })
    }
}

/// Runs the soak on `run`'s service for `duration` at `rate` requests/s.
pub async fn soak(
    run: &mut Run,
    backend: &mut Backend,
    duration: Duration,
    rate: f64,
    max_requests: u64,
) -> anyhow::Result<Soak> {
    run.ensure_accounts().await?;
    let accounts = std::mem::take(&mut run.accounts);
    let (chains, logins) = accounts.split_at(run.connections.min(accounts.len()));
    let codes: Codes = Arc::default();
    let login_shares = deal(logins.to_vec(), run.connections);
    let jobs: Vec<Mixed> = chains
        .iter()
        .zip(login_shares)
        .enumerate()
        .map(|(i, (chain, logins))| Mixed {
            chain: chain.clone(),
            logins,
            codes: codes.clone(),
            waiting_login: VecDeque::new(),
            waiting_registration: VecDeque::new(),
            asked_at: HashMap::new(),
            prefix: format!("{}soak-{i}", run.prefix),
            n: 0,
            rng: StdRng::seed_from_u64(i as u64),
            last: Op::Me,
        })
        .collect();
    run.accounts = accounts;

    let mut mailbox = Mailbox::from_end(run.log.clone())?;
    let plan = Plan {
        duration,
        max_requests,
        rate: Some(rate),
    };
    let probe = run.watch.start().await;
    let server = run.server;
    let load = tokio::spawn(load::run(server, jobs, plan));
    let pid = run.watch.service_pid;
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut next_sample = start;
    while !load.is_finished() {
        tick.tick().await;
        mailbox.poll()?;
        if let Ok(mut shared) = codes.lock() {
            shared.extend(mailbox.drain());
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            samples.push(Sample {
                t_s: start.elapsed().as_secs_f64(),
                rss_mib: procfs::rss_kib(pid).unwrap_or(0) as f64 / 1024.0,
                open_fds: procfs::fd_count(pid).unwrap_or(0),
                db_connections: backend.database_connections().await,
            });
        }
    }
    let (outcome, _) = load.await?;
    let usage = run.watch.finish(probe).await;
    let pts = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        samples
            .iter()
            .filter_map(|s| Some((s.t_s, f(s)?)))
            .collect()
    };
    let series = [
        series("rss_mib", &pts(&|s| Some(s.rss_mib))),
        series("open_fds", &pts(&|s| Some(s.open_fds as f64))),
        series(
            "db_connections",
            &pts(&|s| s.db_connections.map(|c| c as f64)),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(Soak {
        duration_s: outcome.wall.as_secs_f64(),
        rate,
        requests: outcome.requests(),
        ok: outcome.ok,
        p50_ms: outcome.hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: outcome.hist.value_at_quantile(0.99) as f64 / 1000.0,
        answers: outcome.answers,
        usage,
        series,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_adds_up_to_a_thousand() {
        assert_eq!(MIX.iter().map(|(_, w)| w).sum::<u32>(), 1000);
    }
}
