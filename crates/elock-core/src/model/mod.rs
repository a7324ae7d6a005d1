//! The vocabulary of elock: resources, owners, leases, tickets, priorities, ids and time.

mod cycle;
mod ids;
mod lease;
pub(crate) mod metadata;
mod names;
#[cfg(feature = "openapi")]
mod openapi;
#[cfg(feature = "openapi")]
pub use openapi::DurationText;
mod priority;
mod ticket;
mod time;

pub use cycle::{find_cycles, Cycle, CycleEdge};
pub use ids::{LeaseId, TicketId};
pub use lease::{HeldResource, Lease, LeaseState, MAX_FENCING_TOKEN};
pub use metadata::{Metadata, MAX_METADATA_BYTES};
pub use names::{Owner, ResourceName, MAX_OWNER_BYTES, MAX_RESOURCE_BYTES};
pub use priority::Priority;
pub use ticket::{Reentry, Ticket, TicketView};
pub use time::{duration_text, format_duration, parse_duration, Timestamp};
