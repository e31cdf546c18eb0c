//! Start-up: choose the stores from the settings, load shared secrets, bind, serve; and the
//! orderly stop.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::accounts::{Accounts, CodeHasher, Deps, Hasher, Policy};
use crate::clock::{Clock, SystemClock};
use crate::config::{EmailTransport, Settings};
use crate::domain::{CommonPasswords, PasswordPolicy};
use crate::email::{
    DispatchConfig, Dispatcher, EmailSender, LogSender, Outbox, SmtpSender, Templates,
};
use crate::http::{self, AppState};
use crate::store::{Stores, SweepCutoffs, shared_secret};
use crate::tokens::{KeyRing, KeyRingConfig};

/// Replacements for the production collaborators (tests use a manual clock and a mailbox).
#[derive(Default, Clone)]
pub struct Overrides {
    /// Instead of the system clock.
    pub clock: Option<Arc<dyn Clock>>,
    /// Instead of the configured mail transport.
    pub mailer: Option<Arc<dyn EmailSender>>,
    /// The metrics recorder already installed in this process (several apps in one test
    /// process share one); without it, one is installed when `AIDLC_METRICS_ADDR` is set.
    pub metrics: Option<PrometheusHandle>,
}

/// A built service, bound to its port, not yet serving.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    /// The `/metrics` listener and what it renders, when `AIDLC_METRICS_ADDR` is set.
    metrics: Option<(TcpListener, PrometheusHandle)>,
    /// True from the shutdown signal on: readiness reads it.
    stopping: watch::Sender<bool>,
    stores: Stores,
    clock: Arc<dyn Clock>,
    settings: Settings,
    keyring_config: KeyRingConfig,
    dispatcher: Dispatcher,
}

