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
  depends_on: [db]
  repo_locks:
    priority: urgent
    timeout: 5h
    owner: me
- name: db
  depends_on: [app]
  repo_locks:
    priority: 5
";

#[test]
fn validate_prints_every_problem_with_its_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("atlantis.yaml");
    std::fs::write(&file, BAD).unwrap();
    let f = file.to_str().unwrap();
    let (code, out, err) = elock(&["atlantis", "validate", f]);
    assert_eq!(code, 1, "{out}{err}");
    for (line, what) in [
        (3, "depends_on cycle: app -> db -> app"),
        (6, "\"urgent\" is not a priority"),
        (7, "5h is above max-timeout 2h"),
        (8, "unknown key \"owner\""),
        (12, "\"5\" is not a priority"),
    ] {
        assert!(
            out.contains(&format!("{f}:{line}: ")) && out.contains(what),
            "{what}: {out}"
        );
    }
    assert!(err.contains("5 problem(s)"), "{err}");
    // A higher max-timeout accepts the 5h timeout.
    let (_, out, _) = elock(&["atlantis", "validate", f, "--max-timeout", "6h"]);
    assert!(!out.contains("max-timeout"), "{out}");
}

#[test]
fn locks_prints_each_projects_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("atlantis.yaml");
    std::fs::write(
        &file,
        "version: 3\nrepo_locks: {priority: high, timeout: 1h}\nprojects:\n- name: vpc\n  dir: modules/vpc\n- dir: envs/prod\n  workspace: prod\n  repo_locks: {queue_timeout: 15m}\n",
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
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let plans: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plans[0]["resource"], "acme/infra/modules/vpc/default/vpc");
    assert_eq!(plans[0]["priority"], "high");
    assert_eq!(plans[0]["ttl"], "1h");
    assert_eq!(plans[1]["resource"], "acme/infra/envs/prod/prod/");
    assert_eq!(plans[1]["owner"], "acme/infra#42");
    assert_eq!(plans[1]["queue_timeout"], "15m");
    let (code, out, _) = elock(&["atlantis", "validate", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no problems"));
}
