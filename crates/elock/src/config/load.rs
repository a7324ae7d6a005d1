//! Where the configuration comes from, in increasing precedence: defaults, the YAML file
//! (`--config` or `ELOCK_CONFIG`), the `ATLANTIS_ENHANCED_LOCKING_*` variables, then flags.
//!
//! Every layer is merged as JSON values and the result deserialized once, so an error names the
//! key, the value, where the value came from, and what was expected.

use std::collections::HashMap;
use std::path::Path;

use elock_core::event::EventType;
use serde_json::{Map, Value};

use super::errors::{ConfigError, ConfigErrors, Source};
use super::schema::{Backend, Config};

/// One value from outside the file: an environment variable or a flag.
#[derive(Clone, Debug)]
pub struct Override {
    /// Dotted key, e.g. `priority-queue.max-queue-size`.
    pub key: &'static str,
    pub value: Value,
    /// `ATLANTIS_ENHANCED_LOCKING_MAX_QUEUE_SIZE`, `--enhanced-locking-redis-db`, ...
    pub source: String,
}

/// The environment variables (docs/configuration.md) and the keys they set.
pub const ENV_KEYS: &[(&str, &str)] = &[
    (
        "ATLANTIS_ENHANCED_LOCKING_ENABLED",
        "enhanced-locking.enabled",
    ),
    (
        "ATLANTIS_ENHANCED_LOCKING_BACKEND",
        "enhanced-locking.backend",
    ),
    (
        "ATLANTIS_ENHANCED_LOCKING_PRIORITY_QUEUE",
        "priority-queue.enabled",
    ),
    ("ATLANTIS_ENHANCED_LOCKING_RETRIES", "retry"),
    ("ATLANTIS_ENHANCED_LOCKING_METRICS", "metrics.enabled"),
    ("ATLANTIS_ENHANCED_LOCKING_REDIS_ADDR", "redis.addresses"),
    ("ATLANTIS_ENHANCED_LOCKING_REDIS_PASSWORD", "redis.password"),
    ("ATLANTIS_ENHANCED_LOCKING_REDIS_DB", "redis.db"),
    (
        "ATLANTIS_ENHANCED_LOCKING_ALLOW_NO_EXPIRY",
        "enhanced-locking.allow-no-expiry",
    ),
    (
        "ATLANTIS_ENHANCED_LOCKING_DEFAULT_TIMEOUT",
        "enhanced-locking.default-timeout",
    ),
    (
        "ATLANTIS_ENHANCED_LOCKING_MAX_TIMEOUT",
        "enhanced-locking.max-timeout",
    ),
    (
        "ATLANTIS_ENHANCED_LOCKING_MAX_QUEUE_SIZE",
        "priority-queue.max-queue-size",
    ),
    (
        "ATLANTIS_ENHANCED_LOCKING_STARVATION_THRESHOLD",
        "priority-queue.starvation-threshold",
    ),
    (
        "ATLANTIS_ENHANCED_LOCKING_MAX_PRIORITY_BOOST",
        "priority-queue.max-priority-boost",
    ),
    ("ATLANTIS_ENHANCED_LOCKING_TLS_CERT_FILE", "tls.cert-file"),
    ("ATLANTIS_ENHANCED_LOCKING_TLS_KEY_FILE", "tls.key-file"),
    (
        "ATLANTIS_ENHANCED_LOCKING_TLS_CLIENT_CA_FILE",
        "tls.client-ca-file",
    ),
];

