//! The HTTP face of errors: every error answer is an [`ErrorBody`] (the one JSON shape of
//! docs/api.md) with one status per code and the details that code promises.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use elock_core::api::{ErrorBody, ErrorDetails};
use elock_core::error::{Error, ErrorCode};

use elock_core::manager::BreakerState;

/// An error answer: every code the engine produces, and those of the layers around it.
#[derive(Debug)]
pub enum ApiError {
    Engine(Error),
    Unauthorized(String),
    Forbidden(String),
    /// A refusal of the HTTP layer (method, size, time, connection limit), before the engine.
    Http(ErrorCode, String),
    /// A configuration reload refused: one line per problem; the running configuration stays.
    Config(Vec<String>),
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
            ApiError::Config(_) => ErrorCode::InvalidRequest,
        }
    }

    /// The answer's body. A storage failure's `breaker` is filled in by [`complete`], which
    /// knows the manager; until then it says `closed` (the breaker let the call through).
    pub fn body(&self) -> ErrorBody {
        match self {
            ApiError::Engine(e) => ErrorBody::of_engine(e, "closed"),
            ApiError::Unauthorized(m) | ApiError::Forbidden(m) | ApiError::Http(_, m) => {
                ErrorBody::new(self.code(), m.clone(), ErrorDetails::default())
            }
            ApiError::Config(errors) => ErrorBody::new(
                self.code(),
                format!("configuration not reloaded: {}", errors.join("; ")),
                ErrorDetails {
                    field: Some("config".into()),
                    errors: Some(errors.clone()),
                    ..ErrorDetails::default()
                },
            ),
        }
    }
}

/// Marks an answer whose `details.breaker` must be read from the manager.
#[derive(Clone)]
struct StorageFailure(ErrorBody);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.body();
        if code == ErrorCode::Internal || code == ErrorCode::BackendUnavailable {
            tracing::warn!(code = code.as_str(), error = %body.error.message, "request failed");
        }
        let storage = matches!(self, ApiError::Engine(Error::Storage(_)));
        let mut response = (status, Json(body.clone())).into_response();
        if storage {
            response.extensions_mut().insert(StorageFailure(body));
        }
        response
            .extensions_mut()
            .insert(super::metrics::ErrorKind(code.as_str()));
        response
    }
}

/// A storage failure's answer with the circuit breaker's state as it is after that failure
/// (closed, or open when this failure opened it), not a guess; `breaker` is asked only then
/// (the lock path does not pay for reading it). Run by the server's one
/// finishing middleware (`shown::finish`), which knows the manager.
pub fn complete(breaker: impl FnOnce() -> BreakerState, response: Response) -> Response {
    let mut response = response;
    let Some(StorageFailure(mut body)) = response.extensions_mut().remove::<StorageFailure>()
    else {
        return response;
    };
    body.error.details.breaker = Some(breaker().name().into());
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    /// A storage failure's answer says the breaker's state as the manager gives it (`open` when
    /// this failure opened it), where the error alone could only guess `closed`.
    #[tokio::test]
    async fn a_storage_failure_reports_the_breakers_real_state() {
        let storage = || ApiError::from(Error::Storage("disk".into())).into_response();
        for (state, shown) in [
            (BreakerState::Open, "open"),
            (BreakerState::Closed, "closed"),
        ] {
            let (status, body) = read(complete(|| state, storage())).await;
            assert_eq!(status, 503);
            assert_eq!(body["error"]["details"]["breaker"], shown, "{body}");
        }
        // Other answers pass untouched.
        let other = ApiError::from(Error::not_found("gone")).into_response();
        let (status, body) = read(complete(|| BreakerState::Open, other)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not_found"))
        );
    }

    async fn read(r: Response) -> (u16, Value) {
        let status = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    use std::time::Duration;

    use super::*;
    use elock_core::model::{CycleEdge, Owner, ResourceName};

    use serde_json::Value;

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