impl App {
    /// Builds with the production collaborators.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, Overrides::default()).await
    }

    /// Connects stores (running migrations), loads the shared code key, binds the port.
    /// `settings` are validated already (`Settings::from_vars`, or `main` after parsing).
    pub async fn build_with(settings: Settings, overrides: Overrides) -> anyhow::Result<Self> {
        install_crypto_provider();
        let clock = overrides.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let metrics = match settings.runtime.metrics_addr {
            Some(addr) => {
                let handle = match overrides.metrics {
                    Some(handle) => handle,
                    None => crate::metrics::install()?,
                };
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics listener {addr}"))?;
                Some((listener, handle))
            }
            None => None,
        };
        let mailer = match overrides.mailer {
            Some(mailer) => mailer,
            None => mailer(&settings).await?,
        };
        let stores = Stores::connect(&settings, clock.as_ref()).await?;

        let secrets = stores.secrets.as_ref();
        let code_key = shared_secret(secrets, clock.as_ref(), CodeHasher::SECRET_NAME).await?;
        let refresh_key = shared_secret(secrets, clock.as_ref(), REFRESH_SECRET_NAME).await?;
        let outbox_key = shared_secret(secrets, clock.as_ref(), Outbox::SECRET_NAME).await?;
        let outbox = Outbox::new(Outbox::SECRET_NAME, outbox_key);
        let dispatcher = Dispatcher::new(
            stores.outbox.clone(),
            outbox.clone(),
            mailer,
            clock.clone(),
            dispatch_config(&settings),
        );
        let argon2 = settings.argon2;
        let hasher = tokio::task::spawn_blocking(move || Hasher::new(argon2))
            .await
            .context("preparing the password hasher")??;
        let common = tokio::task::spawn_blocking(CommonPasswords::embedded)
            .await
            .context("loading the common-password list")?
            .context("inflating the common-password list")?;
        let passwords =
            PasswordPolicy::new(usize::from(settings.password_min_length), Arc::new(common));
        let host = settings.host();
        let listener = TcpListener::bind((host, settings.port))
            .await
            .with_context(|| format!("binding {host}:{}", settings.port))?;
        let issuer = settings.issuer(listener.local_addr().context("reading the bound address")?);
        let keyring_config = key_ring_config(&settings, issuer.clone());
        let tokens = Arc::new(
            KeyRing::load(stores.keys.clone(), clock.clone(), keyring_config.clone()).await?,
        );

        let accounts = Accounts::new(Deps {
            stores: stores.clone(),
            outbox,
            clock: clock.clone(),
            hasher,
            codes: CodeHasher::new(code_key),
            tokens,
            refresh_key,
            policy: Policy::from_settings(&settings),
            passwords,
        });
        let (stopping, stopping_seen) = watch::channel(false);
        let state = AppState {
            accounts,
            probes: http::health::Probes {
                database: stores.database.clone(),
                redis: stores.redis.clone(),
                stopping: stopping_seen,
            },
            issuer,
            introspection_secret: settings.introspection_secret.clone(),
            trusted_proxies: settings.trusted_proxies.clone().unwrap_or_default(),
        };
        let router = http::router(state, &settings.runtime.cors_origins);
        Ok(Self {
            listener,
            router,
            metrics,
            stopping,
            stores,
            clock,
            settings,
            keyring_config,
            dispatcher,
        })
    }

    /// The bound port (useful when the settings said 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The bound port of the metrics listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        let (listener, _) = self.metrics.as_ref()?;
        listener.local_addr().ok().map(|a| a.port())
    }

    /// Serves (and sends queued mail, sweeps, serves metrics) until `shutdown` completes, then
    /// stops in order: readiness answers 503 at once; requests are still served for the drain
    /// time (the load balancer notices and stops routing here); then no new connection is
    /// accepted and the requests in flight finish; then the background tasks stop and the
    /// pools close. All of it within the grace time from the signal: past it, whatever still
    /// runs is cut with a warning, so the process exits before the container is killed.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let port = self.port();
        let metrics_port = self.metrics_port();
        let drain = self.settings.runtime.shutdown_drain;
        let grace = self.settings.runtime.shutdown_grace;
        let (stop_tasks, tasks_stopped) = watch::channel(false);
        let mut tasks: Vec<(&'static str, JoinHandle<()>)> = vec![
            (
                "sweeper",
                tokio::spawn(sweep_forever(
                    self.stores.clone(),
                    self.clock.clone(),
                    self.settings.sweep_interval,
                    self.keyring_config.retired_key_window(),
                    self.settings.pending_account_ttl,
                    self.settings.auth_event_retention(),
                    tasks_stopped.clone(),
                )),
            ),
            (
                "mail sender",
                tokio::spawn(self.dispatcher.run(tasks_stopped.clone())),
            ),
        ];
        if let Some(notices) = self.stores.revocation_notices.clone() {
            let stopped = tasks_stopped.clone();
            tasks.push((
                "session revocation notices",
                tokio::spawn(async move { notices.run(stopped).await }),
            ));
        }
        if let Some((listener, handle)) = self.metrics {
            let stopped = tasks_stopped.clone();
            tasks.push((
                "metrics listener",
                tokio::spawn(async move {
                    if let Err(e) = crate::metrics::serve(listener, handle, stopped).await {
                        tracing::warn!(error = %e, "the metrics listener failed");
                    }
                }),
            ));
        }
        tracing::info!(port, metrics_port, environment = ?self.settings.environment, "Application startup complete");

        let mut stopping_seen = self.stopping.subscribe();
        let serve = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopping_seen.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(drain).await;
            tracing::info!("no longer accepting connections; finishing the requests in flight");
        })
        .into_future();
        tokio::pin!(serve);
        let stopping = self.stopping;
        let (served, deadline) = tokio::select! {
            // Only an accept loop that failed ends before the signal.
            served = &mut serve => (served, Instant::now() + grace),
            () = shutdown => {
                let deadline = Instant::now() + grace;
                let _ = stopping.send(true);
                tracing::info!(
                    drain_secs = drain.as_secs(),
                    grace_secs = grace.as_secs(),
                    "shutting down: readiness answers 503; serving until the drain time is up"
                );
                match tokio::time::timeout_at(deadline, &mut serve).await {
                    Ok(served) => (served, deadline),
                    Err(_) => {
                        tracing::warn!(
                            grace_secs = grace.as_secs(),
                            "requests still running at the end of the grace time were cut"
                        );
                        (Ok(()), deadline)
                    }
                }
            }
        };

        let _ = stop_tasks.send(true);
        for (name, task) in tasks {
            // Each gets what is left of the grace, and a moment even when none is.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(LEAST_TASK_STOP);
            let abort = task.abort_handle();
            if tokio::time::timeout(left, task).await.is_err() {
                abort.abort();
                tracing::warn!(
                    task = name,
                    "a background task did not stop in time and was cut"
                );
            }
        }
        let closing = async {
            self.stores.database.close().await;
            if let Some(redis) = &self.stores.redis {
                redis.close().await;
            }
        };
        if tokio::time::timeout(LEAST_TASK_STOP, closing)
            .await
            .is_err()
        {
            tracing::warn!("the connection pools did not close in time");
        }
        tracing::info!("shut down");
        served
    }
}