/// Turns one raw text (a variable or a flag) for `key` into overrides. Text is read as a YAML
/// scalar (`true`, `5`, `30s`); lists are comma-separated; `retry` takes a count (max attempts,
/// 0 turns retry off) or a boolean.
pub fn text_override(key: &'static str, raw: &str, source: String) -> Vec<Override> {
    let scalar = |s: &str| {
        serde_yaml_ng::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.to_string()))
    };
    match key {
        "redis.addresses" => vec![Override {
            key,
            value: Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.into()))
                    .collect(),
            ),
            source,
        }],
        "redis.password" | "tls.cert-file" | "tls.key-file" | "tls.client-ca-file" => {
            vec![Override {
                key,
                value: Value::String(raw.to_string()),
                source,
            }]
        }
        "retry" => match scalar(raw) {
            Value::Number(n) => vec![
                Override {
                    key: "retry.enabled",
                    value: Value::Bool(n.as_u64() != Some(0)),
                    source: source.clone(),
                },
                Override {
                    key: "retry.max-attempts",
                    value: Value::Number(n),
                    source,
                },
            ],
            other => vec![Override {
                key: "retry.enabled",
                value: other,
                source,
            }],
        },
        _ => vec![Override {
            key,
            value: scalar(raw),
            source,
        }],
    }
}

/// Reads those variables through `get` (the process environment in production).
pub fn env_overrides(get: &dyn Fn(&str) -> Option<String>) -> Vec<Override> {
    ENV_KEYS
        .iter()
        .filter_map(|(var, key)| get(var).map(|v| text_override(key, &v, var.to_string())))
        .flatten()
        .collect()
}

/// The prefix of elock's variables; one that is not a setting is an error, not ignored.
const ENV_PREFIX: &str = "ATLANTIS_ENHANCED_LOCKING_";

/// Every `ATLANTIS_ENHANCED_LOCKING_*` variable of `vars` that names no setting (a misspelling
/// would otherwise be ignored silently), each naming the closest known variable.
pub fn unknown_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<ConfigError> {
    let known: Vec<&str> = ENV_KEYS.iter().map(|(v, _)| *v).collect();
    vars.into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && !known.contains(&name.as_str()))
        .map(|(name, value)| {
            let closest = known
                .iter()
                .min_by_key(|k| strsim::levenshtein(k, &name))
                .copied()
                .unwrap_or_default();
            ConfigError::Setting {
                key: name.clone(),
                value: Some(format!("{value:?}")),
                origin: Source::Override(name),
                expected: format!(
                    "not a variable elock reads (did you mean {closest}? the variables are listed in docs/configuration.md)"
                ),
            }
        })
        .collect()
}

/// Loads and checks the configuration. Every problem found is returned.
pub fn load(file: Option<&Path>, overrides: &[Override]) -> Result<Config, ConfigErrors> {
    // The file as a tree of lines too, so that every problem in it names its line.
    let mut lines: Option<elock_atlantis::yaml::Node> = None;
    let mut merged = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            lines = elock_atlantis::yaml::parse(&text).ok();
            let v: Value = serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Malformed {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            match v {
                Value::Null => Value::Object(Map::new()),
                Value::Object(_) => v,
                _ => {
                    return Err(ConfigError::Malformed {
                        path: path.to_path_buf(),
                        message: "the configuration must be a mapping of sections".into(),
                    }
                    .into())
                }
            }
        }
        None => Value::Object(Map::new()),
    };
    let mut sources: HashMap<&str, &str> = HashMap::new();
    for o in overrides {
        set(&mut merged, o.key, o.value.clone());
        sources.insert(o.key, &o.source);
    }
    let source = |key: &str| match (sources.get(key), file) {
        (Some(s), _) => Source::Override(s.to_string()),
        (None, Some(f)) => Source::File(
            f.to_path_buf(),
            lines.as_ref().map(|root| root.line_of(key)),
        ),
        (None, None) => Source::Default,
    };
    // Every problem at once: a value the types refuse is reported and taken out (its default
    // stands in), and the rest read again, until everything left reads.
    let mut errors = Vec::new();
    let mut remaining = merged.clone();
    let config: Config = loop {
        match serde_path_to_error::deserialize::<_, Config>(remaining.clone()) {
            Ok(c) => break c,
            Err(e) => {
                let key = e.path().to_string();
                let removed = remove(&mut remaining, &key);
                errors.push(ConfigError::Setting {
                    value: get(&merged, &key).map(|v| v.to_string()),
                    origin: source(&key),
                    expected: plain(&e.inner().to_string()),
                    key,
                });
                if !removed || errors.len() >= 50 {
                    return Err(ConfigErrors(errors));
                }
            }
        }
    };
    errors.extend(check(&config).into_iter().map(|p| ConfigError::Setting {
        origin: source(&p.key),
        key: p.key,
        value: p.value,
        expected: p.expected,
    }));
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// A deserializer's message in the words of the configuration: "a whole number" for Rust's
/// integer types, and no parser positions (the line comes from the file itself).
fn plain(message: &str) -> String {
    let mut m = message.to_string();
    if let Some(at) = m.find(" at line ") {
        m.truncate(at);
    }
    for (rust, words) in [
        ("expected usize", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u8", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
    ] {
        m = m.replace(rust, words);
    }
    m
}

/// Takes the value at a path (`a.b[2].c`) out of the merged configuration; whether there was one.
fn remove(root: &mut Value, path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
    let Some((last, parents)) = parts.split_last() else {
        return false;
    };
    let mut at = root;
    for part in parents {
        let (key, index) = match part.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (*part, None),
        };
        let Some(next) = at.get_mut(key) else {
            return false;
        };
        at = match index {
            Some(i) => match next.get_mut(i) {
                Some(v) => v,
                None => return false,
            },
            None => next,
        };
    }
    let key = last.split_once('[').map_or(*last, |(k, _)| k);
    at.as_object_mut().and_then(|o| o.remove(key)).is_some()
}

