//! `elock serve`: the manager behind an HTTP API (axum), with graceful shutdown.

mod admin;
mod api;
pub mod atlantis;
mod audit;
mod auth;
mod body;
mod connections;
mod error;
mod events;
mod health;
mod limits;
mod metrics;
mod openapi;
mod page;
mod scope;
mod shown;
pub mod tls;
mod transfer;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use elock_core::clock::SystemClock;
use elock_core::manager::{EventObserver, Manager};
use elock_core::store::{DurableStore, InMemoryStore, Store};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

pub use events::parse_types;

use crate::config::{self, Backend, Config, Override};

/// Request ids: this process's start time and a counter, unique and short (`k3f9a2-17`).
#[derive(Clone, Default)]
struct NextRequestId {
    counter: Arc<std::sync::atomic::AtomicU64>,
}

impl MakeRequestId for NextRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        static EPOCH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let epoch = EPOCH.get_or_init(|| {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{:x}", secs & 0xff_ffff)
        });
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{epoch}-{n}").parse().ok().map(RequestId::new)
    }
}

/// How the server was configured, kept for reloads (SIGHUP, POST /api/v1/admin/reload).
pub struct ServeOptions {
    pub config: Config,
    pub file: Option<PathBuf>,
    /// Flag values: re-applied on reload (the environment is read again).
    pub flags: Vec<Override>,
}

impl ServeOptions {
    /// A throw-away server: the memory store on a free loopback port, no audit file, defaults
    /// otherwise. For tests and examples that run a server inside their own process.
    pub fn in_memory() -> ServeOptions {
        let mut config = Config::default();
        config.enhanced_locking.backend = Backend::Memory;
        config.enhanced_locking.listen = "127.0.0.1:0".into();
        config.audit.enabled = false;
        ServeOptions {
            config,
            file: None,
            flags: Vec::new(),
        }
    }
}

/// What every handler shares.
pub struct App {
    pub manager: Manager,
    pub reloader: Reloader,
    /// `None` when `metrics.enabled` is false.
    pub metrics: Option<Arc<metrics::Metrics>>,
    pub auth: auth::Auth,
    pub audit: audit::AuditLog,
    /// Where Atlantis's calls go (`migration.*`).
    pub migration: Arc<crate::migration::Migration>,
    /// `http.body-read-timeout`.
    pub body_read_timeout: std::time::Duration,
    /// Turns true when the server begins to shut down: open event streams end then, instead
    /// of keeping the shutdown waiting for their clients.
    pub closing: tokio::sync::watch::Sender<bool>,
}

impl App {
    /// Completes when the server begins to shut down.
    pub async fn closed(&self) {
        let mut rx = self.closing.subscribe();
        let _ = rx.wait_for(|closing| *closing).await;
    }
}

impl App {
    /// Atlantis's lock storage, routed as the migration mode says.
    pub fn atlantis(&self) -> atlantis::routed::Routed<'_> {
        atlantis::routed::Routed {
            elock: atlantis::adapter::Adapter {
                manager: &self.manager,
            },
            migration: &self.migration,
        }
    }
}

pub struct Reloader {
    file: Option<PathBuf>,
    flags: Vec<Override>,
    current: std::sync::Mutex<Config>,
    /// The TLS files, read again on every reload.
    pub tls: Option<Arc<tls::Tls>>,
}

impl Reloader {
    /// Reads the configuration again and applies what can change live. Returns the keys that
    /// changed but need a restart.
    pub async fn reload(&self, manager: &Manager) -> Result<Vec<String>, Vec<String>> {
        let new = config::load_from_environment(self.file.as_deref(), &self.flags)
            .map_err(|e| e.lines())?;
        // A renewed certificate that cannot be used refuses the whole reload: the running one
        // stays, and so does everything else.
        if let Some(tls) = &self.tls {
            tls.reload().map_err(|e| vec![e])?;
        }
        let old = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut restart: Vec<String> = manager
            .reload(new.engine())
            .await
            .map_err(|e| vec![e.to_string()])?
            .into_iter()
            .map(String::from)
            .collect();
        restart.extend(config::restart_required(&old, &new));
        for key in &restart {
            tracing::warn!(
                key,
                "this setting changed but needs a restart to take effect"
            );
        }
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(restart)
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(events::routes())
        .merge(health::routes())
        .merge(admin::routes())
        .merge(metrics::routes())
        .merge(audit::routes())
        .merge(openapi::routes())
        .merge(transfer::routes())
        .merge(atlantis::routes())
        .merge(page::routes())
        // Outermost last: count → audit → authorize → finish (errors completed, output
        // filtered) → handler.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            shown::finish,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            audit::audit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            limits::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            metrics::count,
        ))
        // Outermost: every request gets an id (or keeps the caller's `x-request-id`), the log
        // span carries it, and the answer echoes it.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path())
        }))
        .layer(SetRequestIdLayer::x_request_id(NextRequestId::default()))
        .with_state(app)
}

/// Runs the server until SIGINT or SIGTERM, then stops accepting, finishes in-flight calls and
/// flushes the store. The first line on standard output says where it listens.
pub async fn serve(opts: ServeOptions) -> Result<(), String> {
    let started = start(opts).await?;
    println!(
        "elock: listening on {}://{} (backend {:?}, data dir {})",
        started.scheme(),
        started.addr,
        started.backend,
        started.data_dir
    );
    tokio::spawn(reload_on_sighup(started.app.clone()));
    // Under systemd (Type=notify): ready once it answers, stopping once asked to stop. Outside
    // systemd there is no NOTIFY_SOCKET and these do nothing.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    started
        .run(async {
            shutdown_signal().await;
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        })
        .await
}

