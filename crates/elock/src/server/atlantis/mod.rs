//! Atlantis compatibility over HTTP (docs/atlantis.md).
//!
//! - `/api/atlantis/v1/...`: Atlantis's lock storage interface (`legacy.rs`), bodies and
//!   answers in Atlantis's own JSON (Go field names).
//! - Atlantis's own endpoints, with its shapes, status codes and messages: `GET /api/locks`,
//!   `GET /lock?id=` (the lock's page) and `DELETE /locks?id=`.

pub mod adapter;
pub mod routed;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use elock_atlantis::{LockKey, ProjectLock};
use elock_core::error::ErrorCode;
use serde_json::Value;

use super::audit::{self, AuditInfo};
use super::auth::Actor;
use super::body;
use super::error::ApiError;
use super::App;
use adapter::AdapterError;
use axum::Extension;
use elock_core::api::ErrorBody;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/atlantis/v1/try-lock", post(try_lock))
        .route("/api/atlantis/v1/unlock", post(unlock))
        .route(
            "/api/atlantis/v1/unlock-if-owned-by-pull",
            post(unlock_if_owned),
        )
        .route("/api/atlantis/v1/unlock-by-pull", post(unlock_by_pull))
        .route("/api/atlantis/v1/locks", get(list))
        .route("/api/atlantis/v1/lock", get(get_lock))
        .route("/api/atlantis/v1/command-lock", get(check_command))
        .route("/api/atlantis/v1/command-lock/lock", post(lock_command))
        .route("/api/atlantis/v1/command-lock/unlock", post(unlock_command))
        .route("/api/atlantis/v1/migration", get(migration_state))
        .route("/api/locks", get(atlantis_api_locks))
        .route("/lock", get(lock_page))
        .route("/locks", axum::routing::delete(delete_lock))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    try_lock,
    unlock,
    unlock_if_owned,
    unlock_by_pull,
    list,
    get_lock,
    check_command,
    lock_command,
    unlock_command,
    migration_state,
    atlantis_api_locks,
    delete_lock,
    lock_page
))]
pub struct Doc;

/// Atlantis's own refusals (its messages, kept word for word) are `locked`, through the one
/// error mapping like every other answer.
fn failed(e: AdapterError) -> Response {
    match e {
        AdapterError::Atlantis(message) => {
            ApiError::Http(ErrorCode::Locked, message.to_string()).into_response()
        }
        AdapterError::Engine(e) => ApiError::from(e).into_response(),
    }
}

fn answer<T: serde::Serialize>(r: Result<T, AdapterError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => failed(e),
    }
}

/// A scoped caller may release the lock at `key` only if it covers its holder and the key: the
/// refusal, else `None`. The holder is the lease in elock, or Atlantis's record in the legacy
/// store during a migration.
async fn unlock_refusal(app: &App, actor: &Actor, key: &str) -> Option<Response> {
    if actor.unrestricted() {
        return None;
    }
    let owner = match app.atlantis().holder_owner(key).await {
        Ok(Some(owner)) => owner,
        Ok(None) => return None,
        Err(e) => return Some(failed(e)),
    };
    let refused = actor
        .may_act_on(
            "release",
            &format!("the lock at {key}"),
            &owner,
            [key].into_iter(),
        )
        .err()?;
    Some(audit::attach_info(
        refused.into_response(),
        AuditInfo {
            resources: vec![key.to_string()],
            owner: Some(owner),
            ..AuditInfo::default()
        },
    ))
}

/// The refusal of a scoped caller that does not cover `owner` on `keys`.
fn take_refusal(actor: &Actor, owner: &str, keys: &[String]) -> Option<Response> {
    let refused = actor
        .may_take(owner, keys.iter().map(String::as_str))
        .err()?;
    Some(audit::attach_info(
        refused.into_response(),
        AuditInfo {
            resources: keys.to_vec(),
            owner: Some(owner.to_string()),
            ..AuditInfo::default()
        },
    ))
}

