//! [`RedisStore`]: elock-core's [`Store`] on Redis or Redis Cluster. Every transition is one Lua
//! script (see `scripts/`), so a grant, its fencing token and its handoff commit together, and
//! several elock servers can share the same data.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use tokio::sync::Notify;

use async_trait::async_trait;
use redis::ToRedisArgs;
use serde_json::Value;

use elock_core::clock::Clock;
use elock_core::error::{Error, Result};
use elock_core::event::Event;
use elock_core::model::{
    Cycle, Lease, LeaseId, Priority, ResourceName, TicketId, TicketView, Timestamp,
};
use elock_core::store::{EventSink, SinkSlot, Store};
use elock_core::table::{
    AcquireRequest, Acquired, CancelReason, LeaseFilter, Op, Outcome, QueueSummary, ResourceInfo,
    Snapshot, TableConfig, WaitMode,
};

use crate::config::RedisConfig;
use crate::connection::Conn;
use crate::cross;
use crate::scripts::{Entry, Scripts};
use crate::shards::ShardMap;
use crate::wire::{self, hex, Answer, WireEdge, WireLease, WireTicket};

/// Where the time used for expiry and aging comes from.
#[derive(Clone)]
pub enum TimeSource {
    /// Redis's own clock (TIME), so that every elock server sharing the data agrees on it.
    Redis,
    /// A clock of the caller's (tests move it by hand).
    Clock(Arc<dyn Clock>),
}

/// The Redis store; cheap to share (`Arc` inside), so that work which must finish even when its
/// caller goes away (taking or giving back the parts of a lease spanning shards) can run on its
/// own task.
#[derive(Clone)]
pub struct RedisStore(pub(crate) Arc<Core>);

impl std::ops::Deref for RedisStore {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.0
    }
}

pub struct Core {
    pub(crate) conn: Conn,
    pub(crate) scripts: Scripts,
    /// The scripts run as the Function library (Redis 7 and later), else by `EVALSHA`.
    functions: bool,
    pub(crate) time: TimeSource,
    table: RwLock<TableConfig>,
    sink: Arc<SinkSlot>,
    pub(crate) shards: ShardMap,
    /// Per shard, the key every script is called with; the shard's other keys share its prefix
    /// and tag.
    meta_keys: Vec<String>,
    /// ARGV[8] of every script: how to tell the other servers, and who we are.
    notify: String,
    /// Who we are: this server's id in events and heartbeats.
    origin: String,
    /// Woken whenever events arrive (ours or other servers'): waits across shards try again.
    pub(crate) changed: Arc<Notify>,
    listener: tokio::task::JoinHandle<()>,
    /// The watch of Atlantis's keys (`legacy.rs`), when they are kept.
    legacy_watch: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
    /// This server's heartbeat, when waiters' tickets are tied to it.
    heartbeat: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
    config: RedisConfig,
}

impl Drop for Core {
    fn drop(&mut self) {
        self.listener.abort();
        if let Some(w) = self.legacy_watch.get() {
            w.abort();
        }
        if let Some(h) = self.heartbeat.get() {
            h.abort();
        }
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

pub(crate) fn backend(e: redis::RedisError) -> Error {
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
        let shards = ShardMap::new(config.shards);
        let tags: Vec<String> = (0..shards.len())
            .map(|k| format!("{}{{{k}}}:", config.key_prefix))
            .collect();
        let sink = Arc::new(SinkSlot::default());
        let changed = Arc::new(Notify::new());
        let listener = crate::listener::spawn(
            config.clone(),
            tags.iter().map(|t| format!("{t}events")).collect(),
            origin.clone(),
            sink.clone(),
            changed.clone(),
        );
        let mode = if config.cluster_mode { 's' } else { 'p' };
        let scripts = Scripts::default();
        let functions = match conn.load_library(&scripts.library).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "Redis did not load elock's Function library (Redis 7 and later have \
                     Functions); running the Lua as scripts (EVALSHA), which costs about 6 µs \
                     more per call"
                );
                false
            }
        };
        let store = RedisStore(Arc::new(Core {
            conn,
            scripts,
            functions,
            time,
            table: RwLock::new(table),
            sink,
            shards,
            meta_keys: tags.iter().map(|t| format!("{t}meta")).collect(),
            notify: format!("{mode}{}:{origin}", u8::from(config.keeps_legacy_format())),
            origin,
            changed,
            listener,
            legacy_watch: Default::default(),
            heartbeat: Default::default(),
            config,
        }));
        store
            .each_shard(|k| store.run(k, &store.scripts.recover, &[]))
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Result<Vec<_>>>()?;
        if let Some(timeout) = store.config.node_timeout {
            store.heartbeat_once(timeout).await?;
            let _ = store
                .heartbeat
                .set(spawn_heartbeat(Arc::downgrade(&store.0), timeout));
        }
        if store.config.keeps_legacy_format() {
            store.sync_legacy().await?;
            let watch = crate::legacy::spawn_watch(
                Arc::downgrade(&store.0),
                store.config.clone(),
                store.config.legacy_poll,
            );
            let _ = store.legacy_watch.set(watch);
        } else if store.config.legacy_format {
            tracing::warn!(
                "backward-compatibility.preserve-legacy-format is not available on Redis Cluster \
                 (Atlantis's keys live in other slots than the lock table): Atlantis's keys are \
                 neither written nor read"
            );
        }
        Ok(store)
    }
}

