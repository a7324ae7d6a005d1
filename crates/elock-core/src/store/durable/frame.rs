//! The framing shared by log and snapshot files: a header naming the file's kind and generation,
//! then frames `len: u32 | crc: u32 | payload`, where the CRC-32 covers the length and the payload.
//!
//! A log is appended by one writer that syncs each frame before writing the next, so a crash can
//! only cut the last frame short: a damaged frame with no whole frame after it is a torn tail
//! (recovered by truncating it), while a damaged frame followed by a whole one is damage in the
//! middle of the file, which no crash makes: an error naming the file and the offset.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub(super) const HEADER_LEN: u64 = 20;
const VERSION: u32 = 1;
/// No batch comes near this; a length above it is damage, not a record.
const MAX_FRAME: u32 = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Log,
    Snapshot,
}

impl Kind {
    fn magic(self) -> &'static [u8; 8] {
        match self {
            Kind::Log => b"ELOCKLOG",
            Kind::Snapshot => b"ELOCKSNP",
        }
    }
}

pub(super) fn header(kind: Kind, generation: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(kind.magic());
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..].copy_from_slice(&generation.to_le_bytes());
    h
}

/// Appends one frame holding `payload` to `out`.
pub(super) fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// How reading a file ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// Whole frames up to `end`, then nothing or zeros (a log's preallocated space).
    Clean { end: u64 },
    /// The last frame, from this offset to the end, was cut short or damaged by a crash.
    Torn { at: u64, len: u64 },
}

/// Reads `path`'s frames in order, handing each payload to `each`. Checks the header (kind,
/// version and generation); `progress` hears every frame's end offset.
pub(super) fn read(
    path: &Path,
    kind: Kind,
    generation: u64,
    mut each: impl FnMut(&[u8]) -> Result<()>,
    mut progress: impl FnMut(u64),
) -> Result<End> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::Storage(format!("cannot open {name}: {e}")))?;
    let size = file
        .metadata()
        .map_err(|e| Error::Storage(format!("cannot read {name}: {e}")))?
        .len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let io = |e: std::io::Error| Error::Storage(format!("cannot read {name}: {e}"));
    let mut head = [0u8; HEADER_LEN as usize];
    if size < HEADER_LEN {
        // Only a log can be this short, and only when a crash came while it was being created.
        return Ok(End::Torn { at: 0, len: size });
    }
    r.read_exact(&mut head).map_err(io)?;
    let expected = header(kind, generation);
    let same = head
        .iter()
        .zip(&expected)
        .take_while(|(a, b)| a == b)
        .count();
    if kind == Kind::Log && same < head.len() && head[same..].iter().all(|&b| b == 0) {
        // Part of the header, then zeros: a crash came while the log was being created.
        return Ok(End::Torn { at: 0, len: size });
    }
    if head != expected {
        let found = String::from_utf8_lossy(&head[..8]).into_owned();
        return Err(Error::Storage(format!(
            "{name}: not an elock {} of generation {generation} (header {found:?}, version {}, generation {})",
            match kind {
                Kind::Log => "log",
                Kind::Snapshot => "snapshot",
            },
            u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")),
            u64::from_le_bytes(head[12..].try_into().expect("8 bytes")),
        )));
    }
    let mut at = HEADER_LEN;
    let mut payload = Vec::new();
    loop {
        if at == size {
            return Ok(End::Clean { end: at });
        }
        let mut fh = [0u8; 8];
        let whole = size - at >= 8 && {
            r.read_exact(&mut fh).map_err(io)?;
            let len = u32::from_le_bytes(fh[..4].try_into().expect("4 bytes"));
            len > 0 && len <= MAX_FRAME && u64::from(len) <= size - at - 8 && {
                payload.resize(len as usize, 0);
                r.read_exact(&mut payload).map_err(io)?;
                let mut crc = crc32fast::Hasher::new();
                crc.update(&fh[..4]);
                crc.update(&payload);
                crc.finalize() == u32::from_le_bytes(fh[4..].try_into().expect("4 bytes"))
            }
        };
        if !whole {
            return damaged(path, at, size);
        }
        each(&payload).map_err(|e| match e {
            Error::Storage(msg) => Error::Storage(format!("{name}, record at offset {at}: {msg}")),
            other => other,
        })?;
        at += 8 + payload.len() as u64;
        progress(at);
    }
}

