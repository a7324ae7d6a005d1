//! GET /metrics: Prometheus text exposition with the names of docs/metrics.md, so that dashboards and
//! alert rules written for the enhanced locking system work unchanged.
//!
//! Counters and histograms that follow lock events are fed synchronously by the manager's event
//! dispatch (commit order, nothing lost); per-request counters by a middleware; gauges are read
//! from the manager at scrape time.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use elock_core::error::ErrorCode;
use elock_core::event::{Event, EventType};
use elock_core::manager::{EventObserver, Manager};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::App;

const PREFIX: &str = "atlantis_enhanced_locking";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabel {
    priority: String,
}

/// The error code of an error answer, left on the response for the middleware to count.
#[derive(Clone, Copy, Debug)]
pub struct ErrorKind(pub &'static str);

pub struct Metrics {
    registry: Registry,
    acquisitions: Family<ResultLabel, Counter>,
    acquisitions_success: Counter,
    acquisitions_contended: Counter,
    acquisitions_failed: Counter,
    releases: Family<ReasonLabel, Counter>,
    operations: Family<OpLabel, Counter>,
    errors: Family<KindLabel, Counter>,
    acquisition_duration: Histogram,
    queue_wait_duration: Family<PriorityLabel, Histogram, fn() -> Histogram>,
    hold_duration: Histogram,
    queue_depth: Family<PriorityLabel, Gauge>,
    active_locks: Gauge,
    deadlocks_detected: Counter,
    circuit_breaker_state: Gauge,
    retries: Counter,
    backend_health: Gauge,
    health_score: Gauge,
    /// The store's own gauges (Redis: memory and connections), registered when it has them.
    backend: Vec<(&'static str, Gauge)>,
}

/// The gauges of the embedded store (docs/metrics.md), with their help text. Commits over writes
/// is the fsyncs per acknowledged change.
pub const EMBEDDED_GAUGES: [(&str, &str); 4] = [
    (
        "store_commits",
        "Group commits of the embedded store since start: one log record and one fdatasync each",
    ),
    (
        "store_writes",
        "Operations the embedded store committed since start (those that changed something)",
    ),
    (
        "store_log_bytes",
        "Bytes of log since the last snapshot (compaction folds them when they outgrow it)",
    ),
    (
        "store_snapshot_bytes",
        "Size of the embedded store's last snapshot",
    ),
];

/// The gauges of the Redis store (docs/metrics.md), with their help text.
pub const REDIS_GAUGES: [(&str, &str); 3] = [
    (
        "redis_memory_used_bytes",
        "Memory Redis reports in use (INFO memory: used_memory)",
    ),
    (
        "redis_pool_active_connections",
        "Connections open to Redis (requests are multiplexed over them)",
    ),
    (
        "redis_pool_max_connections",
        "The configured connection pool size (redis.pool-size)",
    ),
];

impl Metrics {
    /// `backend_gauges`: the store's own gauges to register ([`REDIS_GAUGES`],
    /// [`EMBEDDED_GAUGES`], or none).
    pub fn new(backend_gauges: &[(&'static str, &'static str)]) -> Arc<Metrics> {
        let mut m = Metrics {
            registry: Registry::default(),
            acquisitions: Family::default(),
            acquisitions_success: Counter::default(),
            acquisitions_contended: Counter::default(),
            acquisitions_failed: Counter::default(),
            releases: Family::default(),
            operations: Family::default(),
            errors: Family::default(),
            // 0.5 ms .. ~16 s for acquisitions and waits; 1 s .. ~9 h for holds.
            acquisition_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            queue_wait_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 20))
            }),
            hold_duration: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            queue_depth: Family::default(),
            active_locks: Gauge::default(),
            deadlocks_detected: Counter::default(),
            circuit_breaker_state: Gauge::default(),
            retries: Counter::default(),
            backend_health: Gauge::default(),
            health_score: Gauge::default(),
            backend: Vec::new(),
        };
        for &(n, help) in backend_gauges {
            let g = Gauge::default();
            m.registry
                .register(format!("{PREFIX}_{n}"), help, g.clone());
            m.backend.push((n, g));
        }
        let r = &mut m.registry;
        let name = |n: &str| format!("{PREFIX}_{n}");
        r.register(
            name("acquisitions"),
            "Acquire requests by result",
            m.acquisitions.clone(),
        );
        r.register(
            name("acquisitions_success"),
            "Acquire requests granted or queued",
            m.acquisitions_success.clone(),
        );
        r.register(
            name("acquisitions_contended"),
            "Acquire requests not granted because of other holders, which is normal under contention: locked, wait_timeout, queue_full, deadlock",
            m.acquisitions_contended.clone(),
        );
        r.register(
            name("acquisitions_failed"),
            "Acquire requests that failed: the server or backend (backend_unavailable, internal, shutting_down) or the request (invalid_request, ...); not contention",
            m.acquisitions_failed.clone(),
        );
        r.register(
            name("releases"),
            "Leases ended, by reason (released, expired, force_released)",
            m.releases.clone(),
        );
        r.register(
            name("operations"),
            "API operations by name",
            m.operations.clone(),
        );
        r.register(name("errors"), "Error answers by code", m.errors.clone());
        r.register(
            name("acquisition_duration_seconds"),
            "Time the server spent on an acquire request, without the time it waited in a queue",
            m.acquisition_duration.clone(),
        );
        r.register(
            name("queue_wait_duration_seconds"),
            "Time a granted ticket waited in its queue, by the priority it asked for",
            m.queue_wait_duration.clone(),
        );
        r.register(
            name("hold_duration_seconds"),
            "Time a lease was held",
            m.hold_duration.clone(),
        );
        r.register(
            name("queue_depth"),
            "Queued tickets by base priority",
            m.queue_depth.clone(),
        );
        r.register(
            name("active_locks"),
            "Leases held now",
            m.active_locks.clone(),
        );
        r.register(
            name("deadlocks_detected"),
            "Deadlocks prevented or resolved",
            m.deadlocks_detected.clone(),
        );
        r.register(
            name("circuit_breaker_state"),
            "0 closed, 1 open, 2 half-open",
            m.circuit_breaker_state.clone(),
        );
        r.register(
            name("retries"),
            "Retries of backend calls and of locked acquisitions",
            m.retries.clone(),
        );
        r.register(
            name("backend_health"),
            "1 when the backend answers, else 0",
            m.backend_health.clone(),
        );
        r.register(
            name("health_score"),
            "The health score, 0 to 100",
            m.health_score.clone(),
        );
        // Known label values start at zero, so that every series exists from the first scrape.
        for p in elock_core::model::Priority::ALL {
            let _ = m.queue_wait_duration.get_or_create(&PriorityLabel {
                priority: p.name().into(),
            });
        }
        for reason in ["released", "expired", "force_released"] {
            let _ = m.releases.get_or_create(&ReasonLabel {
                reason: reason.into(),
            });
        }
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::Locked,
            ErrorCode::WaitTimeout,
            ErrorCode::Deadlock,
            ErrorCode::QueueFull,
            ErrorCode::BackendUnavailable,
            ErrorCode::Internal,
            ErrorCode::MethodNotAllowed,
            ErrorCode::RequestTimeout,
            ErrorCode::RequestTooLarge,
            ErrorCode::UriTooLong,
            ErrorCode::Overloaded,
            ErrorCode::ShuttingDown,
        ] {
            let _ = m.errors.get_or_create(&KindLabel {
                kind: code.as_str().into(),
            });
        }
        for result in ["granted", "reentrant", "queued"] {
            let _ = m.acquisitions.get_or_create(&ResultLabel {
                result: result.into(),
            });
        }
        Arc::new(m)
    }

    /// One acquire request's answer and how long it took.
    pub fn acquisition(&self, result: &str, took: Duration) {
        self.acquisitions
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
        match result {
            "granted" | "reentrant" | "queued" => self.acquisitions_success.inc(),
            "locked" | "wait_timeout" | "queue_full" | "deadlock" => {
                self.acquisitions_contended.inc()
            }
            _ => self.acquisitions_failed.inc(),
        };
        self.acquisition_duration.observe(took.as_secs_f64());
    }

    /// Sets the gauges from the manager and renders everything.
    pub async fn render(&self, manager: &Manager) -> String {
        let stats = manager.stats().await;
        self.active_locks.set(stats.stats.active_locks);
        self.circuit_breaker_state.set(stats.breaker.gauge());
        self.health_score.set(stats.health_score as i64);
        let health = manager.store().ping().await.is_ok();
        self.backend_health.set(health as i64);
        if !self.backend.is_empty() {
            if let Ok(values) = manager.store().backend_gauges().await {
                for (n, v) in values {
                    if let Some((_, g)) = self.backend.iter().find(|(k, _)| *k == n) {
                        g.set(v);
                    }
                }
            }
        }
        let delta = stats.stats.retries.saturating_sub(self.retries.get());
        self.retries.inc_by(delta);
        let mut by_priority = std::collections::BTreeMap::new();
        for p in elock_core::model::Priority::ALL {
            by_priority.insert(p, 0i64);
        }
        if let Ok(queues) = manager.queues().await {
            for q in queues {
                for (p, n) in q.by_priority {
                    *by_priority.entry(p).or_default() += n as i64;
                }
            }
        }
        for (p, n) in by_priority {
            self.queue_depth
                .get_or_create(&PriorityLabel {
                    priority: p.name().into(),
                })
                .set(n);
        }
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl EventObserver for Metrics {
    fn observe(&self, e: &Event) {
        let reason = match e.kind {
            EventType::LockReleased => Some("released"),
            EventType::LockExpired => Some("expired"),
            EventType::LockForceReleased => Some("force_released"),
            _ => None,
        };
        if let Some(reason) = reason {
            self.releases
                .get_or_create(&ReasonLabel {
                    reason: reason.into(),
                })
                .inc();
        }
        if let Some(held) = e.held {
            self.hold_duration.observe(held.as_secs_f64());
        }
        match e.kind {
            EventType::QueueGranted => {
                if let Some(w) = e.waited {
                    let priority = e.priority.unwrap_or_default().name().into();
                    self.queue_wait_duration
                        .get_or_create(&PriorityLabel { priority })
                        .observe(w.as_secs_f64());
                }
            }
            EventType::DeadlockDetected => {
                self.deadlocks_detected.inc();
            }
            _ => {}
        }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(scrape))]
pub struct Doc;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/metrics", get(scrape))
}

/// Prometheus text exposition (docs/metrics.md).
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"), (status = 404, description = "metrics are disabled")))]
async fn scrape(State(app): State<Arc<App>>) -> Response {
    let Some(metrics) = &app.metrics else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are disabled (metrics.enabled: false)\n",
        )
            .into_response();
    };
    let body = metrics.render(&app.manager).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Counts every API operation (by route) and every error answer (by code).
pub async fn count(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let op = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| format!("{} {}", request.method(), p.as_str()));
    let response = next.run(request).await;
    if let Some(metrics) = &app.metrics {
        if let Some(op) = op {
            metrics.operations.get_or_create(&OpLabel { op }).inc();
        }
        if let Some(ErrorKind(kind)) = response.extensions().get::<ErrorKind>() {
            metrics
                .errors
                .get_or_create(&KindLabel {
                    kind: (*kind).into(),
                })
                .inc();
        }
    }
    response
}
