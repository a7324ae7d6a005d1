//! `elock atlantis ...`: Atlantis's data brought into elock.
//!
//! `import-boltdb FILE` reads Atlantis's bbolt file (never writing it) and imports, through the
//! server's import (admin), every project lock of `runLocks` as a lease (docs/atlantis.md: resource = the
//! lock key, owner `{repo}#{pull}`, no expiry, the ProjectLock JSON in `metadata.atlantis`) and
//! the apply command lock of `globalLocks` as a lease on `global/apply/lock`. Legacy three-part
//! keys are imported under their current key (from the lock's own fields). The VCS credentials
//! in each lock's `CloneURL` are left out (as in Atlantis's `SanitizedCloneURL`) unless
//! `--include-secrets` is given: elock never needs them. `pulls` holds pull
//! request statuses, not locks: counted and skipped. Importing the same file again changes
//! nothing: every lock is then reported as already present.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use elock_atlantis::bolt::{Bolt, Entry};
use elock_atlantis::{
    owner_name, CommandLock, LockKey, ProjectLock, APPLY_LOCK_OWNER, APPLY_LOCK_RESOURCE,
};
use elock_client::api::{ExportFile, ImportReport, EXPORT_FORMAT};
use elock_client::Client;
use elock_core::model::{
    HeldResource, Lease, LeaseId, LeaseState, Metadata, Owner, Priority, ResourceName, Timestamp,
};
use elock_core::policy::{Policies, PolicyRule};
use elock_core::table::Snapshot;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::errors::CliError;
use super::output::{self, say, Format};

/// Import requests stay well under the server's 256 KiB body limit.
const CHUNK_BYTES: usize = 160 * 1024;

/// What an import did, lock by lock.
#[derive(Default, serde::Serialize)]
pub struct ImportSummary {
    pub file: String,
    pub imported: usize,
    pub already_present: usize,
    pub legacy_keys: usize,
    /// Locks whose pull request description was left out to fit (see `MAX_ATLANTIS_JSON`).
    pub bodies_omitted: usize,
    pub pulls_skipped: usize,
    pub skipped: Vec<(String, String)>,
    /// Locks Atlantis held on keys elock holds otherwise: not imported, and reported.
    pub conflicts: Vec<Conflict>,
    pub seconds: f64,
    pub locks_per_second: f64,
}

/// A lock of the file on a key elock holds for someone else (or for the same pull, but without
/// Atlantis's lock): Atlantis and elock disagree about who holds the project.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Conflict {
    pub key: String,
    /// Who Atlantis says holds it.
    pub atlantis: String,
    /// Who holds it in elock, and how the lease was taken.
    pub elock: String,
}

/// Whether elock's `lease` already is Atlantis's `lock` (an earlier import, the adapter): then
/// the import has nothing to do. Anything else holding the key is a conflict.
fn holds_as_atlantis(lease: &Lease, lock: &ProjectLock) -> bool {
    lease
        .metadata
        .as_ref()
        .and_then(|m| m.get("atlantis"))
        .and_then(|v| serde_json::from_value::<ProjectLock>(v.clone()).ok())
        .is_some_and(|l| l.pull.num == lock.pull.num && LockKey::of(&l) == LockKey::of(lock))
}

/// How a lease on an Atlantis key was taken, for a conflict report.
fn how_held(lease: &Lease) -> String {
    let atlantis = lease
        .metadata
        .as_ref()
        .and_then(|m| m.get("atlantis"))
        .and_then(|v| serde_json::from_value::<ProjectLock>(v.clone()).ok());
    match atlantis {
        Some(l) => format!(
            "{} (Atlantis's lock of pull {}, since {})",
            lease.owner, l.pull.num, lease.acquired_at
        ),
        None => format!(
            "{} (taken outside Atlantis: CLI, elock run or the API; since {})",
            lease.owner, lease.acquired_at
        ),
    }
}

