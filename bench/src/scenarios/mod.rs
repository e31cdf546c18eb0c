//! The scenarios: each prepares what it needs untimed (accounts, codes), then runs timed under
//! the plan, and reports its outcome and the service's cost.

pub mod jobs;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::load::{self, Outcome, Plan};
use crate::mailbox::Mailbox;
use crate::measure::{Probe, Usage, Watch};
use jobs::{Account, Accounts, BadInput, Kind, Register, Verify, deal};

/// How long prepared mail may take to arrive.
const MAIL_LIMIT: Duration = Duration::from_secs(60);
/// Login-code rounds at most (each gives every account one more session).
const MAX_CODE_ROUNDS: usize = 15;
/// The service frees Argon2 memory left idle for 2 s (`src/accounts/passwords/memory.rs`): a
/// phase that hashes nothing starts this long after the last one that did, so its peak RSS is
/// its own, not the buffers of the hashes before it.
const ARGON2_RELEASE: Duration = Duration::from_millis(2500);

/// One scenario's measurements.
#[derive(Debug, Clone)]
pub struct Measured {
    pub name: &'static str,
    /// Runs Argon2 per request.
    pub hashing: bool,
    pub outcome: Outcome,
    pub usage: Usage,
    pub note: Option<String>,
}

/// One backend's service and the state the scenarios hand on to each other.
pub struct Run {
    pub server: SocketAddr,
    pub watch: Watch,
    pub log: PathBuf,
    pub plan: Plan,
    pub connections: usize,
    /// Accounts wanted for the signed-in scenarios.
    pub users: usize,
    /// Prefix of the addresses this run registers.
    pub prefix: String,
    pub accounts: Vec<Account>,
    /// Registered addresses whose codes have not been used, and the log position before them.
    pending: Vec<String>,
    pending_mail: Option<Mailbox>,
    batches: usize,
    /// When the last phase that hashed passwords ended.
    hashed_at: Option<Instant>,
}

impl Run {
    pub fn new(
        server: SocketAddr,
        watch: Watch,
        log: PathBuf,
        plan: Plan,
        connections: usize,
        users: usize,
        prefix: String,
    ) -> Self {
        Self {
            server,
            watch,
            log,
            plan,
            connections,
            users: users.max(connections),
            prefix,
            accounts: Vec::new(),
            pending: Vec::new(),
            pending_mail: None,
            batches: 0,
            hashed_at: None,
        }
    }

    /// Starts measuring a phase; one that hashes nothing first waits out [`ARGON2_RELEASE`].
    async fn start(&self, hashing: bool) -> Probe {
        if !hashing && let Some(at) = self.hashed_at {
            tokio::time::sleep_until((at + ARGON2_RELEASE).into()).await;
        }
        self.watch.start().await
    }

    /// Ends the phase `probe` measured.
    async fn finish(&mut self, probe: Probe, hashing: bool) -> Usage {
        let usage = self.watch.finish(probe).await;
        if hashing {
            self.hashed_at = Some(Instant::now());
        }
        usage
    }

    /// A plan for untimed preparation: at most `count` requests, as fast as answered.
    fn prep_plan(count: usize) -> Plan {
        Plan {
            duration: Duration::from_secs(300),
            max_requests: count as u64,
            rate: None,
        }
    }

    fn new_prefix(&mut self) -> String {
        self.batches += 1;
        format!("{}b{}", self.prefix, self.batches)
    }

    /// `POST /api/auth/register`, unique addresses (timed).
    pub async fn register(&mut self) -> anyhow::Result<Measured> {
        let (outcome, usage) = self.registrations(self.plan).await?;
        Ok(Measured {
            name: "register",
            hashing: true,
            outcome,
            usage,
            note: None,
        })
    }

