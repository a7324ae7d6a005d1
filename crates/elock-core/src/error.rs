//! The engine's one error type, and the error codes every surface maps it to (docs/api.md).

use std::borrow::Cow;
use std::time::Duration;

use serde::Serialize;

use crate::model::{Cycle, Lease, ResourceName};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Bad input: `field` names what was wrong, the message shows the value and the expectation.
    #[error("{message}")]
    InvalidRequest {
        field: Cow<'static, str>,
        message: String,
    },
    #[error("{message}")]
    NotFound { message: String },
    /// Refused at once: the resource is held (`holder`), or free but promised to queued tickets.
    #[error("{resource} is held by {}", holder.as_ref().map(|h| h.owner.as_str()).unwrap_or("nobody (queued requests come first)"))]
    Locked {
        resource: ResourceName,
        holder: Option<Box<Lease>>,
    },
    #[error("not granted within {}", crate::model::format_duration(*waited))]
    WaitTimeout { waited: Duration, reason: String },
    #[error("deadlock: {}", describe_cycle(cycle))]
    Deadlock { cycle: Cycle },
    #[error("the queue of {resource} is full ({max} waiting)")]
    QueueFull { resource: ResourceName, max: usize },
    /// The circuit breaker is open, or the backend failed.
    #[error("backend unavailable: {message}")]
    BackendUnavailable { breaker: String, message: String },
    /// The store failed (I/O, a broken connection, a corrupt record).
    #[error("storage: {0}")]
    Storage(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The server is stopping: the wait ended and its ticket was cancelled; ask again (another
    /// server, or this one once restarted).
    #[error("the server is shutting down; ask again")]
    ShuttingDown,
}

fn describe_cycle(cycle: &Cycle) -> String {
    cycle
        .iter()
        .map(|e| format!("{} waits for {} ({})", e.waiter, e.blocker, e.resource))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    pub fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Error::InvalidRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound {
            message: message.into(),
        }
    }

    /// The field an `InvalidRequest` is about.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::InvalidRequest { field, .. } => Some(field),
            _ => None,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidRequest { .. } => ErrorCode::InvalidRequest,
            Error::NotFound { .. } => ErrorCode::NotFound,
            Error::Locked { .. } => ErrorCode::Locked,
            Error::WaitTimeout { .. } => ErrorCode::WaitTimeout,
            Error::Deadlock { .. } => ErrorCode::Deadlock,
            Error::QueueFull { .. } => ErrorCode::QueueFull,
            Error::BackendUnavailable { .. } | Error::Storage(_) => ErrorCode::BackendUnavailable,
            Error::Internal(_) => ErrorCode::Internal,
            Error::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }

    /// Whether the backend itself failed (counts against the circuit breaker, may be retried).
    pub fn is_backend_failure(&self) -> bool {
        matches!(self, Error::Storage(_))
    }
}

/// The error codes of the API (docs/api.md), each with its HTTP status.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Locked,
    WaitTimeout,
    Deadlock,
    QueueFull,
    BackendUnavailable,
    Internal,
    /// The HTTP layer's own refusals, before a request reaches the engine.
    MethodNotAllowed,
    RequestTimeout,
    RequestTooLarge,
    UriTooLong,
    /// The server is at its connection limit.
    Overloaded,
    /// The server is stopping; retryable.
    ShuttingDown,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Locked => "locked",
            ErrorCode::WaitTimeout => "wait_timeout",
            ErrorCode::Deadlock => "deadlock",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::BackendUnavailable => "backend_unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::ShuttingDown => "shutting_down",
        }
    }

    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Locked | ErrorCode::WaitTimeout | ErrorCode::Deadlock => 409,
            ErrorCode::QueueFull => 429,
            ErrorCode::BackendUnavailable | ErrorCode::Overloaded | ErrorCode::ShuttingDown => 503,
            ErrorCode::Internal => 500,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::RequestTooLarge => 413,
            ErrorCode::UriTooLong => 414,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_status_of_the_contract() {
        let table = [
            (ErrorCode::InvalidRequest, 400),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::Forbidden, 403),
            (ErrorCode::NotFound, 404),
            (ErrorCode::Locked, 409),
            (ErrorCode::WaitTimeout, 409),
            (ErrorCode::Deadlock, 409),
            (ErrorCode::QueueFull, 429),
            (ErrorCode::BackendUnavailable, 503),
            (ErrorCode::Internal, 500),
            (ErrorCode::ShuttingDown, 503),
            (ErrorCode::MethodNotAllowed, 405),
            (ErrorCode::RequestTimeout, 408),
            (ErrorCode::RequestTooLarge, 413),
            (ErrorCode::UriTooLong, 414),
            (ErrorCode::Overloaded, 503),
        ];
        for (code, status) in table {
            assert_eq!(code.http_status(), status, "{code:?}");
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(code.as_str().into())
            );
        }
    }
}