/// Above this, a lock's JSON goes without its pull request's description (`Pull.Body`), which
/// Atlantis shows but never needs to lock or unlock, so that it fits in a lease's metadata.
const MAX_ATLANTIS_JSON: usize = 12 * 1024;

/// The lease an Atlantis project lock becomes (token: the resource's next fencing token), and
/// whether the pull request's description had to be left out.
pub fn lease_for_lock(
    lock: &ProjectLock,
    token: u64,
    include_secrets: bool,
) -> Result<(Lease, bool), String> {
    let redacted;
    let lock = if include_secrets {
        lock
    } else {
        redacted = lock.redacted();
        &redacted
    };
    let key = LockKey::of(lock).to_string();
    let mut json = lock.to_go_json();
    let mut omitted = false;
    if json.len() > MAX_ATLANTIS_JSON && !lock.pull.body.is_empty() {
        let mut lighter = lock.clone();
        lighter.pull.body = String::new();
        json = lighter.to_go_json();
        omitted = true;
    }
    let atlantis: Value = serde_json::from_slice(&json).map_err(|e| format!("not JSON: {e}"))?;
    lease(
        &key,
        &owner_name(&lock.project.repo_full_name, lock.pull.num),
        lock.time.unix_millis(),
        token,
        atlantis,
    )
    .map(|l| (l, omitted))
}

/// `{"atlantis": <Atlantis's JSON>}`: where elock keeps what Atlantis wrote.
fn atlantis_metadata(atlantis: Value) -> Result<Metadata, String> {
    let mut map = serde_json::Map::new();
    map.insert("atlantis".into(), atlantis);
    Metadata::new(Value::Object(map)).map_err(|e| e.to_string())
}

fn lease(
    resource: &str,
    owner: &str,
    at: u64,
    token: u64,
    atlantis: Value,
) -> Result<Lease, String> {
    Ok(Lease {
        id: LeaseId::random(),
        owner: Owner::new(owner).map_err(|e| e.to_string())?,
        resources: vec![HeldResource {
            resource: ResourceName::new(resource).map_err(|e| e.to_string())?,
            fencing_token: token,
        }],
        priority: Priority::Normal,
        acquired_at: Timestamp::from_millis(at),
        expires_at: None,
        ttl: None,
        metadata: Some(atlantis_metadata(atlantis)?),
        state: LeaseState::Held,
    })
}

