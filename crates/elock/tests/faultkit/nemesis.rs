//! The nemesis: what breaks during a fault run, on a seeded schedule. Each fault is recorded
//! with the time it healed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elock_redis::testing::RedisServer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Recorder, Targets};
use crate::support::Server;

/// One elock server process and how to start it again on the same data.
pub struct Elock {
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    pub server: Option<Server>,
}

impl Elock {
    pub fn start(data_dir: PathBuf, args: Vec<String>) -> Elock {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start_with(&data_dir, &argv);
        Elock {
            data_dir,
            args,
            server: Some(server),
        }
    }

    pub fn url(&self) -> String {
        self.server.as_ref().expect("running").url.clone()
    }

    fn kill_9(&mut self) {
        if let Some(s) = self.server.take() {
            s.kill_9();
        }
    }

    fn restart(&mut self) -> String {
        let argv: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let server = Server::start_with(&self.data_dir, &argv);
        let url = server.url.clone();
        self.server = Some(server);
        url
    }
}

/// Blocking work (killing, starting processes) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn pause(rng: &mut StdRng, from_ms: u64, to_ms: u64) {
    tokio::time::sleep(Duration::from_millis(rng.random_range(from_ms..to_ms))).await;
}

async fn kill_and_restart_elock(
    i: usize,
    elock: &Arc<Mutex<Elock>>,
    targets: &Targets,
    rec: &Recorder,
    rng: &mut StdRng,
) {
    let e = elock.clone();
    blocking(move || e.lock().unwrap().kill_9()).await;
    rec.fault(format!("kill -9 elock server {i}"));
    pause(rng, 0, 300).await;
    let e = elock.clone();
    let url = blocking(move || e.lock().unwrap().restart()).await;
    targets.set(i, url);
    rec.fault(format!("elock server {i} restarted"));
}

/// The embedded store: kill -9 the only server every few seconds and start it again on its data
/// directory.
pub async fn embedded(
    seed: u64,
    elock: Arc<Mutex<Elock>>,
    targets: Targets,
    rec: Arc<Recorder>,
    stop: Instant,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e656d65);
    loop {
        pause(&mut rng, 1000, 2500).await;
        if Instant::now() >= stop {
            return;
        }
        kill_and_restart_elock(0, &elock, &targets, &rec, &mut rng).await;
    }
}

/// Redis with two elock servers on it: kill -9 Redis (it restarts from its append-only file),
/// stop it cleanly and restart it, freeze it past the call timeout (SIGSTOP, then SIGCONT), or
/// kill -9 one elock server.
pub async fn redis(
    seed: u64,
    redis: Arc<Mutex<RedisServer>>,
    elocks: Vec<Arc<Mutex<Elock>>>,
    targets: Targets,
    rec: Arc<Recorder>,
    stop: Instant,
    freeze: Duration,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x72656469);
    loop {
        pause(&mut rng, 1000, 2500).await;
        if Instant::now() >= stop {
            return;
        }
        match rng.random_range(0..4) {
            0 => {
                let r = redis.clone();
                blocking(move || r.lock().unwrap().restart()).await;
                rec.fault("kill -9 redis-server, restarted");
            }
            3 => {
                // A clean restart: SIGTERM (Redis flushes its AOF and exits), then start again.
                let r = redis.clone();
                blocking(move || {
                    let mut r = r.lock().unwrap();
                    if let Some(pid) = r.pid() {
                        signal(pid, nix::sys::signal::Signal::SIGTERM);
                        std::thread::sleep(Duration::from_millis(300));
                    }
                    r.restart();
                })
                .await;
                rec.fault("redis-server stopped (SIGTERM), restarted");
            }
            1 => {
                let pid = redis.lock().unwrap().pid().expect("redis runs");
                signal(pid, nix::sys::signal::Signal::SIGSTOP);
                tokio::time::sleep(freeze).await;
                signal(pid, nix::sys::signal::Signal::SIGCONT);
                rec.fault(format!("redis-server frozen for {freeze:?}"));
            }
            _ => {
                let i = rng.random_range(0..elocks.len());
                kill_and_restart_elock(i, &elocks[i], &targets, &rec, &mut rng).await;
            }
        }
    }
}

fn signal(pid: u32, s: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), s);
}