/// A frame at `at` is not whole: the end of the data if only zeros follow (a log's preallocated
/// space), a torn tail if no whole frame follows it, an error otherwise.
fn damaged(path: &Path, at: u64, size: u64) -> Result<End> {
    let mut rest = Vec::new();
    let mut f = File::open(path)
        .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(at))
        .and_then(|_| f.read_to_end(&mut rest))
        .map_err(|e| Error::Storage(format!("cannot read {}: {e}", path.display())))?;
    if rest.iter().all(|&b| b == 0) {
        return Ok(End::Clean { end: at });
    }
    if let Some(next) = (1..rest.len()).find(|&i| whole_frame_at(&rest[i..])) {
        return Err(Error::Storage(format!(
            "{}: damaged record at offset {at} with whole records after it (the next at offset {}): \
             this is not a write cut short by a crash; restore the data directory from a backup, \
             or move the file away to lose what it holds",
            path.display(),
            at + next as u64
        )));
    }
    Ok(End::Torn { at, len: size - at })
}

fn whole_frame_at(b: &[u8]) -> bool {
    if b.len() < 8 {
        return false;
    }
    let len = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_FRAME || (len as usize) > b.len() - 8 {
        return false;
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&b[..4]);
    crc.update(&b[8..8 + len as usize]);
    crc.finalize() == u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"))
}

/// The log being appended to.
pub(super) struct LogFile {
    pub file: File,
    pub path: PathBuf,
    pub generation: u64,
    /// Bytes of whole frames (the file may be longer: zeros).
    pub len: u64,
    /// The file's size.
    allocated: u64,
    /// How far ahead of the data the file is grown ([`super::LogOptions::preallocate`]).
    preallocate: u64,
    buf: Vec<u8>,
}

impl LogFile {
    /// Creates the log of `generation` in `dir`, its header durable (and its name: the directory
    /// is synced too).
    pub fn create(dir: &Path, generation: u64, preallocate: u64) -> Result<LogFile> {
        let path = super::files::log_path(dir, generation);
        let io = |e: std::io::Error| {
            Error::Storage(format!("cannot create the log {}: {e}", path.display()))
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        file.write_all_at(&header(Kind::Log, generation), 0)
            .map_err(io)?;
        let mut log = LogFile {
            file,
            path: path.clone(),
            generation,
            len: HEADER_LEN,
            allocated: HEADER_LEN,
            preallocate,
            buf: Vec::new(),
        };
        log.grow(0).map_err(io)?;
        super::files::sync_dir(dir)?;
        Ok(log)
    }

    /// Opens an existing log to append after its last whole frame at `len`.
    pub fn reopen(dir: &Path, generation: u64, len: u64, preallocate: u64) -> Result<LogFile> {
        let path = super::files::log_path(dir, generation);
        let io = |e: std::io::Error| Error::Storage(format!("cannot open {}: {e}", path.display()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io)?;
        let allocated = file.metadata().map_err(io)?.len();
        Ok(LogFile {
            file,
            path,
            generation,
            len,
            allocated,
            preallocate,
            buf: Vec::new(),
        })
    }

    /// Makes room for `more` bytes after the data: zeros, synced with the new size.
    fn grow(&mut self, more: u64) -> std::io::Result<()> {
        let target = self.len + more + self.preallocate;
        let zeros = vec![0u8; 1 << 20];
        while self.allocated < target {
            let n = (target - self.allocated).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], self.allocated)?;
            self.allocated += n as u64;
        }
        self.file.sync_all()
    }

    /// Appends one frame and makes it durable (`fdatasync`).
    pub fn append(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.buf.clear();
        frame(payload, &mut self.buf);
        if self.len + self.buf.len() as u64 > self.allocated {
            self.grow(self.buf.len() as u64)?;
        }
        self.file.write_all_at(&self.buf, self.len)?;
        self.file.sync_data()?;
        self.len += self.buf.len() as u64;
        Ok(())
    }
}