pub async fn import_boltdb(
    client: &Client,
    file: &Path,
    include_secrets: bool,
    out: Format,
) -> Result<(), CliError> {
    let started = Instant::now();
    let db = Bolt::open(file).map_err(|e| CliError::usage(e.to_string()))?;
    let mut summary = ImportSummary {
        file: file.display().to_string(),
        ..ImportSummary::default()
    };
    // Fencing counters already in elock: an imported lease takes the next token.
    let export = client.export(false).await?;
    let fences: HashMap<String, u64> = export
        .snapshot
        .fences
        .iter()
        .map(|(r, t)| (r.to_string(), *t))
        .collect();
    let next = |r: &str| fences.get(r).copied().unwrap_or(0) + 1;
    // Who holds what in elock now: a key already held is either Atlantis's same lock (present)
    // or a conflict, never counted as imported nor silently skipped.
    let held: HashMap<String, &Lease> = export
        .snapshot
        .leases
        .iter()
        .flat_map(|l| l.resources.iter().map(move |h| (h.resource.to_string(), l)))
        .collect();

    let mut leases: Vec<(String, Lease)> = Vec::new();
    let skip = |key: &[u8], why: String, s: &mut ImportSummary| {
        s.skipped
            .push((String::from_utf8_lossy(key).into_owned(), why));
    };
    for e in db
        .bucket(b"runLocks")
        .map_err(|e| CliError::usage(e.to_string()))?
        .unwrap_or_default()
    {
        let Entry::Value { key, value } = e else {
            skip(e.key(), "a nested bucket, not a lock".into(), &mut summary);
            continue;
        };
        let lock = match ProjectLock::from_json(&value) {
            Ok(l) => l,
            Err(err) => {
                skip(&key, format!("not a ProjectLock: {err}"), &mut summary);
                continue;
            }
        };
        let current = LockKey::of(&lock).to_string();
        if current.as_bytes() != key.as_slice() {
            if LockKey::of(&lock).legacy().to_string().as_bytes() == key.as_slice() {
                summary.legacy_keys += 1;
            } else {
                skip(
                    &key,
                    format!("the key does not match its lock (expected {current:?})"),
                    &mut summary,
                );
                continue;
            }
        }
        if let Some(holder) = held.get(&current) {
            if holds_as_atlantis(holder, &lock) {
                summary.already_present += 1;
            } else {
                summary.conflicts.push(Conflict {
                    key: current.clone(),
                    atlantis: format!(
                        "{} (pull {} by {})",
                        owner_name(&lock.project.repo_full_name, lock.pull.num),
                        lock.pull.num,
                        lock.user.username
                    ),
                    elock: how_held(holder),
                });
            }
            continue;
        }
        match lease_for_lock(&lock, next(&current), include_secrets) {
            Ok((l, omitted)) => {
                summary.bodies_omitted += usize::from(omitted);
                leases.push((current, l))
            }
            Err(err) => skip(&key, err, &mut summary),
        }
    }
    for e in db
        .bucket(b"globalLocks")
        .map_err(|e| CliError::usage(e.to_string()))?
        .unwrap_or_default()
    {
        match &e {
            Entry::Value { key, .. }
                if key.as_slice() == b"apply/lock" && held.contains_key(APPLY_LOCK_RESOURCE) =>
            {
                let holder = &held[APPLY_LOCK_RESOURCE];
                if holder.owner.as_str() == APPLY_LOCK_OWNER {
                    summary.already_present += 1;
                } else {
                    summary.conflicts.push(Conflict {
                        key: APPLY_LOCK_RESOURCE.into(),
                        atlantis: "the apply lock".into(),
                        elock: how_held(holder),
                    });
                }
            }
            Entry::Value { key, value } if key.as_slice() == b"apply/lock" => {
                match CommandLock::from_json(value)
                    .map_err(|e| e.to_string())
                    .and_then(|c| {
                        let v: Value =
                            serde_json::from_slice(&c.to_go_json()).map_err(|e| e.to_string())?;
                        lease(
                            APPLY_LOCK_RESOURCE,
                            APPLY_LOCK_OWNER,
                            c.lock_metadata.unix_time.max(0) as u64 * 1000,
                            next(APPLY_LOCK_RESOURCE),
                            v,
                        )
                    }) {
                    Ok(l) => leases.push((APPLY_LOCK_RESOURCE.into(), l)),
                    Err(err) => skip(key, err, &mut summary),
                }
            }
            other => skip(
                other.key(),
                "not a command lock elock knows".into(),
                &mut summary,
            ),
        }
    }
    summary.pulls_skipped = db
        .bucket(b"pulls")
        .map_err(|e| CliError::usage(e.to_string()))?
        .map_or(0, |v| v.len());

    let progress = ProgressBar::new(leases.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("importing [{bar:30}] {pos}/{len} locks {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut chunks: Vec<Vec<Lease>> = vec![Vec::new()];
    let mut size = 0;
    let mut keys: HashMap<String, String> = HashMap::new();
    for (key, l) in leases {
        size += serde_json::to_vec(&l).map_or(0, |v| v.len());
        keys.insert(l.id.to_string(), key);
        chunks.last_mut().expect("one chunk at least").push(l);
        if size >= CHUNK_BYTES {
            chunks.push(Vec::new());
            size = 0;
        }
    }
    // A few requests in flight: the server commits them together.
    use futures_util::stream::{self, StreamExt};
    let mut answers = stream::iter(chunks.into_iter().filter(|c| !c.is_empty()))
        .map(|c| async {
            let n = c.len() as u64;
            let owners: HashMap<String, String> = c
                .iter()
                .map(|l| (l.id.to_string(), l.owner.to_string()))
                .collect();
            (n, owners, send(client, c).await)
        })
        .buffer_unordered(4);
    while let Some((n, owners, report)) = answers.next().await {
        tally(report?, &owners, &keys, &mut summary);
        progress.inc(n);
    }
    drop(answers);
    progress.finish_and_clear();
    summary.seconds = started.elapsed().as_secs_f64();
    summary.locks_per_second =
        (summary.imported + summary.already_present) as f64 / summary.seconds.max(1e-9);
    match out {
        Format::Json => output::json(&summary),
        Format::Table => {
            say!(
                "{}: imported {} lock(s), {} already present ({} under a legacy three-part key, {} without their pull request description, too long to keep), {} pull status(es) skipped, {:.2}s ({:.0} locks/s); the file was not modified",
                summary.file,
                summary.imported,
                summary.already_present,
                summary.legacy_keys,
                summary.bodies_omitted,
                summary.pulls_skipped,
                summary.seconds,
                summary.locks_per_second
            );
            if !summary.skipped.is_empty() {
                let rows: Vec<Vec<String>> = summary
                    .skipped
                    .iter()
                    .map(|(k, r)| vec![k.clone(), r.clone()])
                    .collect();
                output::table(&["skipped key", "reason"], &rows);
            }
            if !summary.conflicts.is_empty() {
                let rows: Vec<Vec<String>> = summary
                    .conflicts
                    .iter()
                    .map(|c| vec![c.key.clone(), c.atlantis.clone(), c.elock.clone()])
                    .collect();
                output::table(
                    &["conflict: key", "held in Atlantis by", "held in elock by"],
                    &rows,
                );
            }
        }
    }
    if summary.conflicts.is_empty() {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "{} lock(s) of Atlantis are on keys elock holds otherwise (listed above): they were not imported; release elock's leases or Atlantis's locks, then import again",
            summary.conflicts.len()
        )))
    }
}

