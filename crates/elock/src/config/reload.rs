//! Which settings a reload cannot apply, derived from the configuration itself rather than kept
//! as a list: a setting takes effect live exactly when the engine reads it (the manager applies
//! a new engine configuration in place); every other change waits for a restart.

use serde_yaml_ng::{Mapping, Value};

use super::Config;

/// The settings that changed between `old` and `new` and need a restart: a whole section's
/// name (`redis`, `migration`) when the engine reads nothing in it, else the section's changed
/// keys that the engine does not read (`enhanced-locking.listen`).
pub fn restart_required(old: &Config, new: &Config) -> Vec<String> {
    let (Some(ov), Some(nv)) = (mapping(old), mapping(new)) else {
        return vec!["configuration".into()];
    };
    let engine = old.engine();
    let reads = |patched: Mapping| -> bool {
        serde_yaml_ng::from_value::<Config>(Value::Mapping(patched))
            .map(|c| c.engine() != engine)
            .unwrap_or(false)
    };
    let mut restart = Vec::new();
    for (section, new_value) in &nv {
        let old_value = ov.get(section);
        if old_value == Some(new_value) {
            continue;
        }
        let name = section.as_str().unwrap_or_default().to_string();
        let mut patched = ov.clone();
        patched.insert(section.clone(), new_value.clone());
        if !reads(patched) {
            restart.push(name);
            continue;
        }
        // The engine reads some of this section: find the keys it does not read.
        let (Some(Value::Mapping(old_keys)), Value::Mapping(new_keys)) = (old_value, new_value)
        else {
            continue;
        };
        for (key, value) in new_keys {
            if old_keys.get(key) == Some(value) {
                continue;
            }
            let mut section_value = old_keys.clone();
            section_value.insert(key.clone(), value.clone());
            let mut patched = ov.clone();
            patched.insert(section.clone(), Value::Mapping(section_value));
            if !reads(patched) {
                restart.push(format!("{name}.{}", key.as_str().unwrap_or_default()));
            }
        }
    }
    restart
}

fn mapping(c: &Config) -> Option<Mapping> {
    match serde_yaml_ng::to_value(c) {
        Ok(Value::Mapping(m)) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn what_the_engine_reads_is_live_and_the_rest_needs_a_restart() {
        let old = Config::default();
        let mut new = old.clone();
        assert!(restart_required(&old, &new).is_empty());
        new.priority_queue.max_queue_size += 1;
        new.enhanced_locking.default_timeout = Duration::from_secs(77);
        // Lock policies are the engine's: they change live.
        new.enhanced_locking.policies = serde_json::from_value(serde_json::json!([
            {"match": "prod/**", "priority": "high"}
        ]))
        .unwrap();
        new.circuit_breaker.failure_threshold += 1;
        assert!(restart_required(&old, &new).is_empty(), "engine settings");
        new.enhanced_locking.listen = "127.0.0.1:9".into();
        new.redis.pool_size += 1;
        new.migration.traffic_percentage = 50;
        new.auth.tokens.push(crate::config::schema::Token {
            name: "ci".into(),
            role: crate::config::schema::Role::Write,
            token_sha256: None,
            token_env: Some("CI_TOKEN".into()),
            owners: Vec::new(),
            resources: Vec::new(),
        });
        new.http.max_connections = 7;
        let mut restart = restart_required(&old, &new);
        restart.sort();
        assert_eq!(
            restart,
            [
                "auth",
                "enhanced-locking.listen",
                "http",
                "migration",
                "redis"
            ]
        );
    }
}
