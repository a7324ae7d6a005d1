//! [`Shards`]: the lock table's shards on Redis, and the one way to call them. Everything else
//! in this crate (the store, leases spanning shards, deadlocks across shards, Atlantis's keys)
//! is built on it: a connection, the scripts by name, the shard map, the time source, and
//! `run`, which calls one script on one shard and publishes the events it caused.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::ToRedisArgs;
use serde_json::Value;
use tokio::sync::Notify;

use elock_core::clock::Clock;
use elock_core::error::{Error, Result};
use elock_core::event::Event;
use elock_core::model::{Lease, LeaseId, Metadata, ResourceName, Ticket, TicketView, Timestamp};
use elock_core::store::SinkSlot;
use elock_core::table::{AcquireRequest, TableConfig, WaitMode};

use crate::atlantis_format;
use crate::config::RedisConfig;
use crate::connection::Conn;
use crate::parts;
use crate::scripts::{Script, Scripts};
use crate::shard_map::ShardMap;
use crate::wire::{self, hex, Answer, WireLease, WireTicket};

/// Where the time used for expiry and aging comes from.
#[derive(Clone)]
pub enum TimeSource {
    /// Redis's own clock (TIME), so that every elock server sharing the data agrees on it.
    Redis,
    /// A clock of the caller's (tests move it by hand).
    Clock(Arc<dyn Clock>),
}

pub struct Shards {
    pub(crate) conn: Conn,
    pub(crate) scripts: Scripts,
    /// The scripts run as the Function library (Redis 7 and later), else by `EVALSHA`.
    pub(crate) functions: bool,
    pub(crate) time: TimeSource,
    pub(crate) table: RwLock<TableConfig>,
    pub(crate) sink: Arc<SinkSlot>,
    pub(crate) map: ShardMap,
    /// Per shard, the key every script is called with; the shard's other keys share its prefix
    /// and tag.
    pub(crate) meta_keys: Vec<String>,
    /// ARGV[8] of every script: how to tell the other servers, and who we are.
    notify: String,
    /// Who we are: this server's id in events and heartbeats.
    pub(crate) origin: String,
    /// Woken whenever events arrive (ours or other servers'): waits across shards try again.
    pub(crate) changed: Arc<Notify>,
    listener: tokio::task::JoinHandle<()>,
    /// The watch of Atlantis's keys (`atlantis_watch.rs`), when they are kept.
    pub(crate) atlantis_watch: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
    /// This server's heartbeat, when waiters' tickets are tied to it.
    pub(crate) heartbeat: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
    pub(crate) config: RedisConfig,
}

