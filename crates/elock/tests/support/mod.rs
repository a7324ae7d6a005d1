//! Black-box harness: the real `elock` binary on a free loopback port with a temporary data
//! directory, a JSON client for tests of the wire form, and the typed client (`elock-client`)
//! for tests that use the API as a lock user would.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub struct Server {
    pub url: String,
    child: Child,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A fresh server with its own data directory.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut s = Server::start_in(&path);
        s._dir = Some(dir);
        s
    }

    /// A server on an existing data directory (restarts).
    pub fn start_in(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// A server with extra `serve` arguments (`--config FILE`, flags).
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(data_dir, extra, &[])
    }

    /// A server with extra arguments and environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::spawn(data_dir, extra, env, "warn", Stdio::inherit())
    }

    /// A server whose log lines (at `level`) go to the file `log`.
    #[allow(dead_code)]
    pub fn start_logging(data_dir: &Path, log: &Path, level: &str) -> Server {
        let file = std::fs::File::create(log).unwrap();
        Self::spawn(data_dir, &[], &[], level, Stdio::from(file))
    }

    fn spawn(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        level: &str,
        stderr: Stdio,
    ) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_elock"))
            .envs(env.iter().copied())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("ELOCK_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start elock serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server {
            url,
            child,
            data_dir: data_dir.to_path_buf(),
            _dir: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the server to exit by itself; its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        self.child.wait().unwrap().code()
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill_9(mut self) -> Option<tempfile::TempDir> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self._dir.take()
    }

    /// The Prometheus text of GET /metrics.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn client(&self) -> Api {
        Api {
            http: reqwest::Client::new(),
            url: self.url.clone(),
            token: None,
        }
    }

    /// Runs the CLI against this server; returns (exit code, stdout).
    pub fn cli(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_elock"))
            .args(args)
            .env("ELOCK_SERVER", &self.url)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    /// Sent as a bearer token with every call.
    pub token: Option<String>,
}

impl Api {
    /// The same client calling with `token`.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// The typed client of the same server (`elock-client`): for tests that use the API as a
    /// lock user would, rather than test its wire form.
    pub fn typed(&self) -> elock_client::Client {
        elock_client::Client::new(&self.url).unwrap()
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut b = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            b = b.bearer_auth(t);
        }
        if let Some(body) = body {
            b = b.json(&body);
        }
        let r = b.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// `holder` outside a runtime.
    pub fn holder_blocking(&self, resource: &str) -> Value {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(self.holder(resource))
    }

    pub async fn holder(&self, resource: &str) -> Value {
        self.get(&format!("/api/v1/resource?name={resource}"))
            .await
            .1["holder"]
            .clone()
    }
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
}

/// Mutual exclusion under load: 50 clients, 6 rounds each, on 10 resources, spread round-robin
/// over `apis` (one per server). Each critical section checks that nobody else is inside and that
/// its fencing token is above every one seen before on that resource. Returns the sum of the last
/// tokens seen per resource (300 when every grant minted exactly one token).
pub async fn mutual_exclusion_run(apis: &[Api]) -> u64 {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    // resource → (the client inside its critical section, the last fencing token seen).
    type Occupancy = HashMap<String, (Option<usize>, u64)>;
    let inside: Arc<Mutex<Occupancy>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..50usize {
        let (api, inside) = (apis[c % apis.len()].clone(), inside.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..6usize {
                let resource = format!("proj/{}", (c * 7 + round * 3) % 10);
                let lease = api
                    .typed()
                    .lock(&format!("client-{c}"), [&resource])
                    .unwrap()
                    .wait(std::time::Duration::from_secs(60))
                    .ttl(std::time::Duration::from_secs(60))
                    .acquire()
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let token = lease.resources[0].fencing_token;
                {
                    let mut map = inside.lock().unwrap();
                    let entry = map.entry(resource.clone()).or_insert((None, 0));
                    assert!(
                        entry.0.is_none(),
                        "client {c} entered {resource} while client {:?} was inside",
                        entry.0
                    );
                    assert!(
                        token > entry.1,
                        "{resource}: token {token} after {}",
                        entry.1
                    );
                    *entry = (Some(c), token);
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                inside.lock().unwrap().get_mut(&resource).unwrap().0 = None;
                api.typed().release(lease.id).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = inside.lock().unwrap().values().map(|(_, t)| *t).sum();
    total
}

/// A loopback port nobody listens on now.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