/// Imports one chunk of leases.
async fn send(client: &Client, leases: Vec<Lease>) -> Result<ImportReport, CliError> {
    let file = ExportFile {
        format: EXPORT_FORMAT.into(),
        exported_at: Timestamp::from_millis(0),
        snapshot: Snapshot {
            fences: Vec::new(),
            leases,
            tickets: Vec::new(),
        },
    };
    Ok(client.import(&file).await?)
}

/// Counts one chunk's report. A lease refused because its resource is already held by the same
/// owner (an earlier import of this file) counts as already present.
fn tally(
    report: ImportReport,
    owners: &HashMap<String, String>,
    keys: &HashMap<String, String>,
    summary: &mut ImportSummary,
) {
    summary.imported += report.leases;
    for s in report.skipped {
        let key = keys.get(&s.id).cloned().unwrap_or_else(|| s.id.clone());
        match owners.get(&s.id) {
            Some(owner) if s.reason.ends_with(&format!("is held by {owner}")) => {
                summary.already_present += 1;
            }
            _ => summary.skipped.push((key, s.reason)),
        }
    }
}

/// One Redis command in the wire protocol (what `redis-cli --pipe` reads).
fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `elock atlantis export-redis [FILE]`: every Atlantis lock elock holds, in Atlantis's Redis
/// layout (`pr/{key}` → the ProjectLock JSON exactly as Go writes it, `global/apply/lock`), as
/// Redis commands for `redis-cli --pipe`: the way back to Atlantis on Redis. Credentials in
/// `CloneURL` are redacted unless `include_secrets`.
pub async fn export_redis(
    client: &Client,
    file: Option<&Path>,
    include_secrets: bool,
) -> Result<(), CliError> {
    let export = client.export(include_secrets).await?;
    let mut out = Vec::new();
    let (mut locks, mut apply) = (0, 0);
    let mut leases = export.snapshot.leases;
    leases.retain(|l| !l.resources.is_empty());
    leases.sort_by(|a, b| a.resources[0].resource.cmp(&b.resources[0].resource));
    for l in &leases {
        let Some(atlantis) = l.metadata.as_ref().and_then(|m| m.get("atlantis")) else {
            continue;
        };
        if l.resources[0].resource.as_str() == APPLY_LOCK_RESOURCE {
            if let Ok(c) = serde_json::from_value::<CommandLock>(atlantis.clone()) {
                out.extend(resp(&[b"SET", b"global/apply/lock", &c.to_go_json()]));
                apply += 1;
            }
            continue;
        }
        let Ok(lock) = serde_json::from_value::<ProjectLock>(atlantis.clone()) else {
            continue;
        };
        let lock = if include_secrets {
            lock
        } else {
            lock.redacted()
        };
        let key = format!("pr/{}", LockKey::of(&lock));
        out.extend(resp(&[b"SET", key.as_bytes(), &lock.to_go_json()]));
        locks += 1;
    }
    match file {
        Some(path) => {
            std::fs::write(path, &out)
                .map_err(|e| CliError::usage(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "wrote {locks} project lock(s) and {apply} apply lock(s) to {}; load them with: redis-cli --pipe < {}",
                path.display(),
                path.display()
            );
        }
        None => output::bytes(&out)
            .map_err(|e| CliError::usage(format!("cannot write the export: {e}")))?,
    }
    Ok(())
}

fn read_repo_config(file: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(file)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", file.display())))
}

/// One problem of `elock atlantis validate --output json`.
#[derive(serde::Serialize)]
struct Problem<'a> {
    file: String,
    line: usize,
    message: &'a str,
}