/// Beats every third of `timeout` while the store lives; a missed beat (Redis unreachable) is
/// retried at the next.
fn spawn_heartbeat(core: std::sync::Weak<Core>, timeout: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(timeout / 3).await;
            let Some(core) = core.upgrade() else { return };
            if let Err(e) = core.heartbeat_once(timeout).await {
                tracing::warn!(error = %e, "heartbeat to Redis failed; retrying");
            }
        }
    })
}

impl Core {
    /// Tells every shard this server is alive, and cancels the attached tickets of servers whose
    /// heartbeat is older than `timeout`. Returns how many tickets were cancelled.
    pub async fn heartbeat_once(&self, timeout: Duration) -> Result<u64> {
        let arg = [(timeout.as_millis() as u64).to_string()];
        let mut reaped = 0;
        for (_, v) in self
            .each_shard(|k| self.run(k, &self.scripts.heartbeat, &arg))
            .await?
        {
            reaped += v?.as_u64().unwrap_or(0);
        }
        if reaped > 0 {
            tracing::info!(
                tickets = reaped,
                "cancelled the tickets of waiters connected to an elock server that stopped beating"
            );
        }
        Ok(reaped)
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Which shard holds what.
    pub fn shard_map(&self) -> ShardMap {
        self.shards
    }

    /// Seconds since the epoch by the store's time source (Redis's clock is read by scripts;
    /// this side uses its own then).
    pub(crate) fn unix_now(&self) -> i64 {
        match &self.time {
            TimeSource::Clock(c) => (c.now().as_millis() / 1000) as i64,
            TimeSource::Redis => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        }
    }

    fn now_arg(&self) -> String {
        match &self.time {
            TimeSource::Redis => String::new(),
            TimeSource::Clock(c) => c.now().as_millis().to_string(),
        }
    }

    /// Runs `f` on every shard at once; the answers in shard order.
    pub(crate) async fn each_shard<'a, T, F, Fut>(&'a self, f: F) -> Result<Vec<T>>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + 'a,
    {
        try_join_all((0..self.shards.len()).map(f)).await
    }

    /// The shard an id points to first, then the others (ids made elsewhere carry no hint).
    pub(crate) fn search_order(&self, id: &[u8; 16]) -> Vec<usize> {
        let home = self.shards.home_of(id);
        std::iter::once(home)
            .chain((0..self.shards.len()).filter(move |k| *k != home))
            .collect()
    }

