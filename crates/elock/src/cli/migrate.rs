//! `elock compare-backends` and `elock validate-consistency` (docs/migration.md): the
//! Atlantis locks of the legacy store (Atlantis's Redis, or its bbolt file, read-only) beside
//! the ones elock holds, every difference reported.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use elock_atlantis::bolt::{Bolt, Entry};
use elock_atlantis::{CommandLock, LockKey, ProjectLock, APPLY_LOCK_RESOURCE};
use serde::Serialize;

use super::errors::CliError;
use super::output::{self, say, Format};
use crate::config::schema::legacy_redis_url;
use crate::migration::{routes_to_elock, AtlantisRedis};
use elock_client::Client;

/// Where the legacy store is: one of the two.
#[derive(Args, Debug, Clone)]
pub struct LegacySource {
    /// Atlantis's Redis (host:port or redis://host:port/db), e.g. the server's
    /// migration.legacy-redis.
    #[arg(long, value_name = "ADDRESS", conflicts_with = "legacy_boltdb")]
    pub legacy_redis: Option<String>,
    /// Atlantis's bbolt file (read-only; Atlantis may keep running).
    #[arg(long, value_name = "FILE")]
    pub legacy_boltdb: Option<PathBuf>,
}

/// One Atlantis lock, as compared: who holds it, and since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Held {
    pub holder: String,
    pub user: String,
    pub time: String,
    /// An elock lease on an Atlantis key taken outside Atlantis (CLI, `elock run`, the API):
    /// Atlantis's record of it, where there is one, was made up by elock when it was written.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub outside_atlantis: bool,
}

fn held(l: &ProjectLock) -> Held {
    Held {
        holder: format!("{}#{}", l.project.repo_full_name, l.pull.num),
        user: l.user.username.clone(),
        time: l.time.to_string(),
        outside_atlantis: false,
    }
}

fn held_command(c: &CommandLock) -> Held {
    Held {
        holder: "atlantis (apply lock)".into(),
        user: String::new(),
        time: c.lock_metadata.unix_time.to_string(),
        outside_atlantis: false,
    }
}

/// Every lock of a store by its current-format key (legacy keys are read as the lock they were
/// written for), plus what could not be read.
#[derive(Default)]
pub struct Side {
    pub locks: BTreeMap<String, Held>,
    pub unreadable: Vec<String>,
}

async fn legacy_side(src: &LegacySource) -> Result<Side, CliError> {
    let mut side = Side::default();
    match (&src.legacy_redis, &src.legacy_boltdb) {
        (Some(addr), _) => {
            let url = legacy_redis_url(addr)
                .ok_or_else(|| CliError::usage("--legacy-redis: empty address"))?;
            let r = AtlantisRedis::connect(&url)
                .await
                .map_err(CliError::usage)?;
            for (key, l) in r.list().await.map_err(CliError::usage)? {
                let current = LockKey::of(&l).to_string();
                if current != key && LockKey::of(&l).legacy().to_string() != key {
                    side.unreadable
                        .push(format!("pr/{key}: its lock's own key is {current:?}"));
                }
                side.locks.insert(current, held(&l));
            }
            if let Some(c) = r.check_command().await.map_err(CliError::usage)? {
                side.locks
                    .insert(APPLY_LOCK_RESOURCE.into(), held_command(&c));
            }
        }
        (None, Some(file)) => {
            let db = Bolt::open(file).map_err(|e| CliError::usage(e.to_string()))?;
            let bucket = |name: &[u8]| {
                db.bucket(name)
                    .map_err(|e| CliError::usage(e.to_string()))
                    .map(Option::unwrap_or_default)
            };
            for e in bucket(b"runLocks")? {
                let Entry::Value { key, value } = e else {
                    continue;
                };
                match ProjectLock::from_json(&value) {
                    Ok(l) => {
                        side.locks.insert(LockKey::of(&l).to_string(), held(&l));
                    }
                    Err(err) => side
                        .unreadable
                        .push(format!("{}: {err}", String::from_utf8_lossy(&key))),
                }
            }
            for e in bucket(b"globalLocks")? {
                if let Entry::Value { key, value } = e {
                    if key == b"apply/lock" {
                        if let Ok(c) = CommandLock::from_json(&value) {
                            side.locks
                                .insert(APPLY_LOCK_RESOURCE.into(), held_command(&c));
                        }
                    }
                }
            }
        }
        (None, None) => {
            return Err(CliError::usage(
                "give the legacy store: --legacy-redis ADDRESS (Atlantis's Redis) or --legacy-boltdb FILE (its atlantis.db)",
            ))
        }
    }
    Ok(side)
}