/// What `elock atlantis validate --output json` prints.
#[derive(serde::Serialize)]
struct Validation<'a> {
    problems: Vec<Problem<'a>>,
    /// The rules of elock's configuration (`enhanced-locking.policies`) equivalent to the elock
    /// settings found in the file.
    policies: &'a [elock_atlantis::repo_config::Suggestion],
}

/// The elock settings found in atlantis.yaml as policy rules, each checked as elock's
/// configuration would check it (`max-timeout` the server's).
fn suggested_rules(
    suggestions: &[elock_atlantis::repo_config::Suggestion],
    max_timeout: std::time::Duration,
) -> Vec<elock_atlantis::repo_config::Problem> {
    let mut problems = Vec::new();
    for s in suggestions {
        let text = s.to_yaml("");
        let rules: Result<Vec<PolicyRule>, _> = serde_yaml_ng::from_str(&text);
        let checked = rules
            .map_err(|e| e.to_string())
            .and_then(|r| Policies::new(r).map_err(|e| e.to_string()));
        let found: Vec<String> = match checked {
            Err(e) => vec![e],
            Ok(p) => p
                .problems(max_timeout, usize::MAX)
                .into_iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect(),
        };
        for message in found {
            problems.push(elock_atlantis::repo_config::Problem {
                line: s.line,
                message: format!(
                    "the equivalent policy rule for {:?} is not valid: {message}",
                    s.pattern
                ),
            });
        }
    }
    problems
}

/// `elock atlantis validate FILE`: the file read as Atlantis reads it, every problem with its
/// line, and where elock settings found in it belong; exit 1 if there is any problem.
pub fn validate(
    file: &Path,
    max_timeout: &str,
    repo: Option<&str>,
    out: Format,
) -> Result<(), CliError> {
    let max = elock_core::model::parse_duration("max-timeout", max_timeout)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let text = read_repo_config(file)?;
    let mut report = elock_atlantis::repo_config::read(&text, repo);
    report
        .problems
        .extend(suggested_rules(&report.suggestions, max));
    report.problems.sort();
    let problems = &report.problems;
    match out {
        Format::Json => output::json(&Validation {
            problems: problems
                .iter()
                .map(|p| Problem {
                    file: file.display().to_string(),
                    line: p.line,
                    message: &p.message,
                })
                .collect(),
            policies: &report.suggestions,
        }),
        Format::Table => {
            for p in problems {
                say!("{}:{}: {}", file.display(), p.line, p.message);
            }
            if problems.is_empty() {
                say!("{}: no problems", file.display());
            }
            if !report.suggestions.is_empty() {
                say!();
                say!("Atlantis will refuse this file: its repo_locks has only `mode`. Remove the elock");
                say!("settings from it and put these rules in elock's configuration instead:");
                say!();
                say!("enhanced-locking:\n  policies:");
                for s in &report.suggestions {
                    say!("{}", s.to_yaml("    ").trim_end());
                }
                let mut sections: Vec<&str> = report
                    .suggestions
                    .iter()
                    .flat_map(|s| s.server_wide.iter().map(String::as_str))
                    .collect();
                sections.sort();
                sections.dedup();
                for section in sections {
                    say!("# server-wide, not per resource: the `{section}` section of elock's configuration");
                }
                if repo.is_none() {
                    say!("# (give --repo OWNER/NAME to match this repository's keys only)");
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "{}: {} problem(s)",
            file.display(),
            problems.len()
        )))
    }
}

