//! What a caller may act on (docs/api.md, "Scopes"): owner patterns and resource prefixes,
//! carried by a token or a client certificate.
//!
//! A scoped caller may take, renew and release only leases whose owner matches one of its
//! patterns on resources under one of its prefixes, and cancel only such tickets. A lease id
//! alone gives no power: the lease is looked up and its owner and resources checked before
//! anything changes (a lease's owner and resources never change, so the check cannot go stale).
//! Admin callers act on every lease. A refusal names the lease's owner and the caller's scope.

use elock_core::model::{Lease, TicketView};
use globset::{Glob, GlobMatcher};

use super::error::ApiError;

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

    /// May `who` act as `owner` on `resources` (a new lease or ticket)?
    pub fn check<'r>(
        &self,
        who: &str,
        action: &str,
        owner: &str,
        resources: impl IntoIterator<Item = &'r str>,
    ) -> Result<(), ApiError> {
        if !self.covers_owner(owner) {
            return Err(ApiError::Forbidden(format!(
                "{who} may not {action} for owner {owner:?}: its scope is {}",
                self.describe()
            )));
        }
        let outside: Vec<&str> = resources
            .into_iter()
            .filter(|r| !self.covers_resource(r))
            .collect();
        if !outside.is_empty() {
            return Err(ApiError::Forbidden(format!(
                "{who} may not {action} on {}: its scope is {}",
                outside.join(", "),
                self.describe()
            )));
        }
        Ok(())
    }

    /// May `who` renew or release `lease`? The refusal names the lease's owner.
    pub fn check_lease(&self, who: &str, action: &str, lease: &Lease) -> Result<(), ApiError> {
        self.check(
            who,
            &format!(
                "{action} lease {} (owner {:?})",
                lease.id,
                lease.owner.as_str()
            ),
            lease.owner.as_str(),
            lease.resources.iter().map(|h| h.resource.as_str()),
        )
        .map_err(|_| {
            ApiError::Forbidden(format!(
                "lease {} is held by owner {:?} on {}; {who} may {action} only leases of {}",
                lease.id,
                lease.owner.as_str(),
                lease
                    .resources
                    .iter()
                    .map(|h| h.resource.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.describe()
            ))
        })
    }

    pub fn check_ticket(&self, who: &str, ticket: &TicketView) -> Result<(), ApiError> {
        self.check(
            who,
            "cancel",
            ticket.owner.as_str(),
            ticket.resources.iter().map(|r| r.as_str()),
        )
        .map_err(|_| {
            ApiError::Forbidden(format!(
                "ticket {} is owner {:?}'s; {who} may cancel only tickets of {}",
                ticket.id,
                ticket.owner.as_str(),
                self.describe()
            ))
        })
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
        let e = s
            .check("token \"a\"", "acquire", "team-b/bob", ["infra/a/x"])
            .unwrap_err();
        let ApiError::Forbidden(m) = e else { panic!() };
        assert!(
            m.contains("team-b/bob") && m.contains("owners [team-a/*, ci-?]"),
            "{m}"
        );
        let e = s
            .check("token \"a\"", "acquire", "ci-1", ["infra/a/x", "infra/b/y"])
            .unwrap_err();
        let ApiError::Forbidden(m) = e else { panic!() };
        assert!(m.contains("infra/b/y") && !m.contains("infra/a/x,"), "{m}");
    }
}
