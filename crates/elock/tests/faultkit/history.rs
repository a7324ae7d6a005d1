//! What happened in a fault run, as the clients, the register and the observer saw it, and the
//! checker that holds the history to elock's guarantees. The checker trusts nothing but the
//! records: it recomputes what the register should have done instead of believing it.
//!
//! Times are milliseconds of the system clock, the clock the servers stamp leases with (one
//! machine), so a client's observation and a server's timestamp can be compared.

use std::collections::HashMap;

/// How one acquire attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Granted(Grant),
    /// Refused by the server (locked, wait timeout, queue full, ...): it holds nothing.
    Refused(u16),
    /// The answer never came or was a 503: the attempt may or may not hold something.
    Unknown(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub lease: String,
    pub token: u64,
    pub acquired_at: u64,
    pub expires_at: u64,
}

/// One acquire attempt. Every attempt has its own owner name, so a lease seen in the store names
/// the attempt that made it.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub owner: String,
    pub resource: String,
    /// How long it asked to wait (0: try-lock).
    pub wait_ms: u64,
    pub sent: u64,
    pub answered: u64,
    pub outcome: Outcome,
    /// When its release was sent, and whether it was acknowledged (200) and when.
    pub release_sent: Option<u64>,
    pub release_acked: Option<u64>,
}

/// A fenced write offered to the register.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub owner: String,
    pub resource: String,
    pub token: u64,
    pub at: u64,
    pub accepted: bool,
}

/// A lease the observer saw in a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct SeenLease {
    pub id: String,
    pub owner: String,
    pub resource: String,
    pub token: u64,
    pub acquired_at: u64,
}

/// One listing of every lease: sent and answered at.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub sent: u64,
    pub answered: u64,
    pub leases: Vec<SeenLease>,
}

#[derive(Clone, Debug, Default)]
pub struct History {
    pub attempts: Vec<Attempt>,
    pub writes: Vec<Write>,
    pub snapshots: Vec<Snapshot>,
    /// Faults injected, by kind, and when each ended (for the report).
    pub faults: Vec<(String, u64)>,
}

/// What the checker found; `violations` must be empty.
#[derive(Debug, Default)]
pub struct Report {
    pub grants: usize,
    pub refused: usize,
    pub unknown: usize,
    pub writes_accepted: usize,
    pub stale_writes_refused: usize,
    pub faults: usize,
    pub violations: Vec<String>,
}

/// Slack for comparing a client's clock reading with a server's millisecond timestamp.
const CLOCK_SLACK_MS: u64 = 2;

impl History {
    /// Checks every guarantee. `answer_bound_ms`: how much longer than its wait an attempt may
    /// take to be answered (restarts and timeouts included).
    pub fn check(&self, answer_bound_ms: u64, ghost_bound_ms: Option<u64>) -> Report {
        let mut r = Report {
            faults: self.faults.len(),
            ..Report::default()
        };
        for a in &self.attempts {
            match &a.outcome {
                Outcome::Granted(_) => r.grants += 1,
                Outcome::Refused(_) => r.refused += 1,
                Outcome::Unknown(_) => r.unknown += 1,
            }
        }
        r.writes_accepted = self.writes.iter().filter(|w| w.accepted).count();
        self.tokens_never_repeat_or_go_back(&mut r);
        self.holders_never_overlap(&mut r);
        self.no_stale_write_accepted(&mut r);
        self.nothing_acknowledged_is_lost(&mut r);
        self.waiters_are_answered_in_time(answer_bound_ms, &mut r);
        self.no_holder_whose_client_is_gone(ghost_bound_ms, &mut r);
        r
    }

    fn grants(&self) -> impl Iterator<Item = (&Attempt, &Grant)> {
        self.attempts.iter().filter_map(|a| match &a.outcome {
            Outcome::Granted(g) => Some((a, g)),
            _ => None,
        })
    }