/// The least time a background task is given to stop, even when the grace is used up (the
/// mail sender marks the mail it has just sent).
const LEAST_TASK_STOP: Duration = Duration::from_secs(1);

/// Makes ring the process's rustls crypto provider, once; later calls change nothing. With
/// `--features aws` the AWS SDK brings aws-lc-rs too, and every TLS client that asks rustls
/// for "the" provider (sqlx, lettre, redis) panics while two are built in and none is chosen.
/// `main` calls it first; [`App::build_with`] again, for processes that build the app
/// in-process (the tests).
pub fn install_crypto_provider() {
    // Err only when a provider is installed already, which is the goal.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The configured mail transport. An SMTP server that fails its start-up check is only warned
/// about (it may come up after us; each send reports its own failure).
pub async fn mailer(settings: &Settings) -> anyhow::Result<Arc<dyn EmailSender>> {
    let templates = Templates::new().context("compiling the mail templates")?;
    Ok(match (settings.email_transport, &settings.smtp_url) {
        (EmailTransport::Log, _) => {
            if settings.environment.is_deployed() {
                // Allowed explicitly (AIDLC_ALLOW_LOG_EMAIL), still worth a line at every start.
                tracing::warn!(
                    "the log mail transport writes codes to the log; use it only in development"
                );
            }
            Arc::new(LogSender::new(templates))
        }
        (EmailTransport::Smtp, Some(url)) => {
            let smtp =
                SmtpSender::new(url, &settings.email_from, settings.smtp_timeout, templates)?;
            smtp.check().await;
            Arc::new(smtp)
        }
        // Settings::validate refuses this; say so rather than fall back to the log.
        (EmailTransport::Smtp, None) => {
            anyhow::bail!("AIDLC_EMAIL_TRANSPORT=smtp needs AIDLC_SMTP_URL")
        }
        #[cfg(feature = "aws")]
        (EmailTransport::Ses, _) => {
            let config = crate::aws::sdk_config(settings).await;
            let ses = crate::email::SesSender::new(&config, &settings.email_from, templates)?;
            ses.check().await;
            Arc::new(ses)
        }
        // Settings::validate refuses this too.
        #[cfg(not(feature = "aws"))]
        (EmailTransport::Ses, _) => anyhow::bail!(
            "AIDLC_EMAIL_TRANSPORT=ses needs a build with `cargo build --release --features aws`"
        ),
    })
}

/// The outbox sender's settings. A send may take several SMTP commands, each bounded by the
/// SMTP timeout.
fn dispatch_config(settings: &Settings) -> DispatchConfig {
    DispatchConfig {
        poll: settings.outbox_poll,
        max_attempts: settings.outbox_max_attempts,
        send_timeout: settings.smtp_timeout * SMTP_COMMANDS_PER_SEND,
    }
}

/// Commands of one SMTP send (connect, EHLO, MAIL, RCPT, DATA, body) each bounded by the
/// SMTP timeout.
const SMTP_COMMANDS_PER_SEND: u32 = 6;

/// How long finished outbox rows (sent, dead, expired) are kept, for `aidlc-auth outbox`.
const OUTBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Deletes expired SQL codes, cooldowns, sessions, signing keys no longer published, and
/// pending accounts never verified, finished outbox rows, audit events past their retention
/// (Redis expires its own keys).
async fn sweep_forever(
    stores: Stores,
    clock: Arc<dyn Clock>,
    every: Duration,
    key_window: Duration,
    pending_ttl: Duration,
    event_retention: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let now = clock.now();
        let cutoffs = SweepCutoffs {
            now,
            keys_retired_before: now - key_window,
            pending_before: now - pending_ttl,
            outbox_finished_before: now - OUTBOX_RETENTION,
            events_before: now - event_retention,
        };
        match stores.sweeper.sweep_expired(cutoffs).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "swept expired rows"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired rows failed"),
        }
        log_outbox_depth(&stores, now).await;
    }
}