impl Drop for Shards {
    fn drop(&mut self) {
        self.listener.abort();
        if let Some(w) = self.atlantis_watch.get() {
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

impl Shards {
    /// Connects to Redis, loads the scripts and starts the event listener. The store opens on
    /// top of it (recovery, heartbeat, Atlantis's keys).
    pub(crate) async fn connect(
        config: RedisConfig,
        table: TableConfig,
        time: TimeSource,
    ) -> Result<Arc<Shards>> {
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
        Ok(Arc::new(Shards {
            conn,
            scripts,
            functions,
            time,
            table: RwLock::new(table),
            sink,
            map: shards,
            meta_keys: tags.iter().map(|t| format!("{t}meta")).collect(),
            notify: format!("{mode}{}:{origin}", u8::from(config.keeps_atlantis_keys())),
            origin,
            changed,
            listener,
            atlantis_watch: Default::default(),
            heartbeat: Default::default(),
            config,
        }))
    }
}

impl Shards {
    /// Tells every shard this server is alive, and cancels the attached tickets of servers whose
    /// heartbeat is older than `timeout`. Returns how many tickets were cancelled.
    pub async fn heartbeat_once(&self, timeout: Duration) -> Result<u64> {
        let arg = [(timeout.as_millis() as u64).to_string()];
        let mut reaped = 0;
        for (_, v) in self
            .each_shard(|k| self.run(k, Script::Heartbeat, &arg))
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
        try_join_all((0..self.map.len()).map(f)).await
    }

    /// The shard an id points to first, then the others (ids made elsewhere carry no hint).
    pub(crate) fn search_order(&self, id: &[u8; 16]) -> Vec<usize> {
        let home = self.map.home_of(id);
        std::iter::once(home)
            .chain((0..self.map.len()).filter(move |k| *k != home))
            .collect()
    }

    /// Runs a script on shard `shard` with the common arguments and `extra`; publishes the
    /// events it caused.
    pub(crate) async fn run(
        &self,
        shard: usize,
        script: Script,
        extra: &[String],
    ) -> Result<(Timestamp, Result<Value>)> {
        let key = &self.meta_keys[shard];
        let entry = self.scripts.entry(script);
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
            .run(shard, Script::Views, &[which.to_string(), arg.to_string()])
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
    pub(crate) async fn leases(&self) -> Result<Vec<Lease>> {
        let wire = self.pages::<WireLease>("leases_page").await?;
        let mut out = parts::merge_all(wire)?;
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
    pub(crate) async fn on_lease(
        &self,
        script: Script,
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
        if req.reentry == elock_core::model::Reentry::Refuse {
            r["nore"] = true.into();
        }
        if queue && !req.queue_limits.is_empty() {
            r["ql"] = req
                .queue_limits
                .iter()
                .map(|(name, n)| (name.as_str().to_string(), Value::from(*n)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
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
            if let Some(v) = self.mirror_of(resources, &req.owner, req.metadata.as_ref()) {
                r["lg"] = v;
            }
        }
        if let Some(sh) = part_of {
            r["sh"] = sh.into();
            r["all"] = parts::distinct(&req.resources)
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
    /// shards (`part_of`: every shard of it). A resource Atlantis holds by its own key is
    /// answered as such; `atlantis_watch::acquire_on` adopts it and asks again.
    pub(crate) async fn acquire_on(
        &self,
        shard: usize,
        req: &AcquireRequest,
        resources: &[ResourceName],
        part_of: Option<&[usize]>,
    ) -> Result<AcquireAnswer> {
        let body = self.acquire_body(req, resources, part_of)?;
        let v = self
            .run(shard, Script::Acquire, std::slice::from_ref(&body))
            .await?
            .1?;
        if let Some(r) = v.get("legacy").and_then(Value::as_str) {
            return Ok(AcquireAnswer::AtlantisHeld(
                ResourceName::new(r).map_err(wire::corrupt)?,
            ));
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

impl Shards {
    /// Atlantis's JSON for a lease or ticket being taken or imported, if Atlantis should see it.
    /// What Atlantis must find at its keys while a lease of `owner` on `resources` lasts
    /// (`{resource: json}`), when this store keeps Atlantis's keys.
    pub(crate) fn mirror_of(
        &self,
        resources: &[ResourceName],
        owner: &elock_core::model::Owner,
        metadata: Option<&Metadata>,
    ) -> Option<Value> {
        if !self.config().keeps_atlantis_keys() {
            return None;
        }
        let now = self.unix_now().max(0) as u64 * 1000;
        atlantis_format::mirror_values(resources, owner.as_str(), metadata, now)
    }

    /// A lease of a snapshot as the import script takes it (with Atlantis's JSON to keep).
    pub(crate) fn import_lease(&self, l: &Lease) -> Result<Value> {
        let mut v = serde_json::to_value(WireLease::from_lease(l)).map_err(wire::corrupt)?;
        let names: Vec<ResourceName> = l.resources.iter().map(|h| h.resource.clone()).collect();
        if let Some(lg) = self.mirror_of(&names, &l.owner, l.metadata.as_ref()) {
            v["lg"] = lg;
        }
        Ok(v)
    }

    /// A ticket of a snapshot as the import script takes it (with Atlantis's JSON to keep once
    /// granted).
    pub(crate) fn import_ticket(&self, t: &Ticket) -> Result<Value> {
        let mut v = serde_json::to_value(WireTicket::from_ticket(t)).map_err(wire::corrupt)?;
        if let Some(lg) = self.mirror_of(&t.resources, &t.owner, t.metadata.as_ref()) {
            v["lg"] = lg;
        }
        Ok(v)
    }
}

/// What one acquire script answered.
pub(crate) enum AcquireAnswer {
    Granted {
        lease: WireLease,
        reentrant: bool,
    },
    Queued(TicketView),
    /// The resource is held by a lock Atlantis wrote itself (its own key), not yet a lease.
    AtlantisHeld(ResourceName),
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(wire::corrupt)
}

/// What a call's arguments are pushed to: an `FCALL` command or a script invocation.
pub(crate) trait Args {
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
