//! Every call of the lock API, typed: what is sent and what comes back are the server's own
//! types from `elock_core::api`.

use std::time::Duration;

use reqwest::Method;

use elock_core::api::{
    AcquireBody, AuditList, AuditQuery, CleanupBody, DeadlockReport, ExportFile, ForceReleaseBody,
    Health, ImportReport, Lease, LeaseAnswer, LeaseId, ListQuery, LockList, ManagerStats, Metadata,
    Owner, Priority, QueueList, QueueSummary, Readiness, Released, Reloaded, RenewBody,
    ResourceInfo, ResourceName, ResourceQuery, TicketId, TicketView, Ttl,
};

use crate::client::{Call, Client};
use crate::error::{Error, Result};
use crate::guard::LeaseGuard;

/// What an acquire got: the lease, or (detached) a ticket in the queue.
#[derive(Clone, Debug, PartialEq)]
pub enum Acquired {
    /// Granted now. `reentrant`: the owner already held these resources; this is its lease.
    Granted { lease: Lease, reentrant: bool },
    /// Queued (`detach`): the lock is granted later, to the ticket's `lease_id`.
    Queued(TicketView),
}

/// An acquire being described: `client.lock(owner, resources)`, then its settings, then one of
/// [`try_acquire`](Self::try_acquire), [`acquire`](Self::acquire), [`guard`](Self::guard) or
/// [`send`](Self::send).
#[must_use = "an acquire does nothing until it is sent"]
pub struct Acquire<'c> {
    client: &'c Client,
    body: AcquireBody,
}

impl Acquire<'_> {
    pub fn priority(mut self, priority: Priority) -> Self {
        self.body.priority = Some(priority);
        self
    }

    /// The lease's lifetime (default: the server's `default-timeout`).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.body.ttl = Ttl::After(ttl);
        self
    }

    /// A lease that never expires (refused unless the server allows it).
    pub fn no_expiry(mut self) -> Self {
        self.body.ttl = Ttl::Never;
        self
    }

    /// Wait in the queue up to `wait` (default: try once).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.body.wait = Some(wait);
        self
    }

    /// Queue and return at once with a ticket; the lock is granted later even if nobody waits.
    pub fn detach(mut self) -> Self {
        self.body.detach = true;
        self
    }

    /// Never the owner's own lease back: this request is a holder of its own, refused or
    /// queued behind the owner's other leases (two processes under one name exclude each other).
    pub fn refuse_reentry(mut self) -> Self {
        self.body.reentry = elock_core::api::Reentry::Refuse;
        self
    }

    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.body.metadata = Some(metadata);
        self
    }

    /// Sends the request as described: granted, queued (detached), or an error.
    pub async fn send(self) -> Result<Acquired> {
        let wait = self.body.wait.unwrap_or_default();
        let call = Call {
            method: Method::POST,
            path: "/api/v1/locks",
            query: None::<&()>,
            body: Some(&self.body),
            extra_time: wait,
        };
        let (status, bytes) = self.client.send(&call).await?;
        if status == reqwest::StatusCode::ACCEPTED {
            return self.client.decode(status, &bytes).map(Acquired::Queued);
        }
        let answer: LeaseAnswer = self.client.decode(status, &bytes)?;
        Ok(Acquired::Granted {
            lease: answer.lease,
            reentrant: answer.reentrant,
        })
    }

    /// Tries once: the lease, or `locked` at once.
    pub async fn try_acquire(mut self) -> Result<Lease> {
        self.body.wait = None;
        self.acquire().await
    }

    /// The lease, waiting as set by [`wait`](Self::wait): `wait_timeout` when it ran out.
    pub async fn acquire(mut self) -> Result<Lease> {
        self.body.detach = false;
        match self.send().await? {
            Acquired::Granted { lease, .. } => Ok(lease),
            Acquired::Queued(t) => Err(Error::Invalid(format!(
                "the server queued ticket {} instead of answering",
                t.id
            ))),
        }
    }

    /// The lease inside a [`LeaseGuard`]: renewed in the background, released on drop.
    pub async fn guard(self) -> Result<LeaseGuard> {
        let client = self.client.clone();
        let lease = self.acquire().await?;
        Ok(LeaseGuard::new(client, lease))
    }
}

impl Client {
    /// Describes an acquire of `resources` (all or none) for `owner`.
    ///
    /// Names are checked here as the server checks them: an invalid one is refused before
    /// sending, naming the value.
    pub fn lock<R: AsRef<str>>(
        &self,
        owner: &str,
        resources: impl IntoIterator<Item = R>,
    ) -> Result<Acquire<'_>> {
        let owner = Owner::new(owner).map_err(|e| Error::Invalid(e.to_string()))?;
        let resources = resources
            .into_iter()
            .map(|r| ResourceName::new(r.as_ref()).map_err(|e| Error::Invalid(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Acquire {
            client: self,
            body: AcquireBody::new(owner, resources),
        })
    }

    /// Sends an acquire body built elsewhere (a file, another tool).
    pub fn acquire_body(&self, body: AcquireBody) -> Acquire<'_> {
        Acquire { client: self, body }
    }

    /// Releases a lease: the lease as it was.
    pub async fn release(&self, id: LeaseId) -> Result<Lease> {
        let path = format!("/api/v1/locks/{id}");
        self.call(Call {
            method: Method::DELETE,
            ..Call::get(&path)
        })
        .await
    }

