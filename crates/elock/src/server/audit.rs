//! The audit log (docs/api.md): every mutating call (refused ones included) as one JSON line — time, actor, remote address,
//! operation, resources, lease or ticket id, result — and GET /api/v1/audit to read it back.
//!
//! Records go through a bounded channel to one writer thread that appends whatever is queued with
//! one write. The answer does not wait for that write (it would cost every mutating call a thread
//! hop); so a `kill -9` can lose the records of the last moment's calls, while a graceful shutdown
//! and every GET /api/v1/audit first wait for the records sent before them to be written (a
//! barrier through the same channel). No secret is written: actors are token names, and neither
//! metadata nor tokens are copied.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, RawQuery, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use elock_core::api::{AuditList, AuditQuery, AuditRecord};
use elock_core::model::{Lease, LeaseId, ResourceName, TicketId, TicketView, Timestamp};
use std::io::Write;
use tokio::sync::{mpsc, oneshot};

use super::auth::Actor;
use super::error::{ApiError, ApiResult};
use super::metrics::ErrorKind;
use super::{body, App};

/// How long the writer lets records gather after each write.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

pub struct AuditLog {
    tx: Option<mpsc::Sender<Entry>>,
    path: PathBuf,
}

/// What the writer thread receives: a record, or a barrier answered once everything before it
/// is written.
enum Entry {
    Record(Box<AuditRecord>),
    Barrier(oneshot::Sender<()>),
}

impl AuditLog {
    /// Starts the writer (creating the file's directory); `None` path: auditing is off.
    pub async fn start(path: Option<PathBuf>) -> Result<AuditLog, String> {
        let Some(path) = path else {
            return Ok(AuditLog {
                tx: None,
                path: PathBuf::new(),
            });
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| format!("audit.path: cannot create {}: {e}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("audit.path: cannot open {}: {e}", path.display()))?;
        let (tx, mut rx) = mpsc::channel::<Entry>(4096);
        // One OS thread writes: it takes everything queued, appends it with one write, and goes
        // back to waiting. No async file I/O hop per record.
        std::thread::Builder::new()
            .name("elock-audit".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(64 * 1024);
                let mut barriers = Vec::new();
                while let Some(first) = rx.blocking_recv() {
                    batch.clear();
                    let mut next = Some(first);
                    while let Some(entry) = next {
                        match entry {
                            Entry::Record(record) => {
                                let _ = serde_json::to_writer(&mut batch, &record);
                                batch.push(b'\n');
                            }
                            Entry::Barrier(done) => barriers.push(done),
                        }
                        next = rx.try_recv().ok();
                    }
                    if let Err(e) = file.write_all(&batch).and_then(|_| file.flush()) {
                        tracing::error!(error = %e, "cannot write the audit log");
                    }
                    for done in barriers.drain(..) {
                        let _ = done.send(());
                    }
                    // Let the next records gather: under load this turns one wakeup per few
                    // records into one per pause, which the lock path's threads feel.
                    std::thread::sleep(GATHER);
                }
            })
            .map_err(|e| format!("audit: cannot start the writer: {e}"))?;
        Ok(AuditLog { tx: Some(tx), path })
    }

    async fn record(&self, r: AuditRecord) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Entry::Record(Box::new(r))).await;
        }
    }

    /// Waits until every record sent before this call is written to the file.
    pub async fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (done, written) = oneshot::channel();
            if tx.send(Entry::Barrier(done)).await.is_ok() {
                let _ = written.await;
            }
        }
    }
}

/// What a handler touched, attached to its answer (success or error) for the audit record.
#[derive(Clone, Debug, Default)]
pub struct AuditInfo {
    pub resources: Vec<String>,
    pub lease_id: Option<String>,
    pub ticket_id: Option<String>,
    /// The lease's or ticket's owner (the one asked for, on an acquire).
    pub owner: Option<String>,
    /// A forced release: whose lease it was, and why.
    pub former_holder: Option<String>,
    pub reason: Option<String>,
}

impl AuditInfo {
    pub fn of_lease(l: &Lease) -> Self {
        AuditInfo {
            resources: l.resources.iter().map(|h| h.resource.to_string()).collect(),
            lease_id: Some(l.id.to_string()),
            owner: Some(l.owner.to_string()),
            ..AuditInfo::default()
        }
    }

    pub fn of_ticket(t: &TicketView) -> Self {
        AuditInfo {
            resources: t.resources.iter().map(ToString::to_string).collect(),
            lease_id: t.lease_id.map(|l| l.to_string()),
            ticket_id: Some(t.id.to_string()),
            owner: Some(t.owner.to_string()),
            ..AuditInfo::default()
        }
    }

    pub fn owned_by(mut self, owner: &str) -> Self {
        self.owner = Some(owner.to_string());
        self
    }