/// A value the types accept but the settings together do not.
struct Problem {
    key: String,
    value: Option<String>,
    expected: String,
}

/// A problem with `key`'s `value`: what was expected instead.
fn bad(key: impl Into<String>, value: impl ToString, expected: impl Into<String>) -> Problem {
    Problem {
        key: key.into(),
        value: Some(value.to_string()),
        expected: expected.into(),
    }
}

/// What types cannot say.
fn check(c: &Config) -> Vec<Problem> {
    let mut p = Vec::new();
    let fmt = elock_core::model::format_duration;
    let el = &c.enhanced_locking;
    if el.default_timeout > el.max_timeout {
        p.push(bad(
            "enhanced-locking.default-timeout",
            fmt(el.default_timeout),
            format!(
                "{} is above enhanced-locking.max-timeout {}: expected at most that",
                fmt(el.default_timeout),
                fmt(el.max_timeout)
            ),
        ));
    }
    for (key, d) in [
        ("http.header-read-timeout", c.http.header_read_timeout),
        ("http.body-read-timeout", c.http.body_read_timeout),
    ] {
        if d.is_zero() {
            p.push(bad(key, "0s", "expected a positive duration"));
        }
    }
    if c.redis.node_timeout < std::time::Duration::from_secs(1) {
        p.push(bad(
            "redis.node-timeout",
            fmt(c.redis.node_timeout),
            "expected at least 1s (a server beats every third of it)",
        ));
    }
    if c.http.max_connections == 0 {
        p.push(bad("http.max-connections", 0, "expected at least 1"));
    }
    if el.max_timeout.is_zero() {
        p.push(bad(
            "enhanced-locking.max-timeout",
            "0s",
            "expected a positive duration",
        ));
    }
    if el.backend == Backend::Redis {
        if c.redis.addresses.is_empty() {
            p.push(bad(
                "redis.addresses",
                "[]",
                "expected at least one host:port",
            ));
        }
        if !c.redis.cluster_mode && c.redis.addresses.len() > 1 {
            p.push(bad(
                "redis.addresses",
                format!("{} addresses", c.redis.addresses.len()),
                "expected one with cluster-mode false (or set cluster-mode: true)",
            ));
        }
        if c.redis.cluster_mode && c.redis.db != 0 {
            p.push(bad(
                "redis.db",
                c.redis.db,
                "expected 0: Redis Cluster has only database 0",
            ));
        }
        if c.redis.pool_size == 0 {
            p.push(bad("redis.pool-size", 0, "expected at least 1"));
        }
        if c.redis.shards == 0 || c.redis.shards as usize > elock_redis::MAX_SHARDS {
            p.push(bad(
                "redis.shards",
                c.redis.shards,
                format!("expected 1 to {}", elock_redis::MAX_SHARDS),
            ));
        }
    }
    let b = &c.backward_compatibility;
    if b.legacy_poll_interval < std::time::Duration::from_millis(10) {
        p.push(bad(
            "backward-compatibility.legacy-poll-interval",
            fmt(b.legacy_poll_interval),
            "expected at least 10ms",
        ));
    }
    let q = &c.priority_queue;
    if q.max_queue_size == 0 {
        p.push(bad(
            "priority-queue.max-queue-size",
            0,
            "expected at least 1",
        ));
    }
    if q.max_priority_boost > 3 {
        p.push(bad(
            "priority-queue.max-priority-boost",
            q.max_priority_boost,
            "expected 0..=3",
        ));
    }
    if c.retry.enabled && c.retry.max_attempts == 0 {
        p.push(bad(
            "retry.max-attempts",
            0,
            "expected at least 1 while retry is enabled",
        ));
    }
    if c.retry.base_delay > c.retry.max_delay {
        p.push(bad(
            "retry.base-delay",
            fmt(c.retry.base_delay),
            format!(
                "{} is above retry.max-delay {}: expected at most that",
                fmt(c.retry.base_delay),
                fmt(c.retry.max_delay)
            ),
        ));
    }
    if c.deadlock_detection.check_interval.is_zero() {
        p.push(bad(
            "deadlock-detection.check-interval",
            "0s",
            "expected a positive duration",
        ));
    }
    for (key, n) in [
        (
            "circuit-breaker.failure-threshold",
            c.circuit_breaker.failure_threshold,
        ),
        (
            "circuit-breaker.success-threshold",
            c.circuit_breaker.success_threshold,
        ),
    ] {
        if n == 0 {
            p.push(bad(key, 0, "expected at least 1"));
        }
    }
    if c.events.buffer_size == 0 {
        p.push(bad("events.buffer-size", 0, "expected at least 1"));
    }
    for w in &c.events.webhooks {
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            p.push(bad(
                "events.webhooks",
                format!("url {:?}", w.url),
                "expected an http:// or https:// URL",
            ));
        }
        for t in &w.types {
            if EventType::parse(t).is_none() {
                let known: Vec<_> = EventType::ALL.iter().map(|t| t.name()).collect();
                p.push(bad(
                    "events.webhooks",
                    format!("type {t:?}"),
                    format!("an event type: {}", known.join(", ")),
                ));
            }
        }
    }
    let el = &c.enhanced_locking;
    let policies = el.policies.rules();
    for rp in el
        .policies
        .problems(el.max_timeout, c.priority_queue.max_queue_size)
    {
        let rule = &policies[rp.index];
        let value = match rp.key {
            "ttl" => rule.ttl.map(fmt),
            "max-ttl" => rule.max_ttl.map(fmt),
            "wait" => rule.wait.map(fmt),
            "max-queue-size" => rule.max_queue_size.map(|n| n.to_string()),
            _ => Some(format!("{:?}", rule.pattern)),
        };
        p.push(Problem {
            key: format!("enhanced-locking.policies[{}].{}", rp.index, rp.key),
            value,
            expected: rp.message,
        });
    }
    if c.migration.traffic_percentage > 100 {
        p.push(bad(
            "migration.traffic-percentage",
            c.migration.traffic_percentage,
            "expected 0..=100",
        ));
    }
    {
        use super::schema::MigrationMode::{Shadow, Split};
        let m = &c.migration;
        if matches!(m.mode, Shadow | Split) && m.legacy_redis_url().is_none() {
            p.push(bad(
                "migration.legacy-redis",
                "\"\"",
                format!(
                    "Atlantis's Redis (host:port): mode {} needs the legacy store",
                    m.mode.name()
                ),
            ));
        }
        if let Some(url) = m.legacy_redis_url() {
            if redis::Client::open(url.as_str()).is_err() {
                p.push(bad(
                    "migration.legacy-redis",
                    format!("{:?}", m.legacy_redis),
                    "expected host:port or redis://host:port/db",
                ));
            }
        }
    }
    for t in &c.auth.tokens {
        match (&t.token_sha256, &t.token_env) {
            (Some(h), None) if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) => {}
            (Some(_), None) => p.push(bad(
                "auth.tokens",
                format!("token {:?}", t.name),
                "token-sha256 must be 64 hex digits",
            )),
            (None, Some(_)) => {}
            _ => p.push(bad(
                "auth.tokens",
                format!("token {:?}", t.name),
                "give exactly one of token-sha256 and token-env",
            )),
        }
    }
    p
}

