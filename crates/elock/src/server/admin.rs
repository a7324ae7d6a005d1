//! Administration: POST /api/v1/admin/reload reads the configuration again (like SIGHUP).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::App;

#[derive(utoipa::OpenApi)]
#[openapi(paths(reload))]
pub struct Doc;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/admin/reload", post(reload))
}

/// Reload the configuration (admin): like SIGHUP.
#[utoipa::path(post, path = "/api/v1/admin/reload", tag = "admin", responses((status = 200, description = "{reloaded: true, restart_required: [keys]}"), (status = 400, description = "the configuration has errors; the running one stays", body = super::error::ErrorBody)))]
async fn reload(State(app): State<Arc<App>>) -> Response {
    match app.reloader.reload(&app.manager).await {
        Ok(restart) => {
            Json(json!({ "reloaded": true, "restart_required": restart })).into_response()
        }
        Err(errors) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": {
                "code": "invalid_request",
                "message": format!("configuration not reloaded: {}", errors.join("; ")),
                "details": { "field": "config", "errors": errors }
            }})),
        )
            .into_response(),
    }
}
