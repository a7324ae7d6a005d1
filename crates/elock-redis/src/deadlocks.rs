//! Deadlocks whose cycle crosses shards (`redis.shards` > 1).
//!
//! Inside a shard, the Lua table prevents and resolves deadlocks exactly as elock-core's table
//! does. A cycle through several shards is invisible to any one script: each shard reports the
//! wait-for edges of its waiting owners (view `edges`), and the search runs here, over their
//! union, the same depth-first search as `find_deadlocks` in lib.lua. Resolution cancels one
//! ticket of each cycle with the configured policy; a ticket's age is its enqueue time (queue
//! sequence numbers are per shard, so they do not compare across shards).

use std::collections::{BTreeMap, HashMap, HashSet};

use elock_core::error::Result;
use elock_core::model::Cycle;
use elock_core::table::{DeadlockRecord, ResolutionPolicy};

use crate::store::{decode, Core};
use crate::wire::{self, WireEdge, WireRecord, WireView};

/// Every waiting owner's edges, all shards together, owners in name order.
async fn graph(core: &Core) -> Result<BTreeMap<String, Vec<WireEdge>>> {
    let all = core
        .each_shard(|k| async move {
            let (_, v) = core.view(k, "edges", "").await?;
            wire::lua_vec::<_, (String, serde_json::Value)>(v).map_err(wire::corrupt)
        })
        .await?;
    let mut g: BTreeMap<String, Vec<WireEdge>> = BTreeMap::new();
    for (owner, edges) in all.into_iter().flatten() {
        let edges: Vec<WireEdge> = wire::lua_vec(edges).map_err(wire::corrupt)?;
        g.entry(owner).or_default().extend(edges);
    }
    Ok(g)
}

/// Every cycle of the graph, each owner in at most one.
fn cycles(g: &BTreeMap<String, Vec<WireEdge>>) -> Vec<Vec<WireEdge>> {
    let none = Vec::new();
    let edges = |o: &str| g.get(o).unwrap_or(&none);
    let mut done: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for start in g.keys() {
        if done.contains(start) {
            continue;
        }
        // (owner, its edges, how many tried)
        let mut path: Vec<(String, usize)> = vec![(start.clone(), 0)];
        let mut on_path: HashSet<String> = HashSet::from([start.clone()]);
        while let Some((owner, tried)) = path.last().cloned() {
            let out_edges = edges(&owner);
            if tried >= out_edges.len() {
                on_path.remove(&owner);
                done.insert(owner);
                path.pop();
                continue;
            }
            path.last_mut().expect("not empty").1 += 1;
            let e = &out_edges[tried];
            if on_path.contains(&e.blocker) {
                let from = path
                    .iter()
                    .position(|(o, _)| *o == e.blocker)
                    .expect("on the path");
                let cycle = path[from..]
                    .iter()
                    .map(|(o, n)| edges(o)[n - 1].clone())
                    .collect();
                out.push(cycle);
                for (o, _) in &path {
                    done.insert(o.clone());
                }
                break;
            }
            if !done.contains(&e.blocker) {
                on_path.insert(e.blocker.clone());
                path.push((e.blocker.clone(), 0));
            }
        }
    }
    out
}

pub(crate) async fn find_across(core: &Core) -> Result<Vec<Cycle>> {
    cycles(&graph(core).await?)
        .into_iter()
        .map(wire::cycle)
        .collect()
}

