//! A lease: one or more resources granted to one owner, all or none, with a fencing token each.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::time::duration_text;
use super::{LeaseId, Metadata, Owner, Priority, ResourceName, Timestamp};

/// The largest fencing token a resource can mint. Tokens stay exact in every layer that carries
/// them (JSON numbers read as doubles, Lua's 14-digit number encoding in the Redis store); a
/// resource whose counter reached it is refused rather than handed a smaller token.
pub const MAX_FENCING_TOKEN: u64 = 99_999_999_999_999;

/// One resource of a lease and the fencing token its grant minted.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldResource {
    pub resource: ResourceName,
    pub fencing_token: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    Held,
    Released,
    Expired,
    ForceReleased,
}

impl LeaseState {
    pub fn name(self) -> &'static str {
        match self {
            LeaseState::Held => "held",
            LeaseState::Released => "released",
            LeaseState::Expired => "expired",
            LeaseState::ForceReleased => "force_released",
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub id: LeaseId,
    pub owner: Owner,
    pub resources: Vec<HeldResource>,
    pub priority: Priority,
    pub acquired_at: Timestamp,
    /// `None`: the lease never expires (Atlantis-compatible locks, when configured).
    pub expires_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<super::DurationText>))]
    #[serde(with = "duration_text::option")]
    pub ttl: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    pub state: LeaseState,
}

impl Lease {
    pub fn holds(&self, resource: &str) -> bool {
        self.resources
            .iter()
            .any(|h| h.resource.as_str() == resource)
    }

    pub fn fencing_token(&self, resource: &str) -> Option<u64> {
        self.resources
            .iter()
            .find(|h| h.resource.as_str() == resource)
            .map(|h| h.fencing_token)
    }

    pub fn resource_names(&self) -> Vec<ResourceName> {
        self.resources.iter().map(|h| h.resource.clone()).collect()
    }

    /// Whether the lease's deadline has passed at `now` (it may not have been reaped yet).
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}
