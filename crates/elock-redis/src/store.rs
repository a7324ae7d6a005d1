//! [`RedisStore`]: elock-core's [`Store`] on Redis or Redis Cluster. Every transition is one Lua
//! script (see `scripts/`), so a grant, its fencing token and its handoff commit together, and
//! several elock servers can share the same data. This is the top of the crate: it composes the
//! [`Shards`] with the leases spanning shards, deadlocks across shards and Atlantis's keys, and
//! nothing inside the crate imports it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use elock_core::error::{Error, Result};
use elock_core::model::{
    Cycle, Lease, LeaseId, Priority, ResourceName, TicketId, TicketView, Timestamp,
};
use elock_core::store::{EventSink, Store};
use elock_core::table::{
    Acquired, CancelReason, LeaseFilter, Op, Outcome, QueueSummary, ResourceInfo, Snapshot,
    TableConfig,
};

use crate::atlantis_watch;
use crate::atlantis_watch::AtlantisSync;
use crate::config::RedisConfig;
use crate::scripts::Script;
use crate::shard_map::ShardMap;
use crate::shards::{backend, decode, AcquireAnswer, Shards, TimeSource, RECHECK_INTERVAL};
use crate::spanning;
use crate::wire::{self, hex, WireEdge, WireLease, WireTicket};

/// The Redis store; cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct RedisStore {
    shards: Arc<Shards>,
}

impl RedisStore {
    /// Connects, and rebuilds what is derived from the records (as the embedded store does when
    /// it opens).
    pub async fn open(config: RedisConfig, table: TableConfig, time: TimeSource) -> Result<Self> {
        let shards = Shards::connect(config, table, time).await?;
        shards
            .each_shard(|k| shards.run(k, Script::Recover, &[]))
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Result<Vec<_>>>()?;
        if let Some(timeout) = shards.config.node_timeout {
            shards.heartbeat_once(timeout).await?;
            let _ = shards
                .heartbeat
                .set(spawn_heartbeat(Arc::downgrade(&shards), timeout));
        }
        if shards.config.keeps_atlantis_keys() {
            shards.sync_atlantis().await?;
            let watch = atlantis_watch::spawn_watch(
                Arc::downgrade(&shards),
                shards.config.clone(),
                shards.config.atlantis_poll,
            );
            let _ = shards.atlantis_watch.set(watch);
        } else if shards.config.atlantis_keys {
            tracing::warn!(
                "backward-compatibility.preserve-legacy-format is not available on Redis Cluster \
                 (Atlantis's keys live in other slots than the lock table): Atlantis's keys are \
                 neither written nor read"
            );
        }
        Ok(RedisStore { shards })
    }

    pub fn config(&self) -> &RedisConfig {
        &self.shards.config
    }

    /// Which shard holds what.
    pub fn shard_map(&self) -> ShardMap {
        self.shards.map
    }

    /// Tells every shard this server is alive, and cancels the attached tickets of servers
    /// whose heartbeat is older than `timeout` (the store does this every `timeout / 3` by
    /// itself). Returns how many tickets were cancelled.
    pub async fn heartbeat_once(&self, timeout: Duration) -> Result<u64> {
        self.shards.heartbeat_once(timeout).await
    }

    /// Reads Atlantis's keys now: releases the leases whose key Atlantis deleted or replaced,
    /// and adopts the locks Atlantis wrote itself (the watch does this on its own schedule).
    pub async fn sync_atlantis(&self) -> Result<AtlantisSync> {
        self.shards.sync_atlantis().await
    }

    /// Tests only: takes one part of a lease spanning `shards`, as a server that dies right
    /// after the first step of a round would leave it.
    #[cfg(feature = "testkit")]
    #[doc(hidden)]
    pub async fn take_one_part_for_tests(
        &self,
        req: &elock_core::table::AcquireRequest,
        shard: usize,
        shards: &[usize],
    ) -> Result<()> {
        self.shards
            .take_one_part_for_tests(req, shard, shards)
            .await
    }

    /// Tests only: releases the part of lease `id` on `shard` alone, as if it had expired first.
    #[cfg(feature = "testkit")]
    #[doc(hidden)]
    pub async fn release_one_part_for_tests(&self, id: LeaseId, shard: usize) -> Result<()> {
        self.shards.release_one_part_for_tests(id, shard).await
    }
}

