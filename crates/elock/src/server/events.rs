//! GET /api/v1/events: server-sent events, filtered by `?types=a,b`, resumable with
//! `Last-Event-ID` from the bus's ring of the last `events.buffer-size` events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use elock_core::api::EventGap;
use elock_core::event::{Event, EventType};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;

use super::body;
use super::error::{ApiError, ApiResult};
use super::App;

#[derive(utoipa::OpenApi)]
#[openapi(paths(events))]
pub struct Doc;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/events", get(events))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    types: Option<String>,
}

pub fn parse_types(raw: Option<&str>) -> ApiResult<Vec<EventType>> {
    EventType::parse_list(raw.unwrap_or("")).map_err(|e| ApiError::invalid("types", e))
}

fn to_sse(e: &Event) -> SseEvent {
    let data = serde_json::to_vec(e)
        .map(super::shown::json)
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    match data {
        Ok(data) => SseEvent::default()
            .id(e.id.to_string())
            .event(e.kind.name())
            .data(data),
        Err(_) => SseEvent::default().comment("an event could not be encoded"),
    }
}

/// Server-sent events: `id`, `event` (the type) and `data` (the event JSON); `Last-Event-ID` resumes.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(("types" = Option<String>, Query, description = "comma-separated event types"), ("Last-Event-ID" = Option<u64>, Header, description = "resume after this id")),
    responses((status = 200, description = "text/event-stream of events", body = Event, content_type = "text/event-stream"), (status = 400, description = "invalid_request", body = elock_core::api::ErrorBody)))]
async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let q: EventsQuery = body::query(q.as_deref())?;
    let types = parse_types(q.types.as_deref())?;
    let last_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "Last-Event-ID",
                        format!("Last-Event-ID {v:?} is not an event id (a whole number)"),
                    )
                })?,
        ),
    };
    // Subscribe before reading the ring, so nothing falls between the replay and the live stream.
    let subscription = app.manager.subscribe();
    let bus = app.manager.bus();
    let (replay, gap) = match last_id {
        Some(id) => bus.since(id),
        None => (Vec::new(), None),
    };
    // After a gap the live stream starts from what was replayed (ids may have started again
    // when the server restarted); otherwise from the caller's last id.
    let seen = match (replay.last(), &gap) {
        (Some(e), _) => e.id,
        (None, Some(gap)) => gap.first_available.saturating_sub(1),
        (None, None) => last_id.unwrap_or(0),
    };
    let mut head: Vec<SseEvent> = Vec::new();
    if let Some(gap) = gap {
        // A machine-readable marker: clients report it to their caller as missed events.
        head.push(
            SseEvent::default()
                .event("gap")
                .json_data(EventGap {
                    after: last_id,
                    first_available: gap.first_available,
                    message: format!(
                        "events after {} up to {} are no longer kept (events.buffer-size, or the server restarted); some were missed",
                        last_id.unwrap_or(0),
                        gap.first_available
                    ),
                })
                .unwrap_or_else(|_| SseEvent::default().comment("some events were missed")),
        );
    }
    let wanted = |e: &Event| types.is_empty() || types.contains(&e.kind);
    head.extend(replay.iter().filter(|e| wanted(e)).map(|e| to_sse(e)));
    let live = stream::unfold(
        (subscription, types.clone(), seen),
        |(mut sub, types, seen)| async move {
            loop {
                let e = sub.recv_filtered(&types).await?;
                if e.id > seen {
                    return Some((to_sse(&e), (sub, types, seen)));
                }
            }
        },
    );
    // The stream ends when the server shuts down; clients reconnect with Last-Event-ID.
    let closed = {
        let app = app.clone();
        async move { app.closed().await }
    };
    let stream = stream::iter(head)
        .chain(live)
        .take_until(Box::pin(closed))
        .map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