    /// Extends a lease: it expires `ttl` from now (its own ttl when `None`).
    pub async fn renew(&self, id: LeaseId, ttl: Option<Duration>) -> Result<Lease> {
        let path = format!("/api/v1/locks/{id}/renew");
        self.call(Call {
            method: Method::POST,
            path: &path,
            query: None::<&()>,
            body: Some(&RenewBody { ttl }),
            extra_time: Duration::ZERO,
        })
        .await
    }

    pub async fn lease(&self, id: LeaseId) -> Result<Lease> {
        self.call(Call::get(&format!("/api/v1/locks/{id}"))).await
    }

    /// Held leases, filtered.
    pub async fn list(&self, filter: &ListQuery) -> Result<Vec<Lease>> {
        let answer: LockList = self.call(Call::query("/api/v1/locks", filter)).await?;
        Ok(answer.locks)
    }

    /// A resource: its holder, its queue in order, its last fencing token.
    pub async fn resource(&self, name: &str) -> Result<ResourceInfo> {
        let name = ResourceName::new(name).map_err(|e| Error::Invalid(e.to_string()))?;
        self.call(Call::query("/api/v1/resource", &ResourceQuery { name }))
            .await
    }

    /// The lock policy of a resource: the rule of the server's `enhanced-locking.policies` that
    /// covers it, and the values a request that leaves them out gets.
    pub async fn policy(&self, name: &str) -> Result<elock_core::policy::Explanation> {
        let name = ResourceName::new(name).map_err(|e| Error::Invalid(e.to_string()))?;
        self.call(Call::query("/api/v1/policy", &ResourceQuery { name }))
            .await
    }

    /// Releases whatever holds `resource` (admin): the lease it took away.
    pub async fn force_release(&self, resource: &str, reason: Option<&str>) -> Result<Lease> {
        let name = ResourceName::new(resource).map_err(|e| Error::Invalid(e.to_string()))?;
        self.call(Call {
            method: Method::POST,
            path: "/api/v1/resource/force-release",
            query: None::<&()>,
            body: Some(&ForceReleaseBody {
                name,
                reason: reason.map(str::to_string),
            }),
            extra_time: Duration::ZERO,
        })
        .await
    }

    pub async fn ticket(&self, id: TicketId) -> Result<TicketView> {
        self.call(Call::get(&format!("/api/v1/tickets/{id}"))).await
    }

    /// Leaves the queue: the ticket as it was.
    pub async fn cancel_ticket(&self, id: TicketId) -> Result<TicketView> {
        let path = format!("/api/v1/tickets/{id}");
        self.call(Call {
            method: Method::DELETE,
            ..Call::get(&path)
        })
        .await
    }

    /// Every non-empty queue, deepest first.
    pub async fn queues(&self) -> Result<Vec<QueueSummary>> {
        let answer: QueueList = self.call(Call::get("/api/v1/queues")).await?;
        Ok(answer.queues)
    }

    pub async fn deadlocks(&self) -> Result<DeadlockReport> {
        self.call(Call::get("/api/v1/deadlocks")).await
    }

    pub async fn stats(&self) -> Result<ManagerStats> {
        self.call(Call::get("/api/v1/stats")).await
    }

    /// Health with its score. An unhealthy server answers 503 with the same body: that is a
    /// health report too, not an error.
    pub async fn health(&self) -> Result<Health> {
        let (status, bytes) = self.send(&Call::get("/api/enhanced-locks/health")).await?;
        match serde_json::from_slice::<Health>(&bytes) {
            Ok(h) if status.is_success() || status.as_u16() == 503 => Ok(h),
            _ => self.decode(status, &bytes),
        }
    }

    /// Whether the backend answers (`/readyz`); an unavailable backend is a report, not an error.
    pub async fn ready(&self) -> Result<Readiness> {
        let (status, bytes) = self.send(&Call::get("/readyz")).await?;
        match serde_json::from_slice::<Readiness>(&bytes) {
            Ok(r) => Ok(r),
            Err(_) => self.decode(status, &bytes),
        }
    }

    /// `/healthz`: the process answers (the cheapest call there is; a benchmark's baseline).
    pub async fn alive(&self) -> Result<()> {
        let (status, bytes) = self.send(&Call::get("/healthz")).await?;
        self.decode::<elock_core::api::Alive>(status, &bytes)
            .map(drop)
    }

    /// Releases expired leases (`{expired_only}`), or by force a resource's holder (admin).
    pub async fn cleanup(&self, what: &CleanupBody) -> Result<Vec<Lease>> {
        let answer: Released = self
            .call(Call {
                method: Method::POST,
                path: "/api/v1/cleanup",
                query: None::<&()>,
                body: Some(what),
                extra_time: Duration::ZERO,
            })
            .await?;
        Ok(answer.released)
    }

    /// Every lease, ticket and fencing counter (admin). Credentials in metadata are left out
    /// unless `include_secrets`.
    pub async fn export(&self, include_secrets: bool) -> Result<ExportFile> {
        let query = [("include-secrets", include_secrets)];
        self.call(Call::query("/api/v1/export", &query)).await
    }

    /// Adds what does not conflict (admin); importing twice changes nothing.
    pub async fn import(&self, file: &ExportFile) -> Result<ImportReport> {
        self.call(Call {
            method: Method::POST,
            path: "/api/v1/import",
            query: None::<&()>,
            body: Some(file),
            extra_time: Duration::ZERO,
        })
        .await
    }

    /// Audit records (admin), oldest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditList> {
        self.call(Call::query("/api/v1/audit", query)).await
    }

    /// Reads the server's configuration again (admin), like SIGHUP.
    pub async fn reload(&self) -> Result<Reloaded> {
        self.call(Call {
            method: Method::POST,
            ..Call::get("/api/v1/admin/reload")
        })
        .await
    }
}
