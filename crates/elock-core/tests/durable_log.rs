//! The embedded store's log on disk: a crash cut at any byte recovers exactly the acknowledged
//! operations before it, damage elsewhere is an error naming the file and the offset,
//! compaction keeps the disk bounded without losing anything, and the model check passes with
//! a compaction every few operations.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use elock_core::clock::ManualClock;
use elock_core::model::LeaseId;
use elock_core::store::{DurableStore, LogOptions, Store};
use elock_core::table::{AcquireRequest, Snapshot, TableConfig, WaitMode};
use elock_core::testkit::{disk_use, model_check, try_request, DurableFactory};

fn req(n: u128, resource: &str, wait: WaitMode) -> AcquireRequest {
    AcquireRequest {
        wait,
        ..try_request(n, &format!("owner-{n}"), resource)
    }
}

fn first_log(dir: &Path) -> PathBuf {
    dir.join("log-0000000001")
}

/// Small steps of space allocated ahead, so that thousands of openings stay quick.
const SMALL: LogOptions = LogOptions {
    compact_after: 64 << 20,
    preallocate: 4 << 10,
};

fn open(dir: &Path, clock: &Arc<ManualClock>) -> elock_core::error::Result<DurableStore> {
    DurableStore::open_with_options(dir, TableConfig::default(), clock.clone(), SMALL)
}

/// Where the log's whole records end: after the 20-byte header, frames of an 8-byte head
/// (length, checksum) and the payload, then zeros (space allocated ahead).
fn record_ends(log: &[u8]) -> Vec<u64> {
    let mut at = 20;
    let mut ends = vec![at as u64];
    while at + 8 <= log.len() {
        let len = u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        at += 8 + len;
        ends.push(at as u64);
    }
    ends
}

fn log_end(dir: &Path) -> u64 {
    *record_ends(&std::fs::read(first_log(dir)).unwrap())
        .last()
        .unwrap()
}

/// Runs acquires, releases and a detached wait one at a time; returns the state after each one
/// and where the log's records ended after each one (each operation is one record: nothing runs
/// beside it).
async fn history(dir: &Path, clock: &Arc<ManualClock>) -> (Vec<Snapshot>, Vec<u64>) {
    let store = open(dir, clock).unwrap();
    let mut states = vec![store.snapshot().await.unwrap()];
    let mut ends = vec![log_end(dir)];
    let detached = WaitMode::Queue {
        deadline: None,
        detached: true,
    };
    for n in 1..=12u128 {
        let resource = format!("r{}", n % 3);
        match n % 4 {
            0 => drop(store.release(LeaseId::from_u128(n - 3)).await),
            1 | 2 => drop(store.acquire(req(n, &resource, WaitMode::Try)).await),
            _ => drop(store.acquire(req(n, &resource, detached)).await),
        }
        clock.advance(Duration::from_secs(1));
        store.flush().await.unwrap();
        let end = log_end(dir);
        if end != *ends.last().unwrap() {
            states.push(store.snapshot().await.unwrap());
            ends.push(end);
        }
    }
    (states, ends)
}

#[tokio::test]
async fn a_crash_cut_at_any_byte_recovers_the_operations_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    let (states, ends) = history(dir.path(), &clock).await;
    assert!(states.len() > 5, "the history changes state: {ends:?}");
    let log = std::fs::read(first_log(dir.path())).unwrap();
    let end = *ends.last().unwrap();
    assert!(
        log.len() as u64 > end,
        "space is allocated ahead of the records"
    );
    assert!(log[end as usize..].iter().all(|&b| b == 0));
    // A crash leaves the file cut short (the records were appended to its end), or the
    // allocated space after the cut still zero (they were written into it).
    for (cut, zeros) in (0..=end).flat_map(|c| [(c, false), (c, true)]) {
        let copy = tempfile::tempdir().unwrap();
        let mut cut_log = log[..cut as usize].to_vec();
        if zeros {
            cut_log.resize(end as usize + 64, 0);
        }
        std::fs::write(first_log(copy.path()), &cut_log).unwrap();
        // The state is that of the last record still whole: before the cut, or ending in zeros
        // that the zeros after the cut happen to match (a fencing counter's high bytes).
        let whole = ends
            .iter()
            .rposition(|&e| cut_log.get(..e as usize) == Some(&log[..e as usize]))
            .unwrap_or(0);
        let store = open(copy.path(), &clock)
            .unwrap_or_else(|e| panic!("a log cut at byte {cut} must open: {e}"));
        assert_eq!(
            store.snapshot().await.unwrap(),
            states[whole],
            "cut at byte {cut} of {end} (zeros after it: {zeros})"
        );
        // The cut is repaired: new records follow the last whole one, and read back.
        store
            .acquire(req(1000, "after-the-crash", WaitMode::Try))
            .await
            .unwrap();
        drop(store);
        let store = open(copy.path(), &clock).unwrap();
        assert!(store
            .get_lease(LeaseId::from_u128(1000))
            .await
            .unwrap()
            .is_some());
    }
}

