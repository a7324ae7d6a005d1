//! `elock serve`: the manager behind an HTTP API (axum), with graceful shutdown.

mod api;
mod body;
mod error;
mod events;
mod health;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use elock_core::clock::SystemClock;
use elock_core::config::EngineConfig;
use elock_core::manager::Manager;
use elock_core::store::{DurableStore, InMemoryStore, Store};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

pub use events::parse_types;

/// Largest request body: metadata is at most 16 KiB, and a request names at most 64 resources.
const BODY_LIMIT: usize = 256 * 1024;

/// Where state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The embedded durable store (redb) in `--data-dir`: one machine, zero setup.
    Embedded,
    /// Alias of `embedded`, for configurations written for Atlantis.
    Boltdb,
    /// In memory only: nothing survives a restart (tests, throw-away servers).
    Memory,
}

pub struct ServeOptions {
    pub listen: String,
    pub data_dir: PathBuf,
    pub backend: Backend,
    pub engine: EngineConfig,
}

/// What every handler shares.
pub struct App {
    pub manager: Manager,
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(events::routes())
        .merge(health::routes())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

/// Runs the server until SIGINT or SIGTERM, then stops accepting, finishes in-flight calls and
/// flushes the store.
pub async fn serve(opts: ServeOptions) -> Result<(), String> {
    let clock = Arc::new(SystemClock);
    let store: Arc<dyn Store> = match opts.backend {
        Backend::Embedded | Backend::Boltdb => Arc::new(
            DurableStore::open(&opts.data_dir, opts.engine.table_config(), clock.clone())
                .map_err(|e| e.to_string())?,
        ),
        Backend::Memory => Arc::new(InMemoryStore::new(
            opts.engine.table_config(),
            clock.clone(),
        )),
    };
    let manager = Manager::start(store, opts.engine.clone(), clock)
        .await
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "NO AUTH: no tokens are configured and the API listens on a non-loopback address; anyone who can reach it can take and release locks"
        );
    }
    // The first line on stdout says where we listen (tests and scripts read it).
    println!(
        "elock: listening on http://{addr} (backend {:?}, data dir {})",
        opts.backend,
        opts.data_dir.display()
    );
    tracing::info!(%addr, backend = ?opts.backend, "elock serving");
    let app = Arc::new(App {
        manager: manager.clone(),
    });
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("shutting down: flushing the store");
    manager.shutdown().await.map_err(|e| e.to_string())
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
