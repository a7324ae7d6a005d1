//! Export and import (admin): every lease, ticket and fencing counter as one JSON document, and
//! back. Import adds what does not conflict (lease and ticket ids kept, fencing counters only
//! move up) and reports what it skipped and why; importing the same file twice changes nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use elock_core::api::{ErrorBody, ExportFile, EXPORT_FORMAT};
use elock_core::table::ImportReport;
use serde::Deserialize;

use super::body;
use super::error::{ApiError, ApiResult};
use super::App;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/export", get(export))
        .route("/api/v1/import", post(import))
}

/// Every lease, ticket and fencing counter (admin).
#[utoipa::path(get, path = "/api/v1/export", tag = "admin",
    params(("include-secrets" = Option<bool>, Query, description = "keep credentials found in metadata (clone URLs); default false")),
    responses((status = 200, description = "the export document", body = ExportFile), (status = 400, description = "invalid_request (details.field names the parameter)", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn export(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let q: ExportQuery = body::query(q.as_deref())?;
    let snapshot = app.manager.export().await?;
    let file = ExportFile {
        format: EXPORT_FORMAT.into(),
        exported_at: app.manager.clock().now(),
        snapshot,
    };
    // Credentials in metadata (clone URLs an import kept with --include-secrets) are left out
    // unless asked for.
    let bytes = serde_json::to_vec(&file)
        .map_err(|e| ApiError::from(elock_core::error::Error::Internal(e.to_string())))?;
    let mut response = ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    if q.include_secrets {
        response.extensions_mut().insert(super::shown::WithSecrets);
    }
    Ok(response)
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct ExportQuery {
    /// Query values arrive as text: `true` or `false`.
    #[serde(deserialize_with = "text_bool")]
    include_secrets: bool,
}

fn text_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match String::deserialize(d)?.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "{other:?}: expected true or false"
        ))),
    }
}

/// Adds an export's records that do not conflict (admin).
#[utoipa::path(post, path = "/api/v1/import", tag = "admin", request_body = ExportFile,
    responses((status = 200, description = "what was imported and what was skipped, with reasons"), (status = 400, description = "invalid_request", body = ErrorBody)))]
async fn import(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult<Json<ImportReport>> {
    let file: ExportFile = body::json(&bytes)?;
    if file.format != EXPORT_FORMAT {
        return Err(ApiError::invalid(
            "format",
            format!("format {:?}: expected {EXPORT_FORMAT:?}", file.format),
        ));
    }
    Ok(Json(app.manager.import(file.snapshot).await?))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(export, import), components(schemas(ExportFile)))]
pub struct Doc;
