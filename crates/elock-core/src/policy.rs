//! Lock policies: per-resource defaults and bounds, kept in elock's configuration
//! (`enhanced-locking.policies`, docs/configuration.md).
//!
//! A policy is an ordered list of rules, each with a resource glob (`*` within one `/`-part,
//! `**` across parts) and the values it gives. The first rule whose glob matches a resource is
//! that resource's rule. A request keeps what it says; what it leaves out comes from the rule
//! (priority, ttl, wait), and the rule's bounds (max-ttl, max-queue-size) hold whatever it says.
//! This is pure: the manager [`settle`](Policies::settle)s every request here before the store
//! sees it, so the native API, the Atlantis adapter and `elock atlantis run` follow one rule.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::manager::Ttl;
use crate::model::{duration_text, format_duration, Priority, ResourceName};

/// One rule as written in the configuration.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyRule {
    /// The resources it covers: a glob where `*` stays within one `/`-part and `**` crosses
    /// parts (`acme/infra/envs/prod/**`).
    #[serde(rename = "match")]
    pub pattern: String,
    /// The priority of a request that names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// The ttl of a lease whose request names none.
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub ttl: Option<Duration>,
    /// The longest ttl a lease may ask for (or be renewed to); a longer one is refused, and a
    /// lease with no expiry (Atlantis's) gets this one instead.
    #[serde(
        default,
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub max_ttl: Option<Duration>,
    /// How long a request that names no wait stands in line (`queue-timeout` is accepted too,
    /// the name Atlantis users know).
    #[serde(
        default,
        alias = "queue-timeout",
        with = "duration_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub wait: Option<Duration>,
    /// Tickets waiting for one resource at most (below `priority-queue.max-queue-size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_size: Option<usize>,
}

impl PolicyRule {
    /// Whether the rule gives anything at all.
    fn sets_something(&self) -> bool {
        self.priority.is_some()
            || self.ttl.is_some()
            || self.max_ttl.is_some()
            || self.wait.is_some()
            || self.max_queue_size.is_some()
    }
}

/// The ordered rules with their globs compiled once.
#[derive(Clone, Default)]
pub struct Policies {
    rules: Vec<PolicyRule>,
    matchers: Arc<Vec<GlobMatcher>>,
}

impl PartialEq for Policies {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
    }
}

impl fmt::Debug for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.rules.fmt(f)
    }
}

impl Serialize for Policies {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.rules.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Policies {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Policies::new(Vec::<PolicyRule>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A rule's glob as a matcher: `*` and `?` never cross a `/`, `**` does.
fn matcher(pattern: &str) -> Result<GlobMatcher, String> {
    if pattern.is_empty() {
        return Err("match: a rule needs a resource glob (e.g. acme/infra/**)".into());
    }
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("match: {pattern:?} is not a glob: {}", e.kind()))
}

/// Which rule covers a resource, and where it is in the list (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    pub index: usize,
    pub rule: &'a PolicyRule,
}

impl fmt::Display for Matched<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policies[{}] (match: {})", self.index, self.rule.pattern)
    }
}

/// What a request said, before the policy fills in the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asked {
    pub priority: Option<Priority>,
    pub ttl: Ttl,
    pub wait: Option<Duration>,
    /// A lock taken for Atlantis: with no ttl from a rule it never expires.
    pub for_atlantis: bool,
}

/// The server-wide values a rule stands in front of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fallback {
    pub default_timeout: Duration,
    pub max_queue_size: usize,
}

/// Per-resource caps on the queue, carried by an acquire request to the store (a resource not
/// named has only `priority-queue.max-queue-size`).
pub type QueueLimits = BTreeMap<ResourceName, usize>;

/// A request's values once the policy is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    pub priority: Priority,
    /// `None`: no expiry.
    pub ttl: Option<Duration>,
    pub wait: Duration,
    pub queue_limits: QueueLimits,
}

/// One problem of the rules, for the configuration's report: which rule, which key, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleProblem {
    pub index: usize,
    pub key: &'static str,
    pub message: String,
}

