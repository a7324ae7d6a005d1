//! `elock lock`, `unlock`, `renew`, `list`: one lease at a time.

use elock_client::api::{Lease, LeaseId, ListQuery, Metadata, Owner, Priority, StateFilter};
use elock_client::{Acquired, Client};

use super::errors::CliError;
use super::output::{self, opt, say, text, Format};

#[derive(clap::Args, Debug)]
pub struct LockArgs {
    /// The resources: all are granted or none.
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// Who holds the lock (a pull request, a CI job).
    #[arg(long)]
    pub owner: String,
    /// low, normal, high, critical (or 0..3).
    #[arg(long)]
    pub priority: Option<String>,
    /// Lease lifetime (30s, 10m, 2h); default: the server's default-timeout.
    #[arg(long)]
    pub ttl: Option<String>,
    /// How long to wait in the queue (0: try once; default: the resource's policy, else try
    /// once). With --detach, how long the ticket stays in line.
    #[arg(long)]
    pub wait: Option<String>,
    /// Queue and return at once with a ticket; the lock is granted later even if nobody waits
    /// (`elock ticket show|cancel ID`).
    #[arg(long)]
    pub detach: bool,
    /// Holder metadata, repeatable: --metadata pr=42 --metadata by=alice
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only leases holding a resource that starts with this.
    #[arg(long)]
    pub resource_prefix: Option<String>,
    /// Only this owner's leases.
    #[arg(long)]
    pub owner: Option<String>,
    /// held or expired.
    #[arg(long)]
    pub state: Option<String>,
    /// e.g. 1h: only leases held longer than that.
    #[arg(long)]
    pub held_longer_than: Option<String>,
}

/// A duration flag (`--ttl 10m`), refused with the flag's name and value.
pub fn duration(flag: &'static str, raw: &str) -> Result<std::time::Duration, CliError> {
    elock_core::model::parse_duration(flag, raw)
        .map_err(|e| CliError::usage(format!("--{flag}: {e}")))
}

pub fn priority(raw: &str) -> Result<Priority, CliError> {
    raw.parse()
        .map_err(|e| CliError::usage(format!("--priority {raw:?}: {e}")))
}

/// A lease id as given on the command line.
pub fn lease_id(raw: &str) -> Result<LeaseId, CliError> {
    raw.parse().map_err(|_| {
        CliError::usage(format!(
            "{raw:?} is not a lease id: expected 22 characters of URL-safe base64 (the id `elock lock` printed)"
        ))
    })
}

fn metadata(pairs: &[String]) -> Result<Option<Metadata>, CliError> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut map = serde_json::Map::new();
    for kv in pairs {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| CliError::usage(format!("--metadata {kv:?}: expected KEY=VALUE")))?;
        map.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    Metadata::new(serde_json::Value::Object(map))
        .map(Some)
        .map_err(|e| CliError::usage(format!("--metadata: {e}")))
}

pub async fn lock(client: &Client, a: LockArgs, out: Format) -> Result<(), CliError> {
    let mut req = client.lock(&a.owner, &a.resources)?;
    if let Some(p) = &a.priority {
        req = req.priority(priority(p)?);
    }
    if let Some(t) = &a.ttl {
        req = req.ttl(duration("ttl", t)?);
    }
    if let Some(w) = &a.wait {
        req = req.wait(duration("wait", w)?);
    }
    if a.detach {
        req = req.detach();
    }
    if let Some(m) = metadata(&a.metadata)? {
        req = req.metadata(m);
    }
    // A wait on a terminal (asked for, or the resource's policy's) shows its progress on
    // stderr; the line starts after a second, so a try-lock's answer comes before it.
    use std::io::IsTerminal;
    let waits = !a.detach;
    let progress = (waits && std::io::stderr().is_terminal()).then(|| {
        tokio::spawn(super::progress::show(
            client.clone(),
            a.resources[0].clone(),
            a.owner.clone(),
            "elock lock",
        ))
    });
    let answer = req.send().await;
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[K");
    }
    match (answer?, out) {
        (Acquired::Granted { lease, reentrant }, Format::Json) => {
            output::json(&elock_client::api::LeaseAnswer { lease, reentrant })
        }
        (Acquired::Queued(ticket), Format::Json) => output::json(&ticket),
        (Acquired::Granted { lease, .. }, Format::Table) => {
            say!("lease {}", lease.id);
            let rows: Vec<_> = lease
                .resources
                .iter()
                .map(|r| vec![r.resource.to_string(), r.fencing_token.to_string()])
                .collect();
            output::table(&["resource", "fencing token"], &rows);
        }
        (Acquired::Queued(ticket), Format::Table) => {
            say!(
                "queued: ticket {} (lease {} when granted)",
                ticket.id,
                opt(&ticket.lease_id)
            );
            let rows: Vec<_> = ticket
                .position
                .iter()
                .map(|(r, p)| vec![r.to_string(), p.to_string()])
                .collect();
            output::table(&["resource", "position"], &rows);
        }
    }
    Ok(())
}

/// Prints a lease as JSON (`--output json`) or as one line for people.
fn show(out: Format, lease: &Lease, line: impl FnOnce(&Lease) -> String) {
    match out {
        Format::Json => output::json(lease),
        Format::Table => say!("{}", line(lease)),
    }
}

/// What `elock unlock` releases: one lease by id, or every lease of a resource, an owner or a
/// pull request.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct UnlockArgs {
    /// The lease id `elock lock` printed (22 characters; it may begin with `-`).
    #[arg(allow_hyphen_values = true)]
    pub lease_id: Option<String>,
    /// Release the lease holding RESOURCE.
    #[arg(long)]
    pub resource: Option<String>,
    /// Release every lease of OWNER.
    #[arg(long)]
    pub owner: Option<String>,
    /// Release every lease of an Atlantis pull request, given as OWNER/REPO#N (its owner name).
    #[arg(long, value_name = "OWNER/REPO#N")]
    pub pull: Option<String>,
}

