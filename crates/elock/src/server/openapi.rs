//! GET /openapi.json: the OpenAPI 3.1 description, generated from the handlers and the types
//! they exchange (utoipa), so it cannot drift from the code.

use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use super::App;

#[derive(OpenApi)]
#[openapi(
    info(title = "elock", description = "The Enhanced Locking System: exclusive, fenced, expiring locks with priority queues."),
    tags(
        (name = "locks", description = "Acquire, list, renew and release leases"),
        (name = "resources", description = "Resources, force-release and cleanup"),
        (name = "tickets", description = "Queued requests"),
        (name = "queues", description = "Queues and deadlocks"),
        (name = "health", description = "Health and statistics"),
        (name = "events", description = "The event stream"),
        (name = "admin", description = "Audit and configuration"),
        (name = "atlantis", description = "Atlantis's lock storage interface and Atlantis's own endpoints, in Atlantis's shapes"),
    )
)]
struct Root;

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Root::openapi();
    doc.merge(super::api::Doc::openapi());
    doc.merge(super::health::Doc::openapi());
    doc.merge(super::events::Doc::openapi());
    doc.merge(super::audit::Doc::openapi());
    doc.merge(super::admin::Doc::openapi());
    doc.merge(super::metrics::Doc::openapi());
    doc.merge(super::transfer::Doc::openapi());
    doc.merge(super::atlantis::Doc::openapi());
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

pub fn routes() -> Router<Arc<App>> {
    let doc = Arc::new(document());
    Router::new().route(
        "/openapi.json",
        get(move || async move { Json((*doc).clone()) }),
    )
}
