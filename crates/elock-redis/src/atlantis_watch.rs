//! Atlantis's own keys beside elock's (`backward-compatibility.preserve-legacy-format`, docs/atlantis.md),
//! so that an unmodified Atlantis sharing the Redis and elock see the same locks.
//!
//! - **Mirror.** A lease of one resource that carries Atlantis's lock (`metadata.atlantis`, as
//!   the adapter and the imports write it), and any lease of `global/apply/lock`, keeps
//!   Atlantis's JSON at Atlantis's key (`pr/{resource}`, `global/apply/lock`) while it lasts.
//!   The scripts write and delete the key in the same step as the grant and the release
//!   (`scripts/lib.lua`), so Atlantis never sees a lock elock does not hold, nor the reverse.
//! - **Adoption.** A lock Atlantis wrote itself is Atlantis's: no script grants that resource.
//!   An acquire that meets one, and the watch below, adopt it as a lease without expiry, owned
//!   by `{repo}#{pull}` (the apply lock by `atlantis`), with the lock in `metadata.atlantis`
//!   (its clone URL's credentials removed), so it is listed, queued behind and unlocked through
//!   elock like any other.
//! - **Watch.** When Atlantis deletes (or replaces) a key that a lease mirrors or adopted, the
//!   lease is force-released and its queue handed off. The watch hears Atlantis's writes through
//!   keyspace notifications when the server sends them (`notify-keyspace-events` with `K` and
//!   `g` or `A`), and in any case checks the mirrored leases every `poll` (200 per script) and
//!   scans for Atlantis's keys to adopt every `SCAN_EVERY` polls.
//!
//! Reads avoid Atlantis's own Redis bugs: the scan matches `pr/*` (not `pr*`), keys are read one
//! by one by their exact names, and nothing here runs on a Cluster, where Atlantis's keys live in
//! other slots than the lock table's and no script could write both (docs/atlantis.md).

use std::sync::{Arc, Weak};
use std::time::Duration;

use elock_atlantis::APPLY_LOCK_RESOURCE;
use elock_core::error::{Error, Result};
use elock_core::model::{LeaseId, ResourceName};
use elock_core::table::AcquireRequest;
use redis::{PushInfo, PushKind};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::atlantis_format;
use crate::config::RedisConfig;
use crate::scripts::Script;
use crate::shards::{backend, decode, AcquireAnswer, Shards};
use crate::wire::{self, hex, lua_vec, WireLease};

impl Shards {
    async fn atlantis_keys(&self, op: &str, arg: String) -> Result<Value> {
        let (_, v) = self
            .run(0, Script::AtlantisKeys, &[op.to_string(), arg])
            .await?;
        v
    }

    /// Makes the lock Atlantis keeps for `resource` a lease, if elock does not hold `resource`.
    pub(crate) async fn adopt(&self, resource: &str) -> Result<()> {
        let value: Option<Vec<u8>> = self
            .conn
            .query(redis::cmd("GET").arg(atlantis_format::atlantis_key(resource)))
            .await
            .map_err(backend)?;
        let Some(value) = value else {
            return Ok(()); // Deleted meanwhile: nothing to adopt.
        };
        let (owner, meta) = atlantis_format::adoption(resource, &value);
        let answer = self
            .atlantis_keys(
                "adopt",
                json!({
                    "res": resource,
                    "value": String::from_utf8_lossy(&value),
                    "lid": hex(LeaseId::random().as_bytes()),
                    "owner": owner.as_str(),
                    "meta": meta.to_string(),
                })
                .to_string(),
            )
            .await?;
        if answer.is_object() {
            tracing::info!(resource, owner = %owner, "adopted a lock Atlantis wrote in its own key");
        }
        Ok(())
    }

    /// One pass of the watch: mirrored leases whose Atlantis key went away are released (and
    /// their queues handed off), and Atlantis's keys without a lease are adopted. Answers how
    /// many of each.
    pub async fn sync_atlantis(&self) -> Result<AtlantisSync> {
        let mut report = self.check_atlantis().await?;
        report.adopted = self.adopt_all().await?;
        Ok(report)
    }

    /// The mirrored leases whose Atlantis key went away are released and handed off (bounded by
    /// the leases Atlantis's keys stand for, not by the size of the database).
    async fn check_atlantis(&self) -> Result<AtlantisSync> {
        let mut report = AtlantisSync::default();
        let mut cursor = String::new();
        loop {
            #[derive(Deserialize)]
            struct Checked {
                #[serde(deserialize_with = "lua_vec")]
                released: Vec<WireLease>,
                next: Value,
            }
            let c: Checked = decode(self.atlantis_keys("check", cursor.clone()).await?)?;
            report.released += c.released.len();
            match c.next {
                Value::String(next) => cursor = next,
                _ => return Ok(report),
            }
        }
    }

