//! The lock API (docs/api.md) under /api/v1: locks, tickets, resources, queues, deadlocks, stats,
//! cleanup. Handlers only translate between HTTP and the manager.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use elock_core::api::{
    AcquireBody, CleanupBody, DeadlockReport, ErrorBody, ForceReleaseBody, LeaseAnswer, ListQuery,
    LockList, ManagerStats, QueueList, Released, RenewBody, ResourceQuery,
};
use elock_core::manager::{Cleanup, LockRequest};
use elock_core::model::{Lease, LeaseId, TicketId, TicketView};
use elock_core::policy::{Explanation, PolicyRule};
use elock_core::table::{Acquired, LeaseFilter, ResourceInfo};

use super::audit::{self, AuditInfo};
use super::auth::Actor;
use super::body;
use super::error::{ApiError, ApiResult};
use super::App;
use axum::Extension;

/// The paths and schemas of this module, for /openapi.json.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        acquire,
        list,
        get_lease,
        release,
        renew,
        resource,
        policy,
        force_release,
        get_ticket,
        cancel_ticket,
        queues,
        deadlocks,
        stats,
        cleanup
    ),
    components(schemas(
        AcquireBody,
        Explanation,
        PolicyRule,
        LeaseAnswer,
        RenewBody,
        ForceReleaseBody,
        CleanupBody,
        LockList,
        QueueList,
        Released,
        ErrorBody
    ))
)]
pub struct Doc;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/locks", post(acquire).get(list))
        .route("/api/v1/locks/{id}", get(get_lease).delete(release))
        .route("/api/v1/locks/{id}/renew", post(renew))
        .route("/api/v1/resource", get(resource))
        .route("/api/v1/policy", get(policy))
        .route("/api/v1/resource/force-release", post(force_release))
        .route(
            "/api/v1/tickets/{id}",
            get(get_ticket).delete(cancel_ticket),
        )
        .route("/api/v1/queues", get(queues))
        .route("/api/v1/deadlocks", get(deadlocks))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/cleanup", post(cleanup))
}

/// Acquire: granted at once (201), by re-entry (200), queued when detached (202), else an error.
#[utoipa::path(post, path = "/api/v1/locks", request_body = AcquireBody, tag = "locks",
    responses((status = 201, description = "granted", body = LeaseAnswer), (status = 200, description = "re-entrant: the owner's lease", body = LeaseAnswer),
        (status = 202, description = "queued (detached)", body = TicketView), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 409, description = "locked, wait_timeout or deadlock", body = ErrorBody),
        (status = 429, description = "queue_full", body = ErrorBody), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody), (status = 503, description = "backend_unavailable", body = ErrorBody)))]
async fn acquire(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let body: AcquireBody = body::json(&bytes)?;
    let resources = body.all_resources();
    if resources.is_empty() {
        return Err(ApiError::invalid(
            "resources",
            "give `resources` (a list) or `resource`",
        ));
    }
    if let Err(refused) = actor.may_take(body.owner.as_str(), resources.iter().map(|r| r.as_str()))
    {
        let info = AuditInfo::of_resources(&resources).owned_by(body.owner.as_str());
        return Ok(audit::attach_info(refused.into_response(), info));
    }
    let started = std::time::Instant::now();
    let names = resources.clone();
    let req = LockRequest {
        owner: body.owner,
        resources,
        priority: body.priority,
        ttl: body.ttl,
        wait: body.wait,
        detach: body.detach,
        metadata: body.metadata,
        reentry: body.reentry,
        for_atlantis: false,
    };
    let (result, queued_for) = app.manager.acquire_timed(req).await;
    if let Some(m) = &app.metrics {
        let label = match &result {
            Ok(Acquired::Granted {
                reentrant: false, ..
            }) => "granted",
            Ok(Acquired::Granted {
                reentrant: true, ..
            }) => "reentrant",
            Ok(Acquired::Queued { .. }) => "queued",
            Err(e) => e.code().as_str(),
        };
        // The server's own time: what the request spent waiting in a queue is left out (it is
        // in the queue-wait histogram).
        m.acquisition(label, started.elapsed().saturating_sub(queued_for));
    }
    let info = match &result {
        Ok(Acquired::Granted { lease, .. }) => AuditInfo::of_lease(lease),
        Ok(Acquired::Queued { ticket }) => AuditInfo::of_ticket(ticket),
        Err(_) => AuditInfo::of_resources(&names),
    };
    let response = match result {
        Err(e) => ApiError::from(e).into_response(),
        Ok(acquired) => match acquired {
            Acquired::Granted {
                lease,
                reentrant: false,
            } => (
                StatusCode::CREATED,
                Json(LeaseAnswer {
                    lease,
                    reentrant: false,
                }),
            )
                .into_response(),
            Acquired::Granted {
                lease,
                reentrant: true,
            } => (
                StatusCode::OK,
                Json(LeaseAnswer {
                    lease,
                    reentrant: true,
                }),
            )
                .into_response(),
            Acquired::Queued { ticket } => (StatusCode::ACCEPTED, Json(ticket)).into_response(),
        },
    };
    Ok(audit::attach_info(response, info))
}

