//! The embedded store's earlier format: one redb database, `elock.redb`, with tables `leases`
//! (16-byte id → lease JSON), `tickets` (16-byte id → ticket JSON), `fences` (resource → last
//! fencing token) and `meta` (`format` → "1"). A data directory in this format is converted
//! once, when a store first opens it: its records become the first snapshot of the log, and the
//! file is renamed `elock.redb.converted` (kept, never read again).

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{Error, Result};
use crate::model::{Lease, ResourceName, Ticket};
use crate::table::Snapshot;

pub(super) const LEASES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("leases");
pub(super) const TICKETS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tickets");
pub(super) const FENCES: TableDefinition<&str, u64> = TableDefinition::new("fences");
pub(super) const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

pub(super) const FORMAT: &str = "1";
pub(super) const FILE_NAME: &str = "elock.redb";
pub(super) const CONVERTED: &str = "elock.redb.converted";

/// Reads every record of the earlier format's `elock.redb`. A file that is not a valid elock
/// database is an error naming the file, never a silently empty start.
pub(super) fn read(path: &Path) -> Result<Snapshot> {
    let db = Database::open(path).map_err(|e| {
        Error::Storage(format!(
            "cannot open the embedded store {}: {e} (if the file is damaged, restore it from a backup or move it away to start empty)",
            path.display()
        ))
    })?;
    let ctx = |what: &str, e: &dyn std::fmt::Display| {
        Error::Storage(format!("{}: cannot {what}: {e}", path.display()))
    };
    {
        let rx = db.begin_read().map_err(|e| ctx("begin a read", &e))?;
        let meta = rx
            .open_table(META)
            .map_err(|e| ctx("open table meta", &e))?;
        let format = meta
            .get("format")
            .map_err(|e| ctx("read the format", &e))?
            .map(|v| v.value().to_string());
        if format.as_deref() != Some(FORMAT) {
            return Err(Error::Storage(format!(
                "{} has store format {format:?}; this elock converts format {FORMAT}",
                path.display()
            )));
        }
    }
    let rx = db.begin_read().map_err(|e| ctx("begin a read", &e))?;
    let mut snapshot = Snapshot::default();
    let leases = rx
        .open_table(LEASES)
        .map_err(|e| ctx("open table leases", &e))?;
    for item in leases.iter().map_err(|e| ctx("read leases", &e))? {
        let (k, v) = item.map_err(|e| ctx("read a lease", &e))?;
        let lease: Lease = serde_json::from_slice(v.value()).map_err(|e| {
            Error::Storage(format!(
                "{}: corrupt lease record {:02x?}: {e}",
                path.display(),
                k.value()
            ))
        })?;
        snapshot.leases.push(lease);
    }
    let tickets = rx
        .open_table(TICKETS)
        .map_err(|e| ctx("open table tickets", &e))?;
    for item in tickets.iter().map_err(|e| ctx("read tickets", &e))? {
        let (k, v) = item.map_err(|e| ctx("read a ticket", &e))?;
        let ticket: Ticket = serde_json::from_slice(v.value()).map_err(|e| {
            Error::Storage(format!(
                "{}: corrupt ticket record {:02x?}: {e}",
                path.display(),
                k.value()
            ))
        })?;
        snapshot.tickets.push(ticket);
    }
    let fences = rx
        .open_table(FENCES)
        .map_err(|e| ctx("open table fences", &e))?;
    for item in fences.iter().map_err(|e| ctx("read fences", &e))? {
        let (k, v) = item.map_err(|e| ctx("read a fence", &e))?;
        let r = ResourceName::new(k.value()).map_err(|e| {
            Error::Storage(format!("{}: corrupt fence record: {e}", path.display()))
        })?;
        snapshot.fences.push((r, v.value()));
    }
    drop((leases, tickets, fences));
    drop(rx);
    Ok(snapshot)
}