/// elock's Atlantis locks (leases carrying `metadata.atlantis`), every other lease on an
/// Atlantis key (Atlantis should see those too), and the leases whose resource is not their
/// lock's key.
async fn elock_side(client: &Client) -> Result<Side, CliError> {
    let export = client.export(false).await?;
    let mut side = Side::default();
    for l in &export.snapshot.leases {
        let Some(atlantis) = l.metadata.as_ref().and_then(|m| m.get("atlantis")) else {
            for h in &l.resources {
                let r = h.resource.as_str();
                if let Some(lock) =
                    ProjectLock::standing_for(r, l.owner.as_str(), l.acquired_at.as_millis())
                {
                    side.locks.insert(
                        r.to_string(),
                        Held {
                            outside_atlantis: true,
                            ..held(&lock)
                        },
                    );
                }
            }
            continue;
        };
        let Some(first) = l.resources.first() else {
            continue;
        };
        let resource = first.resource.as_str();
        if resource == APPLY_LOCK_RESOURCE {
            let c = serde_json::from_value::<CommandLock>(atlantis.clone()).unwrap_or_default();
            side.locks.insert(resource.into(), held_command(&c));
            continue;
        }
        match serde_json::from_value::<ProjectLock>(atlantis.clone()) {
            Ok(lock) => {
                let key = LockKey::of(&lock);
                let owner = l.owner.as_str();
                let h = held(&lock);
                if resource != key.to_string() && resource != key.legacy().to_string() {
                    side.unreadable.push(format!(
                        "lease on {resource:?} carries the lock of {:?}",
                        key.to_string()
                    ));
                }
                if owner != h.holder {
                    side.unreadable.push(format!(
                        "lease on {resource:?} is owned by {owner:?}, its lock by {:?}",
                        h.holder
                    ));
                }
                side.locks.insert(key.to_string(), h);
            }
            Err(e) => side
                .unreadable
                .push(format!("lease on {resource:?}: metadata.atlantis: {e}")),
        }
    }
    Ok(side)
}

#[derive(Serialize)]
pub struct Difference {
    pub key: String,
    pub kind: &'static str,
    pub legacy: Option<Held>,
    pub elock: Option<Held>,
}

fn differences(legacy: &Side, elock: &Side) -> Vec<Difference> {
    let mut keys: Vec<&String> = legacy.locks.keys().chain(elock.locks.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (legacy.locks.get(k), elock.locks.get(k));
            let kind = match (a, b) {
                (Some(_), None) => "only in the legacy store",
                (None, Some(y)) if y.outside_atlantis => {
                    "only in elock: a lease taken outside Atlantis, without Atlantis's record"
                }
                (None, Some(_)) => "only in elock",
                (Some(x), Some(y)) if x.holder != y.holder => "held by different pulls",
                // A record elock made up for a lease taken outside Atlantis carries the time
                // it was written, not the lease's: only the holder is compared.
                (Some(x), Some(y)) if x != y && !y.outside_atlantis => {
                    "same holder, different details"
                }
                _ => return None,
            };
            Some(Difference {
                key: k.clone(),
                kind,
                legacy: a.cloned(),
                elock: b.cloned(),
            })
        })
        .collect()
}

fn show_held(h: &Option<Held>) -> String {
    h.as_ref().map_or("-".into(), |h| {
        format!("{} {} {}", h.holder, h.user, h.time)
            .trim()
            .to_string()
    })
}

fn print_differences(diffs: &[Difference]) {
    output::table(
        &["KEY", "DIFFERENCE", "LEGACY", "ELOCK"],
        &diffs
            .iter()
            .map(|d| {
                vec![
                    d.key.clone(),
                    d.kind.into(),
                    show_held(&d.legacy),
                    show_held(&d.elock),
                ]
            })
            .collect::<Vec<_>>(),
    );
}

fn failed(n: usize, what: &str) -> CliError {
    CliError {
        exit: 1,
        message: format!("{n} {what}"),
        body: None,
    }
}

/// `elock compare-backends --output json`.
#[derive(Serialize)]
struct Comparison<'a> {
    legacy_locks: usize,
    elock_locks: usize,
    differences: &'a [Difference],
    unreadable: Unreadable<'a>,
}

#[derive(Serialize)]
struct Unreadable<'a> {
    legacy: &'a [String],
    elock: &'a [String],
}

/// `elock validate-consistency --output json`.
#[derive(Serialize)]
struct Consistency<'a> {
    mode: &'a str,
    traffic_percentage: u8,
    legacy_locks: usize,
    elock_locks: usize,
    violations: &'a [Violation],
}

