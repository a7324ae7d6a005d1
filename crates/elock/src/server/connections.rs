//! Accepting connections: HTTP/1.1 and HTTP/2 on one port, with the limits that keep slow or
//! idle clients from taking what other clients need.
//!
//! - A client has `http.header-read-timeout` to send a request's headers (and an idle keep-alive
//!   connection is closed after as long); the body limits are a middleware (`limits.rs`).
//! - At most `http.max-connections` connections are served at once. One more is answered at
//!   once with 503 `overloaded` in the one JSON error shape and closed: the refusal is clear and
//!   costs the server a file descriptor for a moment, not for as long as the client likes.
//! - Graceful shutdown: stop accepting, let every connection finish its in-flight requests.
//! - With TLS, the handshake runs in the connection's own task (a slow client delays nobody)
//!   and must finish within `http.header-read-timeout`; the client certificate's subject rides
//!   on every request of the connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use elock_core::api::{ErrorBody, ErrorCode, ErrorDetails};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::tls::{self, Tls};
use crate::config::schema::Http;

/// File descriptors kept for what is not a client connection: the store, the audit log,
/// Redis connections, webhooks.
const RESERVED_FDS: u64 = 64;

/// How long the refusal of a connection over the limit may take to write.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The connection limit in force: the configured one, lowered to what the process's open-file
/// limit allows (raised to its hard limit first, as servers do).
pub fn effective_max_connections(configured: usize) -> usize {
    let Some(fds) = raise_open_file_limit() else {
        return configured;
    };
    let allowed = fds.saturating_sub(RESERVED_FDS).max(1) as usize;
    if configured > allowed {
        tracing::warn!(
            configured,
            allowed,
            open_file_limit = fds,
            "http.max-connections is above what the open-file limit allows; using the lower value"
        );
    }
    configured.min(allowed)
}

#[cfg(unix)]
fn raise_open_file_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

#[cfg(not(unix))]
fn raise_open_file_limit() -> Option<u64> {
    None
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    http: &Http,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    let handshake_timeout = http.header_read_timeout;
    let max = effective_max_connections(http.max_connections);
    let slots = Arc::new(Semaphore::new(max));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout);
    // HTTP/2 has no header deadline of its own: a connection whose peer stops answering pings
    // (sent every header-read-timeout) is closed instead of held forever.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(http.header_read_timeout));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors (or a transient error): wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream, max));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(
                        TokioIo::new(stream),
                        TowerToHyperService::new(with_peer(router, peer, None)),
                    );
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => {
                    let accepted =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
                    let stream = match accepted {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let subject = tls::client_subject(stream.get_ref().1);
                    let conn = builder.serve_connection_with_upgrades(
                        TokioIo::new(stream),
                        TowerToHyperService::new(with_peer(router, peer, subject)),
                    );
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    // In-flight calls finish (waits and event streams end at once when the server closes); a
    // client that holds its connection past this is cut off, so the process exits in time for
    // the supervisor (systemd, Kubernetes) not to kill it.
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open after {}s of shutdown: closing them",
            SHUTDOWN_GRACE.as_secs()
        );
    }
}

/// The router with the connection's peer address (and client certificate) on every request.
fn with_peer(
    router: Router,
    peer: std::net::SocketAddr,
    subject: Option<tls::ClientSubject>,
) -> impl tower::Service<
    axum::http::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    router.map_request(move |mut req: axum::http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(s) = &subject {
            req.extensions_mut().insert(s.clone());
        }
        req
    })
}

/// How long a shutdown waits for connections to finish their calls.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Answers a connection over the limit with 503 `overloaded` and closes it.
async fn refuse(mut stream: TcpStream, max: usize) {
    let body = ErrorBody::new(
        ErrorCode::Overloaded,
        format!("the server is at its limit of {max} connections (http.max-connections); try again shortly"),
        ErrorDetails {
            max: Some(max),
            ..ErrorDetails::default()
        },
    );
    let body = serde_json::to_string(&body).unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}
