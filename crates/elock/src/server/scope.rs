//! What a caller may act on (docs/api.md, "Scopes"): owner patterns and resource prefixes,
//! carried by a token or a client certificate.
//!
//! A scoped caller may take, renew and release only leases whose owner matches one of its
//! patterns on resources under one of its prefixes, and cancel only such tickets. A lease id
//! alone gives no power: the lease is looked up and its owner and resources checked before
//! anything changes (a lease's owner and resources never change, so the check cannot go stale).
//! Admin callers act on every lease. The refusals themselves are worded by the caller's
//! [`Actor`](super::auth::Actor), which knows who it is.

use globset::{Glob, GlobMatcher};

/// Owner patterns (`*` any run of characters, `?` one) and resource prefixes; an empty list
/// covers everything.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    owners: Vec<(String, GlobMatcher)>,
    resources: Vec<String>,
}

impl Scope {
    /// Everything: an admin, or a token configured without `owners` and `resources`.
    pub fn everything() -> Scope {
        Scope::default()
    }

    /// A scope from configured patterns; a pattern that is not a glob is an error naming it.
    pub fn new(owners: &[String], resources: &[String]) -> Result<Scope, String> {
        let mut compiled = Vec::new();
        for p in owners {
            let glob = Glob::new(p).map_err(|e| format!("owner pattern {p:?}: {e}"))?;
            compiled.push((p.clone(), glob.compile_matcher()));
        }
        Ok(Scope {
            owners: compiled,
            resources: resources.to_vec(),
        })
    }

    pub fn is_everything(&self) -> bool {
        self.owners.is_empty() && self.resources.is_empty()
    }

    pub fn covers_owner(&self, owner: &str) -> bool {
        self.owners.is_empty() || self.owners.iter().any(|(_, m)| m.is_match(owner))
    }

    pub fn covers_resource(&self, resource: &str) -> bool {
        self.resources.is_empty() || self.resources.iter().any(|p| resource.starts_with(p))
    }

    /// `owners [team-a/*], resources under [team-a/]`, for refusals.
    pub fn describe(&self) -> String {
        let owners = if self.owners.is_empty() {
            "any owner".to_string()
        } else {
            let list: Vec<&str> = self.owners.iter().map(|(p, _)| p.as_str()).collect();
            format!("owners [{}]", list.join(", "))
        };
        let resources = if self.resources.is_empty() {
            "any resource".to_string()
        } else {
            format!("resources under [{}]", self.resources.join(", "))
        };
        format!("{owners} on {resources}")
    }

    /// Whether `owner` and every one of `resources` are covered.
    pub fn covers<'r>(&self, owner: &str, mut resources: impl Iterator<Item = &'r str>) -> bool {
        self.covers_owner(owner) && resources.all(|r| self.covers_resource(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_match_patterns_and_resources_match_prefixes() {
        let s = Scope::new(&["team-a/*".into(), "ci-?".into()], &["infra/a/".into()]).unwrap();
        assert!(s.covers_owner("team-a/alice") && s.covers_owner("ci-1"));
        assert!(!s.covers_owner("team-b/bob") && !s.covers_owner("ci-12"));
        assert!(s.covers_resource("infra/a/vpc") && !s.covers_resource("infra/b/vpc"));
        let all = Scope::everything();
        assert!(all.covers_owner("anyone") && all.covers_resource("anything"));
        assert!(s.covers("ci-1", ["infra/a/x"].into_iter()));
        assert!(!s.covers("ci-1", ["infra/a/x", "infra/b/y"].into_iter()));
        assert_eq!(
            s.describe(),
            "owners [team-a/*, ci-?] on resources under [infra/a/]"
        );
    }
}
