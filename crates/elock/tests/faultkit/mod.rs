//! The fault suite's machinery: clients that take locks and write through a fenced register, an
//! observer that lists every lease, a nemesis that breaks things, and the history they leave
//! (checked by `history.rs`).
//!
//! A run is seeded: the clients' choices and the nemesis's schedule come from the seed, so a
//! failing seed replays the same plan (the machine's timing still varies).

#![allow(dead_code)]

pub mod history;
pub mod nemesis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use history::{Attempt, Grant, History, Outcome, SeenLease, Snapshot, Write};

/// Milliseconds of the system clock (the clock the servers stamp leases with).
pub fn now_ms() -> u64 {
    elock_core::model::Timestamp::from_system(std::time::SystemTime::now()).as_millis()
}

/// How a run is shaped.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    pub clients: usize,
    pub resources: usize,
    pub duration: Duration,
    /// The ttl of every lease.
    pub ttl: Duration,
    /// How much longer than its wait an attempt may take to be answered.
    pub answer_bound: Duration,
    /// How long a lease granted to a client that is gone may last (`None`: it may not exist).
    pub ghost_bound: Option<Duration>,
}

impl Plan {
    /// The bounded run of the test command, or a longer one by hand:
    /// `ELOCK_FAULTS_SECS=600 ELOCK_FAULTS_SEED=7 cargo test -p elock --test faults -- --nocapture`.
    pub fn from_env(default_secs: u64) -> Plan {
        let get = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Plan {
            // A fixed plan by default, so that the test command replays the same schedule.
            seed: get("ELOCK_FAULTS_SEED").unwrap_or(1),
            clients: get("ELOCK_FAULTS_CLIENTS").unwrap_or(8) as usize,
            resources: 3,
            duration: Duration::from_secs(get("ELOCK_FAULTS_SECS").unwrap_or(default_secs)),
            ttl: Duration::from_millis(1500),
            answer_bound: Duration::from_secs(15),
            ghost_bound: None,
        }
    }
}

/// Where the clients send their requests: one URL per elock server, replaced on a restart.
#[derive(Clone, Default)]
pub struct Targets(Arc<RwLock<Vec<String>>>);

impl Targets {
    pub fn new(urls: Vec<String>) -> Self {
        Targets(Arc::new(RwLock::new(urls)))
    }

    pub fn get(&self, i: usize) -> String {
        let urls = self.0.read().unwrap();
        urls[i % urls.len()].clone()
    }

    pub fn set(&self, i: usize, url: String) {
        self.0.write().unwrap()[i] = url;
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap().len()
    }
}

/// The resource the locks protect: accepts a write only with a fencing token at least as large
/// as every token it accepted before.
#[derive(Default)]
pub struct Register {
    highest: Mutex<HashMap<String, u64>>,
    log: Mutex<Vec<Write>>,
}

impl Register {
    pub fn write(&self, owner: &str, resource: &str, token: u64) -> bool {
        let mut highest = self.highest.lock().unwrap();
        let top = highest.entry(resource.to_string()).or_insert(0);
        let accepted = token >= *top;
        if accepted {
            *top = token;
        }
        self.log.lock().unwrap().push(Write {
            owner: owner.into(),
            resource: resource.into(),
            token,
            at: now_ms(),
            accepted,
        });
        accepted
    }
}

/// Everything the run records.
#[derive(Default)]
pub struct Recorder {
    pub attempts: Mutex<Vec<Attempt>>,
    pub snapshots: Mutex<Vec<Snapshot>>,
    pub faults: Mutex<Vec<(String, u64)>>,
    pub register: Register,
}

impl Recorder {
    pub fn fault(&self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("faults: {} {what}", now_ms());
        self.faults.lock().unwrap().push((what, now_ms()));
    }

    pub fn history(&self) -> History {
        History {
            attempts: self.attempts.lock().unwrap().clone(),
            writes: self.register.log.lock().unwrap().clone(),
            snapshots: self.snapshots.lock().unwrap().clone(),
            faults: self.faults.lock().unwrap().clone(),
        }
    }
}

/// A client of `url` that never retries by itself: every attempt the history records is one
/// request.
fn client_of(url: &str, timeout: Duration) -> elock_client::Client {
    elock_client::Client::builder(url)
        .timeout(timeout)
        .retries(0)
        .build()
        .unwrap()
}