    /// A release its holder did not ask for: the former holder and the reason are recorded.
    pub fn forced(mut self, lease: &Lease, reason: &str) -> Self {
        self.lease_id = Some(lease.id.to_string());
        self.owner = Some(lease.owner.to_string());
        self.former_holder = Some(lease.owner.to_string());
        self.reason = Some(reason.to_string());
        self
    }

    pub fn of_lease_id(id: LeaseId) -> Self {
        AuditInfo {
            lease_id: Some(id.to_string()),
            ..AuditInfo::default()
        }
    }

    pub fn of_ticket_id(id: TicketId) -> Self {
        AuditInfo {
            ticket_id: Some(id.to_string()),
            ..AuditInfo::default()
        }
    }

    pub fn of_resources(r: &[ResourceName]) -> Self {
        AuditInfo {
            resources: r.iter().map(ToString::to_string).collect(),
            ..AuditInfo::default()
        }
    }
}

/// A handler's answer with what it touched.
pub fn attach<T: IntoResponse>(result: Result<T, elock_core::Error>, info: AuditInfo) -> Response {
    let response = match result {
        Ok(v) => v.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    };
    attach_info(response, info)
}

pub fn attach_info(mut response: Response, info: AuditInfo) -> Response {
    response.extensions_mut().insert(info);
    response
}

/// Records every mutating call, around authorization (so refusals are recorded too). Handlers
/// say what they touched ([`AuditInfo`]); nothing here reads the bodies.
pub async fn audit(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) || app.audit.tx.is_none() {
        return next.run(request).await;
    }
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let mut record = AuditRecord {
        time: Timestamp::from_system(std::time::SystemTime::now()),
        actor: "anonymous".into(),
        remote: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.to_string()),
        operation: format!(
            "{} {}",
            request.method(),
            path.as_deref().unwrap_or(request.uri().path())
        ),
        resources: Vec::new(),
        lease_id: None,
        ticket_id: None,
        owner: None,
        former_holder: None,
        reason: None,
        status: 0,
        error: None,
    };
    let response = next.run(request).await;
    record.status = response.status().as_u16();
    if let Some(actor) = response.extensions().get::<Actor>() {
        record.actor = actor.name.clone();
    }
    if let Some(info) = response.extensions().get::<AuditInfo>() {
        record.resources = info.resources.clone();
        record.lease_id = info.lease_id.clone();
        record.ticket_id = info.ticket_id.clone();
        record.owner = info.owner.clone();
        record.former_holder = info.former_holder.clone();
        record.reason = info.reason.clone();
    }
    if let Some(ErrorKind(kind)) = response.extensions().get::<ErrorKind>() {
        record.error = Some(kind.to_string());
    }
    app.audit.record(record).await;
    response
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(read), components(schemas(AuditRecord, AuditList)))]
pub struct Doc;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/audit", get(read))
}

/// GET /api/v1/audit?since=RFC3339&limit=N&resource=PREFIX&owner=O (newest last; at most 10,000). Admin.
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin",
    params(("since" = Option<String>, Query, description = "RFC 3339: records from then on"), ("limit" = Option<u32>, Query, description = "at most this many, newest (default 100)"), ("last" = Option<String>, Query, description = "a duration: records of the last 10m, 1h, ..."), ("resource" = Option<String>, Query, description = "records that touched a resource under this prefix"), ("owner" = Option<String>, Query, description = "records of this owner's leases and tickets, or of the leases it was force-released from")),
    responses((status = 200, description = "the records, oldest first", body = AuditList), (status = 400, description = "invalid_request", body = elock_core::api::ErrorBody), (status = 403, description = "forbidden", body = elock_core::api::ErrorBody)))]
async fn read(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let q: AuditQuery = body::query(q.as_deref())?;
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    "limit",
                    format!("limit {s:?}: expected a whole number from 1 to 10000"),
                )
            })?,
    };
    if app.audit.tx.is_none() {
        return Ok(Json(AuditList {
            records: Vec::new(),
            enabled: false,
        })
        .into_response());
    }
    let since = q.since.or_else(|| {
        q.last
            .map(|d| Timestamp::from_system(std::time::SystemTime::now() - d))
    });
    // Read your writes: the calls answered before this one are in the file.
    app.audit.flush().await;
    let text = tokio::fs::read_to_string(&app.audit.path)
        .await
        .unwrap_or_default();
    let mut records: Vec<AuditRecord> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<AuditRecord>(l).ok())
        .filter(|r| since.is_none_or(|s| r.time >= s))
        .filter(|r| {
            q.resource
                .as_deref()
                .is_none_or(|p| r.resources.iter().any(|res| res.starts_with(p)))
        })
        .filter(|r| {
            q.owner.as_deref().is_none_or(|o| {
                r.owner.as_deref() == Some(o) || r.former_holder.as_deref() == Some(o)
            })
        })
        .collect();
    let skip = records.len().saturating_sub(limit);
    records.drain(..skip);
    Ok(Json(AuditList {
        records,
        enabled: true,
    })
    .into_response())
}
