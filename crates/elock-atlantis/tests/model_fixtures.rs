//! Atlantis's JSON, as the real Go program wrote it into the fixtures, read and written back
//! byte for byte; older schemas and unknown fields read without loss.

use std::path::PathBuf;

use elock_atlantis::bolt::{Bolt, Entry};
use elock_atlantis::{CommandLock, LockKey, ProjectLock};

fn values(bucket: &str) -> Vec<(String, Vec<u8>)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/atlantis-large.db");
    let db = Bolt::open(&path).unwrap();
    db.bucket(bucket.as_bytes())
        .unwrap()
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            Entry::Value { key, value } => Some((String::from_utf8(key).unwrap(), value)),
            Entry::Bucket { .. } => None,
        })
        .collect()
}

#[test]
fn every_current_lock_round_trips_byte_for_byte_and_its_key_is_its_own() {
    let mut current = 0;
    for (key, bytes) in values("runLocks") {
        let lock = ProjectLock::from_json(&bytes).unwrap();
        let k = LockKey::of(&lock);
        if k.to_string() == key {
            current += 1;
            assert_eq!(
                String::from_utf8(lock.to_go_json()).unwrap(),
                String::from_utf8(bytes).unwrap(),
                "{key}"
            );
        } else {
            // The one legacy key: three parts, the same lock's old key.
            assert_eq!(k.legacy().to_string(), key);
        }
    }
    assert!(current > 1500, "{current}");
}

#[test]
fn the_legacy_schema_reads_with_go_zero_values() {
    let (key, bytes) = values("runLocks")
        .into_iter()
        .find(|(k, v)| {
            ProjectLock::from_json(v)
                .map(|l| LockKey::of(&l).to_string() != *k)
                .unwrap()
        })
        .unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        !text.contains("ProjectName") || !text.contains("Teams"),
        "{text}"
    );
    let lock = ProjectLock::from_json(&bytes).unwrap();
    assert!(lock.user.teams.is_none());
    assert_eq!(lock.pull.body, "");
    let written = String::from_utf8(lock.to_go_json()).unwrap();
    assert!(written.contains("\"Teams\":null"), "{written}");
    assert!(key.starts_with(&lock.project.repo_full_name));
}

#[test]
fn the_apply_command_lock_round_trips() {
    let (key, bytes) = values("globalLocks").pop().unwrap();
    assert_eq!(key, "apply/lock");
    let lock = CommandLock::from_json(&bytes).unwrap();
    assert_eq!(lock.command_name, 0);
    assert!(lock.lock_metadata.unix_time > 1_700_000_000);
    assert_eq!(lock.to_go_json(), bytes);
}

#[test]
fn unknown_fields_are_kept_and_missing_ones_take_zero_values() {
    let text = r#"{"Project":{"RepoFullName":"o/r","Path":".","Future":1},"Workspace":"default","Time":"2025-01-02T03:04:05Z","Extra":{"a":[1,2]}}"#;
    let lock = ProjectLock::from_json(text.as_bytes()).unwrap();
    assert_eq!(lock.pull.num, 0);
    let out = String::from_utf8(lock.to_go_json()).unwrap();
    assert!(out.contains(r#""Future":1"#), "{out}");
    assert!(
        out.ends_with(r#""Time":"2025-01-02T03:04:05Z","Extra":{"a":[1,2]}}"#),
        "{out}"
    );
    assert!(
        out.starts_with(r#"{"Project":{"ProjectName":"","RepoFullName":"o/r","Path":".""#),
        "{out}"
    );
}