/// One client: until `stop`, take a lock (try or wait), write through the register, sometimes
/// freeze past the ttl first (its write must then be refused if someone else wrote), release.
pub async fn client(id: usize, plan: Plan, targets: Targets, rec: Arc<Recorder>, stop: Instant) {
    let mut rng = StdRng::seed_from_u64(plan.seed.wrapping_add(id as u64 * 7919));
    let mut attempt = 0u64;
    while Instant::now() < stop {
        attempt += 1;
        let owner = format!("c{id}-{attempt}");
        let resource = format!("res/{}", rng.random_range(0..plan.resources));
        let wait_ms: u64 = if rng.random_bool(0.3) { 0 } else { 3000 };
        let api = client_of(&targets.get(id), Duration::from_secs(30));
        let sent = now_ms();
        let answer = api
            .lock(&owner, [&resource])
            .unwrap()
            .ttl(plan.ttl)
            .wait(Duration::from_millis(wait_ms))
            .acquire()
            .await;
        let answered = now_ms();
        let outcome = match &answer {
            Ok(lease) => Outcome::Granted(Grant {
                lease: lease.id.to_string(),
                token: lease.resources[0].fencing_token,
                acquired_at: lease.acquired_at.as_millis(),
                expires_at: lease.expires_at.map_or(u64::MAX, |t| t.as_millis()),
            }),
            Err(elock_client::Error::Api { status, .. }) if (400..500).contains(status) => {
                Outcome::Refused(*status)
            }
            Err(e) => Outcome::Unknown(e.to_string()),
        };
        let mut record = Attempt {
            owner: owner.clone(),
            resource: resource.clone(),
            wait_ms,
            sent,
            answered,
            outcome: outcome.clone(),
            release_sent: None,
            release_acked: None,
        };
        if let Ok(lease) = &answer {
            if rng.random_bool(0.15) {
                // Frozen past the ttl (a long GC pause, a stopped VM): the lease has expired.
                tokio::time::sleep(plan.ttl + Duration::from_millis(300)).await;
            } else {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
            }
            rec.register
                .write(&owner, &resource, lease.resources[0].fencing_token);
            record.release_sent = Some(now_ms());
            let api = client_of(&targets.get(id), Duration::from_secs(30));
            if api.release(lease.id).await.is_ok() {
                record.release_acked = Some(now_ms());
            }
        } else if matches!(&answer, Err(e) if e.code().is_none() || e.code().is_some_and(|c| c.http_status() >= 500))
        {
            // The server is down or restarting.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rec.attempts.lock().unwrap().push(record);
    }
}

/// Lists every lease every 100 ms, from the first server that answers.
pub async fn observer(targets: Targets, rec: Arc<Recorder>, stop: Instant) {
    while Instant::now() < stop {
        for i in 0..targets.len() {
            let api = client_of(&targets.get(i), Duration::from_secs(2));
            let sent = now_ms();
            let Ok(locks) = api.list(&Default::default()).await else {
                continue;
            };
            let answered = now_ms();
            let leases = locks
                .iter()
                .flat_map(|l| {
                    l.resources.iter().map(move |h| SeenLease {
                        id: l.id.to_string(),
                        owner: l.owner.to_string(),
                        resource: h.resource.to_string(),
                        token: h.fencing_token,
                        acquired_at: l.acquired_at.as_millis(),
                    })
                })
                .collect();
            rec.snapshots.lock().unwrap().push(Snapshot {
                sent,
                answered,
                leases,
            });
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the clients and the observer for the plan's duration while `nemesis` breaks things,
/// then lets the faults heal and checks the history. Panics with the violations and the seed.
pub async fn run<N, F>(plan: Plan, targets: Targets, nemesis: N)
where
    N: FnOnce(Arc<Recorder>, Instant) -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    eprintln!("faults: seed {} ({plan:?})", plan.seed);
    let rec = Arc::new(Recorder::default());
    let stop = Instant::now() + plan.duration;
    let breaker = tokio::spawn(nemesis(rec.clone(), stop));
    let mut tasks: Vec<_> = (0..plan.clients)
        .map(|c| tokio::spawn(client(c, plan.clone(), targets.clone(), rec.clone(), stop)))
        .collect();
    tasks.push(tokio::spawn(observer(targets.clone(), rec.clone(), stop)));
    breaker.await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    // The faults have healed: what the clients left behind runs out (ttl), and nobody whose
    // client is gone is granted in the meantime.
    observer(targets, rec.clone(), Instant::now() + plan.ttl * 3).await;
    let report = rec.history().check(
        plan.answer_bound.as_millis() as u64,
        plan.ghost_bound.map(|b| b.as_millis() as u64),
    );
    eprintln!(
        "faults: seed {}: {} faults, {} grants, {} refused, {} unknown, {} writes accepted, {} stale writes refused, {} violations",
        plan.seed,
        report.faults,
        report.grants,
        report.refused,
        report.unknown,
        report.writes_accepted,
        report.stale_writes_refused,
        report.violations.len()
    );
    assert!(
        report.violations.is_empty(),
        "seed {}: {} violations:\n{}",
        plan.seed,
        report.violations.len(),
        report.violations.join("\n")
    );
    assert!(
        report.grants > 0 && report.faults > 0,
        "the run did nothing: {report:?}"
    );
}
