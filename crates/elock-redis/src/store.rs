//! [`RedisStore`]: elock-core's [`Store`] on Redis or Redis Cluster. Every transition is one Lua
//! script (see `scripts/`), so a grant, its fencing token and its handoff commit together, and
//! several elock servers can share the same data.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::Script;
use serde_json::Value;

use elock_core::clock::Clock;
use elock_core::error::{Error, Result};
use elock_core::event::Event;
use elock_core::model::{
    Cycle, Lease, LeaseId, Priority, ResourceName, TicketId, TicketView, Timestamp,
};
use elock_core::store::{EventSink, SinkSlot, Store};
use elock_core::table::{
    Acquired, CancelReason, LeaseFilter, Op, Outcome, QueueSummary, ResourceInfo, Snapshot,
    TableConfig, WaitMode,
};

use crate::config::RedisConfig;
use crate::connection::Conn;
use crate::scripts::Scripts;
use crate::wire::{self, hex, Answer, WireEdge, WireLease, WireTicket};

/// Where the time used for expiry and aging comes from.
#[derive(Clone)]
pub enum TimeSource {
    /// Redis's own clock (TIME), so that every elock server sharing the data agrees on it.
    Redis,
    /// A clock of the caller's (tests move it by hand).
    Clock(Arc<dyn Clock>),
}

pub struct RedisStore {
    conn: Conn,
    scripts: Scripts,
    time: TimeSource,
    table: RwLock<TableConfig>,
    sink: Arc<SinkSlot>,
    /// The key every script is called with; the shard's other keys share its prefix and tag.
    meta_key: String,
    /// ARGV[8] of every script: how to tell the other servers, and who we are.
    notify: String,
    listener: tokio::task::JoinHandle<()>,
    config: RedisConfig,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// How often a waiter re-reads its ticket, in case a pub/sub message was lost.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn backend(e: redis::RedisError) -> Error {
    Error::Storage(format!("redis: {e}"))
}

