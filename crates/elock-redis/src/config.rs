//! How to reach Redis (`redis.*`, docs/configuration.md).

use std::time::Duration;

use elock_core::model::duration_text;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    /// `host:port` (or full `redis://` / `rediss://` URLs). One for a single node; any number of
    /// seed nodes for a Cluster.
    pub addresses: Vec<String>,
    pub cluster_mode: bool,
    pub username: Option<String>,
    /// Read from the environment by the caller (`redis.password-env`), never from the file.
    pub password: Option<String>,
    /// Single node only: Redis Cluster has one database.
    pub db: i64,
    /// `rediss://`: TLS to every node.
    pub tls: bool,
    /// Prepended to every key, so several installations can share one Redis.
    pub key_prefix: String,
    /// Connections the client may open (reported as the pool size; requests are multiplexed).
    pub pool_size: u32,
    /// How many hash tags (`{0}` .. `{n-1}`) the lock table is spread over; more than one lets a
    /// Cluster put shards on different masters. Must stay the same for the life of the data.
    pub shards: usize,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// Keep Atlantis's own keys (`pr/{key}`, `global/apply/lock`) beside the lock table, so that
    /// an unmodified Atlantis sharing this Redis sees elock's locks and elock sees Atlantis's
    /// (`backward-compatibility.preserve-legacy-format`; single node only, see `atlantis_watch.rs`).
    pub atlantis_keys: bool,
    /// How often the watch of Atlantis's keys runs when no keyspace notification wakes it.
    pub atlantis_poll: Duration,
    /// How long a server may miss its heartbeat before the other servers take it for gone and
    /// cancel the tickets of the waiters connected to it (`None`: waiters' tickets are not tied
    /// to their server; only for tests that move a hand-driven clock).
    pub node_timeout: Option<Duration>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            addresses: vec!["127.0.0.1:6379".into()],
            cluster_mode: false,
            username: None,
            password: None,
            db: 0,
            tls: false,
            key_prefix: "elock:".into(),
            pool_size: 20,
            shards: 1,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            atlantis_keys: false,
            atlantis_poll: Duration::from_secs(1),
            node_timeout: Some(Duration::from_secs(15)),
        }
    }
}

/// The `redis` section of the server's configuration file, as written there (kebab-case keys,
/// durations as text, the password by the name of its variable).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RedisSection {
    pub addresses: Vec<String>,
    pub cluster_mode: bool,
    pub username: String,
    /// The environment variable holding the password.
    pub password_env: String,
    /// The password itself (from ATLANTIS_ENHANCED_LOCKING_REDIS_PASSWORD or the flag); never
    /// shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub db: u32,
    pub tls: bool,
    pub key_prefix: String,
    pub pool_size: u32,
    /// How many hash tags the lock table is spread over (1: one slot; more lets a Cluster use
    /// several masters). Fixed for the life of the data.
    pub shards: u32,
    /// How long an elock server may miss its heartbeat before the others take it for gone and
    /// cancel the tickets of the waiters connected to it (they would never take a grant).
    #[serde(with = "duration_text")]
    pub node_timeout: Duration,
    /// How long one call to Redis may take before it fails (503 `backend_unavailable`).
    #[serde(with = "duration_text")]
    pub response_timeout: Duration,
}

impl Default for RedisSection {
    /// The defaults are [`RedisConfig`]'s: one place for both forms.
    fn default() -> Self {
        let c = RedisConfig::default();
        RedisSection {
            addresses: c.addresses,
            cluster_mode: c.cluster_mode,
            username: c.username.unwrap_or_default(),
            password_env: String::new(),
            password: None,
            db: c.db as u32,
            tls: c.tls,
            key_prefix: c.key_prefix,
            pool_size: c.pool_size,
            shards: c.shards as u32,
            node_timeout: c.node_timeout.unwrap_or(Duration::from_secs(15)),
            response_timeout: c.response_timeout,
        }
    }
}

impl RedisSection {
    /// The connection settings, the password from `password` (the variable or flag) or else
    /// from the variable `password-env` names (read with `env`).
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<RedisConfig, String> {
        let password = match (&self.password, self.password_env.as_str()) {
            (Some(p), _) => Some(p.clone()),
            (None, "") => None,
            (None, var) => Some(env(var).ok_or_else(|| {
                format!("redis.password-env: the environment variable {var:?} is not set")
            })?),
        };
        Ok(RedisConfig {
            addresses: self.addresses.clone(),
            cluster_mode: self.cluster_mode,
            username: (!self.username.is_empty()).then(|| self.username.clone()),
            password,
            db: i64::from(self.db),
            tls: self.tls,
            key_prefix: self.key_prefix.clone(),
            pool_size: self.pool_size,
            shards: self.shards as usize,
            node_timeout: Some(self.node_timeout),
            response_timeout: self.response_timeout,
            ..RedisConfig::default()
        })
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("addresses", &self.addresses)
            .field("cluster_mode", &self.cluster_mode)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("shards", &self.shards)
            .field("atlantis_keys", &self.atlantis_keys)
            .field("atlantis_poll", &self.atlantis_poll)
            .field("node_timeout", &self.node_timeout)
            .finish()
    }
}

impl RedisConfig {
    /// A Cluster client's builder with the seed nodes, credentials, TLS and connect timeout.
    pub(crate) fn cluster_builder(&self) -> redis::cluster::ClusterClientBuilder {
        let mut b = redis::cluster::ClusterClientBuilder::new(self.node_urls())
            .connection_timeout(self.connect_timeout);
        if let Some(u) = &self.username {
            b = b.username(u);
        }
        if let Some(p) = &self.password {
            b = b.password(p);
        }
        if self.tls {
            b = b.tls(redis::TlsMode::Secure);
        }
        b
    }

    /// Whether Atlantis's keys are kept: asked for, and possible (not on a Cluster).
    pub fn keeps_atlantis_keys(&self) -> bool {
        self.atlantis_keys && !self.cluster_mode
    }

    /// One URL per address, with the scheme, credentials-free (they go through the client
    /// builder), and the database for a single node.
    pub fn node_urls(&self) -> Vec<String> {
        self.addresses
            .iter()
            .map(|a| {
                let bare = a
                    .trim_start_matches("redis://")
                    .trim_start_matches("rediss://")
                    .trim_end_matches('/');
                let scheme = if self.tls || a.starts_with("rediss://") {
                    "rediss"
                } else {
                    "redis"
                };
                let auth = match (&self.username, &self.password) {
                    (_, None) => String::new(),
                    (None, Some(p)) => format!(":{}@", urlencode(p)),
                    (Some(u), Some(p)) => format!("{}:{}@", urlencode(u), urlencode(p)),
                };
                if self.cluster_mode {
                    format!("{scheme}://{bare}")
                } else {
                    format!("{scheme}://{auth}{bare}/{}", self.db)
                }
            })
            .collect()
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_scheme_database_and_escaped_credentials() {
        let c = RedisConfig {
            addresses: vec!["10.0.0.1:6380".into()],
            password: Some("p@ss word".into()),
            db: 3,
            tls: true,
            ..RedisConfig::default()
        };
        assert_eq!(c.node_urls(), ["rediss://:p%40ss%20word@10.0.0.1:6380/3"]);
        assert!(!format!("{c:?}").contains("p@ss"));
    }
}