/// A server bound to its address and ready to answer, not yet accepting connections.
pub struct Started {
    /// Where it listens (the real port when the configuration asked for port 0).
    pub addr: SocketAddr,
    backend: Backend,
    data_dir: String,
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    http: config::schema::Http,
}

impl Started {
    /// `https` when TLS is on.
    pub fn scheme(&self) -> &'static str {
        if self.app.reloader.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Serves until `shutdown` completes, then finishes in-flight calls and flushes the audit
    /// log and the store.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
        let Started {
            app,
            listener,
            http,
            ..
        } = self;
        let closing = app.closing.clone();
        let manager = app.manager.clone();
        let shutdown = async move {
            shutdown.await;
            tracing::info!("shutting down: ending event streams and waits");
            // Event streams end, waiting callers are answered `shutting_down` (retryable).
            let _ = closing.send(true);
            manager.begin_shutdown();
        };
        let tls = app.reloader.tls.clone();
        connections::serve(listener, router(app.clone()), &http, tls, shutdown).await;
        tracing::info!("shutting down: flushing the audit log and the store");
        app.audit.flush().await;
        app.manager.shutdown().await.map_err(|e| e.to_string())
    }
}

/// Opens the store, starts the manager and binds the listener: everything `serve` does before
/// accepting connections. Tests use it to run a server inside their own process.
pub async fn start(opts: ServeOptions) -> Result<Started, String> {
    let cfg = &opts.config;
    let el = &cfg.enhanced_locking;
    let engine = cfg.engine();
    let clock = Arc::new(SystemClock);
    let store: Arc<dyn Store> = match el.backend {
        Backend::Embedded => Arc::new(
            DurableStore::open(&el.data_dir, engine.table_config(), clock.clone())
                .map_err(|e| e.to_string())?,
        ),
        Backend::Memory => Arc::new(InMemoryStore::new(engine.table_config(), clock.clone())),
        Backend::Redis => Arc::new(
            elock_redis::RedisStore::open(
                cfg.redis_config()?,
                engine.table_config(),
                elock_redis::TimeSource::Redis,
            )
            .await
            .map_err(|e| format!("{e} (redis.addresses)"))?,
        ),
    };
    let auth = auth::Auth::new(&cfg.auth.tokens, &cfg.auth.clients)?;
    for t in &cfg.auth.tokens {
        if t.role == config::schema::Role::Write && t.owners.is_empty() && t.resources.is_empty() {
            tracing::warn!(
                token = %t.name,
                "write token without a scope: it may renew and release any lease; give it auth.tokens[].owners or .resources"
            );
        }
    }
    let tls = tls::Tls::from_config(&cfg.tls)?;
    if !cfg.auth.clients.is_empty() && !tls.as_ref().is_some_and(|t| t.asks_clients()) {
        return Err(
            "auth.clients needs tls.client-ca-file: without it no client certificate is asked for"
                .into(),
        );
    }
    let audit = audit::AuditLog::start(cfg.audit_path()).await?;
    let migration = Arc::new(start_migration(&cfg.migration).await?);
    let metrics = cfg.metrics.enabled.then(|| {
        metrics::Metrics::new(match el.backend {
            Backend::Redis => &metrics::REDIS_GAUGES,
            Backend::Embedded => &metrics::EMBEDDED_GAUGES,
            _ => &[],
        })
    });
    let observers: Vec<Arc<dyn EventObserver>> = metrics
        .iter()
        .map(|m| m.clone() as Arc<dyn EventObserver>)
        .collect();
    let manager = Manager::start_observed(store, engine, clock, observers)
        .await
        .map_err(|e| e.to_string())?;
    if cfg.events.enabled {
        webhooks::start(&manager, &cfg.events.webhooks)?;
    }
    let listener = tokio::net::TcpListener::bind(&el.listen)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {} (enhanced-locking.listen): {e}",
                el.listen
            )
        })?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    if !addr.ip().is_loopback() && auth.is_open() {
        tracing::warn!(
            %addr,
            "NO AUTH: no tokens are configured and the API listens on a non-loopback address; anyone who can reach it can take and release locks"
        );
    }
    tracing::info!(%addr, backend = ?el.backend, "elock serving");
    let app = Arc::new(App {
        manager,
        reloader: Reloader {
            file: opts.file.clone(),
            flags: opts.flags.clone(),
            current: std::sync::Mutex::new(opts.config.clone()),
            tls,
        },
        metrics,
        auth,
        audit,
        migration,
        body_read_timeout: cfg.http.body_read_timeout,
        closing: tokio::sync::watch::channel(false).0,
    });
    Ok(Started {
        addr,
        backend: el.backend,
        data_dir: el.data_dir.display().to_string(),
        app,
        listener,
        http: cfg.http.clone(),
    })
}

async fn reload_on_sighup(app: Arc<App>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match app.reloader.reload(&app.manager).await {
                Ok(_) => tracing::info!("configuration reloaded (SIGHUP)"),
                Err(errors) => {
                    for e in errors {
                        tracing::error!(error = %e, "configuration not reloaded: the running one stays");
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = app;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The migration settings, connected to the legacy store when one is configured.
async fn start_migration(
    m: &config::schema::Migration,
) -> Result<crate::migration::Migration, String> {
    let legacy = match m.legacy_redis_url() {
        Some(url) => Some(
            crate::migration::AtlantisRedis::connect(&url)
                .await
                .map_err(|e| format!("migration.legacy-redis {:?}: {e}", m.legacy_redis))?,
        ),
        None => None,
    };
    tracing::info!(mode = ?m.mode, traffic_percentage = m.traffic_percentage, legacy_store = legacy.is_some(), "migration");
    Ok(crate::migration::Migration::new(
        m.mode,
        m.traffic_percentage,
        m.validation_enabled,
        legacy,
    ))
}