/// `elock compare-backends`: every lock in one store and not the other, or held differently.
pub async fn compare_backends(
    client: &Client,
    src: &LegacySource,
    out: Format,
) -> Result<(), CliError> {
    let legacy = legacy_side(src).await?;
    let elock = elock_side(client).await?;
    let diffs = differences(&legacy, &elock);
    if out == Format::Json {
        output::json(&Comparison {
            legacy_locks: legacy.locks.len(),
            elock_locks: elock.locks.len(),
            differences: &diffs,
            unreadable: Unreadable {
                legacy: &legacy.unreadable,
                elock: &elock.unreadable,
            },
        });
    } else {
        say!(
            "legacy store: {} lock(s); elock: {} lock(s); {} difference(s)",
            legacy.locks.len(),
            elock.locks.len(),
            diffs.len()
        );
        if !diffs.is_empty() {
            print_differences(&diffs);
        }
        for u in legacy
            .unreadable
            .iter()
            .map(|u| format!("legacy store: {u}"))
        {
            say!("unreadable: {u}");
        }
        for u in elock.unreadable.iter().map(|u| format!("elock: {u}")) {
            say!("unreadable: {u}");
        }
    }
    let n = diffs.len() + legacy.unreadable.len() + elock.unreadable.len();
    if n > 0 {
        return Err(failed(
            n,
            "difference(s) between the legacy store and elock",
        ));
    }
    Ok(())
}

/// One broken rule of the migration mode in force.
#[derive(Serialize)]
pub struct Violation {
    pub key: String,
    pub rule: String,
}

/// `elock validate-consistency`: the two stores together obey the server's migration mode.
pub async fn validate_consistency(
    client: &Client,
    src: &LegacySource,
    out: Format,
) -> Result<(), CliError> {
    let state = client.atlantis().migration().await?;
    let mode = state.mode.name();
    let pct = state.traffic_percentage;
    let legacy = legacy_side(src).await?;
    let elock = elock_side(client).await?;
    let mut violations: Vec<Violation> = Vec::new();
    let mut v = |key: &str, rule: String| {
        violations.push(Violation {
            key: key.into(),
            rule,
        })
    };
    for u in &elock.unreadable {
        v("", format!("elock: {u}"));
    }
    for u in &legacy.unreadable {
        v("", format!("legacy store: {u}"));
    }
    for d in differences(&legacy, &elock) {
        match (mode, d.kind) {
            (_, "held by different pulls") => v(
                &d.key,
                format!(
                    "held twice: by {} in the legacy store and by {} in elock",
                    show_held(&d.legacy),
                    show_held(&d.elock)
                ),
            ),
            ("shadow", "only in the legacy store") => v(
                &d.key,
                "shadow: a legacy lock that elock did not mirror".into(),
            ),
            ("shadow", "same holder, different details") => v(
                &d.key,
                format!(
                    "shadow: mirrored differently ({} vs {})",
                    show_held(&d.legacy),
                    show_held(&d.elock)
                ),
            ),
            ("enhanced", "only in the legacy store") => v(
                &d.key,
                "enhanced: a lock only the legacy store has (Atlantis still writing there?)".into(),
            ),
            ("split", "only in the legacy store") if routes_to_elock(&d.key, pct) => v(
                &d.key,
                format!("split {pct}%: routed to elock, but held in the legacy store (taken before the percentage changed? it is still honoured)"),
            ),
            ("split", "only in elock") if !routes_to_elock(&d.key, pct) => v(
                &d.key,
                format!("split {pct}%: routed to the legacy store, but held in elock"),
            ),
            ("shadow", "only in elock") => v(
                &d.key,
                "shadow: a lock only elock has (taken by a native client, or the legacy store's was deleted without elock)".into(),
            ),
            _ => {}
        }
    }
    if out == Format::Json {
        output::json(&Consistency {
            mode,
            traffic_percentage: pct,
            legacy_locks: legacy.locks.len(),
            elock_locks: elock.locks.len(),
            violations: &violations,
        });
    } else {
        say!(
            "mode {mode} ({pct}% to elock); legacy store: {} lock(s); elock: {} lock(s); {} violation(s)",
            legacy.locks.len(),
            elock.locks.len(),
            violations.len()
        );
        output::table(
            &["KEY", "RULE"],
            &violations
                .iter()
                .map(|v| vec![v.key.clone(), v.rule.clone()])
                .collect::<Vec<_>>(),
        );
    }
    if !violations.is_empty() {
        return Err(failed(violations.len(), "consistency violation(s)"));
    }
    Ok(())
}