/// One project's lock in `elock atlantis locks`: Atlantis's key, owner and mode, and what elock's
/// policy gives a lock Atlantis takes on it.
#[derive(serde::Serialize)]
struct ProjectLockPlan {
    #[serde(flatten)]
    plan: elock_atlantis::repo_config::LockPlan,
    priority: String,
    /// `null`: never expires.
    ttl: Option<String>,
    wait: String,
    max_queue_size: usize,
    /// The policy rule that applies (`policies[i] (match: ...)`), if any.
    rule: Option<String>,
}

/// `elock atlantis locks FILE --repo R --pull N`: the lock each project takes, with the values
/// elock's policies give it (from `--config FILE`, else from the server).
pub async fn locks(
    client: Option<&Client>,
    file: &Path,
    repo: &str,
    pull: i64,
    config: Option<&Path>,
    out: Format,
) -> Result<(), CliError> {
    let text = read_repo_config(file)?;
    let report = elock_atlantis::repo_config::read(&text, Some(repo));
    if let Some(p) = report.problems.first() {
        return Err(CliError::usage(format!(
            "{}:{}: {} (run elock atlantis validate)",
            file.display(),
            p.line,
            p.message
        )));
    }
    let mut rows = Vec::new();
    for plan in elock_atlantis::repo_config::lock_requests(&report.projects, repo, pull) {
        let e = super::policy::explanation(client, config, &plan.resource).await?;
        rows.push(ProjectLockPlan {
            priority: e.priority.to_string(),
            ttl: e.atlantis_ttl.map(elock_core::model::format_duration),
            wait: elock_core::model::format_duration(e.wait),
            max_queue_size: e.max_queue_size,
            rule: e
                .rule
                .as_ref()
                .zip(e.rule_index)
                .map(|(r, i)| format!("policies[{i}] (match: {})", r.pattern)),
            plan,
        });
    }
    match out {
        Format::Json => output::json(&rows),
        Format::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.plan.project.clone(),
                        r.plan.resource.clone(),
                        r.plan.owner.clone(),
                        r.plan.mode.clone(),
                        r.priority.clone(),
                        r.ttl.clone().unwrap_or_else(|| "never".into()),
                        r.wait.clone(),
                        r.rule.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            output::table(
                &[
                    "project", "resource", "owner", "mode", "priority", "ttl", "wait", "rule",
                ],
                &table,
            );
        }
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum AtlantisCommand {
    /// Run a step of an Atlantis custom workflow under the project's lock: the lock key and
    /// owner come from the environment Atlantis sets (BASE_REPO_OWNER, BASE_REPO_NAME, PULL_NUM,
    /// REPO_REL_DIR, WORKSPACE, PROJECT_NAME, ...) exactly as Atlantis's own locking derives
    /// them, and the step runs with everything of `elock run` (its own holder, a lost lock
    /// reaching it within a second, its exit codes).
    ///
    /// Example (repos.yaml): run: elock atlantis run --wait 30m -- terraform apply $PLANFILE
    Run(super::atlantis_run::AtlantisRunArgs),
    /// Import Atlantis's locks from its bbolt file (admin).
    ///
    /// Every project lock of `runLocks` becomes a lease on its lock key, owned by
    /// `{repo}#{pull}`, with no expiry and the Atlantis JSON in `metadata.atlantis`; the apply
    /// lock of `globalLocks` a lease on `global/apply/lock`. Pull statuses (`pulls`) are
    /// skipped. The file is only read, never written (stop Atlantis first or copy the file: bbolt
    /// holds a lock on it while Atlantis runs). Importing twice changes nothing.
    ///
    /// The VCS token inside each lock's CloneURL is replaced by `<redacted>` unless
    /// --include-secrets is given.
    ///
    /// Example: elock atlantis import-boltdb /var/lib/atlantis/atlantis.db
    ImportBoltdb {
        /// Atlantis's atlantis.db (bbolt), read only.
        file: PathBuf,
        /// Keep the credentials of CloneURL in the imported locks.
        #[arg(long)]
        include_secrets: bool,
    },
    /// Check an atlantis.yaml the way Atlantis reads it: unknown keys refused at every level
    /// (Atlantis refuses the whole file for one), Atlantis's value checks, depends_on cycles and
    /// execution_order_group order. elock settings found in repo_locks (priority, timeout,
    /// queue_timeout, ...) are reported as what makes Atlantis refuse the file, with the
    /// equivalent rules for elock's configuration (enhanced-locking.policies). Every problem is
    /// printed with its line; exit 0 when there are none, 1 otherwise. Reads only the file (no
    /// server needed).
    ///
    /// Example: elock atlantis validate atlantis.yaml --repo acme/infra
    Validate {
        /// The repository's atlantis.yaml.
        file: PathBuf,
        /// The server's enhanced-locking.max-timeout: suggested rules above it are refused.
        #[arg(long, default_value = "2h")]
        max_timeout: String,
        /// The repository's full name (acme/infra): suggested rules match its keys only.
        #[arg(long)]
        repo: Option<String>,
    },
    /// Print the lock each project of an atlantis.yaml takes for a pull request: resource,
    /// owner, Atlantis's mode, and the priority, ttl and wait elock's policies give it (from the
    /// server, or from --config FILE without one).
    ///
    /// Example: elock atlantis locks atlantis.yaml --repo acme/infra --pull 42
    Locks {
        /// The repository's atlantis.yaml.
        file: PathBuf,
        /// The repository's full name, e.g. acme/infra.
        #[arg(long)]
        repo: String,
        /// The pull request number.
        #[arg(long)]
        pull: i64,
        /// elock's configuration file to read the policies from instead of the server.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write every Atlantis lock elock holds in Atlantis's Redis layout (admin): `pr/{key}` and
    /// `global/apply/lock`, as Redis commands for `redis-cli --pipe`. The way back to Atlantis.
    ///
    /// Example: elock atlantis export-redis locks.resp && redis-cli --pipe < locks.resp
    ExportRedis {
        /// Where to write (default: standard output).
        file: Option<PathBuf>,
        /// Keep the credentials of CloneURL (redacted otherwise).
        #[arg(long)]
        include_secrets: bool,
    },
}

/// The `elock atlantis ...` commands that talk to a server.
pub async fn run(client: &Client, command: AtlantisCommand, out: Format) -> Result<(), CliError> {
    match command {
        AtlantisCommand::ImportBoltdb {
            file,
            include_secrets,
        } => import_boltdb(client, &file, include_secrets, out).await,
        AtlantisCommand::ExportRedis {
            file,
            include_secrets,
        } => export_redis(client, file.as_deref(), include_secrets).await,
        AtlantisCommand::Validate {
            file,
            max_timeout,
            repo,
        } => validate(&file, &max_timeout, repo.as_deref(), out),
        AtlantisCommand::Locks {
            file,
            repo,
            pull,
            config,
        } => locks(Some(client), &file, &repo, pull, config.as_deref(), out).await,
        AtlantisCommand::Run(_) => unreachable!("dispatched with elock run"),
    }
}
