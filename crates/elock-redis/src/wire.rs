//! The JSON the Lua scripts exchange with Rust, and its conversion to and from elock-core's model.
//!
//! Ids travel as 32 hex digits (Redis orders them like the Rust table does), times and durations
//! as integer milliseconds, metadata as the text of its JSON object. Lua's JSON encoder writes an
//! empty array as `{}`, so every list accepts that too.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use elock_core::error::{Error, Result};
use elock_core::event::{Event, EventType};
use elock_core::model::{
    format_duration, CycleEdge, HeldResource, Lease, LeaseId, LeaseState, Metadata, Owner,
    Priority, Reentry, ResourceName, Ticket, TicketId, TicketView, Timestamp,
};
use elock_core::table::{DeadlockRecord, ImportReport, Resolution, ResolutionPolicy, Skipped};

pub fn hex(bytes: &[u8; 16]) -> String {
    let mut s = String::with_capacity(32);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn unhex(s: &str) -> Result<[u8; 16]> {
    let bad = || corrupt(format!("id {s:?} is not 32 hex digits"));
    if s.len() != 32 {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

pub fn lease_id(s: &str) -> Result<LeaseId> {
    unhex(s).map(LeaseId::from_bytes)
}

pub fn ticket_id(s: &str) -> Result<TicketId> {
    unhex(s).map(TicketId::from_bytes)
}

pub fn corrupt(message: impl std::fmt::Display) -> Error {
    Error::Storage(format!("unexpected data from Redis: {message}"))
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

fn owner(s: String) -> Result<Owner> {
    Owner::new(&s).map_err(corrupt)
}

fn resource(s: String) -> Result<ResourceName> {
    ResourceName::new(&s).map_err(corrupt)
}

fn priority(level: u8) -> Result<Priority> {
    if level > 3 {
        return Err(corrupt(format!("priority {level}")));
    }
    Ok(Priority::from_level_saturating(level))
}

fn metadata(text: Option<String>) -> Result<Option<Metadata>> {
    text.map(|t| {
        let value: serde_json::Value = serde_json::from_str(&t).map_err(corrupt)?;
        Metadata::new(value).map_err(corrupt)
    })
    .transpose()
}

fn metadata_text(m: &Option<Metadata>) -> Option<String> {
    m.as_ref()
        .map(|m| serde_json::to_string(m.as_map()).expect("a JSON map serialises"))
}

/// A list that Lua may have written as `{}` when empty.
pub fn lua_vec<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        List(Vec<T>),
        Empty(BTreeMap<String, serde_json::Value>),
    }
    match Option::<Either<T>>::deserialize(d)? {
        None => Ok(Vec::new()),
        Some(Either::List(v)) => Ok(v),
        Some(Either::Empty(m)) if m.is_empty() => Ok(Vec::new()),
        Some(Either::Empty(_)) => Err(de::Error::custom("expected a list")),
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireLease {
    pub id: String,
    pub owner: String,
    pub res: Vec<(String, u64)>,
    pub pri: u8,
    pub at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// A part of a lease spanning shards: every shard holding a part, ascending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sh: Option<Vec<usize>>,
    /// A part of a lease spanning shards: every resource of the lease, in request order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<String>>,
}

impl WireLease {
    pub fn from_lease(l: &Lease) -> Self {
        WireLease {
            id: hex(l.id.as_bytes()),
            owner: l.owner.to_string(),
            res: l
                .resources
                .iter()
                .map(|h| (h.resource.to_string(), h.fencing_token))
                .collect(),
            pri: l.priority.level(),
            at: l.acquired_at.as_millis(),
            exp: l.expires_at.map(|t| t.as_millis()),
            ttl: l.ttl.map(ms),
            meta: metadata_text(&l.metadata),
            state: None,
            sh: None,
            all: None,
        }
    }

    pub fn into_lease(self) -> Result<Lease> {
        let state = match self.state.as_deref() {
            None | Some("held") => LeaseState::Held,
            Some("released") => LeaseState::Released,
            Some("expired") => LeaseState::Expired,
            Some("force_released") => LeaseState::ForceReleased,
            Some(other) => return Err(corrupt(format!("lease state {other:?}"))),
        };
        Ok(Lease {
            id: lease_id(&self.id)?,
            owner: owner(self.owner)?,
            resources: self
                .res
                .into_iter()
                .map(|(r, t)| {
                    Ok(HeldResource {
                        resource: resource(r)?,
                        fencing_token: t,
                    })
                })
                .collect::<Result<_>>()?,
            priority: priority(self.pri)?,
            acquired_at: Timestamp::from_millis(self.at),
            expires_at: self.exp.map(Timestamp::from_millis),
            ttl: self.ttl.map(Duration::from_millis),
            metadata: metadata(self.meta)?,
            state,
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireTicket {
    pub id: String,
    pub lid: String,
    pub owner: String,
    pub res: Vec<String>,
    pub pri: u8,
    pub at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dl: Option<u64>,
    pub det: bool,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
    /// `true`: the ticket refused re-entry (its waits for its own owner are not deadlocks).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nore: bool,
}

impl WireTicket {
    pub fn from_ticket(t: &Ticket) -> Self {
        WireTicket {
            id: hex(t.id.as_bytes()),
            lid: hex(t.lease_id.as_bytes()),
            owner: t.owner.to_string(),
            res: t.resources.iter().map(|r| r.to_string()).collect(),
            pri: t.priority.level(),
            at: t.enqueued_at.as_millis(),
            dl: t.deadline.map(|d| d.as_millis()),
            det: t.detached,
            seq: t.seq,
            ttl: t.ttl.map(ms),
            meta: metadata_text(&t.metadata),
            nore: t.reentry == Reentry::Refuse,
        }
    }

    pub fn into_ticket(self) -> Result<Ticket> {
        Ok(Ticket {
            id: ticket_id(&self.id)?,
            lease_id: lease_id(&self.lid)?,
            owner: owner(self.owner)?,
            resources: self.res.into_iter().map(resource).collect::<Result<_>>()?,
            priority: priority(self.pri)?,
            enqueued_at: Timestamp::from_millis(self.at),
            deadline: self.dl.map(Timestamp::from_millis),
            detached: self.det,
            seq: self.seq,
            ttl: self.ttl.map(Duration::from_millis),
            metadata: metadata(self.meta)?,
            reentry: if self.nore {
                Reentry::Refuse
            } else {
                Reentry::Allow
            },
        })
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct WireView {
    pub id: String,
    pub owner: String,
    pub res: Vec<String>,
    pub pri: u8,
    pub eff: u8,
    pub at: u64,
    #[serde(default)]
    pub dl: Option<u64>,
    pub det: bool,
    pub pos: Vec<(String, u32)>,
    #[serde(default)]
    pub lid: Option<String>,
}

impl WireView {
    pub fn into_view(self) -> Result<TicketView> {
        Ok(TicketView {
            id: ticket_id(&self.id)?,
            owner: owner(self.owner)?,
            resources: self.res.into_iter().map(resource).collect::<Result<_>>()?,
            priority: priority(self.pri)?,
            effective_priority: priority(self.eff)?,
            enqueued_at: Timestamp::from_millis(self.at),
            deadline: self.dl.map(Timestamp::from_millis),
            detached: self.det,
            position: self
                .pos
                .into_iter()
                .map(|(r, n)| Ok((resource(r)?, n)))
                .collect::<Result<_>>()?,
            lease_id: self.lid.as_deref().map(lease_id).transpose()?,
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireEdge {
    pub waiter: String,
    pub ticket_id: String,
    pub resource: String,
    pub blocker: String,
}

impl WireEdge {
    pub fn from_edge(e: &CycleEdge) -> Self {
        WireEdge {
            waiter: e.waiter.to_string(),
            ticket_id: e
                .ticket_id
                .map(|t| hex(t.as_bytes()))
                .unwrap_or_else(|| "0".repeat(32)),
            resource: e.resource.to_string(),
            blocker: e.blocker.to_string(),
        }
    }

    pub fn into_edge(self) -> Result<CycleEdge> {
        Ok(CycleEdge {
            waiter: owner(self.waiter)?,
            ticket_id: Some(ticket_id(&self.ticket_id)?),
            resource: resource(self.resource)?,
            blocker: owner(self.blocker)?,
        })
    }
}

pub fn cycle(edges: Vec<WireEdge>) -> Result<Vec<CycleEdge>> {
    edges.into_iter().map(WireEdge::into_edge).collect()
}

/// What a script did, as one event of elock-core's model.
#[derive(Clone, Debug, Deserialize)]
pub struct WireEvent {
    pub k: String,
    #[serde(default)]
    pub l: Option<WireLease>,
    #[serde(default)]
    pub t: Option<WireTicket>,
    #[serde(default)]
    pub tid: Option<String>,
    #[serde(default)]
    pub enq: Option<u64>,
    #[serde(default)]
    pub dl: Option<u64>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "lua_vec")]
    pub cycle: Vec<WireEdge>,
    #[serde(default)]
    pub owner: Option<String>,
}

impl WireEvent {
    pub fn into_event(self, now: Timestamp) -> Result<Event> {
        let kind =
            EventType::parse(&self.k).ok_or_else(|| corrupt(format!("event {:?}", self.k)))?;
        let lease = self.l.map(WireLease::into_lease).transpose()?;
        let ticket = self.t.map(WireTicket::into_ticket).transpose()?;
        let need_lease = || {
            lease
                .as_ref()
                .ok_or_else(|| corrupt(format!("{} without a lease", self.k)))
        };
        let need_ticket = || {
            ticket
                .as_ref()
                .ok_or_else(|| corrupt(format!("{} without a ticket", self.k)))
        };
        let mut e = match kind {
            EventType::LockAcquired => Event::for_lease(kind, now, need_lease()?, true),
            EventType::QueueGranted => {
                let l = need_lease()?;
                let mut e = Event::for_lease(kind, now, l, true);
                e.ticket_id = self.tid.as_deref().map(ticket_id).transpose()?;
                e.waited = self.enq.map(|enq| now.since(Timestamp::from_millis(enq)));
                e
            }
            EventType::LockReleased
            | EventType::LockExpired
            | EventType::LockRenewed
            | EventType::LockForceReleased => Event::for_lease(kind, now, need_lease()?, false),
            EventType::QueueEnqueued | EventType::QueueCancelled => {
                Event::for_ticket(kind, now, need_ticket()?)
            }
            EventType::QueueTimeout => {
                let t = need_ticket()?;
                let mut e = Event::for_ticket(kind, now, t);
                let at = Timestamp::from_millis(self.dl.unwrap_or(now.as_millis()));
                e.reason = Some(format!(
                    "not granted within {}",
                    format_duration(at.since(t.enqueued_at))
                ));
                e
            }
            EventType::DeadlockDetected => {
                let mut e = Event::new(kind, now);
                e.owner = self.owner.clone().map(owner).transpose()?;
                e.ticket_id = self.tid.as_deref().map(ticket_id).transpose()?;
                e.reason = Some("victim_cancelled".into());
                e
            }
            other => return Err(corrupt(format!("a script emitted {}", other.name()))),
        };
        if let Some(reason) = self.reason {
            e.reason = Some(reason);
        }
        if !self.cycle.is_empty() {
            let c = cycle(self.cycle)?;
            if kind == EventType::DeadlockDetected {
                e.resources = c.iter().map(|x| x.resource.clone()).collect();
            }
            e.cycle = Some(c);
        }
        Ok(e)
    }
}

/// A script's answer: the time it ran at, its outcome or error, and the events it caused.
#[derive(Debug, Deserialize)]
pub struct Answer {
    pub now: u64,
    #[serde(default)]
    pub ok: Option<serde_json::Value>,
    #[serde(default)]
    pub err: Option<WireError>,
    #[serde(default, deserialize_with = "lua_vec")]
    pub ev: Vec<WireEvent>,
}

#[derive(Debug, Deserialize)]
pub struct WireError {
    pub code: String,
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl WireError {
    fn str(&self, name: &str) -> String {
        self.fields
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    }

    fn num(&self, name: &str) -> u64 {
        self.fields.get(name).and_then(|v| v.as_u64()).unwrap_or(0)
    }

    /// The same error the Rust table gives in the same case.
    pub fn into_error(self) -> Result<Error> {
        Ok(match self.code.as_str() {
            "no_resources" => Error::invalid("resources", "at least one resource is required"),
            "too_many_resources" => Error::invalid(
                "resources",
                format!(
                    "{} resources requested; at most {} per request",
                    self.num("n"),
                    elock_core::table::MAX_RESOURCES_PER_REQUEST
                ),
            ),
            "no_ttl" => Error::invalid(
                "ttl",
                "ttl null (no expiry) is allowed only for Atlantis-compatible locks when configured",
            ),
            "ttl_zero" => Error::invalid("ttl", "ttl 0s is too short: expected at least 1ms"),
            "fencing_exhausted" => {
                let i = self.num("i");
                Error::invalid(
                    format!("resources[{i}]"),
                    format!(
                        "resources[{i}] {:?} has minted its last fencing token ({}) and cannot be granted again: use another resource name",
                        self.str("r"),
                        elock_core::model::MAX_FENCING_TOKEN
                    ),
                )
            }
            "ttl_above" => Error::invalid(
                "ttl",
                format!(
                    "ttl {} is above max-timeout {}",
                    format_duration(Duration::from_millis(self.num("ttl"))),
                    format_duration(Duration::from_millis(self.num("max")))
                ),
            ),
            "lease_id_in_use" => Error::invalid(
                "lease_id",
                format!("lease id {} is already in use", lease_id(&self.str("id"))?),
            ),
            "lease_not_found" => Error::not_found(format!(
                "lease {} not found (released, expired or never granted)",
                lease_id(&self.str("id"))?
            )),
            "ticket_not_found" => Error::not_found(format!(
                "ticket {} not found (granted, timed out or cancelled)",
                ticket_id(&self.str("id"))?
            )),
            "not_held" => Error::not_found(format!(
                "resource {:?} is not held",
                resource(self.str("resource"))?
            )),
            "locked" => {
                let holder = match self.fields.get("holder") {
                    Some(v) => Some(Box::new(
                        serde_json::from_value::<WireLease>(v.clone())
                            .map_err(corrupt)?
                            .into_lease()?,
                    )),
                    None => None,
                };
                Error::Locked {
                    resource: resource(self.str("resource"))?,
                    holder,
                }
            }
            "queue_full" => Error::QueueFull {
                resource: resource(self.str("resource"))?,
                max: self.num("max") as usize,
            },
            "deadlock" => {
                let edges: Vec<WireEdge> = match self.fields.get("cycle") {
                    Some(v) => serde_json::from_value(v.clone()).map_err(corrupt)?,
                    None => Vec::new(),
                };
                Error::Deadlock {
                    cycle: cycle(edges)?,
                }
            }
            other => Error::Internal(format!("a Redis script failed with {other:?}")),
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct WireRecord {
    pub detected_at: u64,
    pub cycle: Vec<WireEdge>,
    pub victim: String,
    pub victim_ticket: String,
}

impl WireRecord {
    pub fn into_record(self, policy: ResolutionPolicy) -> Result<DeadlockRecord> {
        Ok(DeadlockRecord {
            detected_at: Timestamp::from_millis(self.detected_at),
            cycle: cycle(self.cycle)?,
            resolution: Resolution::VictimCancelled,
            victim: Some(owner(self.victim)?),
            victim_ticket: Some(ticket_id(&self.victim_ticket)?),
            policy: Some(policy),
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct WireReport {
    pub leases: usize,
    pub tickets: usize,
    #[serde(default, deserialize_with = "lua_vec")]
    pub skipped: Vec<WireSkipped>,
}

#[derive(Debug, Deserialize)]
pub struct WireSkipped {
    pub id: String,
    pub reason: String,
}

impl WireReport {
    pub fn into_report(self) -> Result<ImportReport> {
        Ok(ImportReport {
            leases: self.leases,
            tickets: self.tickets,
            skipped: self
                .skipped
                .into_iter()
                .map(|s| {
                    Ok(Skipped {
                        id: lease_id(&s.id)?.to_string(),
                        reason: s.reason,
                    })
                })
                .collect::<Result<_>>()?,
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct WireQueue {
    pub r: String,
    pub depth: usize,
    pub by: [usize; 4],
    pub oldest: u64,
}

#[derive(Debug, Deserialize)]
pub struct WireResource {
    pub token: u64,
    #[serde(default)]
    pub holder: Option<WireLease>,
    #[serde(default, deserialize_with = "lua_vec")]
    pub queue: Vec<WireView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_round_trip_and_keep_byte_order() {
        let a = LeaseId::from_u128(1);
        let b = LeaseId::from_u128(255 << 64);
        assert_eq!(lease_id(&hex(a.as_bytes())).unwrap(), a);
        assert_eq!(hex(a.as_bytes()) < hex(b.as_bytes()), a < b);
        assert!(lease_id("zz").is_err());
    }

    #[test]
    fn lua_empty_tables_read_as_empty_lists() {
        let a: Answer = serde_json::from_str(r#"{"now":5,"ok":{},"ev":{}}"#).unwrap();
        assert!(a.ev.is_empty());
        let r: WireReport =
            serde_json::from_str(r#"{"leases":1,"tickets":0,"skipped":{}}"#).unwrap();
        assert!(r.skipped.is_empty());
    }
}
