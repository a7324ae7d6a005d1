//! `elock atlantis validate` and `elock atlantis locks` on real files (no server needed).

use std::process::Command;

fn elock(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(args)
        .env("ELOCK_SERVER", "http://127.0.0.1:9")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BAD: &str = "\
version: 3
projects:
- name: app
  dir: envs/prod
  depends_on: [db]
  repo_locks:
    priority: high
    timeout: 90m
    owner: me
- name: db
  dir: envs/db
  depends_on: [app]
  repo_locks:
    queue_timeout: 5h
";

#[test]
fn validate_refuses_what_atlantis_refuses_and_shows_the_policy_rules_instead() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("atlantis.yaml");
    std::fs::write(&file, BAD).unwrap();
    let f = file.to_str().unwrap();
    let (code, out, err) = elock(&["atlantis", "validate", f, "--repo", "acme/infra"]);
    assert_eq!(code, 1, "{out}{err}");
    for (line, what) in [
        (3, "depends_on cycle: app -> db -> app"),
        (
            7,
            "field priority not found in type raw.RepoLocks: Atlantis refuses this file",
        ),
        (8, "field timeout not found in type raw.RepoLocks"),
        (9, "field owner not found in type raw.RepoLocks"),
        (14, "field queue_timeout not found in type raw.RepoLocks"),
        (
            14,
            "is not valid: wait: 5h is above enhanced-locking.max-timeout 2h",
        ),
    ] {
        assert!(
            out.contains(&format!("{f}:{line}: ")) && out.contains(what),
            "{what}: {out}"
        );
    }
    assert!(err.contains("6 problem(s)"), "{err}");
    assert!(out.contains("Atlantis will refuse this file"), "{out}");

    // The rules it prints, pasted into elock's configuration, are valid there (with a
    // max-timeout that admits the 5h wait), and `policy explain` shows them.
    let (_, json, _) = elock(&[
        "--output",
        "json",
        "atlantis",
        "validate",
        f,
        "--repo",
        "acme/infra",
        "--max-timeout",
        "6h",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 5, "{json}");
    let rules = out
        .lines()
        .skip_while(|l| !l.starts_with("enhanced-locking:"))
        .take_while(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        rules.replace("enhanced-locking:", "enhanced-locking:\n  max-timeout: 6h"),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let (code, out, err) = elock(&["config", "validate", c]);
    assert_eq!(code, 0, "{rules}\n{out}{err}");
    let (code, out, err) = elock(&[
        "--output",
        "json",
        "policy",
        "explain",
        "acme/infra/envs/prod/default/app",
        "--config",
        c,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["priority"], "high");
    assert_eq!(e["ttl"], "1h30m");
    assert_eq!(e["rule_index"], 0);
    let (_, out, _) = elock(&[
        "--output",
        "json",
        "policy",
        "explain",
        "acme/infra/envs/db/default/db",
        "--config",
        c,
    ]);
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["wait"], "5h");
}

#[test]
fn locks_prints_each_projects_lock_with_elocks_policy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("atlantis.yaml");
    std::fs::write(
        &file,
        "version: 3\nrepo_locks: {mode: on_apply}\nprojects:\n- name: vpc\n  dir: modules/vpc\n- dir: envs/prod\n  workspace: prod\n",
    )
    .unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        "enhanced-locking:\n  policies:\n    - match: \"acme/infra/envs/**\"\n      priority: critical\n      ttl: 90m\n      max-ttl: 2h\n      wait: 15m\n",
    )
    .unwrap();
    let (code, out, err) = elock(&[
        "--output",
        "json",
        "atlantis",
        "locks",
        file.to_str().unwrap(),
        "--repo",
        "acme/infra",
        "--pull",
        "42",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let plans: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plans[0]["resource"], "acme/infra/modules/vpc/default/vpc");
    assert_eq!(plans[0]["priority"], "normal");
    assert_eq!(
        plans[0]["ttl"],
        serde_json::Value::Null,
        "Atlantis's locks never expire"
    );
    assert_eq!(plans[0]["mode"], "on_apply");
    assert_eq!(plans[1]["resource"], "acme/infra/envs/prod/prod/");
    assert_eq!(plans[1]["owner"], "acme/infra#42");
    assert_eq!(plans[1]["priority"], "critical");
    assert_eq!(plans[1]["ttl"], "1h30m");
    assert_eq!(plans[1]["wait"], "15m");
    assert_eq!(plans[1]["rule"], "policies[0] (match: acme/infra/envs/**)");
    let (code, out, _) = elock(&["atlantis", "validate", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no problems"));
}
