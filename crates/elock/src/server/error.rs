//! The HTTP face of errors: every engine error becomes one JSON shape with one status per code
//! (SPEC 3), with the details that code promises.

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
            ApiError::Unauthorized(m) | ApiError::Forbidden(m) => m.clone(),
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