/// The answer, with the lock keys it touched for the audit record.
fn audited(response: Response, keys: impl IntoIterator<Item = String>) -> Response {
    audit::attach_info(
        response,
        AuditInfo {
            resources: keys.into_iter().collect(),
            ..AuditInfo::default()
        },
    )
}

use elock_atlantis::adapter::{
    ApiLock, ApiLocks, CommandRequest as CommandBody, KeyRequest as KeyBody,
    UnlockByPullRequest as ByPull,
};

/// The lock a [`KeyBody`] names.
trait KeyOf {
    fn key(&self) -> Result<String, ApiError>;
}

impl KeyOf for KeyBody {
    fn key(&self) -> Result<String, ApiError> {
        match (&self.key, &self.project, &self.workspace) {
            (Some(k), _, _) => Ok(k.clone()),
            (None, Some(p), Some(w)) => Ok(LockKey::of(&ProjectLock {
                project: p.clone(),
                workspace: w.clone(),
                ..ProjectLock::default()
            })
            .to_string()),
            _ => Err(ApiError::invalid(
                "Key",
                "give the lock's Key, or its Project and Workspace",
            )),
        }
    }
}

/// Atlantis's TryLock: take a project lock (a lease without expiry, owner `{repo}#{pull}`).
#[utoipa::path(post, path = "/api/atlantis/v1/try-lock", tag = "atlantis",
    request_body(content = serde_json::Value, description = "Atlantis's ProjectLock (Go field names: Project, Workspace, User, Pull, Time)"),
    responses((status = 200, description = "Atlantis's TryLockResponse: LockAcquired, CurrLock, LockKey", body = serde_json::Value), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 503, description = "backend_unavailable", body = ErrorBody)))]
async fn try_lock(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    bytes: Bytes,
) -> Response {
    let lock: ProjectLock = match body::json(&bytes) {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    if lock.project.repo_full_name.is_empty() {
        return ApiError::invalid("Project.RepoFullName", "Project.RepoFullName is required")
            .into_response();
    }
    let key = LockKey::of(&lock).to_string();
    let owner = elock_atlantis::owner_name(&lock.project.repo_full_name, lock.pull.num);
    if let Some(refused) = take_refusal(&actor, &owner, std::slice::from_ref(&key)) {
        return refused;
    }
    audited(answer(app.atlantis().try_lock(lock).await), [key])
}

/// Atlantis's Unlock: release a project lock by key (`{repo}/{path}/{workspace}`).
#[utoipa::path(post, path = "/api/atlantis/v1/unlock", tag = "atlantis",
    request_body(content = serde_json::Value, description = "{\"Key\": ...} or {\"Project\": {...}, \"Workspace\": ...}"),
    responses((status = 200, description = "the ProjectLock released, or null", body = serde_json::Value), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 503, description = "backend_unavailable", body = ErrorBody)))]
async fn unlock(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    bytes: Bytes,
) -> Response {
    let b: KeyBody = match body::json(&bytes) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    match b.key() {
        Ok(k) => {
            if let Some(refused) = unlock_refusal(&app, &actor, &k).await {
                return refused;
            }
            audited(answer(app.atlantis().unlock(&k, None).await), [k])
        }
        Err(e) => e.into_response(),
    }
}

/// Release a project lock only if the pull request given holds it.
#[utoipa::path(post, path = "/api/atlantis/v1/unlock-if-owned-by-pull", tag = "atlantis",
    request_body(content = serde_json::Value, description = "a key (as for unlock) and PullNum"),
    responses((status = 200, description = "the ProjectLock released, or null", body = serde_json::Value), (status = 409, description = "locked: another pull request holds it", body = ErrorBody), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 503, description = "backend_unavailable", body = ErrorBody)))]