/// Resolves the cycles left after every shard resolved its own: one victim per cycle.
pub(crate) async fn resolve_across(
    core: &Core,
    policy: ResolutionPolicy,
) -> Result<Vec<DeadlockRecord>> {
    let mut records = Vec::new();
    // Each round cancels a ticket, so this ends; the bound only guards against a bug.
    for _ in 0..1000 {
        let Some(cycle) = cycles(&graph(core).await?).into_iter().next() else {
            break;
        };
        let mut candidates = Vec::with_capacity(cycle.len());
        for e in &cycle {
            let k = core.shards.of_resource(&e.resource);
            let (_, v) = core.view(k, "ticket", &e.ticket_id).await?;
            candidates.push((e.clone(), k, decode::<WireView>(v)?));
        }
        let held = if policy == ResolutionPolicy::FewestLocks {
            held_counts(core).await?
        } else {
            HashMap::new()
        };
        let victim = choose(policy, &candidates, &held);
        let (edge, shard, _) = &candidates[victim];
        let cycle_json = serde_json::to_string(&cycle).map_err(wire::corrupt)?;
        let args = [
            edge.ticket_id.clone(),
            "deadlock".to_string(),
            cycle_json,
            "1".to_string(),
        ];
        let (now, v) = core.run(*shard, &core.scripts.cancel, &args).await?;
        v?;
        records.push(
            WireRecord {
                detected_at: now.as_millis(),
                cycle: cycle.clone(),
                victim: edge.waiter.clone(),
                victim_ticket: edge.ticket_id.clone(),
            }
            .into_record(policy)?,
        );
    }
    Ok(records)
}

/// Resources held per owner, every shard together.
async fn held_counts(core: &Core) -> Result<HashMap<String, usize>> {
    let mut out = HashMap::new();
    for l in core
        .pages::<wire::WireLease>("leases_page")
        .await?
        .into_iter()
    {
        *out.entry(l.owner).or_insert(0) += l.res.len();
    }
    Ok(out)
}

/// The index of the victim: the same keys as the table's choice, with the enqueue time (then
/// the ticket id) standing for the queue sequence.
fn choose(
    policy: ResolutionPolicy,
    c: &[(WireEdge, usize, WireView)],
    held: &HashMap<String, usize>,
) -> usize {
    let younger = |a: &WireView, b: &WireView| (a.at, &a.id) > (b.at, &b.id);
    let better = |a: &(WireEdge, usize, WireView), b: &(WireEdge, usize, WireView)| {
        let (ta, tb) = (&a.2, &b.2);
        match policy {
            ResolutionPolicy::Youngest => younger(ta, tb),
            ResolutionPolicy::Oldest => younger(tb, ta),
            ResolutionPolicy::FewestLocks => {
                let ha = held.get(&a.0.waiter).copied().unwrap_or(0);
                let hb = held.get(&b.0.waiter).copied().unwrap_or(0);
                ha < hb || (ha == hb && younger(ta, tb))
            }
            ResolutionPolicy::LowestPriority => {
                ta.pri < tb.pri || (ta.pri == tb.pri && younger(ta, tb))
            }
        }
    };
    let mut best = 0;
    for i in 1..c.len() {
        if better(&c[i], &c[best]) {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(waiter: &str, blocker: &str) -> WireEdge {
        WireEdge {
            waiter: waiter.into(),
            ticket_id: format!("{:0>32}", waiter.len()),
            resource: format!("r-{waiter}"),
            blocker: blocker.into(),
        }
    }

    #[test]
    fn finds_a_cycle_through_owners_of_different_shards() {
        let mut g = BTreeMap::new();
        g.insert("a".to_string(), vec![e("a", "b")]);
        g.insert("b".to_string(), vec![e("b", "x"), e("b", "c")]);
        g.insert("c".to_string(), vec![e("c", "a")]);
        g.insert("d".to_string(), vec![e("d", "a")]);
        let found = cycles(&g);
        assert_eq!(found.len(), 1);
        let waiters: Vec<&str> = found[0].iter().map(|e| e.waiter.as_str()).collect();
        assert_eq!(waiters, ["a", "b", "c"]);
        assert_eq!(found[0][1].blocker, "c");
    }

    #[test]
    fn no_cycle_in_a_chain() {
        let mut g = BTreeMap::new();
        g.insert("a".to_string(), vec![e("a", "b")]);
        g.insert("b".to_string(), vec![e("b", "c")]);
        assert!(cycles(&g).is_empty());
    }
}
