//! A read-only reader of bbolt (BoltDB) files, the store of Atlantis's default backend.
//!
//! Written here rather than taken from a crate (the one that reads the format is unmaintained
//! and brings unrelated dependencies). The format is in `reference/bbolt-format.md`; every
//! offset and length read from the file is checked, so a damaged or hostile file is an error,
//! never a panic or an endless loop. The file is read once into memory and never written.

mod page;

use std::collections::HashSet;
use std::path::Path;

use page::{Page, PageKind, Visit};

pub use page::BoltError;

/// bbolt's magic number and the one file format version it writes.
const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
/// A bucket's tree is never this deep (bbolt splits pages long before); deeper means a cycle.
const MAX_DEPTH: usize = 64;

/// One entry of a bucket, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Value {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// A nested bucket (its entries: [`Bolt::bucket_at`]).
    Bucket {
        key: Vec<u8>,
    },
}

impl Entry {
    pub fn key(&self) -> &[u8] {
        match self {
            Entry::Value { key, .. } | Entry::Bucket { key } => key,
        }
    }
}

/// The meta page in use: where the root bucket is, and how pages are sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub page_size: usize,
    pub root: u64,
    /// The high-water mark: no page id at or above it is in use.
    pub pgid: u64,
    pub txid: u64,
}

/// An open bbolt file (read into memory).
pub struct Bolt {
    data: Vec<u8>,
    meta: Meta,
}

/// Where a bucket's tree lives: a page of the file, or an inline page inside its parent's value.
#[derive(Clone, Debug)]
enum Root {
    Page(u64),
    Inline(Vec<u8>),
}

impl Bolt {
    /// Reads the file at `path` (never modifying it).
    pub fn open(path: &Path) -> Result<Bolt, BoltError> {
        let data = std::fs::read(path)
            .map_err(|e| BoltError::new(format!("cannot read {}: {e}", path.display())))?;
        Bolt::from_bytes(data)
    }

    pub fn from_bytes(data: Vec<u8>) -> Result<Bolt, BoltError> {
        let meta = pick_meta(&data)?;
        Ok(Bolt { data, meta })
    }

    pub fn meta(&self) -> Meta {
        self.meta
    }