    async fn registrations(&mut self, plan: Plan) -> anyhow::Result<(Outcome, Usage)> {
        let prefix = self.new_prefix();
        let mailbox = Mailbox::from_end(self.log.clone())?;
        let jobs = (0..self.connections)
            .map(|c| Register::new(&prefix, c))
            .collect();
        let probe = self.start(true).await;
        let (outcome, jobs) = load::run(self.server, jobs, plan).await;
        let usage = self.finish(probe, true).await;
        self.pending
            .extend(jobs.into_iter().flat_map(|j| j.registered));
        if self.pending_mail.is_none() {
            self.pending_mail = Some(mailbox);
        }
        Ok((outcome, usage))
    }

    /// The codes of the pending registrations (registering `at_least` first, untimed, when
    /// fewer are pending).
    async fn pending_codes(&mut self, at_least: usize) -> anyhow::Result<Vec<(String, String)>> {
        let mut tries = 0;
        while self.pending.len() < at_least && tries < 3 {
            tries += 1;
            let missing = at_least - self.pending.len();
            self.registrations(Self::prep_plan(missing)).await?;
        }
        let emails = std::mem::take(&mut self.pending);
        let mut mailbox = self
            .pending_mail
            .take()
            .context("no registration mail to read")?;
        let codes = mailbox
            .wait_for(&emails, MAIL_LIMIT)
            .await
            .context("registration codes")?;
        Ok(emails.into_iter().zip(codes).collect())
    }

    /// `POST /api/auth/verify-registration` with the codes of the registrations made so far
    /// (timed); the accounts it activates sign in in the later scenarios.
    pub async fn verify_registration(&mut self) -> anyhow::Result<Measured> {
        let items = self.pending_codes(self.connections).await?;
        let n = items.len();
        let (outcome, usage) = self.verify(items, self.plan).await;
        let note = format!(
            "{n} prepared codes (one per registration): the run ends when they are used up"
        );
        Ok(Measured {
            name: "verify-registration",
            hashing: false,
            outcome,
            usage,
            note: Some(note),
        })
    }

    async fn verify(&mut self, items: Vec<(String, String)>, plan: Plan) -> (Outcome, Usage) {
        let jobs = deal(items, self.connections)
            .into_iter()
            .map(|share| Verify::new("/api/auth/verify-registration", share))
            .collect();
        let probe = self.start(false).await;
        let (outcome, jobs) = load::run(self.server, jobs, plan).await;
        let usage = self.finish(probe, false).await;
        self.accounts
            .extend(jobs.into_iter().flat_map(|j| j.accounts));
        (outcome, usage)
    }

    /// Registers and verifies accounts (untimed) until there are `self.users`.
    pub async fn ensure_accounts(&mut self) -> anyhow::Result<()> {
        let mut tries = 0;
        while self.accounts.len() < self.users && tries < 3 {
            tries += 1;
            let items = self.pending_codes(self.users - self.accounts.len()).await?;
            let count = items.len();
            self.verify(items, Self::prep_plan(count)).await;
        }
        anyhow::ensure!(
            self.accounts.len() >= self.connections,
            "only {} accounts could be prepared for {} connections",
            self.accounts.len(),
            self.connections
        );
        Ok(())
    }

    /// Runs `kind` over the accounts (one share per connection) under `plan`.
    async fn over_accounts(&mut self, kind: Kind, plan: Plan) -> (Outcome, Usage, Vec<String>) {
        let accounts = std::mem::take(&mut self.accounts);
        let jobs = deal(accounts, self.connections)
            .into_iter()
            .map(|share| Accounts::new(kind, share))
            .collect();
        let hashing = kind == Kind::LoginPassword;
        let probe = self.start(hashing).await;
        let (outcome, jobs) = load::run(self.server, jobs, plan).await;
        let usage = self.finish(probe, hashing).await;
        let mut asked = Vec::new();
        for job in jobs {
            self.accounts.extend(job.accounts);
            asked.extend(job.asked);
        }
        (outcome, usage, asked)
    }

