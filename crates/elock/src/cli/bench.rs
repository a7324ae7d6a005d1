//! `elock bench` (docs/benchmarks.md): drives a running server and reports, per scenario, operations per
//! second and p50/p95/p99/max latency, with a same-run baseline against /healthz, so that every
//! figure can be read as a ratio.
//!
//! - `uncontended`: each worker acquires and releases its own resources (latency: the acquire);
//! - `hot`: every worker waits for one resource and releases it as soon as it is granted
//!   (rate: handoffs; latency: from the release being sent to the next grant arriving, matched by
//!   fencing token);
//! - `priority-mix`: workers of priorities critical 10%, high 20%, normal 60%, low 10% contend for
//!   four resources (latency: wait per priority);
//! - `baseline`: GET /healthz with the same client and concurrency;
//! - `redis-baseline`: raw `SET key NX PX 30000` + `DEL key` cycles against `--redis`, with the
//!   same concurrency over one multiplexed connection (latency: the SET): the baseline for a
//!   server on the Redis store.
//!
//! - `atlantis-try-lock`: Atlantis's try-lock + unlock through the Atlantis adapter, each worker on
//!   its own keys (latency: the try-lock), to compare with `uncontended`.
//!
//! `--peer URL` sends every other worker to a second server sharing the same store (Redis), so
//! that `hot` measures handoffs across servers.
//!
//! `--rate R` offers R operations per second in total (paced per worker) instead of running flat
//! out: latency at a given load.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elock_atlantis::ProjectLock;
use elock_client::api::Priority;
use elock_client::Client;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::errors::CliError;
use super::output::{self, say, Format};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Uncontended,
    Hot,
    PriorityMix,
    Baseline,
    RedisBaseline,
    /// acquire + release straight on the Redis store in this process (no HTTP): the Lua
    /// transitions against `redis-baseline` on the same Redis.
    RedisStore,
    /// Atlantis's try-lock + unlock (`/api/atlantis/v1/...`) of each worker's own keys: the
    /// Atlantis adapter against `uncontended` (elock's own acquire + release) in the same run.
    AtlantisTryLock,
    /// Redis memory per held lease: INFO used_memory before and after taking 100,000 leases
    /// on the Redis store (then released). Ignores `--duration`.
    RedisMemory,
}

/// How many leases `redis-memory` holds at once.
pub const MEMORY_LEASES: usize = 100_000;

