//! Answers: what the server serializes and a client reads back.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::manager::{BreakerState, HealthStatus, StatsSnapshot};
use crate::model::{duration_text, Cycle, Lease, Timestamp};
use crate::table::{DeadlockRecord, QueueSummary, Snapshot};

/// A lease as answered by acquire, flagged when it came back by re-entry.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseAnswer {
    #[serde(flatten)]
    pub lease: Lease,
    /// The owner already held these resources: its own lease, not a new grant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reentrant: bool,
}

/// `GET /api/v1/locks`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LockList {
    pub locks: Vec<Lease>,
}

/// `GET /api/v1/queues` and `GET /api/enhanced-locks/queue/status`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueList {
    pub queues: Vec<QueueSummary>,
}

/// `POST /api/v1/cleanup`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Released {
    pub released: Vec<Lease>,
}

/// `GET /api/v1/deadlocks`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadlockReport {
    /// Cycles in the wait-for graph right now.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<crate::model::CycleEdge>>))]
    pub active: Vec<Cycle>,
    /// The last 1,000 deadlocks, newest last.
    pub history: Vec<DeadlockRecord>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendHealth {
    /// `memory`, `embedded` or `redis`.
    pub kind: String,
    pub healthy: bool,
    pub latency_ms: f64,
}

/// `GET /api/enhanced-locks/health`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub health_score: u8,
    pub backend: BackendHealth,
    pub breaker: BreakerState,
    pub version: String,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::model::DurationText))]
    #[serde(with = "duration_text")]
    pub uptime: Duration,
}

/// `GET /healthz`: the process answers (`status: ok`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alive {
    pub status: String,
}

/// `GET /readyz`: the backend answered (`ready`, with its latency) or not (`unavailable`, with
/// the error).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    pub status: String,
    pub backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/v1/stats` and `GET /api/enhanced-locks/metrics`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManagerStats {
    #[serde(flatten)]
    pub stats: StatsSnapshot,
    pub health_score: u8,
    /// `memory`, `embedded` or `redis`.
    pub backend: String,
    pub breaker: BreakerState,
    /// Events a slow subscriber missed (the bus drops the oldest).
    pub events_lost: u64,
}

/// `POST /api/v1/admin/reload`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reloaded {
    pub reloaded: bool,
    /// Settings that changed in the file but take effect only after a restart.
    pub restart_required: Vec<String>,
}

/// The name and version of the export document.
pub const EXPORT_FORMAT: &str = "elock-export/1";

/// `GET /api/v1/export`, and the body of `POST /api/v1/import`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportFile {
    /// `elock-export/1`.
    pub format: String,
    pub exported_at: Timestamp,
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub snapshot: Snapshot,
}

/// One audit record: a mutating call (refused ones included).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: Timestamp,
    /// The token's name (never its secret), or `anonymous`.
    pub actor: String,
    pub remote: Option<String>,
    /// `POST /api/v1/locks`, ...
    pub operation: String,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    /// The lease's or ticket's owner (on an acquire, the owner asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A force-release or forced cleanup: whose lease it was, and the reason given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub former_holder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// HTTP status and, for errors, the error code.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/v1/audit`: the records, and whether auditing is on (`audit.enabled`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditList {
    pub records: Vec<AuditRecord>,
    pub enabled: bool,
}

/// The `gap` message of the event stream: events after `after` up to `first_available` were
/// missed (the server keeps the last `events.buffer-size`, and a restarted server's ids start
/// again). What follows is everything still kept.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventGap {
    /// The `Last-Event-ID` the client resumed from.
    pub after: Option<u64>,
    pub first_available: u64,
    pub message: String,
}
