//! The HTTP API's wire types: every request body and every answer, defined once.
//!
//! The server deserializes the requests and serializes the answers (and describes them in its
//! OpenAPI document); `elock-client` does the opposite with the very same types. A field renamed
//! here changes both sides at once, so a client can never read a field the server stopped
//! sending. Types that travel exactly as the engine holds them (a [`Lease`], a [`TicketView`],
//! an [`Event`], a [`Snapshot`]) are re-exported rather than copied.

mod answers;
mod errors;
mod requests;

pub use answers::{
    Alive, AuditList, AuditRecord, BackendHealth, DeadlockReport, EventGap, ExportFile, Health,
    LeaseAnswer, LockList, ManagerStats, QueueList, Readiness, Released, Reloaded, EXPORT_FORMAT,
};
pub use errors::{ErrorBody, ErrorDetail, ErrorDetails};
pub use requests::{
    ttl_field, AcquireBody, AuditQuery, CleanupBody, ForceReleaseBody, ListQuery, RenewBody,
    ResourceQuery,
};

pub use crate::error::ErrorCode;
pub use crate::event::{Event, EventType};
pub use crate::manager::{BreakerState, HealthStatus, StatsSnapshot, Ttl};
pub use crate::model::{
    CycleEdge, HeldResource, Lease, LeaseId, LeaseState, Metadata, Owner, Priority, Reentry,
    ResourceName, TicketId, TicketView, Timestamp,
};
pub use crate::table::{
    DeadlockRecord, ImportReport, QueueSummary, ResourceInfo, Skipped, Snapshot, StateFilter,
};
