//! Leases whose resources live in several shards (`redis.shards` > 1).
//!
//! One Lua script can only touch one Cluster slot, so such a lease is one *part* per shard, all
//! with the same id, each listing the lease's shards and resources. The method:
//!
//! - **Acquire** takes the parts one script at a time in ascending shard order, each a try-lock
//!   of that shard's resources. If one is refused, the parts already taken are given back
//!   (released, in reverse order) and the request gets the refusal. Nothing is held while
//!   waiting: a request that may wait tries again whenever events arrive, and at least every
//!   second, until its deadline. The rounds run on their own task, so a caller that goes away
//!   never leaves a part behind: the round finishes and gives back what it took.
//! - **Release, renew, force-release** act on the part they reach first, then on the others.
//! - **The sweep.** Should a server die in the middle of a round, its parts have no siblings.
//!   Every reaper pass (at most a second apart, on every server) looks at the parts older than
//!   [`SWEEP_GRACE`] and releases those whose siblings are gone, so a partial hold ends at most
//!   [`SWEEP_GRACE`] plus a second after its request did.
//!
//! What this gives up, compared with a request inside one shard (docs/redis.md): the request
//! has no place in the queues (priority and aging do not apply to it, and a busy queue can keep
//! it waiting until its deadline), it cannot be a detached ticket, and each part reports its own
//! `lock.*` events.

use std::time::Duration;

use serde_json::Value;

use elock_core::error::{Error, Result};
use elock_core::model::{Lease, ResourceName, Timestamp};
use elock_core::table::{AcquireRequest, Acquired, ImportReport, Snapshot, WaitMode};

use std::sync::Arc;

use crate::atlantis_watch::acquire_on;
use crate::parts::{distinct, merge};
use crate::scripts::Script;
use crate::shards::{decode, AcquireAnswer, Shards, RECHECK_INTERVAL};
use crate::wire::{self, hex, WireLease, WireTicket};

/// How old a part must be before the sweep may decide its siblings are gone for good (far
/// longer than any round takes).
pub const SWEEP_GRACE: Duration = Duration::from_secs(10);