/// The outbox's depth and the age of its oldest queued mail, once a sweep, as gauges and in the
/// log: INFO while mail is waiting or dead (what an operator alarms on), DEBUG when it is
/// empty.
async fn log_outbox_depth(stores: &Stores, now: time::OffsetDateTime) {
    let counts = stores.outbox.counts(now).await;
    if let Ok(c) = &counts {
        crate::metrics::outbox(c);
    }
    match counts {
        Ok(c) if c.queued + c.sending + c.dead > 0 => tracing::info!(
            queued = c.queued,
            sending = c.sending,
            dead = c.dead,
            oldest_queued_secs = c.oldest_queued.map(|d| d.as_secs()),
            "mail outbox depth"
        ),
        Ok(c) => tracing::debug!(sent = c.sent, expired = c.expired, "mail outbox empty"),
        Err(e) => tracing::warn!(error = %e, "reading the mail outbox depth failed"),
    }
}

/// Name of the shared key that derives each refresh token's successor.
const REFRESH_SECRET_NAME: &str = "refresh-successor-key";

/// The key ring's settings, signing for `issuer`.
pub fn key_ring_config(settings: &Settings, issuer: String) -> KeyRingConfig {
    KeyRingConfig {
        issuer,
        audience: settings.jwt_audience.clone(),
        access_token_ttl: settings.access_token_ttl,
        reload_interval: settings.key_reload_interval,
        rotation_interval: settings.key_rotation_interval,
    }
}

/// `aidlc-auth outbox`: rows per state and the oldest queued mail's age.
pub async fn outbox_counts(settings: &Settings) -> anyhow::Result<crate::store::OutboxCounts> {
    let outbox = crate::store::connect_outbox_store(settings).await?;
    Ok(outbox.counts(SystemClock.now()).await?)
}

/// `aidlc-auth outbox retry-dead`: queues every dead mail whose code has not expired again,
/// with a fresh count of attempts (after fixing what killed them, e.g. the SMTP credentials).
/// The running instances send them within their poll interval. Returns how many.
pub async fn retry_dead_mail(settings: &Settings) -> anyhow::Result<u64> {
    let outbox = crate::store::connect_outbox_store(settings).await?;
    Ok(outbox.retry_dead(SystemClock.now()).await?)
}

/// `aidlc-auth keys rotate`: a new signing key, published now and signing once every instance
/// and verifier has seen it; the old one stays published until the tokens it signed have
/// expired. Returns the new key.
pub async fn rotate_signing_key(settings: &Settings) -> anyhow::Result<crate::store::StoredKey> {
    let keys = crate::store::connect_key_store(settings).await?;
    // Rotation only stores a key: the issuer it will sign for does not matter here.
    let config = key_ring_config(settings, String::new());
    crate::tokens::publish_next_key(keys.as_ref(), &SystemClock, &config).await
}

/// `aidlc-auth keys revoke <kid>`: for a key that has leaked. It stops signing and leaves the
/// JWKS at once in the shared store, a new key signs from now, and every instance refuses
/// tokens with that `kid` after its next key reload. Returns the `kid` that signs now, or None
/// when no published key has `kid`.
pub async fn revoke_signing_key(settings: &Settings, kid: &str) -> anyhow::Result<Option<String>> {
    let keys = crate::store::connect_key_store(settings).await?;
    crate::tokens::revoke_key(keys.as_ref(), &SystemClock, kid).await
}

/// `aidlc-auth keys rewrap`: every stored private key and server secret sealed again under the
/// current key-encryption key, in one transaction; after it the previous key can be removed
/// (run it once every instance runs with the new key, so none writes under the old one).
pub async fn rewrap_keys(settings: &Settings) -> anyhow::Result<crate::store::RewrapCounts> {
    crate::store::rewrap_keys(settings).await
}
