//! The one error shape: `{"error": {"code", "message", "details"}}`, with the details each code
//! promises (docs/api.md).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, ErrorCode};
use crate::model::{duration_text, Cycle, Lease, ResourceName};

/// Every error answer of the API.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default)]
    pub details: ErrorDetails,
}

/// What an error is about, per code: `field` (invalid_request); `resource` and `holder` (locked:
/// `holder` is null when the resource is free but promised to queued requests); `waited` and
/// `reason` (wait_timeout); `cycle` (deadlock); `resource` and `max` (queue_full); `breaker`
/// (backend_unavailable); `errors` (a configuration reload refused: one line per problem).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub resource: Option<ResourceName>,
    /// Present (possibly null) only on `locked`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Lease>))]
    pub holder: Option<Option<Box<Lease>>>,
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::model::DurationText>))]
    pub waited: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<crate::model::CycleEdge>>))]
    pub cycle: Option<Cycle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<usize>,
    /// `closed`, `open` or `half_open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
}

/// A field that is present is `Some`, even when it is null.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl ErrorBody {
    /// The answer to an engine error. `breaker` is the circuit breaker's state when the error is
    /// a storage failure (a backend_unavailable that did not come from the breaker itself).
    pub fn of_engine(e: &Error, breaker: &str) -> Self {
        let mut d = ErrorDetails::default();
        match e {
            Error::InvalidRequest { field, .. } => d.field = Some(field.to_string()),
            Error::Locked { resource, holder } => {
                d.resource = Some(resource.clone());
                d.holder = Some(holder.clone());
            }
            Error::WaitTimeout { waited, reason } => {
                d.waited = Some(*waited);
                d.reason = Some(reason.clone());
            }
            Error::Deadlock { cycle } => d.cycle = Some(cycle.clone()),
            Error::QueueFull { resource, max } => {
                d.resource = Some(resource.clone());
                d.max = Some(*max);
            }
            Error::BackendUnavailable { breaker, .. } => d.breaker = Some(breaker.clone()),
            Error::Storage(_) => d.breaker = Some(breaker.to_string()),
            Error::NotFound { .. } | Error::Internal(_) | Error::ShuttingDown => {}
        }
        ErrorBody::new(e.code(), e.to_string(), d)
    }

    pub fn new(code: ErrorCode, message: impl Into<String>, details: ErrorDetails) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                details,
            },
        }
    }
}
