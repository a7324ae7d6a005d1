//! The configuration file's schema (docs/configuration.md): every section and key, with the defaults a new
//! installation wants. Unknown keys are errors.

use std::path::PathBuf;
use std::time::Duration;

use elock_core::config::{
    BreakerConfig, DeadlockConfig, EngineConfig, EventsConfig, QueueConfig, RetryConfig,
};
use elock_core::model::duration_text;
use elock_core::policy::Policies;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub enhanced_locking: EnhancedLocking,
    pub priority_queue: QueueConfig,
    pub retry: RetryConfig,
    pub deadlock_detection: DeadlockConfig,
    pub circuit_breaker: BreakerConfig,
    pub events: Events,
    pub redis: Redis,
    pub backward_compatibility: BackwardCompatibility,
    pub migration: Migration,
    pub auth: Auth,
    pub audit: Audit,
    pub metrics: Metrics,
    pub http: Http,
    pub tls: Tls,
}

/// HTTPS (rustls). With `cert-file` and `key-file` the server speaks only TLS; both files are
/// read again on SIGHUP and `POST /api/v1/admin/reload`, for new connections. With
/// `client-ca-file`, every client must present a certificate signed by that CA, and its subject
/// is looked up in `auth.clients`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Tls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded durable store (an append-only log with snapshots) in `data-dir`: one machine, zero setup. Also accepted
    /// as `boltdb`, the name configurations written for Atlantis use (it is not a bbolt file).
    #[serde(alias = "boltdb")]
    #[value(alias = "boltdb")]
    Embedded,
    /// Redis or Redis Cluster (the Redis store).
    Redis,
    /// In memory only: nothing survives a restart (tests, throw-away servers).
    Memory,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnhancedLocking {
    pub enabled: bool,
    pub backend: Backend,
    pub data_dir: PathBuf,
    pub listen: String,
    #[serde(with = "duration_text")]
    pub default_timeout: Duration,
    #[serde(with = "duration_text")]
    pub max_timeout: Duration,
    /// Whether requests may ask for leases that never expire (`ttl: null`).
    pub allow_no_expiry: bool,
    /// This server's name in events.
    pub instance: String,
    /// Lock policies: per-resource priority, ttl, max-ttl, wait and max-queue-size, the first
    /// matching rule applying (docs/configuration.md).
    pub policies: Policies,
}

impl Default for EnhancedLocking {
    fn default() -> Self {
        let engine = EngineConfig::default();
        EnhancedLocking {
            enabled: true,
            backend: Backend::Embedded,
            data_dir: PathBuf::from("./elock-data"),
            listen: "127.0.0.1:4142".into(),
            default_timeout: engine.default_timeout,
            max_timeout: engine.max_timeout,
            allow_no_expiry: false,
            instance: "elock".into(),
            policies: Policies::default(),
        }
    }
}

/// How the server treats connections: slow or idle clients are cut off, and past the connection
/// limit new connections are refused at once, so that a flood of slow clients cannot take the
/// file descriptors every other client needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Http {
    /// How long a client may take to send a request's headers (also how long an idle
    /// keep-alive connection stays open).
    #[serde(with = "duration_text")]
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body, from the end of its headers.
    #[serde(with = "duration_text")]
    pub body_read_timeout: Duration,
    /// Connections open at once (event streams included); more are answered 503 `overloaded`
    /// and closed. Capped below the process's open-file limit.
    pub max_connections: usize,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Events {
    pub enabled: bool,
    pub buffer_size: usize,
    pub webhooks: Vec<Webhook>,
}