/// List held leases.
#[utoipa::path(get, path = "/api/v1/locks", params(ListQuery), tag = "locks",
    responses((status = 200, description = "ok", body = LockList), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn list(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> ApiResult<Json<LockList>> {
    let q: ListQuery = body::query(q.as_deref())?;
    let filter = LeaseFilter {
        resource_prefix: q.resource_prefix,
        owner: q.owner,
        state: q.state,
        held_longer_than: q.held_longer_than,
    };
    Ok(Json(LockList {
        locks: app.manager.list(filter).await?,
    }))
}

fn lease_id(raw: &str) -> ApiResult<LeaseId> {
    raw.parse().map_err(|_| {
        ApiError::invalid(
            "id",
            format!("{raw:?} is not a lease id: expected 22 characters of URL-safe base64"),
        )
    })
}

fn ticket_id(raw: &str) -> ApiResult<TicketId> {
    raw.parse().map_err(|_| {
        ApiError::invalid(
            "id",
            format!("{raw:?} is not a ticket id: expected 22 characters of URL-safe base64"),
        )
    })
}

/// One lease.
#[utoipa::path(get, path = "/api/v1/locks/{id}", params(("id" = elock_core::model::LeaseId, Path, description = "lease id")), tag = "locks",
    responses((status = 200, description = "ok", body = Lease), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 404, description = "not_found", body = ErrorBody), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn get_lease(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult<Json<Lease>> {
    Ok(Json(app.manager.get_lease(lease_id(&id)?).await?))
}

/// Release a lease.
#[utoipa::path(delete, path = "/api/v1/locks/{id}", params(("id" = elock_core::model::LeaseId, Path, description = "lease id")), tag = "locks",
    responses((status = 200, description = "the released lease", body = Lease), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 404, description = "not_found", body = ErrorBody), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn release(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = lease_id(&id)?;
    if let Some(refused) = lease_refusal(&app, &actor, "release", id).await {
        return Ok(refused);
    }
    let result = app.manager.release(id).await;
    let info = result
        .as_ref()
        .map_or_else(|_| AuditInfo::of_lease_id(id), AuditInfo::of_lease);
    Ok(audit::attach(result.map(Json), info))
}

/// The refusal of a caller whose scope does not cover the lease (`None`: go on). A lease's
/// owner and resources never change, so the check cannot go stale before the call; a lease that
/// is not found is left to the call itself to report.
async fn lease_refusal(app: &App, actor: &Actor, action: &str, id: LeaseId) -> Option<Response> {
    if actor.unrestricted() {
        // Nothing to check: no lookup (a read would wait for any commit in flight).
        return None;
    }
    let lease = app.manager.get_lease(id).await.ok()?;
    let refused = actor.may_touch(action, &lease).err()?;
    Some(audit::attach_info(
        refused.into_response(),
        AuditInfo::of_lease(&lease),
    ))
}

/// Renew: expires_at = now + ttl.
#[utoipa::path(post, path = "/api/v1/locks/{id}/renew", params(("id" = elock_core::model::LeaseId, Path, description = "lease id")), request_body = RenewBody, tag = "locks",
    responses((status = 200, description = "ok", body = Lease), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 404, description = "not_found", body = ErrorBody), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn renew(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let id = lease_id(&id)?;
    let body: RenewBody = body::json(&bytes)?;
    if let Some(refused) = lease_refusal(&app, &actor, "renew", id).await {
        return Ok(refused);
    }
    let result = app.manager.renew(id, body.ttl).await;
    let info = result
        .as_ref()
        .map_or_else(|_| AuditInfo::of_lease_id(id), AuditInfo::of_lease);
    Ok(audit::attach(result.map(Json), info))
}

/// A resource: holder, queue in order, last fencing token.
#[utoipa::path(get, path = "/api/v1/resource", params(ResourceQuery), tag = "resources",
    responses((status = 200, description = "ok", body = ResourceInfo), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn resource(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let q: ResourceQuery = body::query(q.as_deref())?;
    Ok(Json(app.manager.resource(q.name).await?).into_response())
}

/// The lock policy of a resource: the rule of `enhanced-locking.policies` that covers it and the
/// values a request that leaves everything out gets.
#[utoipa::path(get, path = "/api/v1/policy", params(ResourceQuery), tag = "resources",
    responses((status = 200, description = "ok", body = Explanation), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn policy(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let q: ResourceQuery = body::query(q.as_deref())?;
    let config = app.manager.config();
    Ok(Json(config.policies.explain(&q.name, config.policy_fallback())).into_response())
}

/// Release whatever holds a resource (admin).
#[utoipa::path(post, path = "/api/v1/resource/force-release", request_body = ForceReleaseBody, tag = "resources",
    responses((status = 200, description = "ok", body = Lease), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 404, description = "not_found", body = ErrorBody), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn force_release(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let body: ForceReleaseBody = body::json(&bytes)?;
    // The reason the holder hears (events, `elock run`) says who did it, when a token says.
    let by = Some(actor.name).filter(|a| a != "anonymous");
    let reason = match (body.reason, by) {
        (Some(r), Some(by)) => format!("{r} (by {by})"),
        (Some(r), None) => r,
        (None, Some(by)) => format!("force-released by {by}"),
        (None, None) => "force-released by an operator".into(),
    };
    let name = body.name.clone();
    let result = app.manager.force_release(body.name, reason.clone()).await;
    let info = result.as_ref().map_or_else(
        |_| AuditInfo::of_resources(std::slice::from_ref(&name)),
        |lease| AuditInfo::of_lease(lease).forced(lease, &reason),
    );
    Ok(audit::attach(result.map(Json), info))
}

/// A ticket and its positions.
#[utoipa::path(get, path = "/api/v1/tickets/{id}", params(("id" = elock_core::model::TicketId, Path, description = "ticket id")), tag = "tickets",
    responses((status = 200, description = "ok", body = TicketView), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 404, description = "not_found", body = ErrorBody), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn get_ticket(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(app.manager.get_ticket(ticket_id(&id)?).await?).into_response())
}

/// Cancel a ticket.
#[utoipa::path(delete, path = "/api/v1/tickets/{id}", params(("id" = elock_core::model::TicketId, Path, description = "ticket id")), tag = "tickets",
    responses((status = 200, description = "the cancelled ticket", body = TicketView), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 404, description = "not_found", body = ErrorBody), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn cancel_ticket(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = ticket_id(&id)?;
    // A ticket's owner and resources never change: checked once, they stay checked.
    if !actor.unrestricted() {
        if let Ok(ticket) = app.manager.get_ticket(id).await {
            if let Err(refused) = actor.may_cancel(&ticket) {
                let info = AuditInfo::of_ticket(&ticket);
                return Ok(audit::attach_info(refused.into_response(), info));
            }
        }
    }
    let result = app.manager.cancel_ticket(id).await;
    let info = result
        .as_ref()
        .map_or_else(|_| AuditInfo::of_ticket_id(id), AuditInfo::of_ticket);
    Ok(audit::attach(result.map(Json), info))
}

/// Every non-empty queue.
#[utoipa::path(get, path = "/api/v1/queues", tag = "queues", responses((status = 200, description = "ok", body = QueueList), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn queues(State(app): State<Arc<App>>) -> ApiResult<Json<QueueList>> {
    Ok(Json(QueueList {
        queues: app.manager.queues().await?,
    }))
}

/// Deadlocks now, and the last 1,000.
#[utoipa::path(get, path = "/api/v1/deadlocks", tag = "queues", responses((status = 200, description = "ok", body = DeadlockReport), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn deadlocks(State(app): State<Arc<App>>) -> ApiResult<Response> {
    Ok(Json(app.manager.deadlocks().await?).into_response())
}

/// Statistics and the health score.
#[utoipa::path(get, path = "/api/v1/stats", tag = "health", responses((status = 200, description = "ok", body = ManagerStats), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn stats(State(app): State<Arc<App>>) -> Response {
    Json(app.manager.stats().await).into_response()
}

/// Release expired leases, or by force the holder of one resource (admin).
#[utoipa::path(post, path = "/api/v1/cleanup", request_body = CleanupBody, tag = "resources",
    responses((status = 200, description = "ok", body = Released), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 404, description = "not_found", body = ErrorBody), (status = 401, description = "unauthorized", body = ErrorBody), (status = 403, description = "forbidden", body = ErrorBody)))]
async fn cleanup(State(app): State<Arc<App>>, bytes: Bytes) -> ApiResult<Response> {
    let body: CleanupBody = body::json(&bytes)?;
    let what = match (body.expired_only, body.resource, body.force) {
        (true, None, _) => Cleanup::ExpiredOnly,
        (false, Some(r), true) => Cleanup::Resource(r),
        (false, Some(_), false) => {
            return Err(ApiError::invalid(
                "force",
                "cleanup of a resource needs `force: true`",
            ))
        }
        _ => {
            return Err(ApiError::invalid(
                "expired_only",
                "give either {\"expired_only\": true} or {\"resource\": R, \"force\": true}",
            ))
        }
    };
    let forced = matches!(what, Cleanup::Resource(_));
    let result = app.manager.cleanup(what).await;
    let mut info = AuditInfo::default();
    for lease in result.iter().flatten() {
        info.resources
            .extend(lease.resources.iter().map(|h| h.resource.to_string()));
        if forced {
            info = info.forced(lease, "forced cleanup of the resource");
        }
    }
    Ok(audit::attach(
        result.map(|released| Json(Released { released })),
        info,
    ))
}
