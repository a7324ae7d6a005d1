//! What the log holds: record writes, and their binary encoding.
//!
//! A batch (one group commit, one log frame) is a sequence of writes, each a tag byte and its
//! fields: ids as their 16 bytes, lease and ticket values as JSON (readable by tools, tolerant of
//! added fields), fencing counters as a resource name and a `u64`. Integers are little-endian.
//! The state a log describes is the last write of each key: [`Image`].

use ahash::AHashMap;

use crate::error::{Error, Result};
use crate::model::{LeaseId, ResourceName, TicketId};
use crate::table::{ChangeSet, LockTable, Snapshot};

/// One record write of a batch.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Write {
    PutLease(LeaseId, Vec<u8>),
    DeleteLease(LeaseId),
    PutTicket(TicketId, Vec<u8>),
    DeleteTicket(TicketId),
    PutFence(ResourceName, u64),
}

const PUT_LEASE: u8 = 1;
const DELETE_LEASE: u8 = 2;
const PUT_TICKET: u8 = 3;
const DELETE_TICKET: u8 = 4;
const PUT_FENCE: u8 = 5;

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
            Some(l) => Write::PutLease(id, json(l)?),
            None => Write::DeleteLease(id),
        });
    }
    let mut seen_tickets = ahash::AHashSet::new();
    for id in changes.tickets {
        if !seen_tickets.insert(id) {
            continue;
        }
        out.push(match table.ticket_record(&id) {
            Some(t) => Write::PutTicket(id, json(t)?),
            None => Write::DeleteTicket(id),
        });
    }
    for r in changes.fences {
        let token = table.last_fencing_token(r.as_str());
        out.push(Write::PutFence(r, token));
    }
    Ok(())
}

/// Every record of a snapshot, as puts.
pub(super) fn snapshot_writes(snapshot: &Snapshot) -> Result<Vec<Write>> {
    let mut out =
        Vec::with_capacity(snapshot.leases.len() + snapshot.tickets.len() + snapshot.fences.len());
    for (r, t) in &snapshot.fences {
        out.push(Write::PutFence(r.clone(), *t));
    }
    for l in &snapshot.leases {
        out.push(Write::PutLease(l.id, json(l)?));
    }
    for t in &snapshot.tickets {
        out.push(Write::PutTicket(t.id, json(t)?));
    }
    Ok(out)
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("cannot encode record: {e}")))
}

/// Appends the binary form of `writes` to `out`.
pub(super) fn encode_batch(writes: &[Write], out: &mut Vec<u8>) {
    for w in writes {
        match w {
            Write::PutLease(id, v) => {
                out.push(PUT_LEASE);
                out.extend_from_slice(id.as_bytes());
                put_bytes(out, v);
            }
            Write::DeleteLease(id) => {
                out.push(DELETE_LEASE);
                out.extend_from_slice(id.as_bytes());
            }
            Write::PutTicket(id, v) => {
                out.push(PUT_TICKET);
                out.extend_from_slice(id.as_bytes());
                put_bytes(out, v);
            }
            Write::DeleteTicket(id) => {
                out.push(DELETE_TICKET);
                out.extend_from_slice(id.as_bytes());
            }
            Write::PutFence(r, token) => {
                out.push(PUT_FENCE);
                put_bytes(out, r.as_str().as_bytes());
                out.extend_from_slice(&token.to_le_bytes());
            }
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v);
}

/// Reads a batch back. The frame's checksum already matched, so a batch that does not parse was
/// written by something else: an error, with the offset within the batch.
pub(super) fn decode_batch(mut b: &[u8], mut each: impl FnMut(Write)) -> Result<()> {
    let len = b.len();
    while !b.is_empty() {
        let at = len - b.len();
        let bad = |what: &str| Error::Storage(format!("{what} at byte {at} of a log record"));
        let tag = b[0];
        b = &b[1..];
        let w = match tag {
            PUT_LEASE | DELETE_LEASE | PUT_TICKET | DELETE_TICKET => {
                let id: [u8; 16] = take(&mut b, 16)
                    .ok_or_else(|| bad("a truncated id"))?
                    .try_into()
                    .expect("16 bytes");
                match tag {
                    PUT_LEASE => Write::PutLease(
                        LeaseId::from_bytes(id),
                        take_bytes(&mut b)
                            .ok_or_else(|| bad("a truncated lease"))?
                            .to_vec(),
                    ),
                    DELETE_LEASE => Write::DeleteLease(LeaseId::from_bytes(id)),
                    PUT_TICKET => Write::PutTicket(
                        TicketId::from_bytes(id),
                        take_bytes(&mut b)
                            .ok_or_else(|| bad("a truncated ticket"))?
                            .to_vec(),
                    ),
                    _ => Write::DeleteTicket(TicketId::from_bytes(id)),
                }
            }
            PUT_FENCE => {
                let name = take_bytes(&mut b).ok_or_else(|| bad("a truncated resource name"))?;
                let name = std::str::from_utf8(name)
                    .ok()
                    .and_then(|n| ResourceName::new(n).ok())
                    .ok_or_else(|| bad("an invalid resource name"))?;
                let token = take(&mut b, 8).ok_or_else(|| bad("a truncated fencing counter"))?;
                Write::PutFence(name, u64::from_le_bytes(token.try_into().expect("8 bytes")))
            }
            other => return Err(bad(&format!("an unknown record type {other}"))),
        };
        each(w);
    }
    Ok(())
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Some(head)
}

fn take_bytes<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(take(b, 4)?.try_into().expect("4 bytes")) as usize;
    take(b, len)
}