impl Default for Events {
    fn default() -> Self {
        let e = EventsConfig::default();
        Events {
            enabled: e.enabled,
            buffer_size: e.buffer_size,
            webhooks: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Webhook {
    pub url: String,
    #[serde(default)]
    pub types: Vec<String>,
    /// The environment variable holding the HMAC secret.
    #[serde(default)]
    pub secret_env: Option<String>,
}

/// The `redis` section belongs to the Redis store.
pub use elock_redis::RedisSection as Redis;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackwardCompatibility {
    pub legacy_fallback: bool,
    /// On the Redis backend (single node): keep Atlantis's own keys (`pr/{key}`,
    /// `global/apply/lock`) beside elock's, so that an Atlantis sharing the Redis sees the same
    /// locks (docs/atlantis.md).
    pub preserve_legacy_format: bool,
    /// How often Atlantis's keys are checked for locks Atlantis wrote or deleted, when Redis
    /// sends no keyspace notifications (and as a backstop when it does).
    #[serde(with = "duration_text")]
    pub legacy_poll_interval: Duration,
}

impl Default for BackwardCompatibility {
    fn default() -> Self {
        BackwardCompatibility {
            legacy_fallback: false,
            preserve_legacy_format: true,
            legacy_poll_interval: Duration::from_secs(1),
        }
    }
}

pub use elock_atlantis::adapter::MigrationMode;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Migration {
    pub mode: MigrationMode,
    pub traffic_percentage: u8,
    pub validation_enabled: bool,
    /// Atlantis's lock storage in Redis (`host:port`, or a `redis://host:port/db` URL): the
    /// legacy store of `shadow` and `split`, and what `elock compare-backends` reads by default.
    pub legacy_redis: String,
}

impl Default for Migration {
    fn default() -> Self {
        Migration {
            mode: MigrationMode::Off,
            traffic_percentage: 0,
            validation_enabled: true,
            legacy_redis: String::new(),
        }
    }
}

impl Migration {
    /// `legacy-redis` as a URL, if set.
    pub fn legacy_redis_url(&self) -> Option<String> {
        legacy_redis_url(&self.legacy_redis)
    }
}

/// A legacy Redis address as a URL: `host:port` becomes `redis://host:port/`.
pub fn legacy_redis_url(address: &str) -> Option<String> {
    match address.trim() {
        "" => None,
        a if a.starts_with("redis://") || a.starts_with("rediss://") => Some(a.to_string()),
        a => Some(format!("redis://{a}/")),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Auth {
    pub tokens: Vec<Token>,
    /// Client certificates (with `tls.client-ca-file`): a subject and what it may do.
    pub clients: Vec<Client>,
}

/// A client certificate's identity: matched by its subject's common name (`CN`) or its whole
/// subject as RFC 4514 text (`CN=ci,O=Example`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Client {
    pub subject: String,
    pub role: Role,
    /// Owner patterns this client may act for (`*`, `?`); none: any owner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// Resource prefixes this client may lock; none: any resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Write,
    Admin,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Token {
    pub name: String,
    pub role: Role,
    /// SHA-256 of the token, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// The environment variable holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Owner patterns this token may act for (`*`, `?`); none: any owner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// Resource prefixes this token may lock; none: any resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Audit {
    pub enabled: bool,
    /// Default: `audit.jsonl` in `enhanced-locking.data-dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            enabled: true,
            path: None,
        }
    }
}

impl Config {
    /// The Redis store's connection settings; the password comes from `redis.password` (the
    /// variable or flag) or else from the variable `redis.password-env` names.
    pub fn redis_config(&self) -> Result<elock_redis::RedisConfig, String> {
        let compat = &self.backward_compatibility;
        self.redis
            .resolve(&|var| std::env::var(var).ok())
            .map(|c| elock_redis::RedisConfig {
                atlantis_keys: compat.preserve_legacy_format,
                atlantis_poll: compat.legacy_poll_interval,
                ..c
            })
    }

    /// Where audit records go, if auditing is on.
    pub fn audit_path(&self) -> Option<PathBuf> {
        self.audit.enabled.then(|| {
            self.audit
                .path
                .clone()
                .unwrap_or_else(|| self.enhanced_locking.data_dir.join("audit.jsonl"))
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Metrics {
    pub enabled: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { enabled: true }
    }
}

impl Config {
    /// The engine's share.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            enabled: self.enhanced_locking.enabled,
            default_timeout: self.enhanced_locking.default_timeout,
            max_timeout: self.enhanced_locking.max_timeout,
            allow_no_expiry: self.enhanced_locking.allow_no_expiry,
            instance: self.enhanced_locking.instance.clone(),
            priority_queue: self.priority_queue.clone(),
            retry: self.retry.clone(),
            deadlock_detection: self.deadlock_detection.clone(),
            circuit_breaker: self.circuit_breaker.clone(),
            events: EventsConfig {
                enabled: self.events.enabled,
                buffer_size: self.events.buffer_size,
            },
            policies: self.enhanced_locking.policies.clone(),
        }
    }

    /// The configuration as shown to people: secrets replaced.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if c.redis.password.is_some() {
            c.redis.password = Some("<redacted>".into());
        }
        for t in &mut c.auth.tokens {
            if t.token_sha256.is_some() {
                t.token_sha256 = Some("<redacted>".into());
            }
        }
        c
    }
}