pub async fn unlock(client: &Client, a: UnlockArgs, out: Format) -> Result<(), CliError> {
    let leases: Vec<Lease> = if let Some(id) = &a.lease_id {
        vec![client.release(lease_id(id)?).await?]
    } else {
        let held = match (&a.resource, &a.owner, &a.pull) {
            (Some(r), _, _) => client.resource(r).await?.holder.into_iter().collect(),
            (_, Some(o), _) => list_of_owner(client, o, "--owner").await?,
            (_, _, Some(p)) => {
                let (repo, n) = p.rsplit_once('#').unwrap_or((p, ""));
                if !repo.contains('/') || n.parse::<u64>().is_err() {
                    return Err(CliError::usage(format!(
                        "--pull {p:?}: expected OWNER/REPO#N, e.g. acme/infra#42"
                    )));
                }
                list_of_owner(client, p, "--pull").await?
            }
            (None, None, None) => unreachable!("clap requires one"),
        };
        let mut released = Vec::new();
        for l in held {
            released.push(client.release(l.id).await?);
        }
        released
    };
    match out {
        Format::Json => output::json(&elock_client::api::LockList { locks: leases }),
        Format::Table if leases.is_empty() => say!("nothing to release"),
        Format::Table => {
            for l in &leases {
                let names: Vec<String> =
                    l.resources.iter().map(|r| r.resource.to_string()).collect();
                say!("released {} ({}: {})", l.id, l.owner, names.join(", "));
            }
        }
    }
    Ok(())
}

async fn list_of_owner(client: &Client, owner: &str, flag: &str) -> Result<Vec<Lease>, CliError> {
    let owner = Owner::new(owner).map_err(|e| CliError::usage(format!("{flag}: {e}")))?;
    Ok(client
        .list(&ListQuery {
            owner: Some(owner),
            ..ListQuery::default()
        })
        .await?)
}

#[derive(Debug, clap::Subcommand)]
pub enum TicketCommand {
    /// A ticket's place in its queues, priority and deadline.
    Show {
        /// The ticket id `elock lock --detach` printed (it may begin with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Leave the queue: the ticket is cancelled and whoever is behind moves up.
    Cancel {
        /// The ticket id (it may begin with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

pub async fn ticket(client: &Client, c: TicketCommand, out: Format) -> Result<(), CliError> {
    let (id, cancel) = match &c {
        TicketCommand::Show { id } => (id, false),
        TicketCommand::Cancel { id } => (id, true),
    };
    let id: elock_client::api::TicketId = id.parse().map_err(|_| {
        CliError::usage(format!(
            "{id:?} is not a ticket id: expected 22 characters of URL-safe base64 (the ticket `elock lock --detach` printed)"
        ))
    })?;
    let t = if cancel {
        client.cancel_ticket(id).await?
    } else {
        client.ticket(id).await?
    };
    match out {
        Format::Json => output::json(&t),
        Format::Table => {
            if cancel {
                say!("cancelled ticket {}", t.id);
            }
            let rows: Vec<_> = t
                .position
                .iter()
                .map(|(r, p)| {
                    vec![
                        r.to_string(),
                        p.to_string(),
                        t.owner.to_string(),
                        t.effective_priority.to_string(),
                        t.enqueued_at.to_string(),
                        opt(&t.deadline),
                    ]
                })
                .collect();
            output::table(
                &[
                    "resource", "position", "owner", "priority", "enqueued", "deadline",
                ],
                &rows,
            );
        }
    }
    Ok(())
}

pub async fn renew(
    client: &Client,
    id: &str,
    ttl: Option<&str>,
    out: Format,
) -> Result<(), CliError> {
    let ttl = ttl.map(|t| duration("ttl", t)).transpose()?;
    let lease = client.renew(lease_id(id)?, ttl).await?;
    show(out, &lease, |l| {
        format!("renewed {} until {}", l.id, opt(&l.expires_at))
    });
    Ok(())
}

pub async fn list(client: &Client, a: ListArgs, out: Format) -> Result<(), CliError> {
    let filter = ListQuery {
        resource_prefix: a.resource_prefix,
        owner: a
            .owner
            .map(|o| Owner::new(&o).map_err(|e| CliError::usage(format!("--owner: {e}"))))
            .transpose()?,
        state: a
            .state
            .map(|s| match s.as_str() {
                "held" => Ok(StateFilter::Held),
                "expired" => Ok(StateFilter::Expired),
                other => Err(CliError::usage(format!(
                    "--state {other:?}: expected held or expired"
                ))),
            })
            .transpose()?,
        held_longer_than: a
            .held_longer_than
            .map(|d| duration("held-longer-than", &d))
            .transpose()?,
    };
    let locks = client.list(&filter).await?;
    if out == Format::Json {
        output::json(&elock_client::api::LockList { locks });
        return Ok(());
    }
    let rows: Vec<_> = locks
        .iter()
        .map(|l| {
            let resources: Vec<String> = l
                .resources
                .iter()
                .map(|r| format!("{} ({})", r.resource, r.fencing_token))
                .collect();
            vec![
                l.id.to_string(),
                l.owner.to_string(),
                resources.join(", "),
                l.priority.to_string(),
                l.acquired_at.to_string(),
                opt(&l.expires_at),
                text(&l.state),
            ]
        })
        .collect();
    output::table(
        &[
            "lease",
            "owner",
            "resources (token)",
            "priority",
            "acquired",
            "expires",
            "state",
        ],
        &rows,
    );
    Ok(())
}
