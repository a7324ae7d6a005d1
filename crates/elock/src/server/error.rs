//! The HTTP face of errors: every engine error becomes one JSON shape with one status per code
//! (docs/api.md), with the details that code promises.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use elock_core::error::{Error, ErrorCode};
use elock_core::model::format_duration;
use serde_json::{json, Value};

/// An error answer: every code the engine produces, and those of authentication.
#[derive(Debug)]
pub enum ApiError {
    Engine(Error),
    Unauthorized(String),
    Forbidden(String),
    /// A refusal of the HTTP layer (method, size, time, connection limit), before the engine.
    Http(ErrorCode, String),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Engine(e)
    }
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Engine(Error::invalid(field.into(), message))
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Engine(e) => e.code(),
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::Http(code, _) => *code,
        }
    }

    fn details(&self) -> Value {
        let ApiError::Engine(e) = self else {
            return json!({});
        };
        match e {
            Error::InvalidRequest { field, .. } => json!({ "field": field }),
            Error::Locked { resource, holder } => json!({ "resource": resource, "holder": holder }),
            Error::WaitTimeout { waited, reason } => {
                json!({ "waited": format_duration(*waited), "reason": reason })
            }
            Error::Deadlock { cycle } => json!({ "cycle": cycle }),
            Error::QueueFull { resource, max } => json!({ "resource": resource, "max": max }),
            Error::BackendUnavailable { breaker, .. } => json!({ "breaker": breaker }),
            Error::Storage(_) => json!({ "breaker": "closed" }),
            Error::NotFound { .. } | Error::Internal(_) => json!({}),
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Engine(e) => e.to_string(),
            ApiError::Unauthorized(m) | ApiError::Forbidden(m) | ApiError::Http(_, m) => m.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code == ErrorCode::Internal || code == ErrorCode::BackendUnavailable {
            tracing::warn!(code = code.as_str(), error = %self.message(), "request failed");
        }
        let body = json!({
            "error": { "code": code.as_str(), "message": self.message(), "details": self.details() }
        });
        let mut response = (status, Json(body)).into_response();
        response
            .extensions_mut()
            .insert(super::metrics::ErrorKind(code.as_str()));
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The one error shape (for the OpenAPI description).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// Per code: `field`; `holder`; `waited`; `cycle`; `resource` and `max`; `breaker`.
    #[schema(value_type = Object)]
    pub details: Value,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use elock_core::model::{CycleEdge, Owner, ResourceName};

    async fn answer(e: ApiError) -> (u16, Value) {
        let r = e.into_response();
        let status = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_error_has_its_status_code_and_details() {
        let r = ResourceName::new("r").unwrap();
        let o = Owner::new("o").unwrap();
        let cases = vec![
            (
                ApiError::from(Error::invalid("ttl", "bad")),
                400,
                "invalid_request",
                vec!["field"],
            ),
            (
                ApiError::Unauthorized("x".into()),
                401,
                "unauthorized",
                vec![],
            ),
            (ApiError::Forbidden("x".into()), 403, "forbidden", vec![]),
            (Error::not_found("gone").into(), 404, "not_found", vec![]),
            (
                Error::Locked {
                    resource: r.clone(),
                    holder: None,
                }
                .into(),
                409,
                "locked",
                vec!["holder", "resource"],
            ),
            (
                Error::WaitTimeout {
                    waited: Duration::from_secs(3),
                    reason: "timeout".into(),
                }
                .into(),
                409,
                "wait_timeout",
                vec!["waited"],
            ),
            (
                Error::Deadlock {
                    cycle: vec![CycleEdge {
                        waiter: o.clone(),
                        ticket_id: None,
                        resource: r.clone(),
                        blocker: o,
                    }],
                }
                .into(),
                409,
                "deadlock",
                vec!["cycle"],
            ),
            (
                Error::QueueFull {
                    resource: r,
                    max: 5,
                }
                .into(),
                429,
                "queue_full",
                vec!["resource", "max"],
            ),
            (
                Error::BackendUnavailable {
                    breaker: "open".into(),
                    message: "x".into(),
                }
                .into(),
                503,
                "backend_unavailable",
                vec!["breaker"],
            ),
            (
                Error::Storage("disk".into()).into(),
                503,
                "backend_unavailable",
                vec!["breaker"],
            ),
            (
                Error::Internal("bug".into()).into(),
                500,
                "internal",
                vec![],
            ),
        ];
        for (e, status, code, details) in cases {
            let (s, body) = answer(e).await;
            assert_eq!(
                (s, body["error"]["code"].as_str()),
                (status, Some(code)),
                "{body}"
            );
            assert!(body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
            for key in details {
                assert!(
                    body["error"]["details"].get(key).is_some(),
                    "{code}: details.{key} missing in {body}"
                );
            }
        }
    }
}