    fn grants_by_resource(&self) -> HashMap<&str, Vec<(&Attempt, &Grant)>> {
        let mut by: HashMap<&str, Vec<(&Attempt, &Grant)>> = HashMap::new();
        for (a, g) in self.grants() {
            by.entry(a.resource.as_str()).or_default().push((a, g));
        }
        for list in by.values_mut() {
            list.sort_by_key(|(_, g)| g.token);
        }
        by
    }

    /// Per resource, no token is minted twice (grants and every lease ever seen), and a grant
    /// answered before another was asked for has the smaller token.
    fn tokens_never_repeat_or_go_back(&self, r: &mut Report) {
        let mut minted: HashMap<(&str, u64), &str> = HashMap::new();
        let seen = self
            .snapshots
            .iter()
            .flat_map(|s| s.leases.iter())
            .map(|l| (l.resource.as_str(), l.token, l.id.as_str()));
        let granted = self
            .grants()
            .map(|(a, g)| (a.resource.as_str(), g.token, g.lease.as_str()));
        for (resource, token, lease) in granted.chain(seen) {
            if let Some(other) = minted.insert((resource, token), lease) {
                if other != lease {
                    r.violations.push(format!(
                        "{resource}: token {token} minted for lease {other} and lease {lease}"
                    ));
                }
            }
        }
        for list in self.grants_by_resource().values() {
            for (a, ga) in list {
                for (b, gb) in list {
                    if a.answered < b.sent && ga.token >= gb.token {
                        r.violations.push(format!(
                            "{}: {} got token {} and was answered before {} asked, who got {}",
                            a.resource, a.owner, ga.token, b.owner, gb.token
                        ));
                    }
                }
            }
        }
    }

    /// Two acknowledged grants of one resource: the later token was granted only after the
    /// earlier lease ended (expired, or its release was sent).
    fn holders_never_overlap(&self, r: &mut Report) {
        for list in self.grants_by_resource().values() {
            for (i, (a, ga)) in list.iter().enumerate() {
                let ended = a
                    .release_sent
                    .map_or(ga.expires_at, |s| s.min(ga.expires_at));
                for (b, gb) in &list[i + 1..] {
                    if gb.acquired_at + CLOCK_SLACK_MS < ended {
                        r.violations.push(format!(
                            "{}: {} (token {}) granted at {} while {} (token {}) held it until {}",
                            a.resource, b.owner, gb.token, gb.acquired_at, a.owner, ga.token, ended
                        ));
                    }
                }
            }
        }
    }

    /// Recomputes the register: a write is accepted only if no larger token was accepted
    /// before it; and a write made while its lease was surely valid is never refused (a refusal
    /// would mean a larger token was in use during the lease).
    fn no_stale_write_accepted(&self, r: &mut Report) {
        let mut highest: HashMap<&str, u64> = HashMap::new();
        let mut writes: Vec<&Write> = self.writes.iter().collect();
        writes.sort_by_key(|w| w.at);
        let leases: HashMap<&str, (&Attempt, &Grant)> = self
            .grants()
            .map(|(a, g)| (a.owner.as_str(), (a, g)))
            .collect();
        for w in writes {
            let top = highest.entry(w.resource.as_str()).or_insert(0);
            let stale = w.token < *top;
            if w.accepted && stale {
                r.violations.push(format!(
                    "{}: stale write by {} with token {} accepted after token {}",
                    w.resource, w.owner, w.token, top
                ));
            }
            if !w.accepted && !stale {
                r.violations.push(format!(
                    "{}: write by {} with token {} refused though no larger token wrote",
                    w.resource, w.owner, w.token
                ));
            }
            if w.accepted {
                *top = (*top).max(w.token);
            } else {
                r.stale_writes_refused += 1;
                if let Some((a, g)) = leases.get(w.owner.as_str()) {
                    let valid_until = a.release_sent.map_or(g.expires_at, |s| s.min(g.expires_at));
                    if w.at + CLOCK_SLACK_MS < valid_until {
                        r.violations.push(format!(
                            "{}: {} was refused while its lease (token {}) was valid until {}: a larger token was in use",
                            w.resource, w.owner, w.token, valid_until
                        ));
                    }
                }
            }
        }
    }

