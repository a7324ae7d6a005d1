//! `elock-bench-peers` (run by `scripts/bench-peers`): elock against etcd's lock API and
//! PostgreSQL's locks on the same machine, in one run.
//!
//! For each workload of a round, every system in turn is started alone (durable, with its
//! defaults, in a temporary directory on loopback), measured, and stopped before the next one
//! starts, so that the figures a ratio compares are seconds apart; the order of the systems
//! rotates from round to round, so that no system always runs first. The table gives each figure's median over the rounds, and each ratio
//! as the median of the ratios within a round (these machines are shared and noisy: ratios from
//! the same round hold better than absolute rates).

mod drivers;
mod servers;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;

use drivers::{Driver, Etcd, PgMode, Result, Workload};

#[derive(Parser, Debug)]
#[command(
    about = "elock against etcd and PostgreSQL locks on this machine (medians of rotating rounds)"
)]
struct Args {
    /// The elock binary to serve with.
    #[arg(long, default_value = "target/release/elock")]
    elock: PathBuf,
    /// Rounds; every system runs once per round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// How long each workload runs (after a warm-up of a fifth of it).
    #[arg(long, default_value = "5s", value_parser = humantime_duration)]
    duration: Duration,
    /// Client counts of the uncontended pairs.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Contenders for the one hot lock.
    #[arg(long, default_value_t = 16)]
    contenders: usize,
    /// Systems to run (elock, elock-memory, etcd, postgresql).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "elock,elock-memory,etcd,postgresql"
    )]
    systems: Vec<String>,
    /// Another elock binary (the build of another commit, say), run on its embedded store as
    /// the system `elock-compare`, added to the systems: an A/B in the same rounds.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Also write every measurement as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn humantime_duration(s: &str) -> std::result::Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        _ => Err(format!("not a duration: {s:?} (use 5s or 500ms)")),
    }
}

/// A column of the table: a system, and for PostgreSQL which kind of lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
enum Column {
    Elock,
    ElockCompare,
    ElockMemory,
    Etcd,
    PgRow,
    PgAdvisory,
}

impl Column {
    fn title(self) -> &'static str {
        match self {
            Column::Elock => "elock (embedded)",
            Column::ElockCompare => "compared elock (embedded)",
            Column::ElockMemory => "elock (memory)",
            Column::Etcd => "etcd v3 lock",
            Column::PgRow => "PostgreSQL lock row",
            Column::PgAdvisory => "PostgreSQL advisory (memory)",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
struct Measurement {
    round: usize,
    column: Column,
    row: String,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// elock's embedded store: group commits (fdatasync calls) per operation.
    fsyncs_per_op: Option<f64>,
}

pub async fn connect_postgres(port: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .map_err(|e| format!("postgresql: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// elock's count of group commits (one fdatasync each), from its /metrics.
async fn elock_commits(base: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("atlantis_enhanced_locking_store_commits "))
        .and_then(|v| v.trim().parse().ok())
}

/// Runs `workload` with `n` workers for the warm-up and then `duration`; counts what completes
/// in the measured window, and (given elock's address) the fsyncs per operation in it.
async fn measure(
    drivers: Vec<Driver>,
    workload: Workload,
    duration: Duration,
    elock: Option<&str>,
) -> (f64, Histogram<u64>, u64, Option<f64>) {
    let warmup = duration / 5;
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (w, driver) in drivers.into_iter().enumerate() {
        let (counting, stop) = (counting.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            let mut errors = 0u64;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ok = driver.run(workload, w, i).await;
                i += 1;
                if counting.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    match ok {
                        Ok(()) => {
                            let _ = h.record(started.elapsed().as_micros() as u64);
                        }
                        Err(e) => {
                            if errors == 0 {
                                eprintln!("  error: {e}");
                            }
                            errors += 1;
                        }
                    }
                }
            }
            (h, errors)
        }));
    }
    tokio::time::sleep(warmup).await;
    let commits_before = match elock {
        Some(base) => elock_commits(base).await,
        None => None,
    };
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let commits_after = match elock {
        Some(base) => elock_commits(base).await,
        None => None,
    };
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    let mut errors = 0;
    for t in tasks {
        if let Ok((h, e)) = t.await {
            all.add(h).expect("same histogram bounds");
            errors += e;
        }
    }
    let ops = all.len() as f64;
    let fsyncs = match (commits_before, commits_after) {
        (Some(a), Some(b)) if ops > 0.0 => Some((b - a) / ops),
        _ => None,
    };
    (ops / elapsed.as_secs_f64(), all, errors, fsyncs)
}