    /// The top-level buckets' names, in key order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>, BoltError> {
        Ok(self
            .entries(&Root::Page(self.meta.root))?
            .into_iter()
            .filter(|e| matches!(e, Entry::Bucket { .. }))
            .map(|e| e.key().to_vec())
            .collect())
    }

    /// Every entry of the top-level bucket `name`, in key order; `None` if there is no such
    /// bucket.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Vec<Entry>>, BoltError> {
        self.bucket_at(&[name])
    }

    /// Every entry of the bucket at `path` (names from the top), in key order.
    pub fn bucket_at(&self, path: &[&[u8]]) -> Result<Option<Vec<Entry>>, BoltError> {
        let mut root = Root::Page(self.meta.root);
        for name in path {
            match self.child_bucket(&root, name)? {
                Some(r) => root = r,
                None => return Ok(None),
            }
        }
        self.entries(&root).map(Some)
    }

    fn child_bucket(&self, parent: &Root, name: &[u8]) -> Result<Option<Root>, BoltError> {
        let mut found = None;
        self.walk(parent, 0, &mut |flags, key, value| {
            if key == name && flags & page::BUCKET_LEAF != 0 {
                found = Some(bucket_root(value)?);
            }
            Ok(())
        })?;
        Ok(found)
    }

    fn entries(&self, root: &Root) -> Result<Vec<Entry>, BoltError> {
        let mut out = Vec::new();
        self.walk(root, 0, &mut |flags, key, value| {
            out.push(if flags & page::BUCKET_LEAF != 0 {
                bucket_root(value)?; // checked even when not descended into
                Entry::Bucket { key: key.to_vec() }
            } else {
                Entry::Value {
                    key: key.to_vec(),
                    value: value.to_vec(),
                }
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f(flags, key, value)` for every leaf element under `root`, in key order.
    fn walk(&self, root: &Root, depth: usize, f: &mut Visit<'_>) -> Result<(), BoltError> {
        match root {
            Root::Inline(bytes) => {
                let p = Page::parse(bytes, None)?;
                if p.kind != PageKind::Leaf {
                    return Err(BoltError::new("an inline bucket whose page is not a leaf"));
                }
                p.leaves(f)
            }
            Root::Page(id) => self.walk_page(*id, depth, &mut HashSet::new(), f),
        }
    }

    fn walk_page(
        &self,
        id: u64,
        depth: usize,
        seen: &mut HashSet<u64>,
        f: &mut Visit<'_>,
    ) -> Result<(), BoltError> {
        // In a tree every page is reached once; a page reached twice would make a hostile file
        // walk forever.
        if !seen.insert(id) {
            return Err(BoltError::new(format!(
                "page {id} is reached twice: not a tree"
            )));
        }
        if depth > MAX_DEPTH {
            return Err(BoltError::new(format!(
                "page {id}: the tree is deeper than {MAX_DEPTH} levels (a cycle?)"
            )));
        }
        let p = self.page(id)?;
        match p.kind {
            PageKind::Leaf => p.leaves(f),
            PageKind::Branch => {
                for child in p.branches()? {
                    if child == id || child < 2 {
                        return Err(BoltError::new(format!(
                            "page {id}: a branch points to page {child}"
                        )));
                    }
                    self.walk_page(child, depth + 1, seen, f)?;
                }
                Ok(())
            }
            other => Err(BoltError::new(format!(
                "page {id}: expected a branch or leaf page, found a {other:?} page"
            ))),
        }
    }

    fn page(&self, id: u64) -> Result<Page<'_>, BoltError> {
        if id >= self.meta.pgid {
            return Err(BoltError::new(format!(
                "page {id} is beyond the file's high-water mark {}",
                self.meta.pgid
            )));
        }
        let ps = self.meta.page_size;
        let start = (id as usize)
            .checked_mul(ps)
            .filter(|s| *s < self.data.len())
            .ok_or_else(|| BoltError::new(format!("page {id} is beyond the end of the file")))?;
        Page::parse(&self.data[start..], Some((id, ps)))
    }
}

/// A sub-bucket's value: `{root pgid u64, sequence u64}`, then the inline page when root is 0.
fn bucket_root(value: &[u8]) -> Result<Root, BoltError> {
    if value.len() < 16 {
        return Err(BoltError::new(format!(
            "a bucket header of {} bytes (expected at least 16)",
            value.len()
        )));
    }
    let root = u64::from_le_bytes(value[..8].try_into().expect("8 bytes"));
    if root == 0 {
        Ok(Root::Inline(value[16..].to_vec()))
    } else {
        Ok(Root::Page(root))
    }
}

/// Reads the meta at `offset` (a page header, then the meta), if it is valid.
fn read_meta(data: &[u8], offset: usize) -> Result<Meta, BoltError> {
    let m = data.get(offset + 16..offset + 16 + 64).ok_or_else(|| {
        BoltError::new(format!(
            "no meta page at byte {offset}: the file is too short"
        ))
    })?;
    let u32_at = |i: usize| u32::from_le_bytes(m[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(m[i..i + 8].try_into().expect("8 bytes"));
    if u32_at(0) != MAGIC {
        return Err(BoltError::new(format!(
            "the meta page at byte {offset} has magic {:#x}, not bbolt's {MAGIC:#x}: not a bbolt file",
            u32_at(0)
        )));
    }
    if u32_at(4) != VERSION {
        return Err(BoltError::new(format!(
            "bbolt file format version {} (this reader knows version {VERSION})",
            u32_at(4)
        )));
    }
    if page::fnv1a(&m[..56]) != u64_at(56) {
        return Err(BoltError::new(format!(
            "the meta page at byte {offset} fails its checksum"
        )));
    }
    let page_size = u32_at(8) as usize;
    if !(512..=1 << 20).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(BoltError::new(format!("a page size of {page_size} bytes")));
    }
    Ok(Meta {
        page_size,
        root: u64_at(16),
        pgid: u64_at(40),
        txid: u64_at(48),
    })
}

/// The valid meta with the higher transaction id; the other one if one is damaged.
fn pick_meta(data: &[u8]) -> Result<Meta, BoltError> {
    let first = read_meta(data, 0);
    let size = first.as_ref().map_or(4096, |m| m.page_size);
    let mut second = read_meta(data, size);
    if second.is_err() && first.is_err() {
        // Meta 0 is damaged, so its page size is unknown: try the usual ones.
        for s in [1024, 2048, 8192, 16384, 32768, 65536] {
            if let Ok(m) = read_meta(data, s) {
                if m.page_size == s {
                    second = Ok(m);
                    break;
                }
            }
        }
    }
    let meta = match (first, second) {
        (Ok(a), Ok(b)) => {
            if b.txid > a.txid {
                b
            } else {
                a
            }
        }
        (Ok(a), Err(_)) => a,
        (Err(_), Ok(b)) => b,
        (Err(e), Err(_)) => return Err(e),
    };
    if (meta.pgid as u128) * (meta.page_size as u128) > data.len() as u128 {
        return Err(BoltError::new(format!(
            "the file is {} bytes but its meta says {} pages of {} bytes (truncated?)",
            data.len(),
            meta.pgid,
            meta.page_size
        )));
    }
    if meta.root < 2 || meta.root >= meta.pgid {
        return Err(BoltError::new(format!(
            "the root bucket is at page {}, outside the file's pages 2..{}",
            meta.root, meta.pgid
        )));
    }
    Ok(meta)
}
