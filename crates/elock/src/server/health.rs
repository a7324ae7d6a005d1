//! Liveness, readiness, the enhanced-locks health and its JSON views (docs/api.md).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use elock_core::api::{Alive, Health, ManagerStats, QueueList, Readiness};
use elock_core::manager::HealthStatus;

use super::App;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(healthz, readyz, health, metrics, queue_status),
    components(schemas(Alive, Readiness))
)]
pub struct Doc;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/enhanced-locks/health", get(health))
        .route("/api/enhanced-locks/metrics", get(metrics))
        .route("/api/enhanced-locks/queue/status", get(queue_status))
}

/// The process is alive and serving.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive", body = Alive)))]
async fn healthz() -> Json<Alive> {
    Json(Alive {
        status: "ok".into(),
    })
}

/// The backend answers: 200, else 503.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "the backend answers", body = Readiness), (status = 503, description = "the backend does not answer", body = Readiness)))]
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let store = app.manager.store();
    match tokio::time::timeout(Duration::from_secs(2), store.ping()).await {
        Ok(Ok(latency)) => Json(Readiness {
            status: "ready".into(),
            backend: store.kind().into(),
            latency_ms: Some(latency.as_secs_f64() * 1000.0),
            error: None,
        })
        .into_response(),
        Ok(Err(e)) => unavailable(store.kind(), e.to_string()),
        Err(_) => unavailable(store.kind(), "no answer within 2s".into()),
    }
}

fn unavailable(backend: &str, error: String) -> Response {
    let answer = Readiness {
        status: "unavailable".into(),
        backend: backend.into(),
        latency_ms: None,
        error: Some(error),
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(answer)).into_response()
}

/// Health with its score: 200 healthy or degraded, 503 unhealthy.
#[utoipa::path(get, path = "/api/enhanced-locks/health", tag = "health", responses((status = 200, description = "healthy or degraded", body = Health), (status = 503, description = "unhealthy", body = Health)))]
async fn health(State(app): State<Arc<App>>) -> Response {
    let h = app.manager.health().await;
    let status = match h.status {
        HealthStatus::Healthy | HealthStatus::Degraded => StatusCode::OK,
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(h)).into_response()
}

/// The statistics as JSON.
#[utoipa::path(get, path = "/api/enhanced-locks/metrics", tag = "health", responses((status = 200, description = "ok", body = ManagerStats)))]
async fn metrics(State(app): State<Arc<App>>) -> Response {
    Json(app.manager.stats().await).into_response()
}

/// The queues as JSON.
#[utoipa::path(get, path = "/api/enhanced-locks/queue/status", tag = "queues", responses((status = 200, description = "ok", body = QueueList)))]
async fn queue_status(State(app): State<Arc<App>>) -> Response {
    match app.manager.queues().await {
        Ok(queues) => Json(QueueList { queues }).into_response(),
        Err(e) => super::error::ApiError::from(e).into_response(),
    }
}