impl Policies {
    pub fn new(rules: Vec<PolicyRule>) -> Result<Policies, String> {
        let matchers = rules
            .iter()
            .enumerate()
            .map(|(i, r)| matcher(&r.pattern).map_err(|e| format!("policies[{i}].{e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policies {
            rules,
            matchers: Arc::new(matchers),
        })
    }

    pub fn rules(&self) -> &[PolicyRule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule whose glob matches `resource`.
    pub fn rule_for(&self, resource: &str) -> Option<Matched<'_>> {
        self.matchers
            .iter()
            .position(|m| m.is_match(resource))
            .map(|index| Matched {
                index,
                rule: &self.rules[index],
            })
    }

    /// Applies the rules of `resources` to what a request asked. Values come from the first
    /// resource whose rule gives one; every matched rule's bounds hold.
    pub fn settle(
        &self,
        resources: &[ResourceName],
        asked: Asked,
        fallback: Fallback,
    ) -> Result<Settled, Error> {
        let matched: Vec<(&ResourceName, Matched<'_>)> = if self.is_empty() {
            Vec::new()
        } else {
            resources
                .iter()
                .filter_map(|r| self.rule_for(r.as_str()).map(|m| (r, m)))
                .collect()
        };
        let first =
            |f: fn(&PolicyRule) -> Option<Duration>| matched.iter().find_map(|(_, m)| f(m.rule));
        // The tightest max-ttl of every rule involved, with the rule that set it.
        let cap = matched
            .iter()
            .filter_map(|(_, m)| m.rule.max_ttl.map(|d| (d, *m)))
            .min_by_key(|(d, _)| *d);
        let ttl = match asked.ttl {
            Ttl::After(d) => {
                if let Some((max, m)) = cap.filter(|(max, _)| d > *max) {
                    return Err(Error::invalid(
                        "ttl",
                        format!(
                            "ttl {} is above max-ttl {} of {m}",
                            format_duration(d),
                            format_duration(max)
                        ),
                    ));
                }
                Some(d)
            }
            Ttl::Never if asked.for_atlantis => cap.map(|(d, _)| d),
            Ttl::Never => {
                if let Some((max, m)) = cap {
                    return Err(Error::invalid(
                        "ttl",
                        format!(
                            "ttl null (no expiry) is refused: {m} sets max-ttl {}",
                            format_duration(max)
                        ),
                    ));
                }
                None
            }
            Ttl::Default => {
                let given = first(|r| r.ttl);
                let base = match given {
                    Some(d) => Some(d),
                    None if asked.for_atlantis => None,
                    None => Some(fallback.default_timeout),
                };
                match (base, cap) {
                    (Some(d), Some((max, _))) => Some(d.min(max)),
                    (None, Some((max, _))) => Some(max),
                    (b, None) => b,
                }
            }
        };
        let priority = asked
            .priority
            .or_else(|| matched.iter().find_map(|(_, m)| m.rule.priority))
            .unwrap_or_default();
        let wait = asked
            .wait
            .or_else(|| first(|r| r.wait))
            .unwrap_or(Duration::ZERO);
        let queue_limits = matched
            .iter()
            .filter_map(|(r, m)| {
                m.rule
                    .max_queue_size
                    .filter(|n| *n < fallback.max_queue_size)
                    .map(|n| ((*r).clone(), n))
            })
            .collect();
        Ok(Settled {
            priority,
            ttl,
            wait,
            queue_limits,
        })
    }

    /// An imported lease without expiry (Atlantis's locks never expire) gets the ttl its rules
    /// give a lock taken for Atlantis, counted from `now`, the import; one with an expiry keeps
    /// it.
    pub fn settle_import(&self, lease: &mut crate::model::Lease, now: crate::model::Timestamp) {
        if lease.ttl.is_some() || self.is_empty() {
            return;
        }
        let names: Vec<ResourceName> = lease.resources.iter().map(|h| h.resource.clone()).collect();
        let asked = Asked {
            priority: None,
            ttl: Ttl::Default,
            wait: None,
            for_atlantis: true,
        };
        // (The fallback is not consulted for a lock taken for Atlantis without a rule's ttl.)
        let fallback = Fallback {
            default_timeout: Duration::ZERO,
            max_queue_size: usize::MAX,
        };
        if let Ok(Settled { ttl: Some(ttl), .. }) = self.settle(&names, asked, fallback) {
            lease.ttl = Some(ttl);
            lease.expires_at = Some(now.plus(ttl));
        }
    }

    /// A renewal to `ttl` of a lease of `resources`: refused above the tightest max-ttl.
    pub fn check_renewal(&self, resources: &[ResourceName], ttl: Duration) -> Result<(), Error> {
        for r in resources {
            if let Some(m) = self.rule_for(r.as_str()) {
                if let Some(max) = m.rule.max_ttl.filter(|max| ttl > *max) {
                    return Err(Error::invalid(
                        "ttl",
                        format!(
                            "ttl {} is above max-ttl {} of {m}",
                            format_duration(ttl),
                            format_duration(max)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Everything wrong with the rules as a whole, given the server's `max-timeout` and
    /// `max-queue-size`: each rule is checked on its own and against the rules before it.
    pub fn problems(&self, max_timeout: Duration, max_queue_size: usize) -> Vec<RuleProblem> {
        let mut out = Vec::new();
        let mut problem = |index, key, message: String| {
            out.push(RuleProblem {
                index,
                key,
                message,
            })
        };
        for (i, r) in self.rules.iter().enumerate() {
            if !r.sets_something() {
                problem(
                    i,
                    "match",
                    format!(
                        "the rule for {:?} sets nothing (give priority, ttl, max-ttl, wait or max-queue-size)",
                        r.pattern
                    ),
                );
            }
            if let Some(j) = self.rules[..i].iter().position(|e| e.pattern == r.pattern) {
                problem(
                    i,
                    "match",
                    format!(
                        "{:?} is matched by policies[{j}] first, so this rule never applies",
                        r.pattern
                    ),
                );
            }
            for (key, d) in [("ttl", r.ttl), ("max-ttl", r.max_ttl), ("wait", r.wait)] {
                if let Some(d) = d.filter(|d| *d > max_timeout) {
                    problem(
                        i,
                        key,
                        format!(
                            "{} is above enhanced-locking.max-timeout {}",
                            format_duration(d),
                            format_duration(max_timeout)
                        ),
                    );
                }
                if d.is_some_and(|d| d.is_zero()) && key != "wait" {
                    problem(i, key, "must be at least 1ms".into());
                }
            }
            if let (Some(ttl), Some(max)) = (r.ttl, r.max_ttl) {
                if ttl > max {
                    problem(
                        i,
                        "ttl",
                        format!(
                            "{} is above this rule's max-ttl {}",
                            format_duration(ttl),
                            format_duration(max)
                        ),
                    );
                }
            }
            match r.max_queue_size {
                Some(0) => problem(
                    i,
                    "max-queue-size",
                    "0 would refuse every wait; leave the rule's wait at 0s instead".into(),
                ),
                Some(n) if n > max_queue_size => problem(
                    i,
                    "max-queue-size",
                    format!("{n} is above priority-queue.max-queue-size {max_queue_size}"),
                ),
                _ => {}
            }
        }
        out
    }
}

/// What `elock policy explain` shows: the rule that covers a resource, and the values a
/// request that leaves everything out would get.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub resource: ResourceName,
    /// The rule's place in `enhanced-locking.policies` (0-based), if one matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_index: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<PolicyRule>,
    pub priority: Priority,
    /// A native request's ttl (`null`: no expiry).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(with = "duration_text::option")]
    pub ttl: Option<Duration>,
    /// A lock taken for Atlantis (adapter, import, `elock atlantis run`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(with = "duration_text::option")]
    pub atlantis_ttl: Option<Duration>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(with = "duration_text::option")]
    pub max_ttl: Option<Duration>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "duration_text")]
    pub wait: Duration,
    pub max_queue_size: usize,
}

impl Policies {
    pub fn explain(&self, resource: &ResourceName, fallback: Fallback) -> Explanation {
        let m = self.rule_for(resource.as_str());
        let settle = |for_atlantis| {
            self.settle(
                std::slice::from_ref(resource),
                Asked {
                    priority: None,
                    ttl: Ttl::Default,
                    wait: None,
                    for_atlantis,
                },
                fallback,
            )
            .expect("a request that asks nothing is never refused")
        };
        let native = settle(false);
        Explanation {
            resource: resource.clone(),
            rule_index: m.map(|m| m.index),
            rule: m.map(|m| m.rule.clone()),
            priority: native.priority,
            ttl: native.ttl,
            atlantis_ttl: settle(true).ttl,
            max_ttl: m.and_then(|m| m.rule.max_ttl),
            wait: native.wait,
            max_queue_size: native
                .queue_limits
                .get(resource)
                .copied()
                .unwrap_or(fallback.max_queue_size),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml_like: serde_json::Value) -> Policies {
        serde_json::from_value(yaml_like).unwrap()
    }

    fn r(s: &str) -> ResourceName {
        ResourceName::new(s).unwrap()
    }

    const FALLBACK: Fallback = Fallback {
        default_timeout: Duration::from_secs(1800),
        max_queue_size: 1000,
    };

    fn asked() -> Asked {
        Asked {
            priority: None,
            ttl: Ttl::Default,
            wait: None,
            for_atlantis: false,
        }
    }

    fn sample() -> Policies {
        rules(serde_json::json!([
            {"match": "acme/infra/envs/prod/**", "priority": "critical", "ttl": "90m", "max-ttl": "2h", "wait": "20s", "max-queue-size": 5},
            {"match": "acme/*/envs/*/default/", "priority": "high"},
            {"match": "**", "queue-timeout": "1m"}
        ]))
    }

    #[test]
    fn the_first_matching_rule_applies_and_stars_stay_within_a_part() {
        let p = sample();
        let idx = |s: &str| p.rule_for(s).map(|m| m.index);
        assert_eq!(idx("acme/infra/envs/prod/default/"), Some(0));
        assert_eq!(idx("acme/infra/envs/prod/eu/west/default/app"), Some(0));
        assert_eq!(idx("acme/infra/envs/dev/default/"), Some(1));
        // `*` does not cross a `/`: two parts where one is expected fall through to `**`.
        assert_eq!(idx("acme/infra/envs/dev/eu/default/"), Some(2));
        assert_eq!(idx("anything"), Some(2));
        assert_eq!(Policies::default().rule_for("x"), None);
    }

    #[test]
    fn what_a_request_leaves_out_comes_from_its_rule() {
        let p = sample();
        let s = p
            .settle(&[r("acme/infra/envs/prod/default/")], asked(), FALLBACK)
            .unwrap();
        assert_eq!(s.priority, Priority::Critical);
        assert_eq!(s.ttl, Some(Duration::from_secs(90 * 60)));
        assert_eq!(s.wait, Duration::from_secs(20));
        assert_eq!(
            s.queue_limits.get(&r("acme/infra/envs/prod/default/")),
            Some(&5)
        );
        // What it says, it keeps.
        let s = p
            .settle(
                &[r("acme/infra/envs/prod/default/")],
                Asked {
                    priority: Some(Priority::Low),
                    ttl: Ttl::After(Duration::from_secs(60)),
                    wait: Some(Duration::ZERO),
                    for_atlantis: false,
                },
                FALLBACK,
            )
            .unwrap();
        assert_eq!(
            (s.priority, s.ttl, s.wait),
            (Priority::Low, Some(Duration::from_secs(60)), Duration::ZERO)
        );
        // No rule: the server's defaults.
        let s = Policies::default()
            .settle(&[r("x")], asked(), FALLBACK)
            .unwrap();
        assert_eq!(
            (s.priority, s.ttl, s.wait),
            (
                Priority::Normal,
                Some(FALLBACK.default_timeout),
                Duration::ZERO
            )
        );
        assert!(s.queue_limits.is_empty());
    }

    #[test]
    fn max_ttl_refuses_longer_leases_and_cuts_defaults() {
        let p = rules(serde_json::json!([{"match": "a/**", "max-ttl": "10m"}]));
        let err = p
            .settle(
                &[r("a/b")],
                Asked {
                    ttl: Ttl::After(Duration::from_secs(3600)),
                    ..asked()
                },
                FALLBACK,
            )
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("max-ttl 10m") && text.contains("policies[0] (match: a/**)"),
            "{text}"
        );
        // The server's 30m default is cut to the rule's 10m; so is Atlantis's "never".
        let s = p.settle(&[r("a/b")], asked(), FALLBACK).unwrap();
        assert_eq!(s.ttl, Some(Duration::from_secs(600)));
        let s = p
            .settle(
                &[r("a/b")],
                Asked {
                    ttl: Ttl::Never,
                    for_atlantis: true,
                    ..asked()
                },
                FALLBACK,
            )
            .unwrap();
        assert_eq!(s.ttl, Some(Duration::from_secs(600)));
        // A native request for no expiry is refused where a max-ttl holds.
        assert!(p
            .settle(
                &[r("a/b")],
                Asked {
                    ttl: Ttl::Never,
                    ..asked()
                },
                FALLBACK
            )
            .is_err());
        assert!(p
            .check_renewal(&[r("a/b")], Duration::from_secs(601))
            .is_err());
        assert!(p
            .check_renewal(&[r("a/b")], Duration::from_secs(600))
            .is_ok());
        assert!(p
            .check_renewal(&[r("z")], Duration::from_secs(6000))
            .is_ok());
    }

    #[test]
    fn atlantis_locks_never_expire_unless_a_rule_says_so() {
        let atlantis = Asked {
            ttl: Ttl::Default,
            for_atlantis: true,
            ..asked()
        };
        let s = Policies::default()
            .settle(&[r("o/r/./default/")], atlantis, FALLBACK)
            .unwrap();
        assert_eq!(s.ttl, None);
        let p = rules(serde_json::json!([{"match": "o/**", "ttl": "4h"}]));
        let s = p
            .settle(&[r("o/r/./default/")], atlantis, FALLBACK)
            .unwrap();
        assert_eq!(s.ttl, Some(Duration::from_secs(4 * 3600)));
    }

    #[test]
    fn several_resources_take_each_value_from_the_first_rule_that_gives_it() {
        let p = rules(serde_json::json!([
            {"match": "a", "max-queue-size": 2},
            {"match": "b", "priority": "high", "max-ttl": "5m", "max-queue-size": 3}
        ]));
        let s = p.settle(&[r("a"), r("b")], asked(), FALLBACK).unwrap();
        assert_eq!(s.priority, Priority::High);
        assert_eq!(s.ttl, Some(Duration::from_secs(300)));
        assert_eq!(
            s.queue_limits.into_iter().collect::<Vec<_>>(),
            vec![(r("a"), 2), (r("b"), 3)]
        );
    }

    #[test]
    fn bad_rules_are_each_reported_with_their_key() {
        assert!(
            serde_json::from_value::<Policies>(serde_json::json!([{"match": "a/[b"}]))
                .unwrap_err()
                .to_string()
                .contains("policies[0].match")
        );
        assert!(serde_json::from_value::<Policies>(
            serde_json::json!([{"match": "a", "colour": 1}])
        )
        .unwrap_err()
        .to_string()
        .contains("colour"));
        let p = rules(serde_json::json!([
            {"match": "a/**", "ttl": "3h", "max-ttl": "1h"},
            {"match": "b"},
            {"match": "a/**", "priority": "low"},
            {"match": "c", "max-queue-size": 0, "wait": "5h"}
        ]));
        let found: Vec<(usize, &str)> = p
            .problems(Duration::from_secs(2 * 3600), 1000)
            .iter()
            .map(|p| (p.index, p.key))
            .collect();
        assert_eq!(
            found,
            vec![
                (0, "ttl"),
                (0, "ttl"),
                (1, "match"),
                (2, "match"),
                (3, "wait"),
                (3, "max-queue-size")
            ]
        );
    }

    #[test]
    fn an_imported_lock_without_expiry_takes_its_rules_ttl_from_the_import() {
        use crate::model::{HeldResource, Lease, LeaseId, LeaseState, Owner, Timestamp};
        let lease = |r: &str, ttl: Option<Duration>| Lease {
            id: LeaseId::from_u128(1),
            owner: Owner::new("acme/infra#42").unwrap(),
            resources: vec![HeldResource {
                resource: ResourceName::new(r).unwrap(),
                fencing_token: 1,
            }],
            priority: Priority::Normal,
            acquired_at: Timestamp::from_millis(1_000),
            expires_at: ttl.map(|d| Timestamp::from_millis(1_000).plus(d)),
            ttl,
            metadata: None,
            state: LeaseState::Held,
        };
        let now = Timestamp::from_millis(50_000);
        let p = sample();
        let mut l = lease("acme/infra/envs/prod/default/", None);
        p.settle_import(&mut l, now);
        assert_eq!(l.ttl, Some(Duration::from_secs(90 * 60)));
        assert_eq!(l.expires_at, Some(now.plus(Duration::from_secs(90 * 60))));
        // No rule with a ttl: it still never expires; a lease with an expiry keeps it.
        let mut l = lease("acme/infra/envs/dev/default/", None);
        p.settle_import(&mut l, now);
        assert_eq!((l.ttl, l.expires_at), (None, None));
        let mut l = lease(
            "acme/infra/envs/prod/default/",
            Some(Duration::from_secs(5)),
        );
        p.settle_import(&mut l, now);
        assert_eq!(l.ttl, Some(Duration::from_secs(5)));
    }

    #[test]
    fn explain_shows_the_rule_and_the_values() {
        let p = sample();
        let e = p.explain(&r("acme/infra/envs/prod/default/"), FALLBACK);
        assert_eq!(e.rule_index, Some(0));
        assert_eq!(e.priority, Priority::Critical);
        assert_eq!(e.atlantis_ttl, Some(Duration::from_secs(90 * 60)));
        assert_eq!(e.max_queue_size, 5);
        let e = Policies::default().explain(&r("x"), FALLBACK);
        assert_eq!(
            (e.rule_index, e.ttl, e.atlantis_ttl),
            (None, Some(FALLBACK.default_timeout), None)
        );
    }
}