/// The rows every system runs: uncontended pairs at each client count, the hot lock, and the
/// trivial request (at the hot lock's concurrency).
fn rows(args: &Args) -> Vec<(String, Workload, usize)> {
    let mut rows: Vec<(String, Workload, usize)> = args
        .clients
        .iter()
        .map(|&n| {
            (
                format!("pairs/s, {n} client{}", if n == 1 { "" } else { "s" }),
                Workload::Pair,
                n,
            )
        })
        .collect();
    rows.push((
        format!("hot lock, {} contenders, handoffs/s", args.contenders),
        Workload::Handoff,
        args.contenders,
    ));
    rows.push((
        format!("trivial request, {} clients, req/s", args.contenders),
        Workload::Trivial,
        args.contenders,
    ));
    rows
}

async fn drivers_for(column: Column, address: &str, n: usize) -> Result<Vec<Driver>> {
    let mut out = Vec::with_capacity(n);
    match column {
        Column::Elock | Column::ElockCompare | Column::ElockMemory => {
            // One client (a pool of keep-alive connections) shared by all workers, as
            // `elock bench` does.
            let c = elock_client::Client::builder(address)
                .timeout(Duration::from_secs(120))
                .build()
                .map_err(|e| e.to_string())?;
            for _ in 0..n {
                out.push(Driver::Elock(c.clone()));
            }
        }
        Column::Etcd => {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(usize::MAX)
                .build()
                .map_err(|e| e.to_string())?;
            for _ in 0..n {
                let mut e = Etcd {
                    http: http.clone(),
                    base: address.to_string(),
                    lease: 0,
                };
                e.lease = e.grant().await?;
                out.push(Driver::Etcd(e));
            }
        }
        Column::PgRow | Column::PgAdvisory => {
            let mode = if column == Column::PgRow {
                PgMode::Row
            } else {
                PgMode::Advisory
            };
            for _ in 0..n {
                out.push(Driver::Postgres(connect_postgres(address).await?, mode));
            }
        }
    }
    Ok(out)
}

/// Starts `system` alone, runs one row's workload against it (for PostgreSQL, with each kind of
/// lock), and stops it.
async fn run_system(
    args: &Args,
    system: &str,
    round: usize,
    (row, workload, n): &(String, Workload, usize),
) -> Result<Vec<Measurement>> {
    let (server, columns) = match system {
        "elock" => (
            servers::elock(&args.elock, "embedded").await?,
            vec![Column::Elock],
        ),
        "elock-compare" => {
            let binary = args
                .compare
                .as_ref()
                .ok_or("the system elock-compare needs --compare PATH")?;
            (
                servers::elock(binary, "embedded").await?,
                vec![Column::ElockCompare],
            )
        }
        "elock-memory" => (
            servers::elock(&args.elock, "memory").await?,
            vec![Column::ElockMemory],
        ),
        "etcd" => (servers::etcd().await?, vec![Column::Etcd]),
        "postgresql" => {
            let s = servers::postgres().await?;
            drivers::postgres_schema(&connect_postgres(&s.address).await?).await?;
            (s, vec![Column::PgRow, Column::PgAdvisory])
        }
        other => {
            return Err(format!(
                "unknown system {other:?} (elock, elock-memory, etcd, postgresql)"
            ))
        }
    };
    let (workload, n) = (*workload, *n);
    let mut out = Vec::new();
    for column in columns {
        {
            // The trivial request is the server's, not the lock kind's: once per server.
            if workload == Workload::Trivial && column == Column::PgAdvisory {
                continue;
            }
            let drivers = drivers_for(column, &server.address, n).await?;
            let elock = matches!(column, Column::Elock | Column::ElockCompare)
                .then_some(server.address.as_str());
            let (rate, h, errors, fsyncs) = measure(drivers, workload, args.duration, elock).await;
            eprintln!(
                "  {:<30} {:<42} {:>9.0}/s  p50 {:.2} ms  p99 {:.2} ms{}{}",
                column.title(),
                row,
                rate,
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                fsyncs
                    .map(|f| format!("  {f:.2} fsyncs/op"))
                    .unwrap_or_default(),
                if errors > 0 {
                    format!("  ({errors} errors)")
                } else {
                    String::new()
                }
            );
            out.push(Measurement {
                round,
                column,
                row: row.clone(),
                ops_per_sec: rate,
                p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
                p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
                errors,
                fsyncs_per_op: fsyncs,
            });
        }
    }
    server.stop().await;
    Ok(out)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(if !v.len().is_multiple_of(2) {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    })
}