async fn unlock_if_owned(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    bytes: Bytes,
) -> Response {
    let b: KeyBody = match body::json(&bytes) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let Some(pull) = b.pull_num else {
        return ApiError::invalid("PullNum", "PullNum is required").into_response();
    };
    match b.key() {
        Ok(k) => {
            if let Some(refused) = unlock_refusal(&app, &actor, &k).await {
                return refused;
            }
            audited(answer(app.atlantis().unlock(&k, Some(pull)).await), [k])
        }
        Err(e) => e.into_response(),
    }
}

/// Atlantis's UnlockByPull: release every lock of a pull request.
#[utoipa::path(post, path = "/api/atlantis/v1/unlock-by-pull", tag = "atlantis",
    request_body(content = serde_json::Value, description = "{\"RepoFullName\": ..., \"PullNum\": ...}"),
    responses((status = 200, description = "the ProjectLocks released", body = serde_json::Value), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 503, description = "backend_unavailable", body = ErrorBody)))]
async fn unlock_by_pull(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    bytes: Bytes,
) -> Response {
    let b: ByPull = match body::json(&bytes) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if !actor.unrestricted() {
        // Every lock of the pull must be in scope: nothing is released unless all may be.
        let keys: Vec<String> = match app.atlantis().list().await {
            Ok(locks) => locks
                .into_iter()
                .filter(|(_, l)| {
                    l.project.repo_full_name == b.repo_full_name && l.pull.num == b.pull_num
                })
                .map(|(k, _)| k)
                .collect(),
            Err(e) => return failed(e),
        };
        let owner = elock_atlantis::owner_name(&b.repo_full_name, b.pull_num);
        if let Some(refused) = take_refusal(&actor, &owner, &keys) {
            return refused;
        }
    }
    match app
        .atlantis()
        .unlock_by_pull(&b.repo_full_name, b.pull_num)
        .await
    {
        Ok(locks) => {
            let keys: Vec<String> = locks.iter().map(|l| LockKey::of(l).to_string()).collect();
            audited(Json(locks).into_response(), keys)
        }
        Err(e) => failed(e),
    }
}

/// Atlantis's List: every project lock by key.
#[utoipa::path(get, path = "/api/atlantis/v1/locks", tag = "atlantis",
    responses((status = 200, description = "an object of ProjectLocks by key", body = serde_json::Value), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 503, description = "backend_unavailable", body = ErrorBody)))]
async fn list(State(app): State<Arc<App>>) -> Response {
    answer(app.atlantis().list().await)
}

fn query_value(raw: Option<&str>, name: &str) -> Result<Option<String>, ApiError> {
    Ok(super::body::query_pairs(raw)?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v))
}

/// Atlantis's GetLock: one project lock by key.
#[utoipa::path(get, path = "/api/atlantis/v1/lock", tag = "atlantis",
    params(("key" = String, Query, description = "the lock key, {repo}/{path}/{workspace}")),
    responses((status = 200, description = "the ProjectLock, or null", body = serde_json::Value), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 503, description = "backend_unavailable", body = ErrorBody)))]
async fn get_lock(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> Response {
    let key = match query_value(q.as_deref(), "key") {
        Ok(Some(key)) => key,
        Ok(None) => {
            return ApiError::invalid("key", "the query needs key=<lock key>").into_response()
        }
        Err(e) => return e.into_response(),
    };
    answer(app.atlantis().get_lock(&key).await)
}

/// The global apply lock is owner `atlantis` on `global/apply/lock`: a scoped caller must cover
/// both.
fn apply_lock_refusal(actor: &Actor) -> Option<Response> {
    take_refusal(
        actor,
        elock_atlantis::APPLY_LOCK_OWNER,
        &[elock_atlantis::APPLY_LOCK_RESOURCE.to_string()],
    )
}

/// Atlantis's CheckCommandLock: the global apply lock, if held.
#[utoipa::path(get, path = "/api/atlantis/v1/command-lock", tag = "atlantis",
    responses((status = 200, description = "Atlantis's CommandLock, or null", body = serde_json::Value), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 503, description = "backend_unavailable", body = ErrorBody)))]