    /// Every listing taken while an acknowledged lease was surely held (granted before the
    /// listing was sent, expiring after it was answered, no release sent yet) shows it; no
    /// listing sent after a release was acknowledged shows the lease.
    fn nothing_acknowledged_is_lost(&self, r: &mut Report) {
        for s in &self.snapshots {
            let ids: std::collections::HashSet<&str> =
                s.leases.iter().map(|l| l.id.as_str()).collect();
            for (a, g) in self.grants() {
                let held_throughout = a.answered <= s.sent
                    && g.expires_at > s.answered + 50
                    && a.release_sent.is_none_or(|t| t > s.answered);
                if held_throughout && !ids.contains(g.lease.as_str()) {
                    r.violations.push(format!(
                        "{}: the acknowledged lease of {} (token {}) is missing from a listing at {}",
                        a.resource, a.owner, g.token, s.sent
                    ));
                }
                if a.release_acked.is_some_and(|t| t < s.sent) && ids.contains(g.lease.as_str()) {
                    r.violations.push(format!(
                        "{}: the lease of {} (token {}) is listed at {} after its release was acknowledged",
                        a.resource, a.owner, g.token, s.sent
                    ));
                }
            }
        }
    }

    /// Every attempt is answered (granted, refused, or an error) within its wait and the bound.
    fn waiters_are_answered_in_time(&self, bound_ms: u64, r: &mut Report) {
        for a in &self.attempts {
            let took = a.answered.saturating_sub(a.sent);
            if took > a.wait_ms + bound_ms {
                r.violations.push(format!(
                    "{}: {} asked to wait {} ms and was answered after {} ms",
                    a.resource, a.owner, a.wait_ms, took
                ));
            }
        }
    }

