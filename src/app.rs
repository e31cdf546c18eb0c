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
use crate::config::Settings;
use crate::domain::{CommonPasswords, PasswordPolicy};
use crate::email::{Dispatcher, EmailSender, Outbox};
use crate::http::{self, AppState};
use crate::store::{Stores, shared_secret};
use crate::tokens::{KeyRing, KeyRingConfig};

mod commands;
mod mail;
mod sweep;

pub use commands::{
    outbox_counts, retry_dead_mail, revoke_signing_key, rewrap_keys, rotate_signing_key,
};
use mail::dispatch_config;
pub use mail::mailer;
use sweep::sweep_forever;

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