fn table(args: &Args, all: &[Measurement]) -> String {
    let mut columns = vec![Column::Elock];
    if args.compare.is_some() {
        columns.push(Column::ElockCompare);
    }
    columns.extend([
        Column::ElockMemory,
        Column::Etcd,
        Column::PgRow,
        Column::PgAdvisory,
    ]);
    let mut ratios = vec![
        ("embedded / etcd", Column::Elock, Column::Etcd),
        ("embedded / PG row", Column::Elock, Column::PgRow),
        (
            "memory / PG advisory",
            Column::ElockMemory,
            Column::PgAdvisory,
        ),
        ("embedded / memory", Column::Elock, Column::ElockMemory),
    ];
    if args.compare.is_some() {
        ratios.push(("embedded / compared", Column::Elock, Column::ElockCompare));
    }
    let get = |round: usize, c: Column, row: &str| {
        all.iter()
            .find(|m| m.round == round && m.column == c && m.row == row)
            .map(|m| m.ops_per_sec)
    };
    let mut out = String::from("| workload |");
    for c in &columns {
        out += &format!(" {} |", c.title());
    }
    for (t, _, _) in &ratios {
        out += &format!(" {t} |");
    }
    out += " elock fsyncs per op |";
    out += "\n|---|";
    out += &"---:|".repeat(columns.len() + ratios.len() + 1);
    out += "\n";
    for (row, _, _) in rows(args) {
        out += &format!("| {row} |");
        for &c in &columns {
            let v: Vec<f64> = (0..args.rounds).filter_map(|r| get(r, c, &row)).collect();
            out += &match median(v) {
                Some(m) => format!(" {} |", thousands(m)),
                None => " – |".into(),
            };
        }
        for &(_, a, b) in &ratios {
            let v: Vec<f64> = (0..args.rounds)
                .filter_map(|r| Some(get(r, a, &row)? / get(r, b, &row)?))
                .collect();
            out += &match median(v) {
                Some(m) => format!(" {m:.2} |"),
                None => " – |".into(),
            };
        }
        let fsyncs: Vec<f64> = all
            .iter()
            .filter(|m| m.column == Column::Elock && m.row == row)
            .filter_map(|m| m.fsyncs_per_op)
            .collect();
        out += &match median(fsyncs) {
            Some(m) => format!(" {m:.2} |"),
            None => " – |".into(),
        };
        out += "\n";
    }
    out
}

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[tokio::main]
async fn main() {
    let mut args = Args::parse();
    if args.compare.is_some() && !args.systems.iter().any(|s| s == "elock-compare") {
        args.systems.insert(1, "elock-compare".into());
    }
    // Every system runs each workload back to back, so that the measurements a ratio compares
    // are seconds apart, not minutes: this disk's fsync latency drifts by a factor of two
    // within minutes.
    let mut all = Vec::new();
    for round in 0..args.rounds {
        eprintln!("round {round}");
        let n = args.systems.len();
        for row in rows(&args) {
            for k in 0..n {
                let system = &args.systems[(k + round) % n];
                match run_system(&args, system, round, &row).await {
                    Ok(m) => all.extend(m),
                    Err(e) => {
                        eprintln!("elock-bench-peers: {system}: {e}");
                        std::process::exit(1);
                    }
                }
            }
        }
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&all).expect("measurements serialize");
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("elock-bench-peers: cannot write {}: {e}", path.display());
        }
    }
    println!(
        "medians of {} rounds of {} s each (ratios: median of the same-round ratios)\n",
        args.rounds,
        args.duration.as_secs_f64()
    );
    print!("{}", table(&args, &all));
}