    /// A waiting attempt whose client stopped waiting without a grant (its connection died, or
    /// it was answered with an error) is never granted afterwards: such a lease would be held
    /// by nobody. With `bound_ms` (stores shared by servers, where a dead server is known only
    /// when its heartbeat runs out) such a lease may exist, but is gone within the bound.
    fn no_holder_whose_client_is_gone(&self, bound_ms: Option<u64>, r: &mut Report) {
        let gone: HashMap<&str, &Attempt> = self
            .attempts
            .iter()
            .filter(|a| a.wait_ms > 0 && matches!(a.outcome, Outcome::Unknown(_)))
            .map(|a| (a.owner.as_str(), a))
            .collect();
        // Each ghost lease: when granted, when last seen.
        let mut ghosts: HashMap<&str, (&SeenLease, &Attempt, u64)> = HashMap::new();
        for s in &self.snapshots {
            for l in &s.leases {
                if let Some(a) = gone.get(l.owner.as_str()) {
                    if l.acquired_at > a.answered + CLOCK_SLACK_MS {
                        let e = ghosts.entry(l.id.as_str()).or_insert((l, a, s.sent));
                        e.2 = e.2.max(s.sent);
                    }
                }
            }
        }
        for (l, a, last_seen) in ghosts.into_values() {
            let lived = last_seen.saturating_sub(l.acquired_at);
            if bound_ms.is_none_or(|b| lived > b) {
                r.violations.push(format!(
                    "{}: {} was granted at {} after its client stopped waiting at {} ({}), and still held {} ms later",
                    l.resource,
                    l.owner,
                    l.acquired_at,
                    a.answered,
                    match &a.outcome {
                        Outcome::Unknown(why) => why.as_str(),
                        _ => "",
                    },
                    lived
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(owner: &str, token: u64, sent: u64, at: u64, until: u64) -> Attempt {
        Attempt {
            owner: owner.into(),
            resource: "r".into(),
            wait_ms: 1000,
            sent,
            answered: at + 1,
            outcome: Outcome::Granted(Grant {
                lease: format!("lease-{owner}"),
                token,
                acquired_at: at,
                expires_at: until,
            }),
            release_sent: None,
            release_acked: None,
        }
    }

    fn write(owner: &str, token: u64, at: u64, accepted: bool) -> Write {
        Write {
            owner: owner.into(),
            resource: "r".into(),
            token,
            at,
            accepted,
        }
    }

    fn violations(h: &History) -> Vec<String> {
        h.check(5_000, None).violations
    }

    #[test]
    fn a_clean_history_passes() {
        let mut a = granted("a", 1, 0, 10, 1010);
        a.release_sent = Some(500);
        a.release_acked = Some(501);
        let h = History {
            attempts: vec![a, granted("b", 2, 20, 502, 1502)],
            writes: vec![write("a", 1, 100, true), write("b", 2, 600, true)],
            ..History::default()
        };
        assert_eq!(violations(&h), Vec::<String>::new());
    }

    #[test]
    fn each_broken_guarantee_is_caught() {
        // Overlap: b granted while a still held it.
        let h = History {
            attempts: vec![granted("a", 1, 0, 10, 1010), granted("b", 2, 20, 300, 1300)],
            ..History::default()
        };
        assert!(
            violations(&h)[0].contains("while a (token 1) held it"),
            "{:?}",
            violations(&h)
        );

        // A token minted twice, and one that went back.
        let h = History {
            attempts: vec![granted("a", 2, 0, 10, 20), granted("b", 2, 100, 110, 200)],
            ..History::default()
        };
        let v = violations(&h);
        assert!(v.iter().any(|m| m.contains("minted for lease")), "{v:?}");
        assert!(v.iter().any(|m| m.contains("answered before")), "{v:?}");

        // A stale write accepted, and a valid holder refused.
        let h = History {
            attempts: vec![granted("a", 1, 0, 10, 1010)],
            writes: vec![write("b", 5, 50, true), write("a", 1, 60, true)],
            ..History::default()
        };
        assert!(
            violations(&h)[0].contains("stale write"),
            "{:?}",
            violations(&h)
        );
        let h = History {
            attempts: vec![granted("a", 1, 0, 10, 1010)],
            writes: vec![write("b", 5, 50, true), write("a", 1, 60, false)],
            ..History::default()
        };
        assert!(violations(&h)
            .iter()
            .any(|m| m.contains("was refused while its lease")));

        // A lost grant, and a release that came back.
        let mut a = granted("a", 1, 0, 10, 10_000);
        let listing = |leases: Vec<SeenLease>| Snapshot {
            sent: 1000,
            answered: 1001,
            leases,
        };
        let h = History {
            attempts: vec![a.clone()],
            snapshots: vec![listing(vec![])],
            ..History::default()
        };
        assert!(violations(&h)[0].contains("missing from a listing"));
        a.release_sent = Some(500);
        a.release_acked = Some(501);
        let seen = SeenLease {
            id: "lease-a".into(),
            owner: "a".into(),
            resource: "r".into(),
            token: 1,
            acquired_at: 10,
        };
        let h = History {
            attempts: vec![a],
            snapshots: vec![listing(vec![seen])],
            ..History::default()
        };
        assert!(violations(&h)[0].contains("after its release was acknowledged"));

        // A waiter answered too late, and a ghost holder.
        let mut late = granted("late", 1, 0, 10_000, 20_000);
        late.answered = 10_000;
        late.wait_ms = 1000;
        assert!(violations(&History {
            attempts: vec![late],
            ..History::default()
        })[0]
            .contains("answered after"));
        let gone = Attempt {
            outcome: Outcome::Unknown("connection reset".into()),
            ..granted("ghost", 0, 0, 0, 0)
        };
        let ghost = SeenLease {
            id: "x".into(),
            owner: "ghost".into(),
            resource: "r".into(),
            token: 3,
            acquired_at: 5_000,
        };
        let h = History {
            attempts: vec![gone],
            snapshots: vec![Snapshot {
                sent: 6_000,
                answered: 6_001,
                leases: vec![ghost],
            }],
            ..History::default()
        };
        assert!(violations(&h)[0].contains("after its client stopped waiting"));
        // Within a bound, a ghost that is gone in time passes; one that stays does not.
        assert!(h.check(5_000, Some(2_000)).violations.is_empty());
        assert!(!h.check(5_000, Some(500)).violations.is_empty());
    }
}
