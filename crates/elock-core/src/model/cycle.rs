//! A deadlock cycle of the wait-for graph, in order: each waiter waits for the next one's owner.

use serde::{Deserialize, Serialize};

use super::{Owner, ResourceName, TicketId};

/// `waiter` waits for `resource`, which `blocker` holds or is queued ahead for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleEdge {
    pub waiter: Owner,
    pub ticket_id: Option<TicketId>,
    pub resource: ResourceName,
    pub blocker: Owner,
}

/// The edges of one cycle; the last edge's blocker is the first edge's waiter.
pub type Cycle = Vec<CycleEdge>;

/// Every cycle of a wait-for graph, found by a depth-first search from each of `starts` in turn;
/// each owner is in at most one reported cycle. `edges_of(owner)` gives the edges out of an owner,
/// in the order they are tried. The lock table and the Redis store (whose graph is the union of
/// its shards') both search with this one function.
pub fn find_cycles(
    starts: impl IntoIterator<Item = Owner>,
    mut edges_of: impl FnMut(&Owner) -> Vec<CycleEdge>,
) -> Vec<Cycle> {
    use std::collections::BTreeSet;
    let mut done: BTreeSet<Owner> = BTreeSet::new();
    let mut cycles = Vec::new();
    for start in starts {
        if done.contains(&start) {
            continue;
        }
        // `path` holds (owner, its edges, next edge index).
        let first = edges_of(&start);
        let mut path: Vec<(Owner, Vec<CycleEdge>, usize)> = vec![(start.clone(), first, 0)];
        let mut on_path: BTreeSet<Owner> = BTreeSet::from([start]);
        while let Some((owner, edges, next)) = path.last_mut() {
            if *next >= edges.len() {
                on_path.remove(owner);
                done.insert(owner.clone());
                path.pop();
                continue;
            }
            let blocker = edges[*next].blocker.clone();
            *next += 1;
            if on_path.contains(&blocker) {
                let from = path
                    .iter()
                    .position(|(o, _, _)| *o == blocker)
                    .expect("on path");
                cycles.push(
                    path[from..]
                        .iter()
                        .map(|(_, edges, next)| edges[*next - 1].clone())
                        .collect(),
                );
                // Report each owner once: abandon this search.
                for (o, _, _) in path.drain(..) {
                    done.insert(o);
                }
                break;
            }
            if !done.contains(&blocker) {
                on_path.insert(blocker.clone());
                let next_edges = edges_of(&blocker);
                path.push((blocker, next_edges, 0));
            }
        }
    }
    cycles
}