    /// One of the scenarios over signed-in accounts: password login, `/me`, refresh, introspect.
    pub async fn signed_in(&mut self, kind: Kind) -> anyhow::Result<Measured> {
        self.ensure_accounts().await?;
        let (outcome, usage, _) = self.over_accounts(kind, self.plan).await;
        let (name, hashing) = match kind {
            Kind::LoginPassword => ("login-password", true),
            Kind::Me => ("me", false),
            Kind::Refresh => ("refresh", false),
            Kind::Introspect => ("introspect", false),
            Kind::LoginCodeRequest => ("login-code", false),
        };
        Ok(Measured {
            name,
            hashing,
            outcome,
            usage,
            note: None,
        })
    }

    /// Code login in rounds: every account asks for a code (`login-code`, timed), the codes are
    /// read from the mail, then exchanged (`verify-login`, timed); until the plan's duration of
    /// verifying is spent. The mail's delivery counts in `login-code`'s CPU, not its time.
    pub async fn login_code(&mut self) -> anyhow::Result<[Measured; 2]> {
        self.ensure_accounts().await?;
        let (mut asked_out, mut asked_use) = (Outcome::empty(), Usage::default());
        let (mut verify_out, mut verify_use) = (Outcome::empty(), Usage::default());
        let mut rounds = 0;
        let mut asked_until: Option<Instant> = None;
        while verify_out.wall < self.plan.duration
            && verify_out.requests() < self.plan.max_requests
            && rounds < MAX_CODE_ROUNDS
        {
            rounds += 1;
            // The resend cooldown (1 s here) runs from each code's issue: wait it out since
            // the last request of the previous round.
            if let Some(t) = asked_until {
                tokio::time::sleep_until((t + Duration::from_millis(1200)).into()).await;
            }
            let mut mailbox = Mailbox::from_end(self.log.clone())?;
            let probe = self.start(false).await;
            let (out, _, asked) = self
                .over_accounts(Kind::LoginCodeRequest, Self::prep_plan(self.accounts.len()))
                .await;
            asked_until = Some(Instant::now());
            let codes = mailbox
                .wait_for(&asked, MAIL_LIMIT)
                .await
                .context("login codes")?;
            asked_use.merge(&self.finish(probe, false).await);
            asked_out.merge(&out);

            let plan = Plan {
                duration: self.plan.duration.saturating_sub(verify_out.wall),
                max_requests: self.plan.max_requests.saturating_sub(verify_out.requests()),
                rate: self.plan.rate,
            };
            let jobs = deal(asked.into_iter().zip(codes).collect(), self.connections)
                .into_iter()
                .map(|share| Verify::new("/api/auth/verify-login", share))
                .collect();
            let probe = self.start(false).await;
            let (out, jobs) = load::run(self.server, jobs, plan).await;
            verify_use.merge(&self.finish(probe, false).await);
            verify_out.merge(&out);
            self.update_accounts(jobs.into_iter().flat_map(|j| j.accounts));
        }
        let note = format!(
            "{rounds} rounds of one code per account ({} accounts); each round's verify runs until its codes are used",
            self.accounts.len()
        );
        Ok([
            Measured {
                name: "login-code",
                hashing: false,
                outcome: asked_out,
                usage: asked_use,
                note: Some(
                    "request a login code (202); the CPU includes the mail's delivery".into(),
                ),
            },
            Measured {
                name: "verify-login",
                hashing: false,
                outcome: verify_out,
                usage: verify_use,
                note: Some(note),
            },
        ])
    }

    /// Replaces accounts' tokens by newer sessions' (matched by address).
    fn update_accounts(&mut self, newer: impl Iterator<Item = Account>) {
        let index: HashMap<String, usize> = self
            .accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.email.clone(), i))
            .collect();
        for a in newer {
            if let Some(&i) = index.get(&a.email) {
                self.accounts[i] = a;
            }
        }
    }

    /// A body the service refuses at the edge (422).
    pub async fn bad_input(&mut self) -> anyhow::Result<Measured> {
        let jobs = (0..self.connections).map(|_| BadInput).collect();
        let probe = self.start(false).await;
        let (outcome, _) = load::run(self.server, jobs, self.plan).await;
        let usage = self.finish(probe, false).await;
        Ok(Measured {
            name: "bad-input",
            hashing: false,
            outcome,
            usage,
            note: None,
        })
    }
}