async fn check_command(State(app): State<Arc<App>>) -> Response {
    answer(app.atlantis().check_command().await)
}

/// Atlantis's LockCommand: take the global apply lock.
#[utoipa::path(post, path = "/api/atlantis/v1/command-lock/lock", tag = "atlantis",
    request_body(content = serde_json::Value, description = "{\"CommandName\": 0} (apply, the only command with a global lock)"),
    responses((status = 200, description = "Atlantis's CommandLock", body = serde_json::Value), (status = 409, description = "locked", body = ErrorBody), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 503, description = "backend_unavailable", body = ErrorBody)))]
async fn lock_command(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    bytes: Bytes,
) -> Response {
    if let Some(refused) = apply_lock_refusal(&actor) {
        return refused;
    }
    let b: CommandBody = match body::json(&bytes) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if b.command_name != 0 {
        return ApiError::invalid(
            "CommandName",
            format!(
                "CommandName {}: only 0 (apply) has a global lock",
                b.command_name
            ),
        )
        .into_response();
    }
    let now = (app.manager.clock().now().as_millis() / 1000) as i64;
    audited(
        answer(app.atlantis().lock_command(now).await),
        [elock_atlantis::APPLY_LOCK_RESOURCE.to_string()],
    )
}

/// Atlantis's UnlockCommand: release the global apply lock.
#[utoipa::path(post, path = "/api/atlantis/v1/command-lock/unlock", tag = "atlantis",
    responses((status = 200, description = "null", body = serde_json::Value), (status = 409, description = "locked: no apply lock is held (Atlantis's own message)", body = ErrorBody), (status = 400, description = "invalid_request (details.field names the field)", body = ErrorBody), (status = 503, description = "backend_unavailable", body = ErrorBody)))]
async fn unlock_command(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
) -> Response {
    if let Some(refused) = apply_lock_refusal(&actor) {
        return refused;
    }
    audited(
        answer(app.atlantis().unlock_command().await.map(|()| Value::Null)),
        [elock_atlantis::APPLY_LOCK_RESOURCE.to_string()],
    )
}

/// The migration mode in force and what it has done (counts and recent differences).
#[utoipa::path(get, path = "/api/atlantis/v1/migration", tag = "atlantis",
    responses((status = 200, description = "the mode (off, shadow, split, enhanced), counts and recent differences", body = serde_json::Value)))]
async fn migration_state(State(app): State<Arc<App>>) -> Response {
    Json(app.migration.report()).into_response()
}

/// Atlantis's `GET /api/locks`.
#[utoipa::path(get, path = "/api/locks", tag = "atlantis",
    responses((status = 200, description = "{\"Locks\": [...] or null}, as Atlantis answers", body = serde_json::Value), (status = 503, description = "backend_unavailable", body = ErrorBody)))]
async fn atlantis_api_locks(State(app): State<Arc<App>>) -> Response {
    let locks = match app.atlantis().list().await {
        Ok(l) => l,
        Err(e) => return failed(e),
    };
    let rows: Vec<ApiLock> = locks
        .iter()
        .map(|(key, l)| ApiLock {
            name: key.clone(),
            project_name: l.project.project_name.clone(),
            project_repo: l.project.repo_full_name.clone(),
            project_repo_path: l.project.path.clone(),
            pull_id: l.pull.num.to_string(),
            pull_url: l.pull.url.clone(),
            user: l.user.username.clone(),
            workspace: l.workspace.clone(),
            time: l.time,
        })
        .collect();
    // Atlantis answers `null`, not `[]`, when there are none.
    let locks = (!rows.is_empty()).then_some(rows);
    Json(ApiLocks { locks }).into_response()
}