pub(crate) async fn acquire(
    shards: &Arc<Shards>,
    req: AcquireRequest,
    groups: Vec<(usize, Vec<ResourceName>)>,
) -> Result<Acquired> {
    if distinct(&req.resources).len() > elock_core::table::MAX_RESOURCES_PER_REQUEST {
        // The whole request to one shard, which refuses it exactly as the table does.
        return match acquire_on(shards, 0, &req, &req.resources, None).await? {
            AcquireAnswer::Granted { .. }
            | AcquireAnswer::Queued(_)
            | AcquireAnswer::AtlantisHeld(_) => Err(wire::corrupt(
                "a request above the resource limit was not refused",
            )),
        };
    }
    let deadline = match req.wait {
        WaitMode::Try => None,
        WaitMode::Queue { detached: true, .. } => {
            return Err(Error::invalid(
                "resources",
                format!(
                    "{} live in {} different shards ({}); a detached ticket needs all its \
                     resources in one shard: give them a common {{hash tag}} in their names, \
                     or wait attached",
                    names(&req.resources),
                    groups.len(),
                    groups
                        .iter()
                        .map(|(k, _)| k.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
        WaitMode::Queue { deadline, .. } => Some(deadline),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let shards = shards.clone();
    tokio::spawn(async move {
        let start = now(&shards).await.unwrap_or(Timestamp::from_millis(0));
        let result = loop {
            let changed = shards.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let round = round(&shards, &req, &groups).await;
            let Some(deadline) = deadline else {
                break round;
            };
            if !matches!(round, Err(Error::Locked { .. })) || tx.is_closed() {
                break round;
            }
            let at = match now(&shards).await {
                Ok(t) => t,
                Err(e) => break Err(e),
            };
            let deadline = deadline.unwrap_or(Timestamp::from_millis(u64::MAX));
            if at >= deadline {
                break Err(Error::WaitTimeout {
                    waited: at.since(start),
                    reason: "timeout".into(),
                });
            }
            let left = deadline.since(at).min(RECHECK_INTERVAL);
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(left) => {}
            }
        };
        if let Err(Ok(Acquired::Granted {
            lease,
            reentrant: false,
        })) = tx.send(result)
        {
            // The caller went away after the grant: give the lease back.
            if let Err(e) = release_everywhere(&shards, &lease).await {
                tracing::warn!(lease = %lease.id, error = %e, "could not give back a lease whose caller went away; the sweep or its expiry will");
            }
        }
    });
    rx.await
        .map_err(|_| Error::Internal("the acquire task stopped without an answer".into()))?
}

async fn now(shards: &Shards) -> Result<Timestamp> {
    shards.shard_now(0).await
}

fn names(resources: &[ResourceName]) -> String {
    distinct(resources)
        .iter()
        .map(|r| format!("{:?}", r.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One try at every part, in ascending shard order; what was taken is given back on refusal.
async fn round(
    shards: &Shards,
    req: &AcquireRequest,
    groups: &[(usize, Vec<ResourceName>)],
) -> Result<Acquired> {
    let involved: Vec<usize> = groups.iter().map(|(k, _)| *k).collect();
    let mut try_req = req.clone();
    try_req.wait = WaitMode::Try;
    let mut taken: Vec<(usize, WireLease, bool)> = Vec::new();
    for (k, resources) in groups {
        match acquire_on(shards, *k, &try_req, resources, Some(&involved)).await {
            Ok(AcquireAnswer::Granted { lease, reentrant }) => taken.push((*k, lease, reentrant)),
            Ok(AcquireAnswer::Queued(_) | AcquireAnswer::AtlantisHeld(_)) => {
                give_back(shards, &taken).await;
                return Err(wire::corrupt("a part of a lease was queued"));
            }
            Err(e) => {
                give_back(shards, &taken).await;
                return Err(e);
            }
        }
    }
    let reentrant: Vec<&(usize, WireLease, bool)> = taken.iter().filter(|t| t.2).collect();
    if reentrant.is_empty() {
        let lease = merge(taken.into_iter().map(|t| t.1).collect())?;
        return Ok(Acquired::Granted {
            lease,
            reentrant: false,
        });
    }
    let same = reentrant.len() == taken.len() && taken.iter().all(|t| t.1.id == taken[0].1.id);
    if same {
        let lease = merge(taken.into_iter().map(|t| t.1).collect())?;
        return Ok(Acquired::Granted {
            lease,
            reentrant: true,
        });
    }
    // The owner holds some of these resources, but not all of them in one lease: as in one
    // shard, that is a refusal naming the owner's own lease.
    let holder = reentrant[0].1.clone();
    let resource = ResourceName::new(&holder.res[0].0).map_err(wire::corrupt)?;
    give_back(shards, &taken).await;
    Err(Error::Locked {
        resource,
        holder: Some(Box::new(whole(shards, holder).await?)),
    })
}

/// Releases the parts a round took itself (not the re-entered ones), newest first. A part that
/// cannot be released now is left to the sweep.
async fn give_back(shards: &Shards, taken: &[(usize, WireLease, bool)]) {
    for (k, part, reentrant) in taken.iter().rev() {
        if *reentrant {
            continue;
        }
        if let Err(e) = release_part(shards, *k, &part.id).await {
            tracing::warn!(lease = %part.id, shard = k, error = %e, "could not give back part of a lease; the sweep will");
        }
    }
}

async fn release_part(shards: &Shards, shard: usize, id: &str) -> Result<Option<WireLease>> {
    match shards
        .run(shard, Script::Release, &[id.to_string()])
        .await?
        .1
    {
        Ok(v) => Ok(Some(decode(v)?)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn release_everywhere(shards: &Shards, lease: &Lease) -> Result<()> {
    let id = hex(lease.id.as_bytes());
    let mut involved: Vec<usize> = lease
        .resources
        .iter()
        .map(|h| shards.map.of_resource(h.resource.as_str()))
        .collect();
    involved.sort_unstable();
    involved.dedup();
    for k in involved {
        release_part(shards, k, &id).await?;
    }
    Ok(())
}

/// The whole lease a part belongs to: its siblings read from their shards (those still there).
pub(crate) async fn whole(shards: &Shards, part: WireLease) -> Result<Lease> {
    let Some(siblings) = part.sh.clone() else {
        return part.into_lease();
    };
    let mut parts = Vec::with_capacity(siblings.len());
    for k in siblings {
        let (_, v) = shards.view(k, "lease", &part.id).await?;
        if !matches!(v, Value::Bool(false) | Value::Null) {
            parts.push(decode::<WireLease>(v)?);
        }
    }
    if parts.is_empty() {
        parts.push(part);
    }
    merge(parts)
}

/// After one part was released (or force-released) on `shard`: release its siblings, and answer
/// the whole lease.
pub(crate) async fn after_release(shards: &Shards, shard: usize, part: WireLease) -> Result<Lease> {
    let Some(siblings) = part.sh.clone() else {
        return part.into_lease();
    };
    let mut parts = vec![part];
    for k in siblings.into_iter().filter(|k| *k != shard) {
        if let Some(p) = release_part(shards, k, &parts[0].id).await? {
            parts.push(p);
        }
    }
    merge(parts)
}

/// After one part was renewed on `shard`: renew its siblings. If a sibling is gone (expired),
/// the lease is broken: the remaining parts are released and the renewal fails.
pub(crate) async fn after_renew(
    shards: &Shards,
    shard: usize,
    part: WireLease,
    ttl: &str,
) -> Result<Lease> {
    let Some(siblings) = part.sh.clone() else {
        return part.into_lease();
    };
    let id = part.id.clone();
    let mut parts = vec![part];
    for k in siblings.iter().copied().filter(|k| *k != shard) {
        match shards
            .run(k, Script::Renew, &[id.clone(), ttl.to_string()])
            .await?
            .1
        {
            Ok(v) => parts.push(decode(v)?),
            Err(e) => {
                for k in siblings.iter().copied() {
                    release_part(shards, k, &id).await?;
                }
                return Err(e);
            }
        }
    }
    merge(parts)
}

/// Releases parts whose siblings are gone (their request's server died mid-round, or a sibling
/// expired first). Run by every reaper pass.
pub(crate) async fn sweep(shards: &Shards) -> Result<usize> {
    let mut swept = 0;
    for k in 0..shards.map.len() {
        let at = shards.shard_now(k).await?;
        let before = at
            .as_millis()
            .saturating_sub(SWEEP_GRACE.as_millis() as u64);
        let (_, v) = shards.view(k, "parts", &before.to_string()).await?;
        let ids: Vec<String> = wire::lua_vec(v).map_err(wire::corrupt)?;
        for id in ids {
            let (_, v) = shards.view(k, "lease", &id).await?;
            if matches!(v, Value::Bool(false) | Value::Null) {
                continue;
            }
            let part: WireLease = decode(v)?;
            let mut complete = true;
            for s in part.sh.clone().unwrap_or_default() {
                if s != k {
                    let (_, v) = shards.view(s, "lease", &id).await?;
                    complete &= !matches!(v, Value::Bool(false) | Value::Null);
                }
            }
            if !complete {
                tracing::warn!(lease = %id, shard = k, "releasing part of a lease whose other parts are gone");
                release_part(shards, k, &id).await?;
                swept += 1;
            }
        }
    }
    Ok(swept)
}

/// Imports a snapshot shard by shard: each lease as one part per shard it spans, each ticket and
/// fencing counter into its resources' shard. A ticket spanning shards cannot be queued (see the
/// module notes) and is reported as skipped.
pub(crate) async fn import(shards: &Shards, mut s: Snapshot) -> Result<ImportReport> {
    s.leases.sort_by_key(|l| (l.acquired_at, l.id));
    s.tickets.sort_by_key(|t| t.seq);
    let n = shards.map.len();
    if n == 1 {
        let body = serde_json::json!({
            "fences": s.fences.iter().map(|(r, t)| (r.as_str(), t)).collect::<Vec<_>>(),
            "leases": s.leases.iter().map(|l| shards.import_lease(l)).collect::<Result<Vec<_>>>()?,
            "tickets": s.tickets.iter().map(|t| shards.import_ticket(t)).collect::<Result<Vec<_>>>()?,
        });
        let (_, v) = shards.run(0, Script::Import, &[body.to_string()]).await?;
        return decode::<wire::WireReport>(v?)?.into_report();
    }
    let mut fences = vec![Vec::new(); n];
    let mut leases = vec![Vec::new(); n];
    let mut tickets = vec![Vec::new(); n];
    let mut report = ImportReport::default();
    for (r, t) in &s.fences {
        fences[shards.map.of_resource(r.as_str())].push((r.as_str().to_string(), *t));
    }
    for l in &s.leases {
        let names: Vec<ResourceName> = l.resources.iter().map(|h| h.resource.clone()).collect();
        let groups = shards.map.groups(&names);
        let shards: Vec<usize> = groups.iter().map(|(k, _)| *k).collect();
        for (k, group) in &groups {
            let mut part = WireLease::from_lease(l);
            if groups.len() > 1 {
                part.res
                    .retain(|(r, _)| group.iter().any(|g| g.as_str() == r));
                part.sh = Some(shards.clone());
                part.all = Some(names.iter().map(|r| r.to_string()).collect());
            }
            leases[*k].push(part);
        }
    }
    for t in &s.tickets {
        let groups = shards.map.groups(&t.resources);
        if groups.len() > 1 {
            report.skipped.push(elock_core::table::Skipped {
                id: t.id.to_string(),
                reason: "its resources live in different shards, and a ticket must live in one"
                    .into(),
            });
            continue;
        }
        tickets[groups[0].0].push(WireTicket::from_ticket(t));
    }
    let mut counted = std::collections::HashSet::new();
    for k in 0..n {
        if fences[k].is_empty() && leases[k].is_empty() && tickets[k].is_empty() {
            continue;
        }
        let body = serde_json::json!({
            "fences": fences[k],
            "leases": leases[k],
            "tickets": tickets[k],
        });
        let (_, v) = shards.run(k, Script::Import, &[body.to_string()]).await?;
        let part = decode::<wire::WireReport>(v?)?.into_report()?;
        report.tickets += part.tickets;
        for skipped in part.skipped {
            if !report.skipped.iter().any(|x| x.id == skipped.id) {
                report.skipped.push(skipped);
            }
        }
        for l in &leases[k] {
            counted.insert(l.id.clone());
        }
    }
    // A lease counts once, and only if no part of it was skipped.
    report.leases = counted
        .iter()
        .filter(|id| {
            let lid = wire::lease_id(id)
                .map(|l| l.to_string())
                .unwrap_or_default();
            !report.skipped.iter().any(|x| x.id == lid || &x.id == *id)
        })
        .count();
    Ok(report)
}

#[cfg(feature = "testkit")]
impl Shards {
    /// Tests only: takes one part of a lease spanning `shards`, as a server that dies right
    /// after the first step of a round would leave it.
    #[doc(hidden)]
    pub async fn take_one_part_for_tests(
        &self,
        req: &AcquireRequest,
        shard: usize,
        shards: &[usize],
    ) -> Result<()> {
        let mine: Vec<ResourceName> = req
            .resources
            .iter()
            .filter(|r| self.map.of_resource(r.as_str()) == shard)
            .cloned()
            .collect();
        match acquire_on(self, shard, req, &mine, Some(shards)).await? {
            AcquireAnswer::Granted { .. } => Ok(()),
            AcquireAnswer::Queued(_) | AcquireAnswer::AtlantisHeld(_) => {
                Err(wire::corrupt("queued"))
            }
        }
    }

    /// Tests only: releases the part of lease `id` on `shard` alone, as if it had expired first.
    #[doc(hidden)]
    pub async fn release_one_part_for_tests(
        &self,
        id: elock_core::model::LeaseId,
        shard: usize,
    ) -> Result<()> {
        release_part(self, shard, &hex(id.as_bytes()))
            .await
            .map(|_| ())
    }
}