fn set(root: &mut Value, dotted: &str, value: Value) {
    let mut at = root;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let obj = at.as_object_mut().expect("made an object above");
        if i == parts.len() - 1 {
            obj.insert(part.to_string(), value);
            return;
        }
        at = obj
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

fn get<'v>(root: &'v Value, dotted: &str) -> Option<&'v Value> {
    dotted.split('.').try_fold(root, |v, part| v.get(part))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_serve_a_new_installation() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c.enhanced_locking.backend, Backend::Embedded);
        assert!(c.priority_queue.enabled && c.deadlock_detection.prevention);
        assert_eq!(c.enhanced_locking.listen, "127.0.0.1:4142");
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let f =
            file("priority-queue:\n  max-queue-size: 10\n  queue-timeout: 5m\nredis:\n  db: 1\n");
        let env = |v: &str| match v {
            "ATLANTIS_ENHANCED_LOCKING_MAX_QUEUE_SIZE" => Some("20".to_string()),
            "ATLANTIS_ENHANCED_LOCKING_REDIS_DB" => Some("2".to_string()),
            "ATLANTIS_ENHANCED_LOCKING_REDIS_ADDR" => Some("a:1, b:2".to_string()),
            "ATLANTIS_ENHANCED_LOCKING_RETRIES" => Some("5".to_string()),
            _ => None,
        };
        let mut overrides = env_overrides(&env);
        overrides.extend(text_override(
            "redis.db",
            "3",
            "--enhanced-locking-redis-db".into(),
        ));
        let c = load(Some(f.path()), &overrides).unwrap();
        assert_eq!(c.priority_queue.max_queue_size, 20, "env beats file");
        assert_eq!(
            c.priority_queue.queue_timeout.as_secs(),
            300,
            "file beats defaults"
        );
        assert_eq!(c.redis.db, 3, "flag beats env");
        assert_eq!(c.redis.addresses, vec!["a:1", "b:2"]);
        assert!(c.retry.enabled);
        assert_eq!(c.retry.max_attempts, 5);
    }

    #[test]
    fn redis_settings_that_cannot_work_are_refused_naming_the_key() {
        let f = file("enhanced-locking:\n  backend: redis\nredis:\n  addresses: [\"a:1\", \"b:2\"]\n  pool-size: 0\n");
        let errors = load(Some(f.path()), &[]).unwrap_err().join("\n");
        assert!(
            errors.contains("redis.addresses") && errors.contains("cluster-mode"),
            "{errors}"
        );
        assert!(errors.contains("redis.pool-size"), "{errors}");
        let f = file("enhanced-locking:\n  backend: redis\nredis:\n  shards: 0\n");
        let errors = load(Some(f.path()), &[]).unwrap_err().join("\n");
        assert!(
            errors.contains("redis.shards") && errors.contains("1 to 1024"),
            "{errors}"
        );
        let f = file("migration:\n  mode: shadow\n");
        let errors = load(Some(f.path()), &[]).unwrap_err().join("\n");
        assert!(
            errors.contains("migration.legacy-redis") && errors.contains("mode shadow"),
            "{errors}"
        );
        let f = file("migration:\n  mode: split\n  legacy-redis: \"redis://[::1\"\n");
        let errors = load(Some(f.path()), &[]).unwrap_err().join("\n");
        assert!(errors.contains("migration.legacy-redis"), "{errors}");
        let f = file("backward-compatibility:\n  legacy-poll-interval: 1ms\n");
        let errors = load(Some(f.path()), &[]).unwrap_err().join("\n");
        assert!(
            errors.contains("backward-compatibility.legacy-poll-interval"),
            "{errors}"
        );
        let f =
            file("enhanced-locking:\n  backend: redis\nredis:\n  cluster-mode: true\n  db: 2\n");
        let errors = load(Some(f.path()), &[]).unwrap_err().join("\n");
        assert!(errors.contains("redis.db"), "{errors}");
        let f = file("enhanced-locking:\n  backend: redis\nredis:\n  password-env: ELOCK_TEST_UNSET_PASSWORD\n");
        let c = load(Some(f.path()), &[]).unwrap();
        assert!(c
            .redis_config()
            .unwrap_err()
            .contains("ELOCK_TEST_UNSET_PASSWORD"));
    }

    #[test]
    fn lock_policies_load_and_every_bad_rule_is_named_with_its_line() {
        let f = file(
            "enhanced-locking:\n  policies:\n    - match: \"acme/infra/**\"\n      priority: critical\n      queue-timeout: 20s\n",
        );
        let c = load(Some(f.path()), &[]).unwrap();
        let rules = c.engine().policies;
        let m = rules.rule_for("acme/infra/envs/prod/default/").unwrap();
        assert_eq!(m.rule.wait, Some(std::time::Duration::from_secs(20)));
        let f = file(concat!(
            "enhanced-locking:\n",
            "  max-timeout: 1h\n",
            "  policies:\n",
            "    - match: \"a/**\"\n",
            "      ttl: 3h\n",
            "    - match: \"b/*\"\n",
            "      max-queue-size: 0\n",
            "    - match: \"a/**\"\n",
            "      priority: low\n",
        ));
        let errors = load(Some(f.path()), &[]).unwrap_err().lines();
        let path = f.path().display().to_string();
        let expect = [
            ("enhanced-locking.policies[0].ttl = 3h", 5),
            ("enhanced-locking.policies[1].max-queue-size = 0", 7),
            ("enhanced-locking.policies[2].match = \"a/**\"", 8),
        ];
        assert_eq!(errors.len(), expect.len(), "{errors:#?}");
        for ((key, line), e) in expect.iter().zip(&errors) {
            assert!(e.starts_with(key), "{e}");
            assert!(e.ends_with(&format!("(in {path}, line {line})")), "{e}");
        }
        // A glob that does not parse is refused by the types, naming the rule.
        let f = file("enhanced-locking:\n  policies:\n    - {match: \"a/[b\", priority: high}\n");
        let e = load(Some(f.path()), &[]).unwrap_err().join("\n");
        assert!(
            e.contains("policies[0].match") && e.contains("line 3"),
            "{e}"
        );
    }

    #[test]
    fn every_problem_of_every_source_is_reported_at_once_in_plain_words() {
        let f = file(
            "priority-queue:\n  max-queue-size: lots\n  colour: blue\nretry:\n  enabled: maybe\nhttp:\n  max-connections: 0\n",
        );
        let o = text_override(
            "redis.db",
            "minus",
            "ATLANTIS_ENHANCED_LOCKING_REDIS_DB".into(),
        );
        let errors = load(Some(f.path()), &o).unwrap_err().lines();
        let all = errors.join("\n");
        for what in [
            "priority-queue.max-queue-size = \"lots\"",
            "priority-queue.colour",
            "retry.enabled = \"maybe\"",
            "redis.db = \"minus\"",
            "http.max-connections = 0",
        ] {
            assert!(all.contains(what), "{what} missing in:\n{all}");
        }
        assert!(
            all.contains("a whole number") && !all.contains("usize"),
            "{all}"
        );
        assert!(!all.contains("column"), "{all}");
        assert!(
            all.contains("(from ATLANTIS_ENHANCED_LOCKING_REDIS_DB)"),
            "{all}"
        );
        assert!(all.contains(", line 2)"), "the file's line: {all}");
    }

    #[test]
    fn a_misspelt_variable_is_an_error_naming_the_closest_one() {
        let errors = unknown_env([
            (
                "ATLANTIS_ENHANCED_LOCKING_MAX_QUEUE_SIZ".to_string(),
                "5".to_string(),
            ),
            (
                "ATLANTIS_ENHANCED_LOCKING_BACKEND".to_string(),
                "redis".to_string(),
            ),
            ("PATH".to_string(), "/bin".to_string()),
        ]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = errors[0].to_string();
        assert!(
            e.contains("ATLANTIS_ENHANCED_LOCKING_MAX_QUEUE_SIZ")
                && e.contains("did you mean ATLANTIS_ENHANCED_LOCKING_MAX_QUEUE_SIZE"),
            "{e}"
        );
    }

    #[test]
    fn a_misspelt_key_is_refused_naming_it_and_the_file() {
        let f = file("priority-queue:\n  max-queue-sise: 10\n");
        let errors = load(Some(f.path()), &[]).unwrap_err().lines();
        assert!(errors[0].contains("max-queue-sise"), "{errors:?}");
        assert!(errors[0].contains("priority-queue"), "{errors:?}");
        assert!(
            errors[0].contains(&f.path().display().to_string()),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_values_name_key_value_source_and_expectation() {
        let o = text_override(
            "priority-queue.max-queue-size",
            "lots",
            "ATLANTIS_ENHANCED_LOCKING_MAX_QUEUE_SIZE".into(),
        );
        let e = load(None, &o).unwrap_err().join("\n");
        assert!(e.contains("priority-queue.max-queue-size"), "{e}");
        assert!(e.contains("\"lots\""), "{e}");
        assert!(
            e.contains("ATLANTIS_ENHANCED_LOCKING_MAX_QUEUE_SIZE"),
            "{e}"
        );
        assert!(e.contains("expected"), "{e}");
        let f = file("enhanced-locking:\n  default-timeout: 3h\n  max-timeout: 2h\ndeadlock-detection:\n  resolution-policy: random\n");
        let e = load(Some(f.path()), &[]).unwrap_err().join("\n");
        assert!(e.contains("resolution-policy"), "{e}");
        let f = file("enhanced-locking:\n  default-timeout: 3h\n  max-timeout: 2h\n");
        let e = load(Some(f.path()), &[]).unwrap_err().join("\n");
        assert!(
            e.contains("3h is above enhanced-locking.max-timeout 2h"),
            "{e}"
        );
    }

    #[test]
    fn boltdb_is_another_name_of_the_embedded_store() {
        let f = file("enhanced-locking:\n  backend: boltdb\n");
        let c = load(Some(f.path()), &[]).unwrap();
        assert_eq!(c.enhanced_locking.backend, Backend::Embedded);
    }

    #[test]
    fn broken_yaml_says_where() {
        let f = file("priority-queue: [unclosed\n");
        let e = load(Some(f.path()), &[]).unwrap_err().join("\n");
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn show_redacts_secrets() {
        let o = text_override(
            "redis.password",
            "hunter2",
            "ATLANTIS_ENHANCED_LOCKING_REDIS_PASSWORD".into(),
        );
        let c = load(None, &o).unwrap();
        assert_eq!(c.redis.password.as_deref(), Some("hunter2"));
        let shown = serde_yaml_ng::to_string(&c.redacted()).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
