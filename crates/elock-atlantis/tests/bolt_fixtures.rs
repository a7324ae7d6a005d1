//! The bbolt reader against files written by the real bbolt library in Atlantis's layout
//! (copied from the shared fixtures): every bucket, key and value exactly as the expected.json
//! files list them, and damaged files refused with an error, never a panic.

use std::path::PathBuf;

use elock_atlantis::bolt::{Bolt, Entry};
use proptest::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> Vec<Value> {
    serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

/// (bucket, key, value) for every value of every top-level bucket, buckets in name order.
fn everything(db: &Bolt) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for b in db.buckets().unwrap() {
        for e in db.bucket(&b).unwrap().unwrap() {
            match e {
                Entry::Value { key, value } => out.push((
                    String::from_utf8(b.clone()).unwrap(),
                    String::from_utf8(key).unwrap(),
                    value,
                )),
                Entry::Bucket { key } => panic!("unexpected nested bucket {key:?}"),
            }
        }
    }
    out
}

#[test]
fn reads_the_small_fixture_exactly() {
    let db = Bolt::open(&fixture("atlantis-small.db")).unwrap();
    let names: Vec<String> = db
        .buckets()
        .unwrap()
        .into_iter()
        .map(|b| String::from_utf8(b).unwrap())
        .collect();
    assert_eq!(names, ["globalLocks", "pulls", "runLocks"]);
    let got = everything(&db);
    let want = expected("atlantis-small.expected.json");
    assert_eq!(got.len(), want.len());
    for ((bucket, key, value), w) in got.iter().zip(&want) {
        assert_eq!(bucket, w["bucket"].as_str().unwrap());
        assert_eq!(key, w["key"].as_str().unwrap());
        let parsed: Value = serde_json::from_slice(value).unwrap();
        assert_eq!(parsed, w["value"], "{bucket}/{key}");
    }
    assert_eq!(
        got.iter().filter(|(b, _, _)| b == "runLocks").count(),
        8,
        "7 current-format locks and one legacy key"
    );
}

#[test]
fn reads_the_large_fixture_with_branch_and_overflow_pages() {
    let db = Bolt::open(&fixture("atlantis-large.db")).unwrap();
    let got = everything(&db);
    let want = expected("atlantis-large.expected.json");
    assert_eq!(got.len(), want.len());
    for ((bucket, key, value), w) in got.iter().zip(&want) {
        assert_eq!(bucket, w["bucket"].as_str().unwrap());
        assert_eq!(key, w["key"].as_str().unwrap());
        assert_eq!(
            value.len() as u64,
            w["value_len"].as_u64().unwrap(),
            "{key}"
        );
        let sha = format!("{:x}", Sha256::digest(value));
        assert_eq!(sha, w["value_sha256"].as_str().unwrap(), "{bucket}/{key}");
    }
    assert!(
        got.iter().any(|(_, _, v)| v.len() > 30_000),
        "the 30 KB pull body (overflow pages) was read"
    );
}

#[test]
fn the_file_is_never_modified() {
    let path = fixture("atlantis-small.db");
    let before = std::fs::read(&path).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let db = Bolt::open(&path).unwrap();
    everything(&db);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );
}

#[test]
fn what_is_not_a_bbolt_file_is_refused_with_a_reason() {
    for (bytes, says) in [
        (vec![], "too short"),
        (vec![0u8; 8192], "not a bbolt file"),
        (b"SQLite format 3\0".repeat(1000), "not a bbolt file"),
    ] {
        let err = Bolt::from_bytes(bytes).err().expect("refused").to_string();
        assert!(err.contains(says), "{err}");
    }
    // A truncated file: the meta says more pages than there are.
    let mut small = std::fs::read(fixture("atlantis-small.db")).unwrap();
    small.truncate(8192 + 100);
    let err = Bolt::from_bytes(small).err().expect("refused").to_string();
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn a_damaged_meta_page_falls_back_to_the_other() {
    let mut bytes = std::fs::read(fixture("atlantis-small.db")).unwrap();
    let good = Bolt::from_bytes(bytes.clone()).unwrap().meta();
    // Break the checksum of the meta in use; the reader must use the other one (older txid).
    let in_use = if good.txid.is_multiple_of(2) { 0 } else { 4096 };
    bytes[in_use + 16 + 60] ^= 0xff;
    let db = Bolt::from_bytes(bytes).unwrap();
    assert_ne!(db.meta().txid, good.txid);
}

/// Reads everything, whatever the bytes: an error is fine, a panic or a hang is not.
fn read_all(bytes: Vec<u8>) {
    if let Ok(db) = Bolt::from_bytes(bytes) {
        if let Ok(buckets) = db.buckets() {
            for b in buckets {
                let _ = db.bucket(&b);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn corrupted_files_give_errors_never_panics(
        flips in prop::collection::vec((0usize..65536, any::<u8>()), 1..40),
    ) {
        let mut bytes = std::fs::read(fixture("atlantis-small.db")).unwrap();
        for (at, v) in flips {
            let n = bytes.len();
            bytes[at % n] = v;
        }
        read_all(bytes);
    }

    #[test]
    fn corrupted_pages_of_the_large_file_give_errors_never_panics(
        page in 2usize..1024,
        offset in 0usize..64,
        v in any::<u32>(),
    ) {
        let mut bytes = std::fs::read(fixture("atlantis-large.db")).unwrap();
        let at = page * 4096 + offset;
        if at + 4 <= bytes.len() {
            bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        read_all(bytes);
    }
}