impl RedisStore {
    /// Connects, and rebuilds what is derived from the records (as the embedded store does when
    /// it opens).
    pub async fn open(config: RedisConfig, table: TableConfig, time: TimeSource) -> Result<Self> {
        let conn = Conn::open(&config).await.map_err(|e| {
            Error::Storage(format!(
                "cannot connect to Redis at {}: {e}",
                config.addresses.join(", ")
            ))
        })?;
        let origin = format!("{:016x}", rand_u64());
        let tag = format!("{}{{0}}:", config.key_prefix);
        let sink = Arc::new(SinkSlot::default());
        let listener = crate::listener::spawn(
            config.clone(),
            format!("{tag}events"),
            origin.clone(),
            sink.clone(),
        );
        let mode = if config.cluster_mode { 's' } else { 'p' };
        let store = RedisStore {
            conn,
            scripts: Scripts::default(),
            time,
            table: RwLock::new(table),
            sink,
            meta_key: format!("{tag}meta"),
            notify: format!("{mode}:{origin}"),
            listener,
            config,
        };
        store.run(&store.scripts.recover, &[]).await?.1?;
        Ok(store)
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    fn now_arg(&self) -> String {
        match &self.time {
            TimeSource::Redis => String::new(),
            TimeSource::Clock(c) => c.now().as_millis().to_string(),
        }
    }

    /// Runs a script with the common arguments and `extra`; publishes the events it caused.
    async fn run(&self, script: &Script, extra: &[String]) -> Result<(Timestamp, Result<Value>)> {
        let mut inv = script.key(&self.meta_key);
        inv.arg(self.now_arg());
        {
            let t = self.table.read().unwrap_or_else(|p| p.into_inner());
            inv.arg(t.max_timeout.as_millis() as u64)
                .arg(u8::from(t.allow_no_ttl))
                .arg(t.max_queue_size)
                .arg(t.starvation_threshold.as_millis() as u64)
                .arg(t.max_priority_boost)
                .arg(u8::from(t.deadlock_prevention));
        }
        inv.arg(&self.notify);
        for a in extra {
            inv.arg(a);
        }
        let text: String = self.conn.invoke(&inv).await.map_err(backend)?;
        let answer: Answer = serde_json::from_str(&text).map_err(wire::corrupt)?;
        let now = Timestamp::from_millis(answer.now);
        let events = answer
            .ev
            .into_iter()
            .map(|e| e.into_event(now))
            .collect::<Result<Vec<Event>>>()?;
        self.sink.publish(events);
        let result = match (answer.ok, answer.err) {
            (_, Some(err)) => Err(err.into_error()?),
            (Some(v), None) => Ok(v),
            (None, None) => Ok(Value::Null),
        };
        Ok((now, result))
    }

    async fn view(&self, which: &str, arg: &str) -> Result<(Timestamp, Value)> {
        let (now, v) = self
            .run(&self.scripts.views, &[which.to_string(), arg.to_string()])
            .await?;
        Ok((now, v?))
    }

    async fn pages<T: serde::de::DeserializeOwned>(&self, which: &str) -> Result<Vec<T>> {
        let mut out = Vec::new();
        loop {
            let (_, v) = self.view(which, &out.len().to_string()).await?;
            let page: Vec<T> = wire::lua_vec(v).map_err(wire::corrupt)?;
            let n = page.len();
            out.extend(page);
            if n < 500 {
                return Ok(out);
            }
        }
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        self.pages::<WireLease>("leases_page")
            .await?
            .into_iter()
            .map(WireLease::into_lease)
            .collect()
    }
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(wire::corrupt)
}

fn lease_of(v: Value) -> Result<Lease> {
    decode::<WireLease>(v)?.into_lease()
}

fn with_state_at(mut l: Lease, now: Timestamp) -> Lease {
    if l.is_due(now) {
        l.state = elock_core::model::LeaseState::Expired;
    }
    l
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn attach_sink(&self, sink: Arc<dyn EventSink>) -> Result<()> {
        self.sink.set(sink)
    }

    fn recheck_interval(&self) -> Option<Duration> {
        Some(RECHECK_INTERVAL)
    }

    async fn apply(&self, op: Op) -> Result<Outcome> {
        match op {
            Op::Acquire(req) => {
                let (deadline, detached, queue) = match req.wait {
                    WaitMode::Try => (None, false, false),
                    WaitMode::Queue { deadline, detached } => (deadline, detached, true),
                };
                let mut r = serde_json::json!({
                    "lid": hex(req.lease_id.as_bytes()),
                    "tid": hex(req.ticket_id.as_bytes()),
                    "owner": req.owner.as_str(),
                    "res": req.resources.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    "pri": req.priority.level(),
                    "queue": queue,
                    "det": detached,
                });
                if let Some(ttl) = req.ttl {
                    r["ttl"] = (ttl.as_millis() as u64).into();
                }
                if let Some(d) = deadline {
                    r["dl"] = d.as_millis().into();
                }
                if let Some(m) = &req.metadata {
                    r["meta"] = serde_json::to_string(m.as_map())
                        .map_err(wire::corrupt)?
                        .into();
                }
                if req.resources.is_empty() {
                    // Lua would see an empty table as an object: say it is a list.
                    r["res"] = Value::Object(Default::default());
                }
                let (_, v) = self.run(&self.scripts.acquire, &[r.to_string()]).await?;
                let v = v?;
                if let Some(l) = v.get("granted") {
                    Ok(Outcome::Acquired(Acquired::Granted {
                        lease: lease_of(l.clone())?,
                        reentrant: v.get("reentrant").and_then(Value::as_bool).unwrap_or(false),
                    }))
                } else if let Some(t) = v.get("queued") {
                    Ok(Outcome::Acquired(Acquired::Queued {
                        ticket: decode::<wire::WireView>(t.clone())?.into_view()?,
                    }))
                } else {
                    Err(wire::corrupt(format!("acquire answered {v}")))
                }
            }
            Op::Release(id) => {
                let (_, v) = self
                    .run(&self.scripts.release, &[hex(id.as_bytes())])
                    .await?;
                Ok(Outcome::Lease(lease_of(v?)?))
            }
            Op::Renew { lease_id, ttl } => {
                let ttl = ttl.map_or(String::new(), |d| (d.as_millis() as u64).to_string());
                let (_, v) = self
                    .run(&self.scripts.renew, &[hex(lease_id.as_bytes()), ttl])
                    .await?;
                Ok(Outcome::Lease(lease_of(v?)?))
            }
            Op::Cancel { ticket_id, reason } => {
                let cycle = match &reason {
                    CancelReason::Deadlock(c) => serde_json::to_string(
                        &c.iter().map(WireEdge::from_edge).collect::<Vec<_>>(),
                    )
                    .map_err(wire::corrupt)?,
                    _ => String::new(),
                };
                let args = [hex(ticket_id.as_bytes()), reason.name().to_string(), cycle];
                let (_, v) = self.run(&self.scripts.cancel, &args).await?;
                Ok(Outcome::Ticket(decode::<wire::WireView>(v?)?.into_view()?))
            }
            Op::ForceRelease { resource, reason } => {
                let args = [resource.to_string(), reason];
                let (_, v) = self.run(&self.scripts.force_release, &args).await?;
                Ok(Outcome::Lease(lease_of(v?)?))
            }
            Op::ExpireDue => {
                let (_, v) = self.run(&self.scripts.expire_due, &[]).await?;
                let leases: Vec<WireLease> = wire::lua_vec(v?).map_err(wire::corrupt)?;
                Ok(Outcome::Leases(
                    leases
                        .into_iter()
                        .map(WireLease::into_lease)
                        .collect::<Result<_>>()?,
                ))
            }
            Op::ResolveDeadlocks(policy) => {
                let name = serde_json::to_value(policy).map_err(wire::corrupt)?;
                let name = name.as_str().unwrap_or("lowest_priority").to_string();
                let (_, v) = self.run(&self.scripts.resolve_deadlocks, &[name]).await?;
                let records: Vec<wire::WireRecord> = wire::lua_vec(v?).map_err(wire::corrupt)?;
                Ok(Outcome::Deadlocks(
                    records
                        .into_iter()
                        .map(|r| r.into_record(policy))
                        .collect::<Result<_>>()?,
                ))
            }
            Op::Import(snapshot) => {
                let mut s = *snapshot;
                s.leases.sort_by_key(|l| (l.acquired_at, l.id));
                s.tickets.sort_by_key(|t| t.seq);
                let body = serde_json::json!({
                    "fences": s.fences.iter().map(|(r, t)| (r.as_str(), t)).collect::<Vec<_>>(),
                    "leases": s.leases.iter().map(WireLease::from_lease).collect::<Vec<_>>(),
                    "tickets": s.tickets.iter().map(WireTicket::from_ticket).collect::<Vec<_>>(),
                });
                let (_, v) = self.run(&self.scripts.import, &[body.to_string()]).await?;
                Ok(Outcome::Imported(
                    decode::<wire::WireReport>(v?)?.into_report()?,
                ))
            }
        }
    }

    async fn get_lease(&self, id: LeaseId) -> Result<Option<Lease>> {
        let (_, v) = self.view("lease", &hex(id.as_bytes())).await?;
        match v {
            Value::Bool(false) | Value::Null => Ok(None),
            v => Ok(Some(lease_of(v)?)),
        }
    }

    async fn get_ticket(&self, id: TicketId) -> Result<Option<TicketView>> {
        let (_, v) = self.view("ticket", &hex(id.as_bytes())).await?;
        match v {
            Value::Bool(false) | Value::Null => Ok(None),
            v => Ok(Some(decode::<wire::WireView>(v)?.into_view()?)),
        }
    }

    async fn list(&self, filter: LeaseFilter) -> Result<Vec<Lease>> {
        let now = self.now().await?;
        Ok(self
            .leases()
            .await?
            .into_iter()
            .filter(|l| filter.matches(l, now))
            .map(|l| with_state_at(l, now))
            .collect())
    }

    async fn resource(&self, resource: ResourceName) -> Result<ResourceInfo> {
        let (_, v) = self.view("resource", resource.as_str()).await?;
        let w: wire::WireResource = decode(v)?;
        Ok(ResourceInfo {
            resource,
            holder: w.holder.map(WireLease::into_lease).transpose()?,
            queue: w
                .queue
                .into_iter()
                .map(wire::WireView::into_view)
                .collect::<Result<_>>()?,
            last_fencing_token: w.token,
        })
    }

    async fn queues(&self) -> Result<Vec<QueueSummary>> {
        let (now, v) = self.view("queues", "").await?;
        let qs: Vec<wire::WireQueue> = wire::lua_vec(v).map_err(wire::corrupt)?;
        let mut out = qs
            .into_iter()
            .map(|q| {
                Ok(QueueSummary {
                    resource: ResourceName::new(&q.r).map_err(wire::corrupt)?,
                    depth: q.depth,
                    by_priority: (0..4u8)
                        .filter(|p| q.by[*p as usize] > 0)
                        .map(|p| (Priority::from_level_saturating(p), q.by[p as usize]))
                        .collect(),
                    oldest_wait: now.since(Timestamp::from_millis(q.oldest)),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| {
            b.depth
                .cmp(&a.depth)
                .then_with(|| a.resource.cmp(&b.resource))
        });
        Ok(out)
    }

    async fn find_deadlocks(&self) -> Result<Vec<Cycle>> {
        let (_, v) = self.view("deadlocks", "").await?;
        let cycles: Vec<Vec<WireEdge>> = wire::lua_vec(v).map_err(wire::corrupt)?;
        cycles.into_iter().map(wire::cycle).collect()
    }

    async fn next_deadline(&self) -> Result<Option<Timestamp>> {
        let (_, v) = self.view("next_deadline", "").await?;
        Ok(v.as_u64().map(Timestamp::from_millis))
    }

    async fn now(&self) -> Result<Timestamp> {
        match &self.time {
            TimeSource::Clock(c) => Ok(c.now()),
            TimeSource::Redis => Ok(self.view("now", "").await?.0),
        }
    }

    async fn backend_gauges(&self) -> Result<Vec<(&'static str, i64)>> {
        let info: String = self
            .conn
            .query(redis::cmd("INFO").arg("memory"))
            .await
            .map_err(backend)?;
        let used = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        // Requests are multiplexed: one connection for commands and one for events per node
        // this client talks to.
        let per_node = if self.config.cluster_mode {
            self.config.addresses.len() as i64
        } else {
            1
        };
        Ok(vec![
            ("redis_memory_used_bytes", used),
            ("redis_pool_active_connections", 2 * per_node),
            ("redis_pool_max_connections", self.config.pool_size as i64),
        ])
    }

    async fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        let _: String = self
            .conn
            .query(&redis::cmd("PING"))
            .await
            .map_err(backend)?;
        Ok(start.elapsed())
    }

    async fn flush(&self) -> Result<()> {
        // Redis acknowledged every write already; how durable that is depends on its
        // persistence settings (docs/redis.md).
        Ok(())
    }

    async fn set_table_config(&self, config: TableConfig) -> Result<()> {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let leases = self.leases().await?;
        let tickets = self
            .pages::<WireTicket>("tickets_page")
            .await?
            .into_iter()
            .map(WireTicket::into_ticket)
            .collect::<Result<Vec<_>>>()?;
        let mut fences = self
            .pages::<(String, u64)>("fences_page")
            .await?
            .into_iter()
            .filter(|(_, t)| *t > 0)
            .map(|(r, t)| Ok((ResourceName::new(&r).map_err(wire::corrupt)?, t)))
            .collect::<Result<Vec<_>>>()?;
        fences.sort();
        Ok(Snapshot {
            leases,
            tickets,
            fences,
        })
    }
}
