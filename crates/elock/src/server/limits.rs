//! What a request may be before a handler sees it, and the one error shape for every refusal.
//!
//! - The target (path and query) is at most [`MAX_URI_BYTES`]: 414 `uri_too_long`.
//! - The body is at most [`BODY_LIMIT`] (413 `request_too_large`, told at once when
//!   `content-length` says so) and arrives within `http.body-read-timeout` (408
//!   `request_timeout`). It is read here, whole, so a client trickling bytes is cut off at the
//!   deadline instead of holding a handler.
//! - Any error answer that is not already JSON (the router's 404 and 405, an extractor's
//!   rejection) is rewritten into the one JSON error shape with its code. Atlantis's own pages
//!   and endpoints (`/locks`, `/lock`, `/api/locks`) answer in Atlantis's words and are left as
//!   they are.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use elock_core::error::ErrorCode;

use super::error::ApiError;
use super::App;

/// Largest request body: metadata is at most 16 KiB, and a request names at most 64 resources.
pub const BODY_LIMIT: usize = 256 * 1024;

/// Longest request target: 64 resource names of the longest kind fit with room to spare.
pub const MAX_URI_BYTES: usize = 16 * 1024;

/// Paths whose answers imitate Atlantis's own (text errors included).
const ATLANTIS_OWN_PATHS: &[&str] = &["/locks", "/lock", "/api/locks"];

pub async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let keep_shape = ATLANTIS_OWN_PATHS.contains(&request.uri().path());
    let response = match read_whole(request, app.body_read_timeout).await {
        Ok(request) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    };
    if keep_shape {
        response
    } else {
        as_json_error(response).await
    }
}

async fn read_whole(request: Request, timeout: Duration) -> Result<Request, ApiError> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(ApiError::Http(
            ErrorCode::UriTooLong,
            format!("the request target is {target} bytes; at most {MAX_URI_BYTES}"),
        ));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    if declared == Some(0) {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Err(_) => {
            return Err(ApiError::Http(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} (http.body-read-timeout)",
                    elock_core::model::format_duration(timeout)
                ),
            ))
        }
        Ok(Err(e)) if is_length_limit(&e) => return Err(too_large()),
        Ok(Err(e)) => {
            return Err(ApiError::invalid(
                "body",
                format!("the request body could not be read: {e}"),
            ))
        }
        Ok(Ok(bytes)) => bytes,
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn too_large() -> ApiError {
    ApiError::Http(
        ErrorCode::RequestTooLarge,
        format!("the request body is larger than {BODY_LIMIT} bytes"),
    )
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Rewrites an error answer that is not JSON into the one error shape, keeping its status.
async fn as_json_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let error = match status {
        StatusCode::BAD_REQUEST
        | StatusCode::UNSUPPORTED_MEDIA_TYPE
        | StatusCode::UNPROCESSABLE_ENTITY => ApiError::invalid(
            "request",
            if text.is_empty() {
                "the request is not valid".to_string()
            } else {
                text
            },
        ),
        StatusCode::NOT_FOUND => ApiError::Engine(elock_core::error::Error::not_found(
            "no such endpoint: see GET /openapi.json for the API",
        )),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            ApiError::Http(
                ErrorCode::MethodNotAllowed,
                format!("this endpoint does not take that method; it takes: {allowed}"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        StatusCode::REQUEST_TIMEOUT => ApiError::Http(ErrorCode::RequestTimeout, text),
        StatusCode::URI_TOO_LONG => ApiError::Http(ErrorCode::UriTooLong, text),
        _ => ApiError::Engine(elock_core::error::Error::Internal(format!(
            "{status}: {text}"
        ))),
    };
    let mut fixed = error.into_response();
    // The status stays what it was (a 415 stays a 415), the shape is the one shape.
    *fixed.status_mut() = status;
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        fixed.headers_mut().insert(header::ALLOW, allow.clone());
    }
    fixed
}