    /// Runs a script on shard `shard` with the common arguments and `extra`; publishes the
    /// events it caused.
    pub(crate) async fn run(
        &self,
        shard: usize,
        entry: &Entry,
        extra: &[String],
    ) -> Result<(Timestamp, Result<Value>)> {
        let key = &self.meta_keys[shard];
        let text: String = if self.functions {
            let mut cmd = redis::cmd("FCALL");
            cmd.arg(&entry.function).arg(1).arg(key);
            self.push_args(&mut cmd, extra);
            self.conn.fcall(&cmd, &self.scripts.library).await
        } else {
            let mut inv = entry.script.key(key);
            self.push_args(&mut inv, extra);
            self.conn.invoke(&inv).await
        }
        .map_err(backend)?;
        let answer: Answer = serde_json::from_str(&text).map_err(wire::corrupt)?;
        let now = Timestamp::from_millis(answer.now);
        let events = answer
            .ev
            .into_iter()
            .map(|e| e.into_event(now))
            .collect::<Result<Vec<Event>>>()?;
        if !events.is_empty() {
            self.sink.publish(events);
            self.changed.notify_waiters();
        }
        let result = match (answer.ok, answer.err) {
            (_, Some(err)) => Err(err.into_error()?),
            (Some(v), None) => Ok(v),
            (None, None) => Ok(Value::Null),
        };
        Ok((now, result))
    }

    /// ARGV of every call: the clock, the table's settings, who is calling; then `extra`.
    fn push_args(&self, call: &mut impl Args, extra: &[String]) {
        call.push(self.now_arg());
        {
            let t = self.table.read().unwrap_or_else(|p| p.into_inner());
            call.push(t.max_timeout.as_millis() as u64);
            call.push(u8::from(t.allow_no_ttl));
            call.push(t.max_queue_size);
            call.push(t.starvation_threshold.as_millis() as u64);
            call.push(t.max_priority_boost);
            call.push(u8::from(t.deadlock_prevention));
        }
        call.push(&self.notify);
        for a in extra {
            call.push(a);
        }
    }

    pub(crate) async fn view(
        &self,
        shard: usize,
        which: &str,
        arg: &str,
    ) -> Result<(Timestamp, Value)> {
        let (now, v) = self
            .run(
                shard,
                &self.scripts.views,
                &[which.to_string(), arg.to_string()],
            )
            .await?;
        Ok((now, v?))
    }

    /// Every page of a listing view, from every shard.
    pub(crate) async fn pages<T: serde::de::DeserializeOwned>(
        &self,
        which: &str,
    ) -> Result<Vec<T>> {
        let all = self.each_shard(|k| self.shard_pages(k, which)).await?;
        Ok(all.into_iter().flatten().collect())
    }

    async fn shard_pages<T: serde::de::DeserializeOwned>(
        &self,
        shard: usize,
        which: &str,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        loop {
            let (_, v) = self.view(shard, which, &out.len().to_string()).await?;
            let page: Vec<T> = wire::lua_vec(v).map_err(wire::corrupt)?;
            let n = page.len();
            out.extend(page);
            if n < 500 {
                return Ok(out);
            }
        }
    }

    /// Every lease of every shard, the parts of leases spanning shards put together.
    async fn leases(&self) -> Result<Vec<Lease>> {
        let wire = self.pages::<WireLease>("leases_page").await?;
        let mut out = cross::merge_all(wire)?;
        out.sort_by_key(|l| (l.acquired_at, l.id));
        Ok(out)
    }

    /// A lease's record (or part) by id: the shard its id points to first, then the others.
    pub(crate) async fn find_lease(
        &self,
        id: &str,
        bytes: &[u8; 16],
    ) -> Result<Option<(usize, WireLease)>> {
        for k in self.search_order(bytes) {
            let (_, v) = self.view(k, "lease", id).await?;
            if !matches!(v, Value::Bool(false) | Value::Null) {
                return Ok(Some((k, decode(v)?)));
            }
        }
        Ok(None)
    }