    /// Adopts every Atlantis key without a lease: a SCAN of the whole database, so the watch
    /// runs it less often than the check (see `spawn_watch`). Answers how many were looked at.
    async fn adopt_all(&self) -> Result<usize> {
        let mut adopted = 0;
        let mut scan_cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .conn
                .query(
                    redis::cmd("SCAN")
                        .arg(scan_cursor)
                        .arg("MATCH")
                        .arg("pr/*")
                        .arg("COUNT")
                        .arg(1000),
                )
                .await
                .map_err(backend)?;
            let mut resources: Vec<String> = keys
                .iter()
                .filter_map(|k| k.strip_prefix("pr/").map(str::to_string))
                .collect();
            if scan_cursor == 0 {
                resources.push(APPLY_LOCK_RESOURCE.to_string());
            }
            if !resources.is_empty() {
                let unheld: Vec<String> = lua_vec(
                    self.atlantis_keys("unheld", json!(resources).to_string())
                        .await?,
                )
                .map_err(wire::corrupt)?;
                for r in unheld {
                    if ResourceName::new(&r).is_ok() {
                        self.adopt(&r).await?;
                        adopted += 1;
                    }
                }
            }
            scan_cursor = next;
            if scan_cursor == 0 {
                return Ok(adopted);
            }
        }
    }
}

/// What one pass of the watch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AtlantisSync {
    /// Leases released because Atlantis deleted or replaced their key.
    pub released: usize,
    /// Atlantis keys looked at for adoption (adopted unless deleted or taken meanwhile).
    pub adopted: usize,
}

/// How many polls pass between two scans for Atlantis keys to adopt (an acquire that meets one
/// adopts it at once, and so does a keyspace notification).
pub const SCAN_EVERY: u32 = 10;

/// Runs the watch until the store is dropped: the check every `poll`, the scan for locks to
/// adopt every `SCAN_EVERY` polls, and both as soon as a keyspace notification says Atlantis
/// touched one of its keys.
pub(crate) fn spawn_watch(
    core: Weak<Shards>,
    config: RedisConfig,
    poll: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let touched = Arc::new(Notify::new());
        let _notes = spawn_notifications(config, touched.clone());
        let mut polls = 0u32;
        loop {
            let scan = tokio::select! {
                _ = tokio::time::sleep(poll) => {
                    polls += 1;
                    polls.is_multiple_of(SCAN_EVERY)
                }
                _ = touched.notified() => true,
            };
            let Some(core) = core.upgrade() else {
                return;
            };
            let pass = if scan {
                core.sync_atlantis().await
            } else {
                core.check_atlantis().await
            };
            if let Err(e) = pass {
                tracing::warn!(error = %e, "checking Atlantis's keys failed; trying again");
            }
        }
    })
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Subscribes to keyspace notifications for Atlantis's keys, if the server sends them.
fn spawn_notifications(config: RedisConfig, touched: Arc<Notify>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let (tx, mut rx) = mpsc::unbounded_channel::<PushInfo>();
        let _conn = match subscribe(&config, tx).await {
            Ok(Some(conn)) => conn,
            Ok(None) => {
                tracing::info!(
                    "Redis does not send keyspace notifications (notify-keyspace-events): \
                     Atlantis's deletions are noticed by polling"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to keyspace notifications; polling");
                return;
            }
        };
        while let Some(push) = rx.recv().await {
            if matches!(push.kind, PushKind::PMessage | PushKind::Message) {
                touched.notify_one();
            }
        }
    }))
}

async fn subscribe(
    config: &RedisConfig,
    tx: mpsc::UnboundedSender<PushInfo>,
) -> redis::RedisResult<Option<redis::aio::ConnectionManager>> {
    let mut conn = crate::listener::push_connection(config, tx).await?;
    let flags: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    let flags = flags
        .get("notify-keyspace-events")
        .cloned()
        .unwrap_or_default();
    if !(flags.contains('K') && (flags.contains('g') || flags.contains('A'))) {
        return Ok(None);
    }
    let db = config.db;
    conn.psubscribe(format!("__keyspace@{db}__:pr/*")).await?;
    conn.subscribe(format!("__keyspace@{db}__:{APPLY_LOCK_RESOURCE}"))
        .await?;
    Ok(Some(conn))
}

/// One acquire script on one shard (`Shards::acquire_on`), adopting first a lock Atlantis wrote
/// itself on the resource (a few times, as Atlantis may be writing and deleting meanwhile); a
/// resource Atlantis still holds after that is refused as `locked`.
pub(crate) async fn acquire_on(
    shards: &Shards,
    shard: usize,
    req: &AcquireRequest,
    resources: &[ResourceName],
    part_of: Option<&[usize]>,
) -> Result<AcquireAnswer> {
    let mut answer = shards.acquire_on(shard, req, resources, part_of).await?;
    for _ in 0..3 {
        let AcquireAnswer::AtlantisHeld(r) = &answer else {
            return Ok(answer);
        };
        shards.adopt(r.as_str()).await?;
        answer = shards.acquire_on(shard, req, resources, part_of).await?;
    }
    match answer {
        AcquireAnswer::AtlantisHeld(resource) => Err(Error::Locked {
            resource,
            holder: None,
        }),
        other => Ok(other),
    }
}