#[tokio::test]
async fn damage_before_the_last_record_is_an_error_naming_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    let (_, ends) = history(dir.path(), &clock).await;
    let path = first_log(dir.path());
    let mut log = std::fs::read(&path).unwrap();
    // A byte inside the second record's payload.
    let at = ends[1] as usize + 12;
    log[at] ^= 0x40;
    std::fs::write(&path, &log).unwrap();
    let err = open(dir.path(), &clock)
        .err()
        .expect("damage in the middle must not open")
        .to_string();
    assert!(err.contains("log-0000000001"), "names the file: {err}");
    assert!(
        err.contains(&format!("offset {}", ends[1])),
        "names the damaged record's offset ({}): {err}",
        ends[1]
    );
    // Nothing was cut: the file is as it was, for whoever repairs it.
    assert_eq!(std::fs::read(&path).unwrap(), log);
}

#[tokio::test]
async fn a_log_of_another_kind_or_generation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    history(dir.path(), &clock).await;
    let log = std::fs::read(first_log(dir.path())).unwrap();
    std::fs::write(dir.path().join("log-0000000002"), &log).unwrap();
    let err = open(dir.path(), &clock)
        .err()
        .expect("must not open")
        .to_string();
    assert!(
        err.contains("log-0000000002") && err.contains("generation 2"),
        "{err}"
    );
}

#[tokio::test]
async fn compaction_keeps_the_disk_bounded_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    let options = LogOptions {
        compact_after: 16 << 10,
        preallocate: 4 << 10,
    };
    let store =
        DurableStore::open_with_options(dir.path(), TableConfig::default(), clock.clone(), options)
            .unwrap();
    // 50 leases stay held throughout; 4,000 more come and go.
    for n in 0..50u128 {
        store
            .acquire(req(n + 1, &format!("kept-{n}"), WaitMode::Try))
            .await
            .unwrap();
    }
    let mut largest = 0;
    for n in 0..4000u128 {
        let id = 10_000 + n;
        store
            .acquire(req(id, &format!("churn-{}", n % 7), WaitMode::Try))
            .await
            .unwrap();
        store.release(LeaseId::from_u128(id)).await.unwrap();
        largest = largest.max(disk_use(dir.path()));
    }
    let expected = store.snapshot().await.unwrap();
    drop(store);
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        files.iter().any(|f| f.starts_with("snapshot-")),
        "compacted: {files:?}"
    );
    // Without compaction the log would hold 8,000 records of about 400 bytes (over 3 MB).
    assert!(
        largest < 200 << 10,
        "the disk stays within a few times the threshold and the live state: {largest} bytes"
    );
    let store = DurableStore::open_with_options(dir.path(), TableConfig::default(), clock, options)
        .unwrap();
    assert_eq!(store.snapshot().await.unwrap(), expected);
    assert_eq!(expected.leases.len(), 50);
    assert_eq!(
        expected
            .fences
            .iter()
            .filter(|(r, _)| r.as_str().starts_with("churn-"))
            .map(|(_, t)| t)
            .sum::<u64>(),
        4000,
        "every fencing counter survives compaction"
    );
}

#[test]
fn model_check_with_a_compaction_every_few_operations() {
    model_check::run(
        Arc::new(DurableFactory::with_options(LogOptions {
            compact_after: 1,
            preallocate: 4 << 10,
        })),
        60,
    );
}

#[tokio::test]
async fn a_damaged_snapshot_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    let options = LogOptions {
        compact_after: 1,
        preallocate: 4 << 10,
    };
    let store =
        DurableStore::open_with_options(dir.path(), TableConfig::default(), clock.clone(), options)
            .unwrap();
    for n in 1..=20u128 {
        store
            .acquire(req(n, &format!("r{n}"), WaitMode::Try))
            .await
            .unwrap();
    }
    drop(store);
    let snapshot = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("snapshot-")
        })
        .expect("a compaction wrote a snapshot");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&snapshot, &bytes).unwrap();
    let err = DurableStore::open_with_options(dir.path(), TableConfig::default(), clock, options)
        .err()
        .expect("a damaged snapshot must not open")
        .to_string();
    let name = snapshot.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "names the snapshot: {err}");
}

/// A compaction that cannot start (here: the next log's name is taken by a directory) is not a
/// failed commit: the batch that triggered it is on disk, and requests go on being served and
/// acknowledged; once the obstacle is gone, compaction happens.
#[tokio::test]
async fn a_compaction_that_cannot_start_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    let options = LogOptions {
        compact_after: 1,
        preallocate: 4 << 10,
    };
    let store =
        DurableStore::open_with_options(dir.path(), TableConfig::default(), clock.clone(), options)
            .unwrap();
    std::fs::create_dir(dir.path().join("log-0000000002")).unwrap();
    for n in 1..=5u128 {
        store
            .acquire(req(n, &format!("r{n}"), WaitMode::Try))
            .await
            .expect("acknowledged although no compaction could start");
    }
    assert_eq!(store.stats().snapshot_bytes, 0, "nothing was compacted");
    std::fs::remove_dir(dir.path().join("log-0000000002")).unwrap();
    store.acquire(req(6, "r6", WaitMode::Try)).await.unwrap();
    let expected = store.snapshot().await.unwrap();
    drop(store);
    assert!(dir.path().join("snapshot-0000000002").exists());
    let store = DurableStore::open_with_options(dir.path(), TableConfig::default(), clock, options)
        .unwrap();
    assert_eq!(store.snapshot().await.unwrap(), expected);
}