/// The state a sequence of writes leaves: the last value of each record.
#[derive(Default)]
pub(super) struct Image {
    pub leases: AHashMap<LeaseId, Vec<u8>>,
    pub tickets: AHashMap<TicketId, Vec<u8>>,
    pub fences: AHashMap<ResourceName, u64>,
}

impl Image {
    pub fn apply(&mut self, w: Write) {
        match w {
            Write::PutLease(id, v) => {
                self.leases.insert(id, v);
            }
            Write::DeleteLease(id) => {
                self.leases.remove(&id);
            }
            Write::PutTicket(id, v) => {
                self.tickets.insert(id, v);
            }
            Write::DeleteTicket(id) => {
                self.tickets.remove(&id);
            }
            Write::PutFence(r, t) => {
                self.fences.insert(r, t);
            }
        }
    }

    pub fn records(&self) -> usize {
        self.leases.len() + self.tickets.len() + self.fences.len()
    }

    /// Every record as puts, for a snapshot file.
    pub fn into_writes(self) -> impl Iterator<Item = Write> {
        let fences = self.fences.into_iter().map(|(r, t)| Write::PutFence(r, t));
        let leases = self
            .leases
            .into_iter()
            .map(|(id, v)| Write::PutLease(id, v));
        let tickets = self
            .tickets
            .into_iter()
            .map(|(id, v)| Write::PutTicket(id, v));
        fences.chain(leases).chain(tickets)
    }

    /// Decodes the records, on every core: a million leases are a few seconds of JSON on one.
    /// `file` names where they came from in an error.
    pub fn into_snapshot(self, file: &str) -> Result<Snapshot> {
        Ok(Snapshot {
            leases: decode_all(self.leases.into_iter().collect(), "lease", file)?,
            tickets: decode_all(self.tickets.into_iter().collect(), "ticket", file)?,
            fences: self.fences.into_iter().collect(),
        })
    }
}

fn decode_all<K, T>(records: Vec<(K, Vec<u8>)>, what: &str, file: &str) -> Result<Vec<T>>
where
    K: std::fmt::Display + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = records.len().div_ceil(threads).max(1024);
    let decode = |part: &[(K, Vec<u8>)]| -> Result<Vec<T>> {
        part.iter()
            .map(|(id, v)| {
                serde_json::from_slice(v).map_err(|e| {
                    Error::Storage(format!("{file}: {what} record {id} does not parse: {e}"))
                })
            })
            .collect()
    };
    if records.len() <= chunk {
        return decode(&records);
    }
    std::thread::scope(|scope| {
        let parts: Vec<_> = records
            .chunks(chunk)
            .map(|part| scope.spawn(move || decode(part)))
            .collect();
        let mut out = Vec::with_capacity(records.len());
        for part in parts {
            out.extend(part.join().expect("a decoding thread panicked")?);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_back_as_written() {
        let writes = vec![
            Write::PutLease(LeaseId::from_u128(1), b"{\"a\":1}".to_vec()),
            Write::DeleteLease(LeaseId::from_u128(2)),
            Write::PutTicket(TicketId::from_u128(3), b"{}".to_vec()),
            Write::DeleteTicket(TicketId::from_u128(4)),
            Write::PutFence(ResourceName::new("repo/dir/ws").unwrap(), 42),
        ];
        let mut bytes = Vec::new();
        encode_batch(&writes, &mut bytes);
        let mut back = Vec::new();
        decode_batch(&bytes, |w| back.push(w)).unwrap();
        assert_eq!(back, writes);
    }

    #[test]
    fn a_batch_cut_short_is_an_error_naming_where() {
        let mut bytes = Vec::new();
        encode_batch(
            &[
                Write::DeleteLease(LeaseId::from_u128(2)),
                Write::PutLease(LeaseId::from_u128(1), b"{\"a\":1}".to_vec()),
            ],
            &mut bytes,
        );
        bytes.truncate(bytes.len() - 3);
        let err = decode_batch(&bytes, drop).unwrap_err().to_string();
        assert!(err.contains("truncated lease at byte 17"), "{err}");
    }
}
