//! Real `redis-server` processes for tests: a single node and a 3-master Cluster (made with
//! `redis-cli --cluster create`) on free loopback ports, and a [`StoreFactory`] over them for
//! elock-core's conformance suite and model-based property test.
//!
//! No mocks, and no test skips for want of a server: `scripts/test` installs redis-server from
//! Debian's packages when it is missing, and a missing binary here is a loud failure saying so.
//! Every server is started with a parent-death signal, so a test process that dies (or is
//! killed) takes its servers with it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::RedisConfig;

/// One `redis-server` process in its own temporary directory, killed when dropped.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

fn binary(name: &str) -> String {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p.to_string_lossy().into_owned();
        }
    }
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p.to_string_lossy().into_owned();
        }
    }
    panic!(
        "{name} not found: the tests need a real Redis. Run scripts/test, which installs it \
         (apt-get install redis-server), or install it yourself"
    );
}

/// A free loopback port whose Cluster bus port (+10000) is free too.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Sends one command (RESP) and returns the raw reply.
pub fn raw_command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

impl RedisServer {
    /// A single node with `extra` arguments (e.g. `["--appendonly", "yes"]`).
    pub fn start(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut s = RedisServer {
            port: free_port(),
            dir,
            args: extra.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        // A free port can be handed to two tests at once (it is free until someone binds it):
        // the server that answers must be ours, else take another port (a restart keeps its
        // port: the data and the clients expect it).
        let restart = self.dir.path().join(".started").exists();
        for _ in 0..20 {
            match self.spawn_once() {
                Ok(()) => {
                    let _ = std::fs::write(self.dir.path().join(".started"), b"");
                    return;
                }
                Err(true) if !restart => self.port = free_port(),
                Err(_) => break,
            }
        }
        panic!(
            "redis-server on port {} did not start; its log: {}",
            self.port,
            std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
        );
    }

    /// Starts the server and waits until it answers as itself. `Err(true)`: it exited (its port
    /// was taken); `Err(false)`: it never answered.
    fn spawn_once(&mut self) -> Result<(), bool> {
        let mut cmd = Command::new(binary("redis-server"));
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .args(&self.args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child when the
        // thread that started it ends.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start redis-server");
        let me = format!("process_id:{}\r\n", child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    self.child = None;
                    return Err(true);
                }
            }
            if raw_command(self.port, &["INFO", "server"]).is_ok_and(|r| r.contains(&me)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(false)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id, while it runs (to pause it with SIGSTOP / SIGCONT).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the process at once (SIGKILL): whatever was not yet persisted is lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and directory (its persisted data reloads).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three masters, no replicas, slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let mut cmd = Command::new(binary("redis-cli"));
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(n.address());
        }
        let out = cmd
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in &nodes {
            loop {
                let info = raw_command(n.port(), &["CLUSTER", "INFO"]).unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the Cluster did not reach cluster_state:ok: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.address()).collect()
    }
}

/// Starts `make` on a thread that lives as long as the process, so that the parent-death signal
/// fires only when the test process ends.
fn keep<T: Send + Sync + 'static>(make: fn() -> T) -> &'static T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let value: &'static T = Box::leak(Box::new(make()));
        tx.send(value).unwrap();
        loop {
            std::thread::park();
        }
    });
    rx.recv()
        .expect("the Redis keeper thread started its server")
}

/// One single-node server shared by every test of the process.
pub fn shared_single() -> &'static RedisServer {
    static S: OnceLock<&'static RedisServer> = OnceLock::new();
    S.get_or_init(|| keep(|| RedisServer::start(&[])))
}

/// One single-node server without Functions (`FUNCTION` renamed away, as on Redis 6 or under an
/// ACL that denies it), shared by every test of the process: the stores on it run the Lua as
/// scripts.
pub fn shared_single_without_functions() -> &'static RedisServer {
    static S: OnceLock<&'static RedisServer> = OnceLock::new();
    S.get_or_init(|| keep(|| RedisServer::start(&["--rename-command", "FUNCTION", ""])))
}

/// One 3-master Cluster shared by every test of the process.
pub fn shared_cluster() -> &'static RedisCluster {
    static C: OnceLock<&'static RedisCluster> = OnceLock::new();
    C.get_or_init(|| keep(|| RedisCluster::start(3)))
}

/// A key prefix no other store of this process uses.
pub fn unique_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}-{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The configuration of a store on the shared single node or the shared Cluster.
pub fn config_for(cluster: bool) -> RedisConfig {
    if cluster {
        RedisConfig {
            addresses: shared_cluster().addresses(),
            cluster_mode: true,
            key_prefix: unique_prefix(),
            // The shared suites move a hand-driven clock; a heartbeat in real time would make
            // another store's waiters look gone. Tests of the heartbeat turn it on.
            node_timeout: None,
            ..RedisConfig::default()
        }
    } else {
        RedisConfig {
            addresses: vec![shared_single().address()],
            key_prefix: unique_prefix(),
            node_timeout: None,
            ..RedisConfig::default()
        }
    }
}
