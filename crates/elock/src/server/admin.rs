//! Administration: POST /api/v1/admin/reload reads the configuration again (like SIGHUP).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use elock_core::api::{ErrorBody, Reloaded};

use super::error::{ApiError, ApiResult};
use super::App;

#[derive(utoipa::OpenApi)]
#[openapi(paths(reload), components(schemas(Reloaded)))]
pub struct Doc;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/admin/reload", post(reload))
}

/// Reload the configuration (admin): like SIGHUP.
#[utoipa::path(post, path = "/api/v1/admin/reload", tag = "admin", responses((status = 200, description = "reloaded; the settings that need a restart", body = Reloaded), (status = 400, description = "the configuration has errors (details.errors); the running one stays", body = ErrorBody)))]
async fn reload(State(app): State<Arc<App>>) -> ApiResult<Json<Reloaded>> {
    let restart_required = app
        .reloader
        .reload(&app.manager)
        .await
        .map_err(ApiError::Config)?;
    Ok(Json(Reloaded {
        reloaded: true,
        restart_required,
    }))
}