#[derive(clap::Args, Debug)]
pub struct BenchFlags {
    /// Scenarios to run, in order (default: baseline, uncontended, hot, priority-mix).
    #[arg(long = "scenario", value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Concurrent workers (one HTTP client shared by all).
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// How long each scenario runs.
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Offered operations per second in total (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// The Redis (host:port) that `--scenario redis-baseline` drives directly with raw
    /// `SET NX PX` + `DEL` cycles: the baseline for a server on the Redis store.
    #[arg(long)]
    pub redis: Option<String>,
    /// `--scenario redis-store` on a Redis Cluster: `--redis` is then a comma-separated list
    /// of seed nodes.
    #[arg(long)]
    pub redis_cluster: bool,
    /// `--scenario redis-store`: how many shards (`redis.shards`) to spread the table over.
    #[arg(long, default_value_t = 1)]
    pub redis_shards: usize,
    /// A second server sharing the first one's store: every other worker uses it, and `hot`
    /// reports handoffs within one server and across servers apart.
    #[arg(long)]
    pub peer: Option<String>,
}

impl BenchFlags {
    /// The flags checked and completed with the defaults.
    fn into_args(self) -> Result<BenchArgs, CliError> {
        if self.redis_shards == 0 || self.redis_shards > elock_redis::MAX_SHARDS {
            return Err(CliError::usage(format!(
                "--redis-shards {}: expected 1 to {}",
                self.redis_shards,
                elock_redis::MAX_SHARDS
            )));
        }
        let needs_redis = [
            Scenario::RedisBaseline,
            Scenario::RedisStore,
            Scenario::RedisMemory,
        ];
        if self.scenarios.iter().any(|s| needs_redis.contains(s)) && self.redis.is_none() {
            return Err(CliError::usage(
                "--scenario redis-baseline, redis-store and redis-memory need --redis HOST:PORT",
            ));
        }
        let duration = elock_core::model::parse_duration("duration", &self.duration)
            .map_err(|e| CliError::usage(format!("--duration: {e}")))?;
        if self.concurrency == 0 {
            return Err(CliError::usage("--concurrency 0: expected at least 1"));
        }
        let scenarios = if self.scenarios.is_empty() {
            vec![
                Scenario::Baseline,
                Scenario::Uncontended,
                Scenario::Hot,
                Scenario::PriorityMix,
            ]
        } else {
            self.scenarios
        };
        Ok(BenchArgs {
            scenarios,
            concurrency: self.concurrency,
            duration,
            rate: self.rate,
            redis: self.redis,
            redis_cluster: self.redis_cluster,
            redis_shards: self.redis_shards,
            peer: self.peer,
        })
    }
}

pub struct BenchArgs {
    pub scenarios: Vec<Scenario>,
    pub concurrency: usize,
    pub duration: Duration,
    pub rate: Option<f64>,
    /// For `redis-baseline` and `redis-store`.
    pub redis: Option<String>,
    /// `redis-store` on a Cluster (`redis` lists seed nodes, comma-separated).
    pub redis_cluster: bool,
    /// `redis-store`: `redis.shards`.
    pub redis_shards: usize,
    /// A second server on the same store: odd workers use it (`hot` then reports handoffs
    /// within one server and across servers apart).
    pub peer: Option<String>,
}

#[derive(Serialize)]
pub struct Row {
    scenario: String,
    operations: u64,
    ops_per_sec: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    /// `redis-memory`: Redis used_memory growth divided by the leases held.
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_lease: Option<f64>,
}

fn row(name: String, h: &Histogram<u64>, elapsed: Duration, errors: u64, count: u64) -> Row {
    let ms = |v: u64| v as f64 / 1000.0;
    Row {
        scenario: name,
        operations: count,
        ops_per_sec: count as f64 / elapsed.as_secs_f64(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p95_ms: ms(h.value_at_quantile(0.95)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
        errors,
        bytes_per_lease: None,
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// Shared results of one scenario's workers: latencies in microseconds, by label.
#[derive(Default)]
struct Results {
    latencies: HashMap<String, Histogram<u64>>,
    operations: u64,
    errors: u64,
}

impl Results {
    fn record(&mut self, label: &str, d: Duration) {
        self.latencies
            .entry(label.to_string())
            .or_insert_with(histogram)
            .saturating_record(d.as_micros().max(1) as u64);
    }
}

pub async fn run(client: &Client, flags: BenchFlags, out: Format) -> Result<(), CliError> {
    let args = flags.into_args()?;
    let redis_only = [
        Scenario::RedisBaseline,
        Scenario::RedisStore,
        Scenario::RedisMemory,
    ];
    if !args.scenarios.iter().all(|s| redis_only.contains(s)) {
        client.alive().await?;
    }
    let mut rows = Vec::new();
    for scenario in &args.scenarios {
        if *scenario == Scenario::RedisMemory {
            rows.push(redis_memory(&args).await?);
            continue;
        }
        let progress = ProgressBar::new(args.duration.as_millis() as u64);
        progress.set_style(
            ProgressStyle::with_template("{prefix:>13} [{bar:30}] {elapsed}/{duration} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        progress.set_prefix(format!("{scenario:?}").to_lowercase());
        let results = Arc::new(Mutex::new(Results::default()));
        let started = Instant::now();
        let ticker = {
            let progress = progress.clone();
            let results = results.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    progress.set_position(started.elapsed().as_millis() as u64);
                    let n = results.lock().unwrap().operations;
                    progress.set_message(format!("{n} ops"));
                }
            })
        };
        run_scenario(client, *scenario, &args, results.clone()).await;
        let elapsed = started.elapsed();
        ticker.abort();
        progress.finish_and_clear();
        let r = results.lock().unwrap();
        let name = format!("{scenario:?}")
            .to_lowercase()
            .replace("prioritymix", "priority-mix")
            .replace("redisbaseline", "redis-baseline")
            .replace("redisstore", "redis-store")
            .replace("atlantistrylock", "atlantis-try-lock");
        let mut labels: Vec<_> = r.latencies.keys().cloned().collect();
        labels.sort();
        for label in labels {
            let h = &r.latencies[&label];
            let title = if label.is_empty() {
                name.clone()
            } else {
                format!("{name} ({label})")
            };
            let count = if label.is_empty() {
                r.operations
            } else {
                h.len()
            };
            rows.push(row(title, h, elapsed, r.errors, count));
        }
    }
    match out {
        Format::Json => output::json(&rows),
        Format::Table => {
            // Against Redis's own raw cycles when measured, else against /healthz.
            let baseline = rows
                .iter()
                .find(|r| r.scenario == "redis-baseline")
                .or_else(|| rows.iter().find(|r| r.scenario == "baseline"))
                .map(|r| r.ops_per_sec);
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.scenario.clone(),
                        format!("{:.0}", r.ops_per_sec),
                        baseline.map_or("-".into(), |b| format!("{:.2}", r.ops_per_sec / b)),
                        format!("{:.3}", r.p50_ms),
                        format!("{:.3}", r.p95_ms),
                        format!("{:.3}", r.p99_ms),
                        format!("{:.3}", r.max_ms),
                        r.errors.to_string(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "scenario",
                    "ops/s",
                    "× baseline",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "max ms",
                    "errors",
                ],
                &cells,
            );
            for r in &rows {
                if let Some(b) = r.bytes_per_lease {
                    say!(
                        "{}: {b:.0} bytes of Redis memory per held lease ({} leases)",
                        r.scenario,
                        r.operations
                    );
                }
            }
        }
    }
    Ok(())
}

async fn run_scenario(
    client: &Client,
    scenario: Scenario,
    args: &BenchArgs,
    results: Arc<Mutex<Results>>,
) {
    let deadline = Instant::now() + args.duration;
    let client = Arc::new(client.clone());
    // fencing token → when its release was sent (hot scenario).
    let releases: Arc<Mutex<HashMap<u64, (Instant, usize)>>> = Arc::default();
    // `--peer`: odd workers talk to a second server sharing the same store.
    let peer = args.peer.as_ref().map(|u| Client::new(u).map(Arc::new));
    let peer = match peer.transpose() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("elock bench: --peer: {e}");
            results.lock().unwrap().errors += 1;
            return;
        }
    };
    let pace = args
        .rate
        .map(|r| Duration::from_secs_f64(args.concurrency as f64 / r));
    let run_id = std::process::id();
    let concurrency = args.concurrency;
    let redis = match (scenario, &args.redis) {
        (Scenario::RedisBaseline, Some(addr)) => {
            let url = if addr.contains("://") {
                addr.clone()
            } else {
                format!("redis://{addr}")
            };
            match redis::Client::open(url.as_str()) {
                Ok(c) => c.get_multiplexed_async_connection().await.ok(),
                Err(_) => None,
            }
        }
        _ => None,
    };
    if scenario == Scenario::RedisBaseline && redis.is_none() {
        eprintln!("elock bench: cannot connect to Redis at {:?}", args.redis);
        results.lock().unwrap().errors += 1;
        return;
    }
    let store = match (scenario, &args.redis) {
        (Scenario::RedisStore, Some(_)) => {
            match open_redis_store(args, format!("bench-{run_id}:")).await {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    eprintln!("{}", e.message);
                    results.lock().unwrap().errors += 1;
                    return;
                }
            }
        }
        _ => None,
    };
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let side = usize::from(peer.is_some() && w % 2 == 1);
        let client = if side == 1 {
            peer.clone().expect("a peer")
        } else {
            client.clone()
        };
        let (results, releases, has_peer) = (results.clone(), releases.clone(), peer.is_some());
        let mut redis = redis.clone();
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let priority = match w % 10 {
                0 => Priority::Critical,
                1 | 2 => Priority::High,
                9 => Priority::Low,
                _ => Priority::Normal,
            };
            // Workers start spread over one pacing interval, so the offered load is smooth
            // rather than bursts of `concurrency` requests at once.
            let mut next = Instant::now()
                + pace.map_or(Duration::ZERO, |p| p.mul_f64(w as f64 / concurrency as f64));
            let mut i: u64 = 0;
            while Instant::now() < deadline {
                if let Some(p) = pace {
                    next += p;
                    tokio::time::sleep_until(next.into()).await;
                }
                i += 1;
                let outcome: Result<(&str, Duration), ()> = match scenario {
                    // Runs on its own (`redis_memory`), never here.
                    Scenario::RedisMemory => Err(()),
                    Scenario::Baseline => {
                        let t = Instant::now();
                        client
                            .alive()
                            .await
                            .map(|()| ("", t.elapsed()))
                            .map_err(|_| ())
                    }
                    Scenario::RedisBaseline => {
                        let conn = redis.as_mut().expect("connected above");
                        let key = format!("bench/{run_id}/raw/{w}/{}", i % 64);
                        let t = Instant::now();
                        let set: redis::RedisResult<Option<String>> = redis::cmd("SET")
                            .arg(&key)
                            .arg(w)
                            .arg("NX")
                            .arg("PX")
                            .arg(30_000)
                            .query_async(conn)
                            .await;
                        let took = t.elapsed();
                        let del: redis::RedisResult<i64> =
                            redis::cmd("DEL").arg(&key).query_async(conn).await;
                        match (set, del) {
                            (Ok(Some(_)), Ok(_)) => Ok(("", took)),
                            _ => Err(()),
                        }
                    }
                    Scenario::RedisStore => {
                        use elock_core::store::Store;
                        let store = store.as_ref().expect("opened above");
                        let resources = vec![elock_core::model::ResourceName::new(&format!(
                            "bench-{run_id}/s/{w}/{}",
                            i % 64
                        ))
                        .expect("a valid name")];
                        let (lease_id, ticket_id) = store.new_ids(&resources);
                        let req = elock_core::table::AcquireRequest {
                            lease_id,
                            ticket_id,
                            owner: elock_core::model::Owner::new(&format!("bench-{w}"))
                                .expect("a valid owner"),
                            resources,
                            priority: elock_core::model::Priority::Normal,
                            ttl: Some(Duration::from_secs(30)),
                            metadata: None,
                            wait: elock_core::table::WaitMode::Try,
                            reentry: Default::default(),
                            queue_limits: Default::default(),
                        };
                        let t = Instant::now();
                        match store.acquire(req).await {
                            Ok(a) => {
                                let took = t.elapsed();
                                match a.lease() {
                                    Some(l) if store.release(l.id).await.is_ok() => Ok(("", took)),
                                    _ => Err(()),
                                }
                            }
                            Err(_) => Err(()),
                        }
                    }
                    Scenario::AtlantisTryLock => {
                        let repo = format!("bench-{run_id}/w{w}");
                        let path = format!("p{}", i % 64);
                        let lock = ProjectLock::of_pull(
                            &repo,
                            &path,
                            "default",
                            w as i64,
                            &format!("bench-{w}"),
                        );
                        let t = Instant::now();
                        match client.atlantis().try_lock(&lock).await {
                            Ok(r) if r.lock_acquired => {
                                let took = t.elapsed();
                                match client.atlantis().unlock(&r.lock_key).await {
                                    Ok(_) => Ok(("", took)),
                                    Err(_) => Err(()),
                                }
                            }
                            _ => Err(()),
                        }
                    }
                    Scenario::Uncontended => {
                        let resource = format!("bench-{run_id}/u/{w}/{}", i % 64);
                        let owner = format!("bench-{w}");
                        let t = Instant::now();
                        match client
                            .lock(&owner, [&resource])
                            .expect("valid bench names")
                            .try_acquire()
                            .await
                        {
                            Ok(lease) => {
                                let took = t.elapsed();
                                let _ = client.release(lease.id).await;
                                Ok(("", took))
                            }
                            Err(_) => Err(()),
                        }
                    }
                    Scenario::Hot | Scenario::PriorityMix => {
                        let (resource, p) = if scenario == Scenario::Hot {
                            (format!("bench/{run_id}/hot"), Priority::Normal)
                        } else {
                            (format!("bench/{run_id}/mix/{}", i % 4), priority)
                        };
                        let owner = format!("bench-{w}");
                        let t = Instant::now();
                        let req = client.lock(&owner, [&resource]).expect("valid bench names");
                        match req
                            .priority(p)
                            .wait(Duration::from_secs(60))
                            .acquire()
                            .await
                        {
                            Ok(lease) => {
                                let granted = Instant::now();
                                let token = lease.resources.first().map_or(0, |r| r.fencing_token);
                                let id = lease.id;
                                let mut label = if scenario == Scenario::Hot {
                                    ""
                                } else {
                                    p.name()
                                };
                                let sample = if scenario == Scenario::Hot {
                                    let prev =
                                        releases.lock().unwrap().remove(&(token.saturating_sub(1)));
                                    prev.map(|(r, from)| {
                                        if has_peer {
                                            label = if from == side {
                                                "same server"
                                            } else {
                                                "across servers"
                                            };
                                        }
                                        granted.duration_since(r)
                                    })
                                } else {
                                    Some(granted.duration_since(t))
                                };
                                releases
                                    .lock()
                                    .unwrap()
                                    .insert(token, (Instant::now(), side));
                                let _ = client.release(id).await;
                                match sample {
                                    Some(d) => Ok((label, d)),
                                    None => Ok(("first", Duration::ZERO)),
                                }
                            }
                            Err(_) => Err(()),
                        }
                    }
                };
                let mut r = results.lock().unwrap();
                match outcome {
                    Ok(("first", _)) => r.operations += 1,
                    Ok((label, d)) => {
                        r.operations += 1;
                        r.record(label, d);
                    }
                    Err(()) => r.errors += 1,
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

async fn open_redis_store(
    args: &BenchArgs,
    prefix: String,
) -> Result<elock_redis::RedisStore, CliError> {
    let addr = args
        .redis
        .as_ref()
        .ok_or_else(|| CliError::usage("this scenario needs --redis HOST:PORT"))?;
    let config = elock_redis::RedisConfig {
        addresses: addr.split(',').map(|a| a.trim().to_string()).collect(),
        cluster_mode: args.redis_cluster,
        shards: args.redis_shards,
        key_prefix: prefix,
        ..elock_redis::RedisConfig::default()
    };
    elock_redis::RedisStore::open(
        config,
        elock_core::table::TableConfig::default(),
        elock_redis::TimeSource::Redis,
    )
    .await
    .map_err(|e| CliError::usage(format!("elock bench: {e}")))
}

/// `redis-memory`: fills the store with [`MEMORY_LEASES`] held leases, one resource each, and
/// reads Redis's used_memory before and after (INFO memory of the node it reaches: measure
/// against a single node).
async fn redis_memory(args: &BenchArgs) -> Result<Row, CliError> {
    use elock_core::store::Store;
    let run_id = std::process::id();
    let store = Arc::new(open_redis_store(args, format!("benchmem-{run_id}:")).await?);
    let used = |store: Arc<elock_redis::RedisStore>| async move {
        store
            .backend_gauges()
            .await
            .ok()
            .and_then(|g| g.into_iter().find(|(n, _)| *n == "redis_memory_used_bytes"))
            .map_or(0, |(_, v)| v)
    };
    let before = used(store.clone()).await;
    let progress = ProgressBar::new(MEMORY_LEASES as u64);
    progress.set_prefix("redis-memory");
    let started = Instant::now();
    let results = Arc::new(Mutex::new(Results::default()));
    let ids = Arc::new(Mutex::new(Vec::with_capacity(MEMORY_LEASES)));
    let workers = args.concurrency.max(1);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (store, results, ids, progress) = (
            store.clone(),
            results.clone(),
            ids.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in (w..MEMORY_LEASES).step_by(workers) {
                let resources = vec![elock_core::model::ResourceName::new(&format!(
                    "atlantis/acme/infra-{}/modules/vpc/default/{i}",
                    i % 100
                ))
                .expect("a valid name")];
                let (lease_id, ticket_id) = store.new_ids(&resources);
                let req = elock_core::table::AcquireRequest {
                    lease_id,
                    ticket_id,
                    owner: elock_core::model::Owner::new(&format!("pr-{}", i % 5000))
                        .expect("a valid owner"),
                    resources,
                    priority: elock_core::model::Priority::Normal,
                    ttl: Some(Duration::from_secs(3600)),
                    metadata: None,
                    wait: elock_core::table::WaitMode::Try,
                    reentry: Default::default(),
                    queue_limits: Default::default(),
                };
                let t = Instant::now();
                let got = store.acquire(req).await;
                let mut r = results.lock().unwrap();
                match got {
                    Ok(a) => {
                        r.record("", t.elapsed());
                        r.operations += 1;
                        if let Some(l) = a.lease() {
                            ids.lock().unwrap().push(l.id);
                        }
                    }
                    Err(_) => r.errors += 1,
                }
                progress.inc(1);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    let after = used(store.clone()).await;
    progress.finish_and_clear();
    let ids: Vec<_> = std::mem::take(&mut *ids.lock().unwrap());
    let held = ids.len().max(1);
    // Leave Redis as it was.
    let chunks: Vec<Vec<_>> = ids
        .chunks(held.div_ceil(workers))
        .map(|c| c.to_vec())
        .collect();
    let mut releases = Vec::new();
    for chunk in chunks {
        let store = store.clone();
        releases.push(tokio::spawn(async move {
            for id in chunk {
                let _ = store.release(id).await;
            }
        }));
    }
    for r in releases {
        let _ = r.await;
    }
    let r = results.lock().unwrap();
    let h = r.latencies.get("").cloned().unwrap_or_else(histogram);
    let mut row = row("redis-memory".into(), &h, elapsed, r.errors, r.operations);
    row.bytes_per_lease = Some((after - before) as f64 / held as f64);
    Ok(row)
}
