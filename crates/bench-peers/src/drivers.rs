//! One driver per protocol, each doing the same three things its own way: a lock pair (take a
//! lock nobody else wants, give it back), a handoff on one hot lock (wait for it, give it back),
//! and the server's trivial request (the cost of the protocol and the driver alone).
//!
//! Every operation is one that an application using that system for locks would send: elock's
//! acquire and release; etcd's lock API (`/v3/lock/lock` with a session lease, `/v3/lock/unlock`)
//! through its JSON gateway; PostgreSQL's lock row (a committed INSERT, a committed DELETE), its
//! `SELECT ... FOR UPDATE` handoff (the row's fencing counter updated in the same transaction),
//! and its advisory locks (memory only, like elock's memory store).

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

pub type Result<T> = std::result::Result<T, String>;

/// What a worker of a workload does, once per operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// A lock of the worker's own, taken and given back.
    Pair,
    /// The hot lock, waited for and given back.
    Handoff,
    /// The server's cheapest request.
    Trivial,
}

/// A connection (or connection pool) of one worker.
pub enum Driver {
    Elock(elock_client::Client),
    Etcd(Etcd),
    Postgres(tokio_postgres::Client, PgMode),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgMode {
    /// A durable lock row: INSERT to take, DELETE to give back, each committed; the hot lock is
    /// `SELECT ... FOR UPDATE` with the fencing counter updated before COMMIT.
    Row,
    /// Session advisory locks (not written to disk).
    Advisory,
}

pub struct Etcd {
    pub http: reqwest::Client,
    pub base: String,
    /// This worker's session lease: etcd's locks are tied to one.
    pub lease: i64,
}

impl Driver {
    /// One operation of `workload` by worker `w`, the `i`th.
    pub async fn run(&self, workload: Workload, w: usize, i: u64) -> Result<()> {
        match self {
            Driver::Elock(c) => elock(c, workload, w, i).await,
            Driver::Etcd(e) => etcd(e, workload, w).await,
            Driver::Postgres(c, mode) => postgres(c, *mode, workload, w).await,
        }
    }
}

async fn elock(c: &elock_client::Client, workload: Workload, w: usize, i: u64) -> Result<()> {
    let owner = format!("bench-{w}");
    match workload {
        Workload::Trivial => c.health().await.map(drop).map_err(|e| e.to_string()),
        Workload::Pair | Workload::Handoff => {
            let resource = match workload {
                Workload::Pair => format!("peer/{w}/{}", i % 16),
                _ => "peer/hot".to_string(),
            };
            let lock = c
                .lock(&owner, [resource])
                .map_err(|e| e.to_string())?
                .ttl(Duration::from_secs(60));
            let lease = match workload {
                Workload::Pair => lock.try_acquire().await,
                _ => lock.wait(Duration::from_secs(60)).acquire().await,
            }
            .map_err(|e| e.to_string())?;
            c.release(lease.id)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl Etcd {
    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("etcd {path}: {e}"))?;
        let status = r.status();
        let v: Value = r.json().await.map_err(|e| format!("etcd {path}: {e}"))?;
        if !status.is_success() || v.get("error").is_some() {
            return Err(format!("etcd {path}: {status} {v}"));
        }
        Ok(v)
    }

    /// A session lease for one worker.
    pub async fn grant(&self) -> Result<i64> {
        let v = self.post("/v3/lease/grant", json!({"TTL": 600})).await?;
        v["ID"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("etcd lease grant: no ID in {v}"))
    }
}

async fn etcd(e: &Etcd, workload: Workload, w: usize) -> Result<()> {
    let name = match workload {
        Workload::Trivial => {
            return e.post("/v3/maintenance/status", json!({})).await.map(drop);
        }
        Workload::Pair => format!("peer/{w}"),
        Workload::Handoff => "peer/hot".to_string(),
    };
    // etcd's lock waits on the server until the lock is free, like elock's acquire with a wait.
    let v = e
        .post(
            "/v3/lock/lock",
            json!({"name": b64(&name), "lease": e.lease.to_string()}),
        )
        .await?;
    let key = v["key"]
        .as_str()
        .ok_or_else(|| format!("etcd lock: no key in {v}"))?;
    e.post("/v3/lock/unlock", json!({"key": key}))
        .await
        .map(drop)
}

/// Creates the lock table (once per server).
pub async fn postgres_schema(c: &tokio_postgres::Client) -> Result<()> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS locks (name text PRIMARY KEY, owner text, token bigint NOT NULL DEFAULT 0);
         INSERT INTO locks (name, owner) VALUES ('peer/hot', NULL) ON CONFLICT DO NOTHING;",
    )
    .await
    .map_err(|e| e.to_string())
}

async fn postgres(
    c: &tokio_postgres::Client,
    mode: PgMode,
    workload: Workload,
    w: usize,
) -> Result<()> {
    let pg = |e: tokio_postgres::Error| format!("postgresql: {e}");
    let owner = format!("bench-{w}");
    match (workload, mode) {
        (Workload::Trivial, _) => c.query_one("SELECT 1", &[]).await.map(drop).map_err(pg),
        (Workload::Pair, PgMode::Row) => {
            let name = format!("peer/{w}");
            let taken = c
                .execute(
                    "INSERT INTO locks (name, owner) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&name, &owner],
                )
                .await
                .map_err(pg)?;
            if taken != 1 {
                return Err(format!("postgresql: {name} was taken"));
            }
            c.execute(
                "DELETE FROM locks WHERE name = $1 AND owner = $2",
                &[&name, &owner],
            )
            .await
            .map(drop)
            .map_err(pg)
        }
        (Workload::Handoff, PgMode::Row) => {
            // The lock is the row lock, held from SELECT ... FOR UPDATE to COMMIT; the holder
            // and its fencing counter are written in the same transaction.
            c.batch_execute("BEGIN").await.map_err(pg)?;
            c.query_one(
                "SELECT token FROM locks WHERE name = 'peer/hot' FOR UPDATE",
                &[],
            )
            .await
            .map_err(pg)?;
            c.execute(
                "UPDATE locks SET owner = $1, token = token + 1 WHERE name = 'peer/hot'",
                &[&owner],
            )
            .await
            .map_err(pg)?;
            c.batch_execute("COMMIT").await.map_err(pg)
        }
        (Workload::Pair, PgMode::Advisory) => {
            let key = w as i64 + 1;
            let got: bool = c
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(pg)?
                .get(0);
            if !got {
                return Err("postgresql: advisory lock taken".into());
            }
            c.query_one("SELECT pg_advisory_unlock($1)", &[&key])
                .await
                .map(drop)
                .map_err(pg)
        }
        (Workload::Handoff, PgMode::Advisory) => {
            c.query_one("SELECT pg_advisory_lock(0)", &[])
                .await
                .map_err(pg)?;
            c.query_one("SELECT pg_advisory_unlock(0)", &[])
                .await
                .map(drop)
                .map_err(pg)
        }
    }
}
