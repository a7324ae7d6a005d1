//! `elock status`, `queue-status`, `deadlock-status`, `health-check`, `events`: looking without
//! touching.

use elock_client::api::{EventType, Health, ManagerStats};
use elock_client::{Client, EventItem};
use elock_core::model::Cycle;
use serde::Serialize;

use super::errors::CliError;
use super::output::{self, opt, say, text, Format};

/// `elock status --output json`.
#[derive(Serialize)]
struct Status {
    health: Health,
    stats: ManagerStats,
}

/// A wait-for cycle on one line: `a -[r1]-> b, b -[r2]-> a`.
fn describe(cycle: &Cycle) -> String {
    cycle
        .iter()
        .map(|e| format!("{} -[{}]-> {}", e.waiter, e.resource, e.blocker))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn status(client: &Client, out: Format) -> Result<(), CliError> {
    let health = client.health().await?;
    let stats = client.stats().await?;
    if out == Format::Json {
        output::json(&Status { health, stats });
        return Ok(());
    }
    let s = &stats.stats;
    let rows = vec![
        vec!["status".into(), text(&health.status)],
        vec!["health score".into(), health.health_score.to_string()],
        vec![
            "backend".into(),
            format!(
                "{} (healthy: {}, {} ms)",
                health.backend.kind, health.backend.healthy, health.backend.latency_ms
            ),
        ],
        vec!["breaker".into(), text(&stats.breaker)],
        vec!["active locks".into(), s.active_locks.to_string()],
        vec!["queue depth".into(), s.queue_depth.to_string()],
        vec!["requests".into(), s.total_requests.to_string()],
        vec![
            "acquires ok / failed".into(),
            format!("{} / {}", s.successful_acquires, s.failed_acquires),
        ],
        vec![
            "average wait / hold".into(),
            format!(
                "{} / {}",
                elock_core::model::format_duration(s.average_wait),
                elock_core::model::format_duration(s.average_hold)
            ),
        ],
        vec![
            "version, uptime".into(),
            format!(
                "{}, {}",
                health.version,
                elock_core::model::format_duration(health.uptime)
            ),
        ],
    ];
    output::table(&["", ""], &rows);
    Ok(())
}

pub async fn queue_status(
    client: &Client,
    resource: Option<String>,
    out: Format,
) -> Result<(), CliError> {
    let Some(r) = resource else {
        let queues = client.queues().await?;
        if out == Format::Json {
            output::json(&elock_client::api::QueueList { queues });
            return Ok(());
        }
        let rows: Vec<_> = queues
            .iter()
            .map(|q| {
                vec![
                    q.resource.to_string(),
                    q.depth.to_string(),
                    text(&q.by_priority),
                    elock_core::model::format_duration(q.oldest_wait),
                ]
            })
            .collect();
        output::table(&["resource", "depth", "by priority", "oldest wait"], &rows);
        return Ok(());
    };
    let info = client.resource(&r).await?;
    if out == Format::Json {
        output::json(&info);
        return Ok(());
    }
    say!(
        "{r}: held by {}, last fencing token {}",
        opt(&info.holder.as_ref().map(|h| &h.owner)),
        info.last_fencing_token
    );
    let rows: Vec<_> = info
        .queue
        .iter()
        .map(|t| {
            vec![
                opt(&t.position.get(&info.resource)),
                t.owner.to_string(),
                t.priority.to_string(),
                t.effective_priority.to_string(),
                t.enqueued_at.to_string(),
                opt(&t.deadline),
            ]
        })
        .collect();
    output::table(
        &[
            "position",
            "owner",
            "priority",
            "effective",
            "enqueued",
            "deadline",
        ],
        &rows,
    );
    Ok(())
}

pub async fn deadlock_status(client: &Client, history: bool, out: Format) -> Result<(), CliError> {
    let report = client.deadlocks().await?;
    if out == Format::Json {
        output::json(&report);
        return Ok(());
    }
    say!("{} active deadlock(s)", report.active.len());
    for cycle in &report.active {
        say!("  {}", describe(cycle));
    }
    if history {
        let rows: Vec<_> = report
            .history
            .iter()
            .map(|d| {
                vec![
                    d.detected_at.to_string(),
                    text(&d.resolution),
                    opt(&d.victim),
                    describe(&d.cycle),
                ]
            })
            .collect();
        output::table(&["detected", "resolution", "victim", "cycle"], &rows);
    }
    Ok(())
}

pub async fn health_check(client: &Client, out: Format) -> Result<(), CliError> {
    let health = client.health().await?;
    if out == Format::Json {
        output::json(&health);
    } else {
        say!("{} (score {})", text(&health.status), health.health_score);
    }
    if health.status == elock_client::api::HealthStatus::Unhealthy {
        return Err(CliError::usage(format!(
            "unhealthy (score {})",
            health.health_score
        )));
    }
    Ok(())
}

/// Follows the event stream until interrupted; reconnects by itself after a cut.
pub async fn events(client: &Client, types: Option<String>, out: Format) -> Result<(), CliError> {
    let types = EventType::parse_list(types.as_deref().unwrap_or(""))
        .map_err(|e| CliError::usage(format!("--types: {e}")))?;
    let mut stream = client.events(&types).await?;
    loop {
        match stream.next().await? {
            EventItem::Gap(gap) => eprintln!("elock events: {}", gap.message),
            EventItem::Event(e) if out == Format::Json => {
                say!("{}", serde_json::to_string(&e).unwrap_or_default())
            }
            EventItem::Event(e) => say!(
                "{:>6}  {}  {:<20} {}  {}",
                e.id,
                e.at,
                e.kind.name(),
                opt(&e.owner),
                e.resources
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}