/// Beats every third of `timeout` while the store lives; a missed beat (Redis unreachable) is
/// retried at the next.
fn spawn_heartbeat(
    shards: std::sync::Weak<Shards>,
    timeout: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(timeout / 3).await;
            let Some(shards) = shards.upgrade() else {
                return;
            };
            if let Err(e) = shards.heartbeat_once(timeout).await {
                tracing::warn!(error = %e, "heartbeat to Redis failed; retrying");
            }
        }
    })
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
        self.shards.sink.set(sink)
    }

    fn recheck_interval(&self) -> Option<Duration> {
        Some(RECHECK_INTERVAL)
    }

    fn new_ids(&self, resources: &[ResourceName]) -> (LeaseId, TicketId) {
        if self.shards.map.len() == 1 {
            return (LeaseId::random(), TicketId::random());
        }
        let home = self
            .shards
            .map
            .groups(resources)
            .first()
            .map_or(0, |(k, _)| *k);
        (
            LeaseId::from_bytes(self.shards.map.stamp(*LeaseId::random().as_bytes(), home)),
            TicketId::from_bytes(self.shards.map.stamp(*TicketId::random().as_bytes(), home)),
        )
    }

    async fn delivered(&self, lease: &Lease) -> Result<bool> {
        if self.shards.config.node_timeout.is_none() {
            return Ok(true);
        }
        // The handoff put the lease in this server's set, in the shard of the ticket (a queued
        // ticket lives in one shard, its resources'); if it is no longer there, another server
        // took this one for dead and released the lease.
        let Some(first) = lease.resources.first() else {
            return Ok(true);
        };
        let meta = &self.shards.meta_keys[self.shards.map.of_resource(first.resource.as_str())];
        let tag = meta.strip_suffix("meta").unwrap_or(meta);
        let removed: i64 = self
            .shards
            .conn
            .query(
                redis::cmd("SREM")
                    .arg(format!("{tag}nl:{}", self.shards.origin))
                    .arg(hex(lease.id.as_bytes())),
            )
            .await
            .map_err(backend)?;
        Ok(removed > 0)
    }

    async fn apply(&self, op: Op) -> Result<Outcome> {
        match op {
            Op::Acquire(req) => {
                let groups = self.shards.map.groups(&req.resources);
                if groups.len() > 1 {
                    return spanning::acquire(&self.shards, req, groups)
                        .await
                        .map(Outcome::Acquired);
                }
                let shard = groups.first().map_or(0, |(k, _)| *k);
                Ok(Outcome::Acquired(
                    match atlantis_watch::acquire_on(
                        &self.shards,
                        shard,
                        &req,
                        &req.resources,
                        None,
                    )
                    .await?
                    {
                        AcquireAnswer::Granted { lease, reentrant } => Acquired::Granted {
                            lease: lease.into_lease()?,
                            reentrant,
                        },
                        AcquireAnswer::Queued(ticket) => Acquired::Queued { ticket },
                        AcquireAnswer::AtlantisHeld(resource) => {
                            return Err(Error::Locked {
                                resource,
                                holder: None,
                            })
                        }
                    },
                ))
            }
            Op::Release(id) => {
                let (k, part) = self.shards.on_lease(Script::Release, id, &[]).await?;
                spanning::after_release(&self.shards, k, part)
                    .await
                    .map(Outcome::Lease)
            }
            Op::Renew { lease_id, ttl } => {
                let ttl = ttl.map_or(String::new(), |d| (d.as_millis() as u64).to_string());
                let (k, part) = self
                    .shards
                    .on_lease(Script::Renew, lease_id, std::slice::from_ref(&ttl))
                    .await?;
                spanning::after_renew(&self.shards, k, part, &ttl)
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
                for k in self.shards.search_order(ticket_id.as_bytes()) {
                    match self.shards.run(k, Script::Cancel, &args).await?.1 {
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
                let k = self.shards.map.of_resource(resource.as_str());
                let args = [resource.to_string(), reason];
                let (_, v) = self.shards.run(k, Script::ForceRelease, &args).await?;
                spanning::after_release(&self.shards, k, decode(v?)?)
                    .await
                    .map(Outcome::Lease)
            }
            Op::ExpireDue => {
                let all = self
                    .shards
                    .each_shard(|k| async move {
                        let (_, v) = self.shards.run(k, Script::ExpireDue, &[]).await?;
                        wire::lua_vec::<_, WireLease>(v?).map_err(wire::corrupt)
                    })
                    .await?;
                let mut leases = all
                    .into_iter()
                    .flatten()
                    .map(WireLease::into_lease)
                    .collect::<Result<Vec<_>>>()?;
                leases.sort_by_key(|l| (l.expires_at, l.id));
                if self.shards.map.len() > 1 {
                    spanning::sweep(&self.shards).await?;
                }
                Ok(Outcome::Leases(leases))
            }
            Op::ResolveDeadlocks(policy) => {
                let name = serde_json::to_value(policy).map_err(wire::corrupt)?;
                let name = name.as_str().unwrap_or("lowest_priority").to_string();
                let all = self
                    .shards
                    .each_shard(|k| {
                        let name = name.clone();
                        async move {
                            let (_, v) = self
                                .shards
                                .run(k, Script::ResolveDeadlocks, &[name])
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
                if self.shards.map.len() > 1 {
                    records.extend(crate::deadlocks::resolve_across(&self.shards, policy).await?);
                }
                Ok(Outcome::Deadlocks(records))
            }
            Op::Import(snapshot) => {
                // The same rules as the lock table's import, before anything is written.
                let config = self
                    .shards
                    .table
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                snapshot.validate(&config, self.shards.shard_now(0).await?)?;
                spanning::import(&self.shards, *snapshot)
                    .await
                    .map(Outcome::Imported)
            }
        }
    }

    async fn get_lease(&self, id: LeaseId) -> Result<Option<Lease>> {
        let Some((_, part)) = self
            .shards
            .find_lease(&hex(id.as_bytes()), id.as_bytes())
            .await?
        else {
            return Ok(None);
        };
        spanning::whole(&self.shards, part).await.map(Some)
    }

    async fn get_ticket(&self, id: TicketId) -> Result<Option<TicketView>> {
        let hex_id = hex(id.as_bytes());
        for k in self.shards.search_order(id.as_bytes()) {
            let (_, v) = self.shards.view(k, "ticket", &hex_id).await?;
            if !matches!(v, Value::Bool(false) | Value::Null) {
                return Ok(Some(decode::<wire::WireView>(v)?.into_view()?));
            }
        }
        Ok(None)
    }

    async fn list(&self, filter: LeaseFilter) -> Result<Vec<Lease>> {
        let now = self.now().await?;
        Ok(self
            .shards
            .leases()
            .await?
            .into_iter()
            .filter(|l| filter.matches(l, now))
            .map(|l| with_state_at(l, now))
            .collect())
    }

    async fn resource(&self, resource: ResourceName) -> Result<ResourceInfo> {
        let k = self.shards.map.of_resource(resource.as_str());
        let (_, v) = self.shards.view(k, "resource", resource.as_str()).await?;
        let w: wire::WireResource = decode(v)?;
        let holder = match w.holder {
            Some(part) if part.sh.is_some() => Some(spanning::whole(&self.shards, part).await?),
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
            .shards
            .each_shard(|k| async move {
                let (now, v) = self.shards.view(k, "queues", "").await?;
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
        if self.shards.map.len() > 1 {
            return crate::deadlocks::find_across(&self.shards).await;
        }
        let (_, v) = self.shards.view(0, "deadlocks", "").await?;
        let cycles: Vec<Vec<WireEdge>> = wire::lua_vec(v).map_err(wire::corrupt)?;
        cycles.into_iter().map(wire::cycle).collect()
    }

    async fn next_deadline(&self) -> Result<Option<Timestamp>> {
        let all = self
            .shards
            .each_shard(|k| async move {
                let (_, v) = self.shards.view(k, "next_deadline", "").await?;
                Ok(v.as_u64().map(Timestamp::from_millis))
            })
            .await?;
        Ok(all.into_iter().flatten().min())
    }

    async fn now(&self) -> Result<Timestamp> {
        self.shards.shard_now(0).await
    }

    async fn backend_gauges(&self) -> Result<Vec<(&'static str, i64)>> {
        let info: String = self
            .shards
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
        let per_node = if self.shards.config.cluster_mode {
            self.shards.config.addresses.len() as i64
        } else {
            1
        };
        Ok(vec![
            ("redis_memory_used_bytes", used),
            ("redis_pool_active_connections", 2 * per_node),
            (
                "redis_pool_max_connections",
                self.shards.config.pool_size as i64,
            ),
        ])
    }

    async fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        let _: String = self
            .shards
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
        *self.shards.table.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let leases = self.shards.leases().await?;
        let mut tickets = self
            .shards
            .pages::<WireTicket>("tickets_page")
            .await?
            .into_iter()
            .map(WireTicket::into_ticket)
            .collect::<Result<Vec<_>>>()?;
        tickets.sort_by_key(|t| (t.seq, t.id));
        let mut fences = self
            .shards
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