    /// Runs a transition on a lease by id: on the shard its id points to, and if the lease is
    /// not there, on the shard that has it. The answer is the lease (or part) as the script
    /// returned it, and the shard.
    async fn on_lease(
        &self,
        script: &Entry,
        id: LeaseId,
        extra: &[String],
    ) -> Result<(usize, WireLease)> {
        let mut args = vec![hex(id.as_bytes())];
        args.extend_from_slice(extra);
        // The script is the look-up: where the lease is not, it only catches up with the time
        // and answers not found (as the table, which catches up everywhere on every call).
        let mut first = None;
        for k in self.search_order(id.as_bytes()) {
            match self.run(k, script, &args).await?.1 {
                Ok(v) => return Ok((k, decode(v)?)),
                Err(e @ Error::NotFound { .. }) => {
                    first.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first.unwrap_or_else(|| wire::corrupt("no shard answered")))
    }

    fn acquire_body(
        &self,
        req: &AcquireRequest,
        resources: &[ResourceName],
        part_of: Option<&[usize]>,
    ) -> Result<String> {
        let (deadline, detached, queue) = match req.wait {
            WaitMode::Try => (None, false, false),
            WaitMode::Queue { deadline, detached } => (deadline, detached, true),
        };
        let mut r = serde_json::json!({
            "lid": hex(req.lease_id.as_bytes()),
            "tid": hex(req.ticket_id.as_bytes()),
            "owner": req.owner.as_str(),
            "res": resources.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "pri": req.priority.level(),
            "queue": queue,
            "det": detached,
        });
        if queue && !detached && self.config.node_timeout.is_some() {
            r["node"] = true.into();
        }
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
        if part_of.is_none() {
            if let Some(v) = self.mirror_of(resources, req.metadata.as_ref()) {
                r["lg"] = v.into();
            }
        }
        if let Some(sh) = part_of {
            r["sh"] = sh.into();
            r["all"] = cross::distinct(&req.resources)
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .into();
        }
        if resources.is_empty() {
            // Lua would see an empty table as an object: say it is a list.
            r["res"] = Value::Object(Default::default());
        }
        Ok(r.to_string())
    }

    /// One acquire script on one shard: the whole request, or one part of a request spanning
    /// shards (`part_of`: every shard of it).
    pub(crate) async fn acquire_on(
        &self,
        shard: usize,
        req: &AcquireRequest,
        resources: &[ResourceName],
        part_of: Option<&[usize]>,
    ) -> Result<AcquireAnswer> {
        let body = self.acquire_body(req, resources, part_of)?;
        let mut v = self
            .run(shard, &self.scripts.acquire, std::slice::from_ref(&body))
            .await?
            .1?;
        // A lock Atlantis wrote itself: adopt it as a lease, then ask again (a few times, as
        // Atlantis may be writing and deleting meanwhile).
        for _ in 0..3 {
            let Some(r) = v.get("legacy").and_then(Value::as_str).map(str::to_string) else {
                break;
            };
            self.adopt(&r).await?;
            v = self
                .run(shard, &self.scripts.acquire, std::slice::from_ref(&body))
                .await?
                .1?;
        }
        if let Some(r) = v.get("legacy").and_then(Value::as_str) {
            return Err(Error::Locked {
                resource: ResourceName::new(r).map_err(wire::corrupt)?,
                holder: None,
            });
        }
        if let Some(l) = v.get("granted") {
            Ok(AcquireAnswer::Granted {
                lease: decode(l.clone())?,
                reentrant: v.get("reentrant").and_then(Value::as_bool).unwrap_or(false),
            })
        } else if let Some(t) = v.get("queued") {
            Ok(AcquireAnswer::Queued(
                decode::<wire::WireView>(t.clone())?.into_view()?,
            ))
        } else {
            Err(wire::corrupt(format!("acquire answered {v}")))
        }
    }

    /// The current time as a shard sees it (the time source's in tests).
    pub(crate) async fn shard_now(&self, shard: usize) -> Result<Timestamp> {
        match &self.time {
            TimeSource::Clock(c) => Ok(c.now()),
            TimeSource::Redis => Ok(self.view(shard, "now", "").await?.0),
        }
    }
}

/// What one acquire script answered.
pub(crate) enum AcquireAnswer {
    Granted { lease: WireLease, reentrant: bool },
    Queued(TicketView),
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(wire::corrupt)
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

    fn new_ids(&self, resources: &[ResourceName]) -> (LeaseId, TicketId) {
        if self.shards.len() == 1 {
            return (LeaseId::random(), TicketId::random());
        }
        let home = self.shards.groups(resources).first().map_or(0, |(k, _)| *k);
        (
            LeaseId::from_bytes(self.shards.stamp(*LeaseId::random().as_bytes(), home)),
            TicketId::from_bytes(self.shards.stamp(*TicketId::random().as_bytes(), home)),
        )
    }

    async fn delivered(&self, lease: &Lease) -> Result<bool> {
        if self.config.node_timeout.is_none() {
            return Ok(true);
        }
        // The handoff put the lease in this server's set, in the shard of the ticket (a queued
        // ticket lives in one shard, its resources'); if it is no longer there, another server
        // took this one for dead and released the lease.
        let Some(first) = lease.resources.first() else {
            return Ok(true);
        };
        let meta = &self.meta_keys[self.shards.of_resource(first.resource.as_str())];
        let tag = meta.strip_suffix("meta").unwrap_or(meta);
        let removed: i64 = self
            .conn
            .query(
                redis::cmd("SREM")
                    .arg(format!("{tag}nl:{}", self.origin))
                    .arg(hex(lease.id.as_bytes())),
            )
            .await
            .map_err(backend)?;
        Ok(removed > 0)
    }

    async fn apply(&self, op: Op) -> Result<Outcome> {
        match op {
            Op::Acquire(req) => {
                let groups = self.shards.groups(&req.resources);
                if groups.len() > 1 {
                    return cross::acquire(self, req, groups)
                        .await
                        .map(Outcome::Acquired);
                }
                let shard = groups.first().map_or(0, |(k, _)| *k);
                Ok(Outcome::Acquired(
                    match self.acquire_on(shard, &req, &req.resources, None).await? {
                        AcquireAnswer::Granted { lease, reentrant } => Acquired::Granted {
                            lease: lease.into_lease()?,
                            reentrant,
                        },
                        AcquireAnswer::Queued(ticket) => Acquired::Queued { ticket },
                    },
                ))
            }
            Op::Release(id) => {
                let (k, part) = self.on_lease(&self.scripts.release, id, &[]).await?;
                cross::after_release(self, k, part)
                    .await
                    .map(Outcome::Lease)
            }
            Op::Renew { lease_id, ttl } => {
                let ttl = ttl.map_or(String::new(), |d| (d.as_millis() as u64).to_string());
                let (k, part) = self
                    .on_lease(&self.scripts.renew, lease_id, std::slice::from_ref(&ttl))
                    .await?;
                cross::after_renew(self, k, part, &ttl)
                    .await
                    .map(Outcome::Lease)
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
                let mut first = None;
                for k in self.search_order(ticket_id.as_bytes()) {
                    match self.run(k, &self.scripts.cancel, &args).await?.1 {
                        Ok(v) => {
                            return Ok(Outcome::Ticket(decode::<wire::WireView>(v)?.into_view()?))
                        }
                        Err(e @ Error::NotFound { .. }) => {
                            first.get_or_insert(e);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(first.unwrap_or_else(|| wire::corrupt("no shard answered")))
            }
            Op::ForceRelease { resource, reason } => {
                let k = self.shards.of_resource(resource.as_str());
                let args = [resource.to_string(), reason];
                let (_, v) = self.run(k, &self.scripts.force_release, &args).await?;
                cross::after_release(self, k, decode(v?)?)
                    .await
                    .map(Outcome::Lease)
            }
            Op::ExpireDue => {
                let all = self
                    .each_shard(|k| async move {
                        let (_, v) = self.run(k, &self.scripts.expire_due, &[]).await?;
                        wire::lua_vec::<_, WireLease>(v?).map_err(wire::corrupt)
                    })
                    .await?;
                let mut leases = all
                    .into_iter()
                    .flatten()
                    .map(WireLease::into_lease)
                    .collect::<Result<Vec<_>>>()?;
                leases.sort_by_key(|l| (l.expires_at, l.id));
                if self.shards.len() > 1 {
                    cross::sweep(self).await?;
                }
                Ok(Outcome::Leases(leases))
            }
            Op::ResolveDeadlocks(policy) => {
                let name = serde_json::to_value(policy).map_err(wire::corrupt)?;
                let name = name.as_str().unwrap_or("lowest_priority").to_string();
                let all = self
                    .each_shard(|k| {
                        let name = name.clone();
                        async move {
                            let (_, v) = self
                                .run(k, &self.scripts.resolve_deadlocks, &[name])
                                .await?;
                            wire::lua_vec::<_, wire::WireRecord>(v?).map_err(wire::corrupt)
                        }
                    })
                    .await?;
                let mut records = all
                    .into_iter()
                    .flatten()
                    .map(|r| r.into_record(policy))
                    .collect::<Result<Vec<_>>>()?;
                if self.shards.len() > 1 {
                    records.extend(crate::deadlocks::resolve_across(self, policy).await?);
                }
                Ok(Outcome::Deadlocks(records))
            }
            Op::Import(snapshot) => {
                // The same rules as the lock table's import, before anything is written.
                let config = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
                snapshot.validate(&config, self.shard_now(0).await?)?;
                cross::import(self, *snapshot).await.map(Outcome::Imported)
            }
        }
    }

    async fn get_lease(&self, id: LeaseId) -> Result<Option<Lease>> {
        let Some((_, part)) = self.find_lease(&hex(id.as_bytes()), id.as_bytes()).await? else {
            return Ok(None);
        };
        cross::whole(self, part).await.map(Some)
    }

    async fn get_ticket(&self, id: TicketId) -> Result<Option<TicketView>> {
        let hex_id = hex(id.as_bytes());
        for k in self.search_order(id.as_bytes()) {
            let (_, v) = self.view(k, "ticket", &hex_id).await?;
            if !matches!(v, Value::Bool(false) | Value::Null) {
                return Ok(Some(decode::<wire::WireView>(v)?.into_view()?));
            }
        }
        Ok(None)
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
        let k = self.shards.of_resource(resource.as_str());
        let (_, v) = self.view(k, "resource", resource.as_str()).await?;
        let w: wire::WireResource = decode(v)?;
        let holder = match w.holder {
            Some(part) if part.sh.is_some() => Some(cross::whole(self, part).await?),
            Some(l) => Some(l.into_lease()?),
            None => None,
        };
        Ok(ResourceInfo {
            resource,
            holder,
            queue: w
                .queue
                .into_iter()
                .map(wire::WireView::into_view)
                .collect::<Result<_>>()?,
            last_fencing_token: w.token,
        })
    }

    async fn queues(&self) -> Result<Vec<QueueSummary>> {
        let all = self
            .each_shard(|k| async move {
                let (now, v) = self.view(k, "queues", "").await?;
                let qs: Vec<wire::WireQueue> = wire::lua_vec(v).map_err(wire::corrupt)?;
                Ok((now, qs))
            })
            .await?;
        let mut out = Vec::new();
        for (now, qs) in all {
            for q in qs {
                out.push(QueueSummary {
                    resource: ResourceName::new(&q.r).map_err(wire::corrupt)?,
                    depth: q.depth,
                    by_priority: (0..4u8)
                        .filter(|p| q.by[*p as usize] > 0)
                        .map(|p| (Priority::from_level_saturating(p), q.by[p as usize]))
                        .collect(),
                    oldest_wait: now.since(Timestamp::from_millis(q.oldest)),
                });
            }
        }
        out.sort_by(|a, b| {
            b.depth
                .cmp(&a.depth)
                .then_with(|| a.resource.cmp(&b.resource))
        });
        Ok(out)
    }

    async fn find_deadlocks(&self) -> Result<Vec<Cycle>> {
        if self.shards.len() > 1 {
            return crate::deadlocks::find_across(self).await;
        }
        let (_, v) = self.view(0, "deadlocks", "").await?;
        let cycles: Vec<Vec<WireEdge>> = wire::lua_vec(v).map_err(wire::corrupt)?;
        cycles.into_iter().map(wire::cycle).collect()
    }

    async fn next_deadline(&self) -> Result<Option<Timestamp>> {
        let all = self
            .each_shard(|k| async move {
                let (_, v) = self.view(k, "next_deadline", "").await?;
                Ok(v.as_u64().map(Timestamp::from_millis))
            })
            .await?;
        Ok(all.into_iter().flatten().min())
    }

    async fn now(&self) -> Result<Timestamp> {
        self.shard_now(0).await
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
        let mut tickets = self
            .pages::<WireTicket>("tickets_page")
            .await?
            .into_iter()
            .map(WireTicket::into_ticket)
            .collect::<Result<Vec<_>>>()?;
        tickets.sort_by_key(|t| (t.seq, t.id));
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

/// What a call's arguments are pushed to: an `FCALL` command or a script invocation.
trait Args {
    fn push<T: ToRedisArgs>(&mut self, v: T);
}

impl Args for redis::Cmd {
    fn push<T: ToRedisArgs>(&mut self, v: T) {
        self.arg(v);
    }
}

impl Args for redis::ScriptInvocation<'_> {
    fn push<T: ToRedisArgs>(&mut self, v: T) {
        self.arg(v);
    }
}
