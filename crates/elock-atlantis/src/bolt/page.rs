//! One page of a bbolt file: its 16-byte header and its elements, every offset checked against
//! the page's own bytes.

use std::fmt;

const HEADER: usize = 16;
const ELEMENT: usize = 16;

const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const META: u16 = 0x04;
const FREELIST: u16 = 0x10;

/// A leaf element that is a nested bucket.
pub const BUCKET_LEAF: u32 = 0x01;

/// Called for each leaf element: `(flags, key, value)`.
pub type Visit<'f> = dyn FnMut(u32, &[u8], &[u8]) -> Result<(), BoltError> + 'f;

/// What is wrong with a bbolt file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoltError(String);

impl BoltError {
    pub fn new(message: impl Into<String>) -> Self {
        BoltError(message.into())
    }
}

impl fmt::Display for BoltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "damaged or unsupported bbolt file: {}", self.0)
    }
}

impl std::error::Error for BoltError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    Branch,
    Leaf,
    Meta,
    Freelist,
}

pub struct Page<'a> {
    pub kind: PageKind,
    count: usize,
    /// The page's bytes, header included, overflow pages included.
    bytes: &'a [u8],
    id: Option<u64>,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

impl<'a> Page<'a> {
    /// The page at the start of `rest`. `at`: its id and the file's page size (None for an
    /// inline page, which is the whole of `rest`).
    pub fn parse(rest: &'a [u8], at: Option<(u64, usize)>) -> Result<Page<'a>, BoltError> {
        let name = || match at {
            Some((id, _)) => format!("page {id}"),
            None => "an inline bucket page".to_string(),
        };
        if rest.len() < HEADER {
            return Err(BoltError::new(format!("{} is cut short", name())));
        }
        if let Some((id, _)) = at {
            let stored = u64_at(rest, 0);
            if stored != id {
                return Err(BoltError::new(format!(
                    "page {id} says it is page {stored}"
                )));
            }
        }
        let flags = u16_at(rest, 8);
        let kind = match flags {
            BRANCH => PageKind::Branch,
            LEAF => PageKind::Leaf,
            META => PageKind::Meta,
            FREELIST => PageKind::Freelist,
            other => {
                return Err(BoltError::new(format!(
                    "{} has page flags {other:#x} (unknown, or a newer bbolt's compressed page)",
                    name()
                )))
            }
        };
        let count = u16_at(rest, 10) as usize;
        let overflow = u32_at(rest, 12) as usize;
        let len = match at {
            Some((id, ps)) => overflow
                .checked_add(1)
                .and_then(|n| n.checked_mul(ps))
                .filter(|l| *l <= rest.len())
                .ok_or_else(|| {
                    BoltError::new(format!(
                        "page {id} with {overflow} overflow pages runs past the end of the file"
                    ))
                })?,
            None => rest.len(),
        };
        let bytes = &rest[..len];
        if HEADER + count * ELEMENT > bytes.len() {
            return Err(BoltError::new(format!(
                "{} claims {count} elements, more than fit in its {} bytes",
                name(),
                bytes.len()
            )));
        }
        Ok(Page {
            kind,
            count,
            bytes,
            id: at.map(|(id, _)| id),
        })
    }

    fn name(&self) -> String {
        self.id.map_or("an inline bucket page".to_string(), |id| {
            format!("page {id}")
        })
    }

    /// `len` bytes at `elem + pos` (the element's own offset plus its stored position).
    fn slice(
        &self,
        elem: usize,
        pos: usize,
        len: usize,
        what: &str,
    ) -> Result<&'a [u8], BoltError> {
        let start = elem.checked_add(pos);
        let end = start.and_then(|s| s.checked_add(len));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.bytes.len() => Ok(&self.bytes[s..e]),
            _ => Err(BoltError::new(format!(
                "{}: a {what} of {len} bytes at offset {} runs past the page",
                self.name(),
                elem.saturating_add(pos)
            ))),
        }
    }

    /// The child page ids of a branch page, in key order.
    pub fn branches(&self) -> Result<Vec<u64>, BoltError> {
        let mut out = Vec::with_capacity(self.count);
        for i in 0..self.count {
            let elem = HEADER + i * ELEMENT;
            let pos = u32_at(self.bytes, elem) as usize;
            let ksize = u32_at(self.bytes, elem + 4) as usize;
            self.slice(elem, pos, ksize, "branch key")?;
            out.push(u64_at(self.bytes, elem + 8));
        }
        Ok(out)
    }

    /// Calls `f(flags, key, value)` for each element of a leaf page, in order.
    pub fn leaves(&self, f: &mut Visit<'_>) -> Result<(), BoltError> {
        for i in 0..self.count {
            let elem = HEADER + i * ELEMENT;
            let flags = u32_at(self.bytes, elem);
            let pos = u32_at(self.bytes, elem + 4) as usize;
            let ksize = u32_at(self.bytes, elem + 8) as usize;
            let vsize = u32_at(self.bytes, elem + 12) as usize;
            let key = self.slice(elem, pos, ksize, "key")?;
            let value = self.slice(elem, pos.saturating_add(ksize), vsize, "value")?;
            f(flags, key, value)?;
        }
        Ok(())
    }
}

/// FNV-1a, 64 bits: bbolt's meta checksum.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
