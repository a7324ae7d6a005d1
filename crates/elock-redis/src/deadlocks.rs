//! Deadlocks whose cycle crosses shards (`redis.shards` > 1).
//!
//! Inside a shard, the Lua table prevents and resolves deadlocks exactly as elock-core's table
//! does. A cycle through several shards is invisible to any one script: each shard reports the
//! wait-for edges of its waiting owners (view `edges`), and the search runs here, over their
//! union, with elock-core's search ([`find_cycles`], the one the Rust table uses). Resolution cancels one
//! ticket of each cycle with the configured policy; a ticket's age is its enqueue time (queue
//! sequence numbers are per shard, so they do not compare across shards).

use std::collections::{BTreeMap, HashMap};

use elock_core::error::Result;
use elock_core::model::{find_cycles, Cycle, CycleEdge, Owner, Priority};
use elock_core::table::{DeadlockRecord, ResolutionPolicy, VictimFacts};

use crate::scripts::Script;
use crate::shards::{decode, Shards};
use crate::wire::{self, hex, WireEdge, WireRecord, WireView};

/// Every waiting owner's edges, all shards together, owners in name order.
async fn graph(shards: &Shards) -> Result<BTreeMap<Owner, Vec<CycleEdge>>> {
    let all = shards
        .each_shard(|k| async move {
            let (_, v) = shards.view(k, "edges", "").await?;
            wire::lua_vec::<_, (String, serde_json::Value)>(v).map_err(wire::corrupt)
        })
        .await?;
    let mut g: BTreeMap<Owner, Vec<CycleEdge>> = BTreeMap::new();
    for (owner, edges) in all.into_iter().flatten() {
        let edges: Vec<WireEdge> = wire::lua_vec(edges).map_err(wire::corrupt)?;
        g.entry(Owner::new(&owner).map_err(wire::corrupt)?)
            .or_default()
            .extend(wire::cycle(edges)?);
    }
    Ok(g)
}

/// Every cycle of the graph (the search of elock-core's table).
fn cycles(g: &BTreeMap<Owner, Vec<CycleEdge>>) -> Vec<Cycle> {
    find_cycles(g.keys().cloned(), |o| g.get(o).cloned().unwrap_or_default())
}

pub(crate) async fn find_across(shards: &Shards) -> Result<Vec<Cycle>> {
    Ok(cycles(&graph(shards).await?))
}

/// Resolves the cycles left after every shard resolved its own: one victim per cycle.
pub(crate) async fn resolve_across(
    shards: &Shards,
    policy: ResolutionPolicy,
) -> Result<Vec<DeadlockRecord>> {
    let mut records = Vec::new();
    // Each round cancels a ticket, so this ends; the bound only guards against a bug.
    for _ in 0..1000 {
        let Some(cycle) = cycles(&graph(shards).await?).into_iter().next() else {
            break;
        };
        let mut candidates = Vec::with_capacity(cycle.len());
        for e in &cycle {
            let k = shards.map.of_resource(e.resource.as_str());
            let ticket = e.ticket_id.map(|t| hex(t.as_bytes())).unwrap_or_default();
            let (_, v) = shards.view(k, "ticket", &ticket).await?;
            candidates.push((e.clone(), k, decode::<WireView>(v)?));
        }
        let held = if policy == ResolutionPolicy::FewestLocks {
            held_counts(shards).await?
        } else {
            HashMap::new()
        };
        let (edge, shard, view) = &candidates[choose(policy, &candidates, &held)];
        let wire_cycle: Vec<WireEdge> = cycle.iter().map(WireEdge::from_edge).collect();
        let cycle_json = serde_json::to_string(&wire_cycle).map_err(wire::corrupt)?;
        let args = [
            view.id.clone(),
            "deadlock".to_string(),
            cycle_json,
            "1".to_string(),
        ];
        let (now, v) = shards.run(*shard, Script::Cancel, &args).await?;
        v?;
        records.push(
            WireRecord {
                detected_at: now.as_millis(),
                cycle: wire_cycle,
                victim: edge.waiter.to_string(),
                victim_ticket: view.id.clone(),
            }
            .into_record(policy)?,
        );
    }
    Ok(records)
}

/// Resources held per owner, every shard together.
async fn held_counts(shards: &Shards) -> Result<HashMap<String, usize>> {
    let mut out = HashMap::new();
    for l in shards
        .pages::<wire::WireLease>("leases_page")
        .await?
        .into_iter()
    {
        *out.entry(l.owner).or_insert(0) += l.res.len();
    }
    Ok(out)
}

/// The index of the victim, by the table's own order ([`ResolutionPolicy::victim`]), with the
/// enqueue time (then the ticket id) standing for the queue sequence.
fn choose(
    policy: ResolutionPolicy,
    c: &[(CycleEdge, usize, WireView)],
    held: &HashMap<String, usize>,
) -> usize {
    let facts: Vec<VictimFacts<(u64, &str)>> = c
        .iter()
        .map(|(edge, _, view)| VictimFacts {
            priority: Priority::from_level_saturating(view.pri),
            held: held.get(edge.waiter.as_str()).copied().unwrap_or(0),
            youth: (view.at, view.id.as_str()),
        })
        .collect();
    policy.victim(&facts).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use elock_core::model::ResourceName;

    fn e(waiter: &str, blocker: &str) -> CycleEdge {
        CycleEdge {
            waiter: Owner::new(waiter).unwrap(),
            ticket_id: None,
            resource: ResourceName::new(&format!("r-{waiter}")).unwrap(),
            blocker: Owner::new(blocker).unwrap(),
        }
    }

    fn graph(edges: &[(&str, &[CycleEdge])]) -> BTreeMap<Owner, Vec<CycleEdge>> {
        edges
            .iter()
            .map(|(o, es)| (Owner::new(o).unwrap(), es.to_vec()))
            .collect()
    }

    #[test]
    fn finds_a_cycle_through_owners_of_different_shards() {
        let g = graph(&[
            ("a", &[e("a", "b")]),
            ("b", &[e("b", "x"), e("b", "c")]),
            ("c", &[e("c", "a")]),
            ("d", &[e("d", "a")]),
        ]);
        let found = cycles(&g);
        assert_eq!(found.len(), 1);
        let waiters: Vec<&str> = found[0].iter().map(|e| e.waiter.as_str()).collect();
        assert_eq!(waiters, ["a", "b", "c"]);
        assert_eq!(found[0][1].blocker.as_str(), "c");
    }

    #[test]
    fn no_cycle_in_a_chain() {
        let g = graph(&[("a", &[e("a", "b")]), ("b", &[e("b", "c")])]);
        assert!(cycles(&g).is_empty());
    }
}
