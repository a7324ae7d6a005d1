//! Which shard holds what. `redis.shards` hash tags spread the lock table over Cluster slots:
//! shard `k`'s keys are `<prefix>{k}:...`, and a resource lives in the shard its name hashes to
//! (only the part between the first `{` and the next `}`, when there is one, as Redis does, so
//! resources named with a common `{tag}` always share a shard).
//!
//! Ids the store makes for a new request carry their home shard (the lowest shard of the
//! request) in their first two bytes, so a lookup by id goes straight to it; ids made elsewhere
//! are found by asking every shard.

use elock_core::model::ResourceName;

/// The most shards `redis.shards` accepts.
pub const MAX_SHARDS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardMap {
    n: usize,
}

impl ShardMap {
    pub fn new(n: usize) -> Self {
        assert!(
            (1..=MAX_SHARDS).contains(&n),
            "shards must be 1..={MAX_SHARDS}"
        );
        ShardMap { n }
    }

    /// How many shards (at least one).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.n
    }

    /// The shard a resource lives in.
    pub fn of_resource(&self, name: &str) -> usize {
        if self.n == 1 {
            return 0;
        }
        (fnv1a(hash_key(name).as_bytes()) % self.n as u64) as usize
    }

    /// The shard an id says it was made for, if it says one (it may be wrong for ids made
    /// elsewhere: callers fall back to asking every shard).
    pub fn home_of(&self, id: &[u8; 16]) -> usize {
        let v = u16::from_be_bytes([id[0], id[1]]) as usize;
        if v < self.n {
            v
        } else {
            0
        }
    }

    /// Writes `shard` into an id's first two bytes (its other 112 bits stay random).
    pub fn stamp(&self, mut id: [u8; 16], shard: usize) -> [u8; 16] {
        if self.n > 1 {
            id[..2].copy_from_slice(&(shard as u16).to_be_bytes());
        }
        id
    }

    /// The request's resources grouped by shard, shards ascending, each group in request order.
    pub fn groups(&self, resources: &[ResourceName]) -> Vec<(usize, Vec<ResourceName>)> {
        let mut out: Vec<(usize, Vec<ResourceName>)> = Vec::new();
        for r in resources {
            let s = self.of_resource(r.as_str());
            match out.iter_mut().find(|(k, _)| *k == s) {
                Some((_, g)) => {
                    if !g.contains(r) {
                        g.push(r.clone())
                    }
                }
                None => out.push((s, vec![r.clone()])),
            }
        }
        out.sort_by_key(|(k, _)| *k);
        out
    }
}

/// Redis's hash-tag rule: the text between the first `{` and the next `}`, if not empty.
fn hash_key(name: &str) -> &str {
    if let Some(open) = name.find('{') {
        if let Some(len) = name[open + 1..].find('}') {
            if len > 0 {
                return &name[open + 1..open + 1 + len];
            }
        }
    }
    name
}

/// FNV-1a, 64 bits: stable across versions and machines (the placement must never change for a
/// given `redis.shards`).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ResourceName {
        ResourceName::new(s).unwrap()
    }

    #[test]
    fn placement_is_stable_and_spreads() {
        let m = ShardMap::new(16);
        // Fixed values: a change here would move existing data to other shards.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut used = [0usize; 16];
        for i in 0..1600 {
            used[m.of_resource(&format!("repo/project-{i}"))] += 1;
        }
        assert!(used.iter().all(|&n| n > 50), "uneven: {used:?}");
    }

    #[test]
    fn hash_tags_put_resources_together() {
        let m = ShardMap::new(64);
        let a = m.of_resource("{acme/infra}/vpc/default");
        for name in ["{acme/infra}/eks/default", "x{acme/infra}", "{acme/infra}"] {
            assert_eq!(m.of_resource(name), a, "{name}");
        }
        assert_eq!(hash_key("{}/a"), "{}/a");
        assert_eq!(hash_key("a{b"), "a{b");
    }

    #[test]
    fn ids_carry_their_home_shard() {
        let m = ShardMap::new(12);
        let id = m.stamp([0xff; 16], 11);
        assert_eq!(m.home_of(&id), 11);
        assert_eq!(&id[2..], &[0xff; 14]);
        assert_eq!(ShardMap::new(1).stamp([0xff; 16], 0), [0xff; 16]);
        assert_eq!(m.home_of(&[0xff; 16]), 0);
    }

    #[test]
    fn groups_are_by_ascending_shard_in_request_order() {
        let m = ShardMap::new(8);
        let names: Vec<ResourceName> = (0..20).map(|i| r(&format!("res-{i}"))).collect();
        let groups = m.groups(&names);
        assert!(groups.windows(2).all(|w| w[0].0 < w[1].0));
        let total: usize = groups.iter().map(|(_, g)| g.len()).sum();
        assert_eq!(total, 20);
        for (k, g) in &groups {
            assert!(g.iter().all(|x| m.of_resource(x.as_str()) == *k));
            let pos: Vec<usize> = g
                .iter()
                .map(|x| names.iter().position(|n| n == x).unwrap())
                .collect();
            assert!(pos.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
