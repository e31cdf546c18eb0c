//! Start-up: choose the stores from the settings, load shared secrets, bind, serve.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::accounts::{Accounts, CodeHasher, Deps, Hasher, Policy};
use crate::clock::{Clock, SystemClock};
use crate::config::{EmailTransport, Settings};
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
}

/// A built service, bound to its port, not yet serving.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
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
        });
        let state = AppState {
            accounts,
            probes: http::health::Probes {
                database: stores.database.clone(),
                redis: stores.redis.clone(),
            },
            issuer,
            introspection_secret: settings.introspection_secret.clone(),
        };
        let router = http::router(state);
        Ok(Self {
            listener,
            router,
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

    /// Serves (and sends queued mail) until `shutdown` completes, then finishes in-flight
    /// requests and the mail being sent, and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let port = self.port();
        let sweeper = tokio::spawn(sweep_forever(
            self.stores.clone(),
            self.clock.clone(),
            self.settings.sweep_interval,
            self.keyring_config.retired_key_window(),
            self.settings.pending_account_ttl,
        ));
        let (stop_sender, stopped) = tokio::sync::watch::channel(false);
        let sender = tokio::spawn(self.dispatcher.run(stopped));
        // Bounded: the batch under way finishes (each send is bounded), then the sender stops.
        let sender_grace = dispatch_config(&self.settings).send_timeout * 2;
        tracing::info!(port, environment = ?self.settings.environment, "Application startup complete");
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        sweeper.abort();
        let _ = stop_sender.send(true);
        if tokio::time::timeout(sender_grace, sender).await.is_err() {
            tracing::warn!("the mail sender did not stop in time; its rows' leases will run out");
        }
        tracing::info!("shut down");
        served
    }
}

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
/// pending accounts never verified, finished outbox rows (Redis expires its own keys).
async fn sweep_forever(
    stores: Stores,
    clock: Arc<dyn Clock>,
    every: Duration,
    key_window: Duration,
    pending_ttl: Duration,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = clock.now();
        let cutoffs = SweepCutoffs {
            now,
            keys_retired_before: now - key_window,
            pending_before: now - pending_ttl,
            outbox_finished_before: now - OUTBOX_RETENTION,
        };
        match stores.sweeper.sweep_expired(cutoffs).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "swept expired rows"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired rows failed"),
        }
        log_outbox_depth(&stores, now).await;
    }
}

/// The outbox's depth and the age of its oldest queued mail, once a sweep: INFO while mail is
/// waiting or dead (what an operator alarms on), DEBUG when it is empty.
async fn log_outbox_depth(stores: &Stores, now: time::OffsetDateTime) {
    match stores.outbox.counts(now).await {
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