/// The `id` of `?id=`, unescaped once more as Atlantis does (its links escape ids twice).
fn lock_id(raw: Option<&str>) -> Result<String, (StatusCode, String)> {
    // Atlantis's own endpoint answers in Atlantis's words (text), as Atlantis does.
    let id = query_value(raw, "id")
        .map_err(|_| (StatusCode::BAD_REQUEST, "Invalid lock id".to_string()))?;
    let Some(id) = id.filter(|i| !i.is_empty()) else {
        return Err((StatusCode::BAD_REQUEST, "No lock id in request".into()));
    };
    unescape(&id).ok_or((StatusCode::BAD_REQUEST, "Invalid lock id".into()))
}

/// Go's `url.QueryUnescape`: `%XX` and `+`; a malformed escape is an error.
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Atlantis's `DELETE /locks?id=`.
#[utoipa::path(delete, path = "/locks", tag = "atlantis",
    params(("id" = String, Query, description = "the lock key, URL-escaped (twice, as Atlantis's links do)")),
    responses((status = 200, description = "Deleted lock id '...'", body = String, content_type = "text/plain"), (status = 400, description = "No lock id in request / Invalid lock id (text), or a key that is no resource name (the JSON error)", content((String = "text/plain"), (ErrorBody = "application/json"))), (status = 404, description = "No lock found at id '...'", body = String, content_type = "text/plain"), (status = 503, description = "backend_unavailable", body = ErrorBody)))]
async fn delete_lock(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    RawQuery(q): RawQuery,
) -> Response {
    let id = match lock_id(q.as_deref()) {
        Ok(id) => id,
        Err((s, m)) => return text(s, m),
    };
    if let Some(refused) = unlock_refusal(&app, &actor, &id).await {
        return refused;
    }
    let response = match app.atlantis().unlock(&id, None).await {
        Ok(Some(_)) => text(StatusCode::OK, format!("Deleted lock id '{id}'")),
        Ok(None) => text(StatusCode::NOT_FOUND, format!("No lock found at id '{id}'")),
        Err(e) => failed(e),
    };
    audited(response, [id])
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Atlantis's `GET /lock?id=`: the lock's page.
#[utoipa::path(get, path = "/lock", tag = "atlantis",
    params(("id" = String, Query, description = "the lock key, URL-escaped (twice, as Atlantis's links do)")),
    responses((status = 200, description = "the lock's page", body = String, content_type = "text/html"), (status = 400, description = "No lock id in request / Invalid lock id (text), or a key that is no resource name (the JSON error)", content((String = "text/plain"), (ErrorBody = "application/json"))), (status = 404, description = "No lock found at id '...'", body = String, content_type = "text/plain"), (status = 503, description = "backend_unavailable", body = ErrorBody)))]
async fn lock_page(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> Response {
    let id = match lock_id(q.as_deref()) {
        Ok(id) => id,
        Err((s, m)) => return text(s, m),
    };
    let lock = match app.atlantis().get_lock(&id).await {
        Ok(Some(l)) => l,
        Ok(None) => return text(StatusCode::NOT_FOUND, format!("No lock found at id '{id}'")),
        Err(e) => return failed(e),
    };
    let row = |k: &str, v: &str| format!("<tr><th>{k}</th><td>{}</td></tr>", html_escape(v));
    let page = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>elock: lock {}</title></head><body><h1>Lock {}</h1><table>{}{}{}{}{}{}{}</table></body></html>",
        html_escape(&id),
        html_escape(&id),
        row("Repository", &lock.project.repo_full_name),
        row("Path", &lock.project.path),
        row("Workspace", &lock.workspace),
        row("Project", &lock.project.project_name),
        row("Pull request", &format!("#{} {}", lock.pull.num, lock.pull.url)),
        row("Locked by", &lock.user.username),
        row("Locked at", &lock.time.to_string()),
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_unescape_like_go() {
        assert_eq!(
            unescape("lkysow%2Fatlantis-example%2F.%2Fdefault").unwrap(),
            "lkysow/atlantis-example/./default"
        );
        assert_eq!(unescape("a+b").unwrap(), "a b");
        assert!(unescape("%A@").is_none());
        assert!(unescape("%").is_none());
    }
}
