//! Request bodies and query strings, as the server reads them and a client writes them.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::manager::Ttl;
use crate::model::{duration_text, Metadata, Owner, Priority, Reentry, ResourceName, Timestamp};
use crate::table::StateFilter;

/// `POST /api/v1/locks`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireBody {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceName>,
    /// One resource: the same as `resources: [it]` (both may be given; it comes first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceName>,
    pub owner: Owner,
    /// Absent: the resource's policy (`enhanced-locking.policies`), else `normal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Absent: default-timeout. `null`: no expiry (where allowed). Text: that duration.
    #[serde(default, with = "ttl_field", skip_serializing_if = "Ttl::is_default")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::model::DurationText>, example = "30m"))]
    pub ttl: Ttl,
    /// How long to wait in the queue (`0s`: try once; absent: the resource's policy, else try
    /// once).
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::model::DurationText>, example = "10m"))]
    pub wait: Option<Duration>,
    /// Queue and answer at once with a ticket: the lock is granted later even if nobody waits.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detach: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// `allow` (default): an owner asking again for what it holds gets its own lease back.
    /// `refuse`: this request is a holder of its own, refused or queued behind the owner's
    /// other leases like anyone else's (what `elock run` asks for).
    #[serde(default, skip_serializing_if = "Reentry::is_allow")]
    pub reentry: Reentry,
}

impl AcquireBody {
    /// A try-lock of `resources` for `owner` with the server's defaults.
    pub fn new(owner: Owner, resources: Vec<ResourceName>) -> Self {
        AcquireBody {
            resources,
            resource: None,
            owner,
            priority: None,
            ttl: Ttl::Default,
            wait: None,
            detach: false,
            metadata: None,
            reentry: Reentry::Allow,
        }
    }

    /// Every resource asked for, `resource` first.
    pub fn all_resources(&self) -> Vec<ResourceName> {
        self.resource
            .iter()
            .chain(&self.resources)
            .cloned()
            .collect()
    }
}

/// The acquire body's `ttl`: absent is [`Ttl::Default`] (skipped when writing), `null` is
/// [`Ttl::Never`], text is [`Ttl::After`].
pub mod ttl_field {
    use super::*;

    pub fn serialize<S: Serializer>(ttl: &Ttl, s: S) -> Result<S::Ok, S::Error> {
        match ttl {
            Ttl::After(d) => duration_text::serialize(d, s),
            Ttl::Never | Ttl::Default => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ttl, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Ttl::Never),
            Some(s) => crate::model::parse_duration("ttl", &s)
                .map(Ttl::After)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// `POST /api/v1/locks/{id}/renew`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    /// The new ttl (default: the lease's own).
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::model::DurationText>))]
    pub ttl: Option<Duration>,
}

/// `POST /api/v1/resource/force-release`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForceReleaseBody {
    pub name: ResourceName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /api/v1/cleanup`: `{expired_only: true}`, or `{resource, force: true}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupBody {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceName>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// `GET /api/v1/locks?...`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<Owner>))]
    pub owner: Option<Owner>,
    /// `held` or `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    pub state: Option<StateFilter>,
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::model::DurationText>))]
    pub held_longer_than: Option<Duration>,
}

/// `GET /api/v1/audit?...`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Records from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// At most this many, the newest (default 100, at most 10,000). Text on the wire, so a bad
    /// value is answered with its own message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// Records of the last 10m, 1h, ...
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last: Option<Duration>,
    /// Records that touched a resource under this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Records of this owner's leases and tickets (or former holder's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// `GET /api/v1/resource?name=...`.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceQuery {
    #[cfg_attr(feature = "openapi", param(value_type = ResourceName))]
    pub name: ResourceName,
}
