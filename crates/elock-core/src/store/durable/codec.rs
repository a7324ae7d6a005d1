//! The embedded store's on-disk layout (redb) and record encoding.
//!
//! Tables: `leases` (16-byte id → lease JSON), `tickets` (16-byte id → ticket JSON), `fences`
//! (resource → last fencing token, u64), `meta` (`format` → "1"). JSON keeps records readable
//! by tools and tolerant of added fields.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{Error, Result};
use crate::model::{Lease, LeaseId, ResourceName, Ticket, TicketId};
use crate::table::{ChangeSet, LockTable, Snapshot};

pub(super) const LEASES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("leases");
pub(super) const TICKETS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tickets");
pub(super) const FENCES: TableDefinition<&str, u64> = TableDefinition::new("fences");
pub(super) const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

pub(super) const FORMAT: &str = "1";
pub(super) const FILE_NAME: &str = "elock.redb";

/// One record write of a batch.
#[derive(Debug)]
pub(super) enum Write {
    PutLease(LeaseId, Vec<u8>),
    DeleteLease(LeaseId),
    PutTicket(TicketId, Vec<u8>),
    DeleteTicket(TicketId),
    PutFence(ResourceName, u64),
}

/// The writes that make the disk match the table for the records in `changes`.
pub(super) fn encode_changes(
    table: &LockTable,
    changes: ChangeSet,
    out: &mut Vec<Write>,
) -> Result<()> {
    let mut seen_leases = ahash::AHashSet::new();
    for id in changes.leases {
        if !seen_leases.insert(id) {
            continue;
        }
        out.push(match table.lease_record(&id) {
            Some(l) => Write::PutLease(id, encode(l)?),
            None => Write::DeleteLease(id),
        });
    }
    let mut seen_tickets = ahash::AHashSet::new();
    for id in changes.tickets {
        if !seen_tickets.insert(id) {
            continue;
        }
        out.push(match table.ticket_record(&id) {
            Some(t) => Write::PutTicket(id, encode(t)?),
            None => Write::DeleteTicket(id),
        });
    }
    for r in changes.fences {
        let token = table.last_fencing_token(r.as_str());
        out.push(Write::PutFence(r, token));
    }
    Ok(())
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("cannot encode record: {e}")))
}

/// Applies a batch in one transaction and commits it durably (one fsync for the whole batch).
pub(super) fn write_batch(db: &Database, writes: &[Write]) -> Result<()> {
    let tx = db
        .begin_write()
        .map_err(storage("begin a write transaction"))?;
    {
        let mut leases = tx
            .open_table(LEASES)
            .map_err(storage("open table leases"))?;
        let mut tickets = tx
            .open_table(TICKETS)
            .map_err(storage("open table tickets"))?;
        let mut fences = tx
            .open_table(FENCES)
            .map_err(storage("open table fences"))?;
        for w in writes {
            match w {
                Write::PutLease(id, v) => leases
                    .insert(id.as_bytes().as_slice(), v.as_slice())
                    .map(drop),
                Write::DeleteLease(id) => leases.remove(id.as_bytes().as_slice()).map(drop),
                Write::PutTicket(id, v) => tickets
                    .insert(id.as_bytes().as_slice(), v.as_slice())
                    .map(drop),
                Write::DeleteTicket(id) => tickets.remove(id.as_bytes().as_slice()).map(drop),
                Write::PutFence(r, t) => fences.insert(r.as_str(), *t).map(drop),
            }
            .map_err(storage("write a record"))?;
        }
    }
    tx.commit().map_err(storage("commit"))
}

/// Opens (or creates) the database in `dir`. A file that is not a valid elock database is an
/// error naming the file, never a silently empty start.
pub(super) fn open(dir: &Path) -> Result<(Database, Snapshot)> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Storage(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    let path = dir.join(FILE_NAME);
    let db = Database::create(&path).map_err(|e| match e {
        // Another process holds the file's lock: a second server, not a damaged file.
        redb::DatabaseError::DatabaseAlreadyOpen => Error::Storage(format!(
            "{} is locked by another process: another elock server is probably running on the \
             data directory {} (stop it first, or give this one its own --data-dir)",
            path.display(),
            dir.display()
        )),
        e => Error::Storage(format!(
            "cannot open the embedded store {}: {e} (if the file is damaged, restore it from a backup or move it away to start empty)",
            path.display()
        )),
    })?;
    let ctx = |what: &str, e: &dyn std::fmt::Display| {
        Error::Storage(format!("{}: cannot {what}: {e}", path.display()))
    };
    // Create the tables (and the format marker) on first use.
    let tx = db
        .begin_write()
        .map_err(|e| ctx("begin a transaction", &e))?;
    {
        let mut meta = tx
            .open_table(META)
            .map_err(|e| ctx("open table meta", &e))?;
        let format = meta
            .get("format")
            .map_err(|e| ctx("read the format", &e))?
            .map(|v| v.value().to_string());
        match format.as_deref() {
            None => {
                meta.insert("format", FORMAT)
                    .map_err(|e| ctx("write the format", &e))?;
            }
            Some(FORMAT) => {}
            Some(other) => {
                return Err(Error::Storage(format!(
                    "{} has store format {other:?}; this elock reads format {FORMAT}",
                    path.display()
                )))
            }
        }
        tx.open_table(LEASES)
            .map_err(|e| ctx("open table leases", &e))?;
        tx.open_table(TICKETS)
            .map_err(|e| ctx("open table tickets", &e))?;
        tx.open_table(FENCES)
            .map_err(|e| ctx("open table fences", &e))?;
    }
    tx.commit().map_err(|e| ctx("commit", &e))?;

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
    Ok((db, snapshot))
}

fn storage<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Storage(format!("embedded store: cannot {what}: {e}"))
}
