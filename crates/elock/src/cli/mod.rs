//! The command line: `elock serve`, and the client commands (docs/cli.md).

mod atlantis;
mod bench;
mod client;
mod compat;
mod migrate;
mod output;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::config::{self, Config, Override};
use crate::server::{self, ServeOptions};
use client::{exit, CliError, Client};
use output::{cell, Format};

/// elock: exclusive, fenced, expiring locks with priority queues, for infrastructure automation.
///
/// `elock serve` runs the server; every other command talks to one over HTTP.
///
/// Exit codes: 0 ok, 1 error, 2 not granted (locked or wait timeout), 3 deadlock, 4 server
/// unreachable.
#[derive(Parser, Debug)]
#[command(name = "elock", version, about, long_about = None)]
pub struct Args {
    /// The elock server to talk to.
    #[arg(
        long,
        global = true,
        env = "ELOCK_SERVER",
        default_value = "http://127.0.0.1:4142"
    )]
    server: String,
    /// API token (sent as a bearer token).
    #[arg(long, global = true, env = "ELOCK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Tables for people, JSON for scripts.
    #[arg(long, global = true, value_enum, default_value = "table")]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

/// The server's configuration sources (names kept from the enhanced locking system).
#[derive(clap::Args, Debug, Clone)]
struct ServerFlags {
    /// The YAML configuration file.
    #[arg(long, env = "ELOCK_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the first line printed says which).
    #[arg(long)]
    listen: Option<String>,
    /// Where the embedded store keeps its data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// embedded (alias boltdb), memory, or redis.
    #[arg(long)]
    backend: Option<String>,
    #[arg(long, value_name = "BOOL")]
    enhanced_locking_enabled: Option<String>,
    #[arg(long, value_name = "BACKEND")]
    enhanced_locking_backend: Option<String>,
    #[arg(long, value_name = "HOST:PORT,...")]
    enhanced_locking_redis_addr: Option<String>,
    #[arg(long, value_name = "PASSWORD")]
    enhanced_locking_redis_password: Option<String>,
    #[arg(long, value_name = "N")]
    enhanced_locking_redis_db: Option<String>,
    #[arg(long, value_name = "BOOL")]
    enhanced_locking_priority_queue: Option<String>,
    /// Retry attempts (0 turns retry off), or true/false.
    #[arg(long, value_name = "N")]
    enhanced_locking_retries: Option<String>,
    #[arg(long, value_name = "BOOL")]
    enhanced_locking_metrics: Option<String>,
}

