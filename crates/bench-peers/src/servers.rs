//! Each system started alone, durable with its defaults, in a temporary directory on loopback,
//! and stopped (its directory removed) when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::drivers::Result;

pub struct Server {
    child: Child,
    /// Where its clients connect: a URL (elock, etcd) or a port (PostgreSQL).
    pub address: String,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Stops the server (SIGINT: a clean, fast shutdown for all three) and waits for it.
    pub async fn stop(mut self) {
        // PostgreSQL runs under runuser: signal the postmaster itself (its pid file's first line).
        let postmaster = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string));
        if let Some(pid) = postmaster.or_else(|| self.child.id().map(|p| p.to_string())) {
            let _ = Command::new("kill").args(["-INT", &pid]).status().await;
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn log_file(dir: &Path) -> Stdio {
    std::fs::File::create(dir.join("server.log"))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

async fn wait_ready<F, Fut>(what: &str, dir: &Path, mut ready: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if ready().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    Err(format!("{what} did not start within 30 s; its log:\n{log}"))
}

/// `elock serve` with its defaults, on the given backend (`embedded` or `memory`).
pub async fn elock(binary: &Path, backend: &str) -> Result<Server> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port();
    let child = Command::new(binary)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--backend",
            backend,
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(log_file(dir.path()))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let address = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let url = format!("{address}/healthz");
    wait_ready("elock", dir.path(), || {
        let r = http.get(&url).send();
        async move { r.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await?;
    Ok(Server {
        child,
        address,
        dir,
    })
}

/// One etcd member, durable (etcd syncs its WAL on every commit).
pub async fn etcd() -> Result<Server> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (client, peer) = (free_port(), free_port());
    let address = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--name",
            "bench",
            "--listen-client-urls",
            &address,
            "--advertise-client-urls",
            &address,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("bench={peer_url}"),
        ])
        .stdout(Stdio::null())
        .stderr(log_file(dir.path()))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start etcd (is etcd-server installed?): {e}"))?;
    let http = reqwest::Client::new();
    let url = format!("{address}/v3/maintenance/status");
    wait_ready("etcd", dir.path(), || {
        let r = http.post(&url).body("{}").send();
        async move { r.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await?;
    Ok(Server {
        child,
        address,
        dir,
    })
}

/// PostgreSQL's binaries: the newest version installed by Debian's packages.
fn postgres_bin(name: &str) -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e} (is postgresql installed?)"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions
        .last()
        .map(|v| v.join("bin").join(name))
        .ok_or_else(|| "no PostgreSQL version under /usr/lib/postgresql".into())
}

/// As root, PostgreSQL must run as another user: Debian's `postgres`.
fn as_postgres(program: PathBuf) -> Command {
    let root = std::env::var("USER").is_ok_and(|u| u == "root")
        || std::fs::metadata("/proc/self")
            .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL cluster made by `initdb` with its defaults (fsync on, synchronous commit).
pub async fn postgres() -> Result<Server> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let _ = std::process::Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir.path())
        .status();
    let data = dir.path().join("data");
    let status = as_postgres(postgres_bin("initdb")?)
        .args(["-A", "trust", "-U", "postgres", "-D"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(log_file(dir.path()))
        .status()
        .await
        .map_err(|e| format!("initdb: {e}"))?;
    if !status.success() {
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        return Err(format!("initdb failed: {log}"));
    }
    let port = free_port();
    let child = as_postgres(postgres_bin("postgres")?)
        .arg("-D")
        .arg(&data)
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-k",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(log_file(dir.path()))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))?;
    let address = port.to_string();
    wait_ready("PostgreSQL", dir.path(), || {
        let a = address.clone();
        async move { crate::connect_postgres(&a).await.is_ok() }
    })
    .await?;
    Ok(Server {
        child,
        address,
        dir,
    })
}
