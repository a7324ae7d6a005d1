//! A deadlock cycle of the wait-for graph, in order: each waiter waits for the next one's owner.

use serde::{Deserialize, Serialize};

use super::{Owner, ResourceName, TicketId};

/// `waiter` waits for `resource`, which `blocker` holds or is queued ahead for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleEdge {
    pub waiter: Owner,
    pub ticket_id: Option<TicketId>,
    pub resource: ResourceName,
    pub blocker: Owner,
}

/// The edges of one cycle; the last edge's blocker is the first edge's waiter.
pub type Cycle = Vec<CycleEdge>;
