//! Start-up: choose the stores from the settings, load shared secrets, bind, serve.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use rand::RngCore;
use tokio::net::TcpListener;

use crate::accounts::{Accounts, CodeHasher, Hasher, Policy};
use crate::clock::{Clock, SystemClock};
use crate::config::{EmailTransport, Settings};
use crate::email::{EmailSender, LogSender};
use crate::http::{self, AppState};
use crate::store::Stores;

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
}

impl App {
    /// Builds with the production collaborators.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, Overrides::default()).await
    }

    /// Connects stores (running migrations), loads the shared code key, binds the port.
    pub async fn build_with(settings: Settings, overrides: Overrides) -> anyhow::Result<Self> {
        settings.validate()?;
        if settings.environment.is_deployed() && settings.email_transport == EmailTransport::Log {
            tracing::warn!(
                "the log mail transport writes codes to the log; use it only in development"
            );
        }
        let clock = overrides.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let mailer = overrides
            .mailer
            .unwrap_or_else(|| match settings.email_transport {
                EmailTransport::Log => Arc::new(LogSender),
            });
        let stores = Stores::connect(&settings).await?;

        let mut candidate = [0u8; 32];
        rand::rng().fill_bytes(&mut candidate);
        let code_key = stores
            .secrets
            .get_or_create(CodeHasher::SECRET_NAME, &candidate, clock.now())
            .await
            .context("loading the code-hash key")?;
        let argon2 = settings.argon2;
        let hasher = tokio::task::spawn_blocking(move || Hasher::new(argon2))
            .await
            .context("preparing the password hasher")??;

        let accounts = Accounts::new(
            stores.clone(),
            mailer,
            clock.clone(),
            hasher,
            CodeHasher::new(code_key),
            Policy::from_settings(&settings),
        );
        let router = http::router(AppState { accounts });
        let listener = TcpListener::bind((settings.host, settings.port))
            .await
            .with_context(|| format!("binding {}:{}", settings.host, settings.port))?;
        Ok(Self {
            listener,
            router,
            stores,
            clock,
            settings,
        })
    }

    /// The bound port (useful when the settings said 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let sweeper = tokio::spawn(sweep_forever(
            self.stores.clone(),
            self.clock.clone(),
            self.settings.sweep_interval,
        ));
        tracing::info!(port = self.port(), environment = ?self.settings.environment, "Application startup complete");
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        sweeper.abort();
        tracing::info!("shut down");
        served
    }
}

/// Deletes expired SQL codes, cooldowns and sessions (Redis expires its own keys).
async fn sweep_forever(stores: Stores, clock: Arc<dyn Clock>, every: std::time::Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match stores.sweeper.sweep_expired(clock.now()).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "swept expired rows"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired rows failed"),
        }
    }
}
