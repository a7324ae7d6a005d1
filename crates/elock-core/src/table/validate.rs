//! What the table accepts from outside: the ttl of a request, and whole snapshots (`import`).
//!
//! An import is checked in full before anything is written, against the same rules a request
//! meets, because a record the table took without checking is a record every later restart must
//! read back: one resource named twice in a lease, a date RFC 3339 cannot write, or a fencing
//! counter at its maximum would make the store unopenable or hand out a smaller token.

use std::collections::HashSet;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::{format_duration, ResourceName, Timestamp, MAX_FENCING_TOKEN};

use super::{Snapshot, TableConfig, MAX_RESOURCES_PER_REQUEST};

/// How far ahead of this server's clock an imported instant may lie: clocks of the server that
/// exported and the one importing may differ by this much.
pub const IMPORT_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The shortest ttl: the table counts whole milliseconds, so anything shorter is already over.
pub const MIN_TTL: Duration = Duration::from_millis(1);

impl TableConfig {
    /// The rule every ttl meets, in requests, renewals and imports.
    pub fn check_ttl(&self, field: &str, ttl: Option<Duration>) -> Result<()> {
        match ttl {
            None if !self.allow_no_ttl => Err(Error::invalid(
                field.to_string(),
                format!("{field} null (no expiry) is allowed only for Atlantis-compatible locks when configured"),
            )),
            Some(d) if d < MIN_TTL => Err(Error::invalid(
                field.to_string(),
                format!(
                    "{field} {d:?} is too short: expected at least {}",
                    format_duration(MIN_TTL)
                ),
            )),
            Some(d) if d > self.max_timeout => Err(Error::invalid(
                field.to_string(),
                format!(
                    "{field} {} is above max-timeout {}",
                    format_duration(d),
                    format_duration(self.max_timeout)
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl Snapshot {
    /// Checks every record as a request would be checked; the first refusal names the record by
    /// its index (`leases[3].resources[1]`) and shows the value. Conflicts with the table's
    /// current state are not refusals: import skips those records and reports them.
    pub fn validate(&self, config: &TableConfig, now: Timestamp) -> Result<()> {
        let horizon = now.plus(IMPORT_CLOCK_SKEW);
        for (i, (resource, token)) in self.fences.iter().enumerate() {
            check_token(&format!("fences[{i}]"), resource, *token, 0)?;
        }
        for (i, lease) in self.leases.iter().enumerate() {
            let at = format!("leases[{i}]");
            check_resources(
                &at,
                lease.resources.iter().map(|h| &h.resource),
                lease.resources.len(),
            )?;
            for (j, h) in lease.resources.iter().enumerate() {
                check_token(
                    &format!("{at}.resources[{j}].fencing_token"),
                    &h.resource,
                    h.fencing_token,
                    1,
                )?;
            }
            // No ttl is allowed here whatever `allow_no_ttl` says: Atlantis's locks never
            // expire, and importing them (an admin's act) is how a migration starts.
            if lease.ttl.is_some() {
                config.check_ttl(&format!("{at}.ttl"), lease.ttl)?;
            }
            check_not_after(&format!("{at}.acquired_at"), lease.acquired_at, horizon)?;
            match (lease.ttl, lease.expires_at) {
                (Some(_), Some(e)) => check_not_after(
                    &format!("{at}.expires_at"),
                    e,
                    horizon.plus(config.max_timeout),
                )?,
                (None, None) => {}
                (ttl, e) => {
                    return Err(Error::invalid(
                        format!("{at}.expires_at"),
                        format!(
                            "{at}.expires_at {} does not match ttl {}: a lease expires exactly when it has a ttl",
                            e.map_or("null".into(), |e| e.to_string()),
                            ttl.map_or("null".into(), format_duration)
                        ),
                    ))
                }
            }
        }
        for (i, ticket) in self.tickets.iter().enumerate() {
            let at = format!("tickets[{i}]");
            check_resources(&at, ticket.resources.iter(), ticket.resources.len())?;
            if ticket.ttl.is_some() {
                config.check_ttl(&format!("{at}.ttl"), ticket.ttl)?;
            }
            check_not_after(&format!("{at}.enqueued_at"), ticket.enqueued_at, horizon)?;
            if let Some(d) = ticket.deadline {
                check_not_after(
                    &format!("{at}.deadline"),
                    d,
                    horizon.plus(config.max_queue_wait.max(config.max_timeout)),
                )?;
            }
        }
        Ok(())
    }
}

/// Non-empty, at most [`MAX_RESOURCES_PER_REQUEST`], each named once.
fn check_resources<'a>(
    at: &str,
    resources: impl Iterator<Item = &'a ResourceName>,
    count: usize,
) -> Result<()> {
    if count == 0 {
        return Err(Error::invalid(
            format!("{at}.resources"),
            format!("{at}.resources is empty: at least one resource is required"),
        ));
    }
    if count > MAX_RESOURCES_PER_REQUEST {
        return Err(Error::invalid(
            format!("{at}.resources"),
            format!("{at}.resources names {count} resources; at most {MAX_RESOURCES_PER_REQUEST}"),
        ));
    }
    let mut seen = HashSet::with_capacity(count);
    for (j, r) in resources.enumerate() {
        if !seen.insert(r) {
            return Err(Error::invalid(
                format!("{at}.resources[{j}]"),
                format!("{at}.resources[{j}] {r:?} is named twice"),
            ));
        }
    }
    Ok(())
}

/// A fencing token or counter: at least `min`, and below the maximum so that the next grant of
/// the resource still has a token to mint.
fn check_token(at: &str, resource: &ResourceName, token: u64, min: u64) -> Result<()> {
    if token < min || token >= MAX_FENCING_TOKEN {
        return Err(Error::invalid(
            at.to_string(),
            format!(
                "{at}: fencing token {token} of {resource:?} is out of range: expected {min} to {}",
                MAX_FENCING_TOKEN - 1
            ),
        ));
    }
    Ok(())
}

fn check_not_after(at: &str, t: Timestamp, limit: Timestamp) -> Result<()> {
    if t > limit {
        return Err(Error::invalid(
            at.to_string(),
            format!("{at} {t} is too far in the future: expected no later than {limit}"),
        ));
    }
    Ok(())
}