impl ServerFlags {
    /// The flag values as configuration overrides.
    fn overrides(&self) -> Vec<Override> {
        let data_dir = self.data_dir.as_ref().map(|d| d.display().to_string());
        let pairs: [(&'static str, &Option<String>, &str); 11] = [
            ("enhanced-locking.listen", &self.listen, "--listen"),
            ("enhanced-locking.data-dir", &data_dir, "--data-dir"),
            ("enhanced-locking.backend", &self.backend, "--backend"),
            (
                "enhanced-locking.enabled",
                &self.enhanced_locking_enabled,
                "--enhanced-locking-enabled",
            ),
            (
                "enhanced-locking.backend",
                &self.enhanced_locking_backend,
                "--enhanced-locking-backend",
            ),
            (
                "redis.addresses",
                &self.enhanced_locking_redis_addr,
                "--enhanced-locking-redis-addr",
            ),
            (
                "redis.password",
                &self.enhanced_locking_redis_password,
                "--enhanced-locking-redis-password",
            ),
            (
                "redis.db",
                &self.enhanced_locking_redis_db,
                "--enhanced-locking-redis-db",
            ),
            (
                "priority-queue.enabled",
                &self.enhanced_locking_priority_queue,
                "--enhanced-locking-priority-queue",
            ),
            (
                "retry",
                &self.enhanced_locking_retries,
                "--enhanced-locking-retries",
            ),
            (
                "metrics.enabled",
                &self.enhanced_locking_metrics,
                "--enhanced-locking-metrics",
            ),
        ];
        pairs
            .into_iter()
            .filter_map(|(key, v, flag)| {
                v.as_ref()
                    .map(|v| config::text_override(key, v, flag.to_string()))
            })
            .flatten()
            .collect()
    }

    /// Loads the effective configuration (file, environment, flags).
    fn load(&self) -> Result<Config, Vec<String>> {
        let mut overrides = config::env_overrides(&|v| std::env::var(v).ok());
        overrides.extend(self.overrides());
        config::load(self.config.as_deref(), &overrides)
    }
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Check a configuration file: unknown keys and bad values are reported with key, value and
    /// expectation. Exit 0 when valid.
    Validate { file: PathBuf },
    /// The effective configuration (file, environment, flags), secrets redacted, as YAML.
    Show(ServerFlags),
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the lock server (the embedded durable store by default).
    ///
    /// Configuration: defaults, then the YAML file, then ATLANTIS_ENHANCED_LOCKING_* variables,
    /// then flags. SIGHUP (or POST /api/v1/admin/reload) reloads what can change live.
    Serve(ServerFlags),
    /// Check or show the server configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Take a lock on one or more resources (all or none); prints the lease id and fencing tokens.
    ///
    /// Example: elock lock acme/infra/envs/prod/default/ --owner 'acme/infra#42' --wait 10m
    Lock {
        #[arg(required = true)]
        resources: Vec<String>,
        /// Who holds the lock (a pull request, a CI job).
        #[arg(long)]
        owner: String,
        /// low, normal, high, critical (or 0..3).
        #[arg(long)]
        priority: Option<String>,
        /// Lease lifetime (30s, 10m, 2h); default: the server's default-timeout.
        #[arg(long)]
        ttl: Option<String>,
        /// How long to wait in the queue (0: try once).
        #[arg(long)]
        wait: Option<String>,
        /// Queue and return at once with a ticket; the lock is granted later even if nobody waits.
        #[arg(long)]
        detach: bool,
        /// Holder metadata, repeatable: --metadata pr=42 --metadata by=alice
        #[arg(long = "metadata", value_name = "KEY=VALUE")]
        metadata: Vec<String>,
    },
    /// Hold a lock while a command runs; the child gets ELOCK_LEASE_ID and ELOCK_FENCING_TOKEN.
    ///
    /// The lease is renewed at a third of its ttl; if it is lost the command is stopped (TERM,
    /// then KILL); the lock is released when the command ends or on Ctrl-C; the command's exit
    /// code is passed on.
    ///
    /// Example: elock run acme/infra/envs/prod/default/ --wait 10m -- terraform apply plan.tfplan
    Run {
        #[arg(required = true)]
        resources: Vec<String>,
        /// Who holds the lock (default: elock-run@HOST:PID).
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        priority: Option<String>,
        /// Lease lifetime; renewed at a third of it while the command runs.
        #[arg(long, default_value = "60s")]
        ttl: String,
        /// How long to wait for the lock (0: try once).
        #[arg(long)]
        wait: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Release a lease.
    Unlock {
        /// The lease id. Ids are URL-safe base64 and may begin with `-`: taken as the id, not
        /// as a flag.
        #[arg(allow_hyphen_values = true)]
        lease_id: String,
    },
    /// Extend a lease: it expires `ttl` from now (its own ttl if none is given).
    Renew {
        /// The lease id (it may begin with `-`).
        #[arg(allow_hyphen_values = true)]
        lease_id: String,
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List held leases.
    List {
        #[arg(long)]
        resource_prefix: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        /// held or expired.
        #[arg(long)]
        state: Option<String>,
        /// e.g. 1h: only leases held longer than that.
        #[arg(long)]
        held_longer_than: Option<String>,
    },
    /// Health, backend, breaker and statistics.
    Status,
    /// The queues (all non-empty ones, or one resource's).
    QueueStatus { resource: Option<String> },
    /// Deadlocks now, and with --history the last 1,000.
    DeadlockStatus {
        #[arg(long)]
        history: bool,
    },
    /// Release whatever holds RESOURCE (admin).
    ForceUnlock {
        resource: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Release expired leases, or by force the holder of one resource (admin).
    Cleanup {
        #[arg(long, conflicts_with_all = ["resource", "force"])]
        expired_only: bool,
        #[arg(long, requires = "force")]
        resource: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Every lease, ticket and fencing counter as JSON, to FILE or standard output (admin).
    Export {
        file: Option<PathBuf>,
        /// Keep credentials found in lease metadata (Atlantis clone URLs imported with
        /// --include-secrets); they are left out by default.
        #[arg(long)]
        include_secrets: bool,
    },
    /// Add the leases and tickets of an export that do not conflict (admin); importing twice
    /// changes nothing.
    Import { file: PathBuf },
    /// Follow the event stream (Ctrl-C to stop).
    Events {
        /// Comma-separated event types, e.g. lock.acquired,queue.granted.
        #[arg(long)]
        types: Option<String>,
    },
    /// Exit 0 when the server is healthy or degraded, non-zero otherwise (probes, cron).
    HealthCheck,
    /// Atlantis's data: import its bbolt file.
    #[command(subcommand)]
    Atlantis(AtlantisCommand),
    /// Run Atlantis's lock conformance list against a live server: PASS or FAIL per case.
    ///
    /// The cases use their own repository names, but take and release the server's global
    /// apply lock: point it at a test server, not one an Atlantis is using. Exit 0 when every
    /// case passes, 1 otherwise.
    ///
    /// Example: elock compat-test --server http://127.0.0.1:4142
    CompatTest,
    /// Compare the Atlantis locks of the legacy store with elock's: every lock only in one, or
    /// held by a different pull, or with different details. Exit 0 when identical, 1 otherwise.
    ///
    /// Example: elock compare-backends --legacy-boltdb /var/lib/atlantis/atlantis.db
    CompareBackends(migrate::LegacySource),
    /// Check that the legacy store and elock together obey the server's migration mode: no
    /// lock held twice by different pulls; in shadow, every legacy lock mirrored; in split,
    /// each lock where its key routes; in enhanced, nothing left only in the legacy store.
    /// Exit 0 when consistent, 1 otherwise.
    ///
    /// Example: elock validate-consistency --legacy-redis 127.0.0.1:6379
    ValidateConsistency(migrate::LegacySource),
    /// Load generator: ops/s and p50/p95/p99/max per scenario, with a /healthz baseline.
    ///
    /// Example: elock bench --scenario baseline --scenario uncontended --concurrency 50 --duration 10s
    Bench {
        /// Scenarios to run, in order (default: baseline, uncontended, hot, priority-mix).
        #[arg(long = "scenario", value_enum)]
        scenarios: Vec<bench::Scenario>,
        /// Concurrent workers (one HTTP client shared by all).
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// How long each scenario runs.
        #[arg(long, default_value = "10s")]
        duration: String,
        /// Offered operations per second in total (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        /// The Redis (host:port) that `--scenario redis-baseline` drives directly with raw
        /// `SET NX PX` + `DEL` cycles: the baseline for a server on the Redis store.
        #[arg(long)]
        redis: Option<String>,
        /// `--scenario redis-store` on a Redis Cluster: `--redis` is then a comma-separated list
        /// of seed nodes.
        #[arg(long)]
        redis_cluster: bool,
        /// `--scenario redis-store`: how many shards (`redis.shards`) to spread the table over.
        #[arg(long, default_value_t = 1)]
        redis_shards: usize,
        /// A second server sharing the first one's store: every other worker uses it, and `hot`
        /// reports handoffs within one server and across servers apart.
        #[arg(long)]
        peer: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AtlantisCommand {
    /// Import Atlantis's locks from its bbolt file (admin).
    ///
    /// Every project lock of `runLocks` becomes a lease on its lock key, owned by
    /// `{repo}#{pull}`, with no expiry and the Atlantis JSON in `metadata.atlantis`; the apply
    /// lock of `globalLocks` a lease on `global/apply/lock`. Pull statuses (`pulls`) are
    /// skipped. The file is only read, never written (stop Atlantis first or copy the file: bbolt
    /// holds a lock on it while Atlantis runs). Importing twice changes nothing.
    ///
    /// The VCS token inside each lock's CloneURL is replaced by `<redacted>` unless
    /// --include-secrets is given.
    ///
    /// Example: elock atlantis import-boltdb /var/lib/atlantis/atlantis.db
    ImportBoltdb {
        file: PathBuf,
        /// Keep the credentials of CloneURL in the imported locks.
        #[arg(long)]
        include_secrets: bool,
    },
    /// Check an atlantis.yaml: repo_locks settings (mode, priority, timeout, queue_timeout,
    /// retry_policy, deadlock_detection), depends_on cycles and execution_order_group order.
    /// Every problem is printed with its line; exit 0 when there are none, 1 otherwise. Reads
    /// only the file (no server needed).
    ///
    /// Example: elock atlantis validate atlantis.yaml --max-timeout 2h
    Validate {
        file: PathBuf,
        /// The server's enhanced-locking.max-timeout: longer timeouts are refused.
        #[arg(long, default_value = "2h")]
        max_timeout: String,
    },
    /// Print the lock request each project of an atlantis.yaml would make for a pull request:
    /// resource, owner, mode, priority, ttl and queue timeout (no server needed).
    ///
    /// Example: elock atlantis locks atlantis.yaml --repo acme/infra --pull 42
    Locks {
        file: PathBuf,
        /// The repository's full name, e.g. acme/infra.
        #[arg(long)]
        repo: String,
        /// The pull request number.
        #[arg(long)]
        pull: i64,
    },
    /// Write every Atlantis lock elock holds in Atlantis's Redis layout (admin): `pr/{key}` and
    /// `global/apply/lock`, as Redis commands for `redis-cli --pipe`. The way back to Atlantis.
    ///
    /// Example: elock atlantis export-redis locks.resp && redis-cli --pipe < locks.resp
    ExportRedis {
        /// Where to write (default: standard output).
        file: Option<PathBuf>,
        /// Keep the credentials of CloneURL (redacted otherwise).
        #[arg(long)]
        include_secrets: bool,
    },
}

pub async fn run(args: Args) -> i32 {
    match args.command {
        Command::Serve(flags) => return serve(flags).await,
        Command::Config(c) => return config_command(c),
        _ => {}
    }
    let client = Client::new(&args.server, args.token.clone());
    if let Command::Run {
        resources,
        owner,
        priority,
        ttl,
        wait,
        command,
    } = args.command
    {
        let run = run::RunArgs {
            resources,
            owner,
            priority,
            ttl,
            wait,
            command,
        };
        return match run::run(&client, run).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("elock run: {}", e.message);
                e.exit
            }
        };
    }
    match command(&client, args.command, args.output).await {
        Ok(()) => exit::OK,
        Err(e) => {
            match (&e.body, args.output) {
                (Some(body), Format::Json) => output::json(body),
                _ => eprintln!("elock: {}", e.message),
            }
            e.exit
        }
    }
}

async fn serve(flags: ServerFlags) -> i32 {
    init_logging();
    let config = match flags.load() {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("elock serve: configuration: {e}");
            }
            return exit::ERROR;
        }
    };
    let opts = ServeOptions {
        config,
        file: flags.config.clone(),
        flags: flags.overrides(),
    };
    match server::serve(opts).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("elock serve: {e}");
            exit::ERROR
        }
    }
}

fn config_command(c: ConfigCommand) -> i32 {
    let result = match &c {
        ConfigCommand::Validate { file } => config::load(Some(file), &[]),
        ConfigCommand::Show(flags) => flags.load(),
    };
    match (result, c) {
        (Ok(_), ConfigCommand::Validate { file }) => {
            println!("{}: valid", file.display());
            exit::OK
        }
        (Ok(config), ConfigCommand::Show(_)) => {
            print!(
                "{}",
                serde_yaml_ng::to_string(&config.redacted()).unwrap_or_default()
            );
            exit::OK
        }
        (Err(errors), _) => {
            for e in errors {
                eprintln!("elock config: {e}");
            }
            exit::ERROR
        }
    }
}

/// Prints an answer as JSON (`--output json`) or as one line for people.
fn show(out: Format, answer: &Value, line: impl FnOnce(&Value) -> String) {
    match out {
        Format::Json => output::json(answer),
        Format::Table => println!("{}", line(answer)),
    }
}

fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("ELOCK_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("ELOCK_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn command(client: &Client, command: Command, out: Format) -> Result<(), CliError> {
    match command {
        Command::Serve(_) | Command::Config(_) | Command::Run { .. } => {
            unreachable!("handled by run")
        }
        Command::Lock {
            resources,
            owner,
            priority,
            ttl,
            wait,
            detach,
            metadata,
        } => {
            let mut body = json!({ "resources": resources, "owner": owner, "detach": detach });
            if let Some(p) = priority {
                body["priority"] = json!(p);
            }
            if let Some(t) = ttl {
                body["ttl"] = json!(t);
            }
            if let Some(w) = wait {
                body["wait"] = json!(w);
            }
            if !metadata.is_empty() {
                let mut m = Map::new();
                for kv in metadata {
                    let (k, v) = kv.split_once('=').ok_or_else(|| {
                        CliError::usage(format!("--metadata {kv:?}: expected KEY=VALUE"))
                    })?;
                    m.insert(k.to_string(), json!(v));
                }
                body["metadata"] = Value::Object(m);
            }
            let answer = client
                .call(Method::POST, "/api/v1/locks", &[], Some(body))
                .await?;
            match out {
                Format::Json => output::json(&answer),
                Format::Table if answer.get("resources").is_some_and(|r| r[0].is_object()) => {
                    println!("lease {}", cell(&answer["id"]));
                    let rows: Vec<_> = answer["resources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| vec![cell(&r["resource"]), cell(&r["fencing_token"])])
                        .collect();
                    output::table(&["resource", "fencing token"], &rows);
                }
                Format::Table => {
                    println!(
                        "queued: ticket {} (lease {} when granted)",
                        cell(&answer["id"]),
                        cell(&answer["lease_id"])
                    );
                    let rows: Vec<_> = answer["position"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(r, p)| vec![r.clone(), cell(p)])
                        .collect();
                    output::table(&["resource", "position"], &rows);
                }
            }
        }
        Command::Unlock { lease_id } => {
            let answer = client
                .call(
                    Method::DELETE,
                    &format!("/api/v1/locks/{lease_id}"),
                    &[],
                    None,
                )
                .await?;
            show(out, &answer, |answer| {
                format!("released {}", cell(&answer["id"]))
            });
        }
        Command::Renew { lease_id, ttl } => {
            let body = ttl.map_or(json!({}), |t| json!({ "ttl": t }));
            let answer = client
                .call(
                    Method::POST,
                    &format!("/api/v1/locks/{lease_id}/renew"),
                    &[],
                    Some(body),
                )
                .await?;
            show(out, &answer, |answer| {
                format!(
                    "renewed {} until {}",
                    cell(&answer["id"]),
                    cell(&answer["expires_at"])
                )
            });
        }
        Command::List {
            resource_prefix,
            owner,
            state,
            held_longer_than,
        } => {
            let mut q = Vec::new();
            for (k, v) in [
                ("resource_prefix", resource_prefix),
                ("owner", owner),
                ("state", state),
                ("held_longer_than", held_longer_than),
            ] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            let answer = client.call(Method::GET, "/api/v1/locks", &q, None).await?;
            match out {
                Format::Json => output::json(&answer),
                Format::Table => {
                    let rows: Vec<_> = answer["locks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|l| {
                            let resources: Vec<String> = l["resources"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|r| {
                                    format!(
                                        "{} ({})",
                                        cell(&r["resource"]),
                                        cell(&r["fencing_token"])
                                    )
                                })
                                .collect();
                            vec![
                                cell(&l["id"]),
                                cell(&l["owner"]),
                                resources.join(", "),
                                cell(&l["priority"]),
                                cell(&l["acquired_at"]),
                                cell(&l["expires_at"]),
                                cell(&l["state"]),
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
                }
            }
        }
        Command::Status => {
            let health = client
                .call(Method::GET, "/api/enhanced-locks/health", &[], None)
                .await;
            let health = match health {
                Ok(h) => h,
                Err(CliError {
                    body: Some(b),
                    exit: 1,
                    ..
                }) => b,
                Err(e) => return Err(e),
            };
            let stats = client.call(Method::GET, "/api/v1/stats", &[], None).await?;
            match out {
                Format::Json => output::json(&json!({ "health": health, "stats": stats })),
                Format::Table => {
                    let rows = vec![
                        vec!["status".into(), cell(&health["status"])],
                        vec!["health score".into(), cell(&health["health_score"])],
                        vec![
                            "backend".into(),
                            format!(
                                "{} (healthy: {}, {} ms)",
                                cell(&health["backend"]["kind"]),
                                cell(&health["backend"]["healthy"]),
                                cell(&health["backend"]["latency_ms"])
                            ),
                        ],
                        vec!["breaker".into(), cell(&stats["breaker"])],
                        vec!["active locks".into(), cell(&stats["active_locks"])],
                        vec!["queue depth".into(), cell(&stats["queue_depth"])],
                        vec!["requests".into(), cell(&stats["total_requests"])],
                        vec![
                            "acquires ok / failed".into(),
                            format!(
                                "{} / {}",
                                cell(&stats["successful_acquires"]),
                                cell(&stats["failed_acquires"])
                            ),
                        ],
                        vec![
                            "average wait / hold".into(),
                            format!(
                                "{} / {}",
                                cell(&stats["average_wait"]),
                                cell(&stats["average_hold"])
                            ),
                        ],
                        vec![
                            "version, uptime".into(),
                            format!("{}, {}", cell(&health["version"]), cell(&health["uptime"])),
                        ],
                    ];
                    output::table(&["", ""], &rows);
                }
            }
        }
        Command::QueueStatus { resource } => {
            let answer = match &resource {
                Some(r) => {
                    client
                        .call(
                            Method::GET,
                            "/api/v1/resource",
                            &[("name", r.clone())],
                            None,
                        )
                        .await?
                }
                None => {
                    client
                        .call(Method::GET, "/api/v1/queues", &[], None)
                        .await?
                }
            };
            match (out, resource) {
                (Format::Json, _) => output::json(&answer),
                (Format::Table, Some(r)) => {
                    println!(
                        "{r}: held by {}, last fencing token {}",
                        cell(&answer["holder"]["owner"]),
                        cell(&answer["last_fencing_token"])
                    );
                    let rows: Vec<_> = answer["queue"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|t| {
                            vec![
                                cell(&t["position"][&r]),
                                cell(&t["owner"]),
                                cell(&t["priority"]),
                                cell(&t["effective_priority"]),
                                cell(&t["enqueued_at"]),
                                cell(&t["deadline"]),
                            ]
                        })
                        .collect();
                    output::table(
                        &[
                            "position",
                            "owner",
                            "priority",
                            "effective",
                            "enqueued",
                            "deadline",
                        ],
                        &rows,
                    );
                }
                (Format::Table, None) => {
                    let rows: Vec<_> = answer["queues"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|q| {
                            vec![
                                cell(&q["resource"]),
                                cell(&q["depth"]),
                                cell(&q["by_priority"]),
                                cell(&q["oldest_wait"]),
                            ]
                        })
                        .collect();
                    output::table(&["resource", "depth", "by priority", "oldest wait"], &rows);
                }
            }
        }
        Command::DeadlockStatus { history } => {
            let answer = client
                .call(Method::GET, "/api/v1/deadlocks", &[], None)
                .await?;
            match out {
                Format::Json => output::json(&answer),
                Format::Table => {
                    let describe = |cycle: &Value| -> String {
                        cycle
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|e| {
                                format!(
                                    "{} -[{}]-> {}",
                                    cell(&e["waiter"]),
                                    cell(&e["resource"]),
                                    cell(&e["blocker"])
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let active = answer["active"].as_array().cloned().unwrap_or_default();
                    println!("{} active deadlock(s)", active.len());
                    for c in &active {
                        println!("  {}", describe(c));
                    }
                    if history {
                        let rows: Vec<_> = answer["history"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|d| {
                                vec![
                                    cell(&d["detected_at"]),
                                    cell(&d["resolution"]),
                                    cell(&d["victim"]),
                                    describe(&d["cycle"]),
                                ]
                            })
                            .collect();
                        output::table(&["detected", "resolution", "victim", "cycle"], &rows);
                    }
                }
            }
        }
        Command::ForceUnlock { resource, reason } => {
            let mut body = json!({ "name": resource });
            if let Some(r) = reason {
                body["reason"] = json!(r);
            }
            let answer = client
                .call(
                    Method::POST,
                    "/api/v1/resource/force-release",
                    &[],
                    Some(body),
                )
                .await?;
            show(out, &answer, |answer| {
                format!(
                    "force-released lease {} of {}",
                    cell(&answer["id"]),
                    cell(&answer["owner"])
                )
            });
        }
        Command::Cleanup {
            expired_only,
            resource,
            force,
        } => {
            let body = match (expired_only, resource) {
                (true, _) => json!({ "expired_only": true }),
                (false, Some(r)) => json!({ "resource": r, "force": force }),
                (false, None) => {
                    return Err(CliError::usage(
                        "give --expired-only, or --resource R --force",
                    ))
                }
            };
            let answer = client
                .call(Method::POST, "/api/v1/cleanup", &[], Some(body))
                .await?;
            show(out, &answer, |answer| {
                format!(
                    "released {} lease(s)",
                    answer["released"].as_array().map_or(0, Vec::len)
                )
            });
        }
        Command::Events { types } => follow_events(client, types, out).await?,
        Command::CompatTest => {
            if !compat::run(client, out).await? {
                return Err(CliError {
                    exit: 1,
                    message: "some Atlantis conformance cases failed".into(),
                    body: None,
                });
            }
        }
        Command::CompareBackends(src) => migrate::compare_backends(client, &src, out).await?,
        Command::ValidateConsistency(src) => {
            migrate::validate_consistency(client, &src, out).await?
        }
        Command::Atlantis(AtlantisCommand::Validate { file, max_timeout }) => {
            atlantis::validate(&file, &max_timeout, out)?
        }
        Command::Atlantis(AtlantisCommand::Locks { file, repo, pull }) => {
            atlantis::locks(&file, &repo, pull, out)?
        }
        Command::Atlantis(AtlantisCommand::ExportRedis {
            file,
            include_secrets,
        }) => atlantis::export_redis(client, file.as_deref(), include_secrets).await?,
        Command::Atlantis(AtlantisCommand::ImportBoltdb {
            file,
            include_secrets,
        }) => atlantis::import_boltdb(client, &file, include_secrets, out).await?,
        Command::Export {
            file,
            include_secrets,
        } => {
            let query: Vec<(&str, String)> = if include_secrets {
                vec![("include-secrets", "true".into())]
            } else {
                Vec::new()
            };
            let answer = client
                .call(Method::GET, "/api/v1/export", &query, None)
                .await?;
            let text = serde_json::to_string_pretty(&answer).unwrap_or_default();
            match file {
                Some(path) => {
                    std::fs::write(&path, text + "\n").map_err(|e| {
                        CliError::usage(format!("cannot write {}: {e}", path.display()))
                    })?;
                    eprintln!(
                        "exported {} lease(s), {} ticket(s) to {}",
                        answer["leases"].as_array().map_or(0, Vec::len),
                        answer["tickets"].as_array().map_or(0, Vec::len),
                        path.display()
                    );
                }
                None => println!("{text}"),
            }
        }
        Command::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", file.display())))?;
            let body: Value = serde_json::from_str(&text)
                .map_err(|e| CliError::usage(format!("{}: not JSON: {e}", file.display())))?;
            let report = client
                .call(Method::POST, "/api/v1/import", &[], Some(body))
                .await?;
            match out {
                Format::Json => output::json(&report),
                Format::Table => {
                    println!(
                        "imported {} lease(s), {} ticket(s)",
                        cell(&report["leases"]),
                        cell(&report["tickets"])
                    );
                    let rows: Vec<_> = report["skipped"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|s| vec![cell(&s["id"]), cell(&s["reason"])])
                        .collect();
                    if !rows.is_empty() {
                        output::table(&["skipped", "reason"], &rows);
                    }
                }
            }
        }
        Command::Bench {
            scenarios,
            concurrency,
            duration,
            rate,
            redis,
            redis_cluster,
            redis_shards,
            peer,
        } => {
            if redis_shards == 0 || redis_shards > elock_redis::MAX_SHARDS {
                return Err(CliError::usage(format!(
                    "--redis-shards {redis_shards}: expected 1 to {}",
                    elock_redis::MAX_SHARDS
                )));
            }
            let needs_redis = [
                bench::Scenario::RedisBaseline,
                bench::Scenario::RedisStore,
                bench::Scenario::RedisMemory,
            ];
            if scenarios.iter().any(|s| needs_redis.contains(s)) && redis.is_none() {
                return Err(CliError::usage(
                    "--scenario redis-baseline, redis-store and redis-memory need --redis HOST:PORT",
                ));
            }
            let duration = elock_core::model::parse_duration("duration", &duration)
                .map_err(|e| CliError::usage(e.to_string()))?;
            let scenarios = if scenarios.is_empty() {
                vec![
                    bench::Scenario::Baseline,
                    bench::Scenario::Uncontended,
                    bench::Scenario::Hot,
                    bench::Scenario::PriorityMix,
                ]
            } else {
                scenarios
            };
            if concurrency == 0 {
                return Err(CliError::usage("--concurrency 0: expected at least 1"));
            }
            bench::run(
                client,
                bench::BenchArgs {
                    scenarios,
                    concurrency: concurrency.max(1),
                    duration,
                    rate,
                    redis,
                    redis_cluster,
                    redis_shards,
                    peer,
                },
                out,
            )
            .await?;
        }
        Command::HealthCheck => {
            let answer = client
                .call(Method::GET, "/api/enhanced-locks/health", &[], None)
                .await?;
            if out == Format::Json {
                output::json(&answer);
            } else {
                println!(
                    "{} (score {})",
                    cell(&answer["status"]),
                    cell(&answer["health_score"])
                );
            }
        }
    }
    Ok(())
}

async fn follow_events(
    client: &Client,
    types: Option<String>,
    out: Format,
) -> Result<(), CliError> {
    if let Some(t) = &types {
        server::parse_types(Some(t))
            .map_err(|_| CliError::usage(format!("--types {t:?}: unknown event type")))?;
    }
    let query: Vec<(&str, String)> = types.map(|t| ("types", t)).into_iter().collect();
    let response = client
        .builder(Method::GET, "/api/v1/events")
        .query(&query)
        .send()
        .await
        .map_err(|e| client.unreachable(e))?;
    if !response.status().is_success() {
        return Err(CliError::usage(format!(
            "the server refused the event stream: HTTP {}",
            response.status()
        )));
    }
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| client.unreachable(e))?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            for data in frame.lines().filter_map(|l| l.strip_prefix("data:")) {
                let event: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                match out {
                    Format::Json => {
                        println!("{}", serde_json::to_string(&event).unwrap_or_default())
                    }
                    Format::Table => println!(
                        "{:>6}  {}  {:<20} {}  {}",
                        cell(&event["id"]),
                        cell(&event["at"]),
                        cell(&event["type"]),
                        cell(&event["owner"]),
                        event["resources"]
                            .as_array()
                            .map(|r| r.iter().map(cell).collect::<Vec<_>>().join(", "))
                            .unwrap_or_default()
                    ),
                }
            }
        }
    }
    Ok(())
}
