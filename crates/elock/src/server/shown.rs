//! The one output filter: nothing the server sends shows a credential kept in lease metadata
//! (Atlantis's clone URLs, kept in the store only by an import with `--include-secrets`).
//! Serialization itself is pure; this filter runs on the serialized bytes at every edge: JSON
//! answers and pages (the middleware below), events (`events.rs`) and webhooks
//! (`webhooks.rs`). Only an export that asks for the secrets is let through as it is.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::Response;

use super::App;

/// Marks an answer that may show the secrets (an export with `include-secrets=true`).
#[derive(Clone, Copy)]
pub struct WithSecrets;

/// Serialized JSON as it may be shown.
pub fn json(bytes: Vec<u8>) -> Vec<u8> {
    elock_atlantis::redact::json_bytes(&bytes).unwrap_or(bytes)
}

/// How large an answer the filter reads whole (answers are built in memory; this bounds a
/// surprise, not a normal answer).
const MAX_FILTERED: usize = 256 << 20;

/// Middleware, the last before the handlers: finishes every answer. A storage failure gets
/// the breaker's real state (`error::complete`); JSON and HTML answers go through the filter;
/// streams (events) pass, they filter each event themselves.
pub async fn finish(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let response = super::error::complete(|| app.manager.breaker_state(), response);
    let filtered = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/html"));
    if !filtered || response.extensions().get::<WithSecrets>().is_some() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FILTERED).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "an answer could not be read for the output filter");
            return Response::from_parts(parts, Body::empty());
        }
    };
    match elock_atlantis::redact::json_bytes(&bytes) {
        None => Response::from_parts(parts, Body::from(bytes)),
        Some(shown) => {
            parts.headers.remove(CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(shown))
        }
    }
}
