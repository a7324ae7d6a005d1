//! The parts of a lease spanning shards, put back together: pure functions over what the
//! scripts answered (see `spanning.rs` for how such leases are taken and given back).

use elock_core::error::Result;
use elock_core::model::{Lease, ResourceName};

use crate::wire::{self, WireLease};

/// The resources once each, in request order.
pub(crate) fn distinct(resources: &[ResourceName]) -> Vec<ResourceName> {
    let mut out: Vec<ResourceName> = Vec::with_capacity(resources.len());
    for r in resources {
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    out
}

/// Puts parts of one lease together: resources in request order, the earliest acquisition and
/// expiry, and a state other than held if any part has one.
pub(crate) fn merge(mut parts: Vec<WireLease>) -> Result<Lease> {
    if parts.len() == 1 {
        return parts.pop().expect("one part").into_lease();
    }
    let mut first = parts
        .first()
        .cloned()
        .ok_or_else(|| wire::corrupt("a lease with no parts"))?;
    let order = first.all.clone().unwrap_or_default();
    let rank = |r: &str| order.iter().position(|x| x == r).unwrap_or(usize::MAX);
    let mut res: Vec<(String, u64)> = parts.iter().flat_map(|p| p.res.clone()).collect();
    res.sort_by_key(|(r, _)| rank(r));
    first.res = res;
    first.at = parts.iter().map(|p| p.at).min().unwrap_or(first.at);
    first.exp = parts.iter().filter_map(|p| p.exp).min();
    first.state = parts
        .iter()
        .filter_map(|p| p.state.clone())
        .find(|s| s != "held")
        .or(first.state);
    first.into_lease()
}

/// Groups listed parts by lease id and merges each group.
pub(crate) fn merge_all(parts: Vec<WireLease>) -> Result<Vec<Lease>> {
    let mut groups: Vec<Vec<WireLease>> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for p in parts {
        if p.sh.is_none() {
            groups.push(vec![p]);
            continue;
        }
        match index.get(&p.id) {
            Some(&i) => groups[i].push(p),
            None => {
                index.insert(p.id.clone(), groups.len());
                groups.push(vec![p]);
            }
        }
    }
    groups.into_iter().map(merge).collect()
}
