//! The data directory: which files make up the state, reading it back, and compaction.
//!
//! `snapshot-G` holds every record as it stood when `log-G` began; the state is the newest
//! snapshot followed by the logs of its generation and after, in order. (Generation 1 may have
//! no snapshot: it starts empty.) Compaction starts a new log generation, then folds the older
//! snapshot and logs into the new generation's snapshot in the background and deletes what it
//! replaces; every step is a new file made durable before anything older is removed, so a crash
//! at any point leaves a directory that reads back whole.
//!
//! `elock.lock` is held (an OS file lock) for as long as a store is open on the directory: a
//! second server on it would grant the same resources.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::table::Snapshot;

use super::frame::{self, End, Kind, LogFile};
use super::record::{self, Image, Write};

pub(super) const LOCK_FILE: &str = "elock.lock";
/// A snapshot frame holds about this many bytes of records.
const SNAPSHOT_FRAME: usize = 1 << 20;

pub(super) fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("log-{generation:010}"))
}

pub(super) fn snapshot_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("snapshot-{generation:010}"))
}

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::Storage(format!("cannot sync the directory {}: {e}", dir.display())))
}

/// Takes the directory's lock, creating the directory if needed.
pub(super) fn lock(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Storage(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Storage(format!(
            "{} is locked by another process: another elock server is probably running on the \
             data directory {} (stop it first, or give this one its own --data-dir)",
            path.display(),
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Storage(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// The generations present in the directory.
#[derive(Debug, Default)]
pub(super) struct Listing {
    pub logs: Vec<u64>,
    pub snapshots: Vec<u64>,
}

pub(super) fn list(dir: &Path) -> Result<Listing> {
    let mut l = Listing::default();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::Storage(format!("cannot read {}: {e}", dir.display())))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::Storage(format!("cannot read {}: {e}", dir.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(g) = name.strip_prefix("log-").and_then(|g| g.parse().ok()) {
            l.logs.push(g);
        } else if let Some(g) = name.strip_prefix("snapshot-").and_then(|g| g.parse().ok()) {
            l.snapshots.push(g);
        } else if name.starts_with("snapshot-") && name.ends_with(".tmp") {
            // A compaction a crash interrupted: never renamed, so never part of the state.
            let _ = std::fs::remove_file(entry.path());
        }
    }
    l.logs.sort_unstable();
    l.snapshots.sort_unstable();
    Ok(l)
}

/// Writes `snapshot-G` from `writes`: into a temporary file, synced, then renamed and the
/// directory synced, so that it exists whole or not at all.
pub(super) fn write_snapshot(
    dir: &Path,
    generation: u64,
    writes: impl Iterator<Item = Write>,
) -> Result<u64> {
    let path = snapshot_path(dir, generation);
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| {
        Error::Storage(format!("cannot write the snapshot {}: {e}", tmp.display()))
    };
    let mut file = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io)?);
    file.write_all(&frame::header(Kind::Snapshot, generation))
        .map_err(io)?;
    let mut payload = Vec::with_capacity(SNAPSHOT_FRAME + 4096);
    let mut framed = Vec::with_capacity(SNAPSHOT_FRAME + 4096);
    let mut count = 0u64;
    let mut flush = |payload: &mut Vec<u8>, file: &mut std::io::BufWriter<File>| {
        framed.clear();
        frame::frame(payload, &mut framed);
        payload.clear();
        file.write_all(&framed)
    };
    for w in writes {
        record::encode_batch(std::slice::from_ref(&w), &mut payload);
        count += 1;
        if payload.len() >= SNAPSHOT_FRAME {
            flush(&mut payload, &mut file).map_err(io)?;
        }
    }
    if !payload.is_empty() {
        flush(&mut payload, &mut file).map_err(io)?;
    }
    // The last frame says how many records came before it: a snapshot without it is incomplete.
    payload.extend_from_slice(END);
    payload.extend_from_slice(&count.to_le_bytes());
    flush(&mut payload, &mut file).map_err(io)?;
    let file = file.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io)?;
    sync_dir(dir)?;
    Ok(size)
}

const END: &[u8] = b"\0END";

/// Reads `snapshot-G` into `image`.
fn read_snapshot(
    dir: &Path,
    generation: u64,
    image: &mut Image,
    progress: &mut Progress,
) -> Result<()> {
    let path = snapshot_path(dir, generation);
    let mut count = 0u64;
    let mut ended = None;
    let base = progress.done;
    let end = frame::read(
        &path,
        Kind::Snapshot,
        generation,
        |payload| {
            if ended.is_some() {
                return Err(Error::Storage(
                    "records after the end of the snapshot".into(),
                ));
            }
            if let Some(n) = payload.strip_prefix(END) {
                ended =
                    Some(u64::from_le_bytes(n.try_into().map_err(|_| {
                        Error::Storage("a damaged end of snapshot".into())
                    })?));
                return Ok(());
            }
            record::decode_batch(payload, |w| {
                count += 1;
                image.apply(w)
            })
        },
        |at| progress.at(base + at),
    )?;
    progress.done = base + std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    match (end, ended) {
        (End::Clean { .. }, Some(n)) if n == count => Ok(()),
        _ => Err(Error::Storage(format!(
            "{}: the snapshot is incomplete (a snapshot is renamed into place only once whole, so \
             the file was damaged after it was written); restore the data directory from a backup",
            path.display()
        ))),
    }
}

/// What opening the directory found.
pub(super) struct Recovered {
    pub snapshot: Snapshot,
    /// The generation of the snapshot the state starts from (1 with none).
    pub base: u64,
    /// The log to append to, positioned after its last whole record.
    pub log: LogFile,
    /// Bytes in the logs from `base` on: what compaction would fold.
    pub log_bytes: u64,
    pub snapshot_bytes: u64,
}

/// Reads the state back: the newest snapshot, then every log from its generation on. A torn
/// tail of the newest log is cut off (a crash while it was written); any other damage is an
/// error naming the file and the offset.
pub(super) fn recover(dir: &Path, preallocate: u64) -> Result<Recovered> {
    let listing = list(dir)?;
    let base = listing.snapshots.last().copied().unwrap_or(1);
    let logs: Vec<u64> = listing
        .logs
        .iter()
        .copied()
        .filter(|&g| g >= base)
        .collect();
    for (i, g) in logs.iter().enumerate() {
        if *g != base + i as u64 {
            return Err(Error::Storage(format!(
                "{}: the logs from generation {base} on are not contiguous ({} is missing); \
                 restore the data directory from a backup",
                dir.display(),
                log_path(dir, base + i as u64).display()
            )));
        }
    }
    if listing.snapshots.is_empty() && listing.logs.first().is_some_and(|&g| g > 1) {
        return Err(Error::Storage(format!(
            "{}: {} has no snapshot before it; restore the data directory from a backup",
            dir.display(),
            log_path(dir, listing.logs[0]).display()
        )));
    }
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let snapshot_bytes = listing
        .snapshots
        .last()
        .map(|&g| size(snapshot_path(dir, g)))
        .unwrap_or(0);
    let total: u64 = snapshot_bytes + logs.iter().map(|&g| size(log_path(dir, g))).sum::<u64>();
    let mut progress = Progress::new(dir, total);
    let mut image = Image::default();
    if listing.snapshots.last().is_some() {
        read_snapshot(dir, base, &mut image, &mut progress)?;
    }
    let mut log_bytes = 0;
    let mut last = None;
    for (i, &g) in logs.iter().enumerate() {
        let path = log_path(dir, g);
        let start = progress.done;
        let end = frame::read(
            &path,
            Kind::Log,
            g,
            |payload| record::decode_batch(payload, |w| image.apply(w)),
            |at| progress.at(start + at),
        )?;
        let len = match end {
            End::Clean { end } => end,
            End::Torn { at, len } if i + 1 == logs.len() => {
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    bytes = len,
                    "the last log record was cut short by a crash; recovered up to the last whole record"
                );
                cut(&path, at.max(frame::HEADER_LEN), at < frame::HEADER_LEN, g)?;
                at.max(frame::HEADER_LEN)
            }
            End::Torn { at, .. } => {
                return Err(Error::Storage(format!(
                    "{}: damaged record at offset {at}, in a log that was complete when the next \
                     one began; restore the data directory from a backup",
                    path.display()
                )))
            }
        };
        progress.done = start + size(path.clone());
        log_bytes += len;
        last = Some((g, len));
    }
    let log = match last {
        Some((g, len)) => LogFile::reopen(dir, g, len, preallocate)?,
        None => LogFile::create(dir, base, preallocate)?,
    };
    let records = image.records();
    let snapshot = image.into_snapshot(&dir.display().to_string())?;
    progress.finish(records);
    // Files older than the snapshot belong to a compaction a crash interrupted after the
    // snapshot was in place: nothing needs them.
    for &g in listing.logs.iter().filter(|&&g| g < base) {
        let _ = std::fs::remove_file(log_path(dir, g));
    }
    for &g in listing.snapshots.iter().filter(|&&g| g < base) {
        let _ = std::fs::remove_file(snapshot_path(dir, g));
    }
    Ok(Recovered {
        snapshot,
        base,
        log,
        log_bytes,
        snapshot_bytes,
    })
}

/// Cuts a log back to its last whole record (rewriting the header if the crash came while the
/// file was being created).
fn cut(path: &Path, at: u64, header: bool, generation: u64) -> Result<()> {
    let io = |e: std::io::Error| Error::Storage(format!("cannot repair {}: {e}", path.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io)?;
    f.set_len(at).map_err(io)?;
    if header {
        f.write_all(&frame::header(Kind::Log, generation))
            .map_err(io)?;
    }
    f.sync_all().map_err(io)
}

/// Folds `snapshot-base` and the logs `base..until` into `snapshot-until`, then removes them.
/// Runs beside the commits, which append to `log-until` meanwhile.
pub(super) fn compact(dir: &Path, base: u64, has_snapshot: bool, until: u64) -> Result<u64> {
    let started = Instant::now();
    let mut image = Image::default();
    let mut progress = Progress::quiet();
    if has_snapshot {
        read_snapshot(dir, base, &mut image, &mut progress)?;
    }
    for g in base..until {
        let path = log_path(dir, g);
        let end = frame::read(
            &path,
            Kind::Log,
            g,
            |payload| record::decode_batch(payload, |w| image.apply(w)),
            |_| {},
        )?;
        if let End::Torn { at, .. } = end {
            return Err(Error::Storage(format!(
                "{}: damaged record at offset {at} in a closed log",
                path.display()
            )));
        }
    }
    let records = image.records();
    let size = write_snapshot(dir, until, image.into_writes())?;
    for g in base..until {
        let _ = std::fs::remove_file(log_path(dir, g));
    }
    if has_snapshot {
        let _ = std::fs::remove_file(snapshot_path(dir, base));
    }
    tracing::debug!(
        generation = until,
        records,
        bytes = size,
        took = ?started.elapsed(),
        "compacted the embedded store's log"
    );
    Ok(size)
}

/// The opening's progress line: one log line a second while reading takes long.
pub(super) struct Progress {
    dir: Option<String>,
    total: u64,
    done: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(dir: &Path, total: u64) -> Self {
        let now = Instant::now();
        Progress {
            dir: Some(dir.display().to_string()),
            total,
            done: 0,
            started: now,
            last: now,
        }
    }

    fn quiet() -> Self {
        let now = Instant::now();
        Progress {
            dir: None,
            total: 0,
            done: 0,
            started: now,
            last: now,
        }
    }

    fn at(&mut self, bytes: u64) {
        let Some(dir) = &self.dir else { return };
        if self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        tracing::info!(
            "opening the embedded store in {dir}: {} of {} MB read ({}%)",
            bytes >> 20,
            self.total >> 20,
            (bytes * 100).checked_div(self.total).unwrap_or(100)
        );
    }

    fn finish(&self, records: usize) {
        let Some(dir) = &self.dir else { return };
        if self.started.elapsed() >= Duration::from_secs(1) {
            tracing::info!(
                "read and decoded the embedded store in {dir}: {records} records, {} MB, in {:.1} s",
                self.total >> 20,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}
