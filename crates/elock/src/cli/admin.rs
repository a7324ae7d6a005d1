//! `elock force-unlock`, `cleanup`, `audit`, `export`, `import`: an administrator's tools (admin
//! tokens).

use std::path::{Path, PathBuf};

use elock_client::api::{AuditQuery, CleanupBody, ExportFile, Released, ResourceName};
use elock_client::Client;
use elock_core::model::{parse_duration, Timestamp};

use super::errors::CliError;
use super::output::{self, say, Format};

pub async fn force_unlock(
    client: &Client,
    resource: &str,
    reason: Option<&str>,
    out: Format,
) -> Result<(), CliError> {
    let lease = client.force_release(resource, reason).await?;
    match out {
        Format::Json => output::json(&lease),
        Format::Table => say!("force-released lease {} of {}", lease.id, lease.owner),
    }
    Ok(())
}

pub async fn cleanup(
    client: &Client,
    expired_only: bool,
    resource: Option<String>,
    force: bool,
    out: Format,
) -> Result<(), CliError> {
    let what = match (expired_only, resource) {
        (true, _) => CleanupBody {
            expired_only: true,
            ..CleanupBody::default()
        },
        (false, Some(r)) => CleanupBody {
            resource: Some(
                ResourceName::new(&r).map_err(|e| CliError::usage(format!("--resource: {e}")))?,
            ),
            force,
            ..CleanupBody::default()
        },
        (false, None) => {
            return Err(CliError::usage(
                "give --expired-only, or --resource R --force",
            ))
        }
    };
    let released = client.cleanup(&what).await?;
    match out {
        Format::Json => output::json(&Released { released }),
        Format::Table => say!("released {} lease(s)", released.len()),
    }
    Ok(())
}

/// `--since`: a time (RFC 3339) or how long ago (a duration).
fn since_query(since: Option<&str>) -> Result<AuditQuery, CliError> {
    let mut q = AuditQuery::default();
    let Some(text) = since else {
        return Ok(q);
    };
    if let Ok(d) = parse_duration("since", text) {
        q.last = Some(d);
    } else {
        q.since = Some(Timestamp::parse_rfc3339(text).map_err(|_| {
            CliError::usage(format!(
                "--since {text:?}: expected an RFC 3339 time (2026-12-08T10:00:00Z) or a duration (10m, 2h, 1d)"
            ))
        })?);
    }
    Ok(q)
}

pub async fn audit(
    client: &Client,
    since: Option<&str>,
    resource: Option<String>,
    owner: Option<String>,
    limit: u32,
    out: Format,
) -> Result<(), CliError> {
    let query = AuditQuery {
        limit: Some(limit.to_string()),
        resource,
        owner,
        ..since_query(since)?
    };
    let list = client.audit(&query).await?;
    if !list.enabled {
        eprintln!("auditing is off on this server (audit.enabled: false)");
    }
    match out {
        Format::Json => output::json(&list),
        Format::Table => {
            let rows: Vec<Vec<String>> = list
                .records
                .iter()
                .map(|r| {
                    let mut what = r.resources.join(",");
                    if let Some(h) = &r.former_holder {
                        what.push_str(&format!(" (from {h}"));
                        if let Some(reason) = &r.reason {
                            what.push_str(&format!(": {reason}"));
                        }
                        what.push(')');
                    }
                    vec![
                        r.time.to_string(),
                        r.actor.clone(),
                        r.operation.clone(),
                        match &r.error {
                            Some(e) => format!("{} {e}", r.status),
                            None => r.status.to_string(),
                        },
                        output::opt(&r.owner),
                        what,
                    ]
                })
                .collect();
            output::table(
                &["TIME", "BY", "OPERATION", "STATUS", "OWNER", "RESOURCES"],
                &rows,
            );
        }
    }
    Ok(())
}

pub async fn export(
    client: &Client,
    file: Option<PathBuf>,
    include_secrets: bool,
) -> Result<(), CliError> {
    let export = client.export(include_secrets).await?;
    let text = serde_json::to_string_pretty(&export).unwrap_or_default();
    match file {
        Some(path) => {
            std::fs::write(&path, text + "\n")
                .map_err(|e| CliError::usage(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "exported {} lease(s), {} ticket(s) to {}",
                export.snapshot.leases.len(),
                export.snapshot.tickets.len(),
                path.display()
            );
        }
        None => say!("{text}"),
    }
    Ok(())
}

/// Reads an export file, naming the field that does not fit.
pub fn read_export(file: &Path) -> Result<ExportFile, CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", file.display())))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        CliError::usage(format!(
            "{}: not an elock export (at {}): {}",
            file.display(),
            e.path(),
            e.inner()
        ))
    })
}

pub async fn import(client: &Client, file: &Path, out: Format) -> Result<(), CliError> {
    let export = read_export(file)?;
    let report = client.import(&export).await?;
    match out {
        Format::Json => output::json(&report),
        Format::Table => {
            say!(
                "imported {} lease(s), {} ticket(s)",
                report.leases,
                report.tickets
            );
            let rows: Vec<_> = report
                .skipped
                .iter()
                .map(|s| vec![s.id.clone(), s.reason.clone()])
                .collect();
            if !rows.is_empty() {
                output::table(&["skipped", "reason"], &rows);
            }
        }
    }
    Ok(())
}
