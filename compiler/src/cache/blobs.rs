//! Blob contents of git revisions read before ([`BlobPack`], `<cache dir>/blobs/pack`): two
//! revisions of a platform share nearly all their files, so a plan inflates from git only the
//! blobs it has not seen (the head of a one-file change: one). A blob is keyed by its git
//! object id — git's own hash of its content — so an entry is never stale; each record carries
//! a CRC-32 of its id and bytes, checked when the blob is read (a damaged one is read from git
//! instead, and the file written again without it); a record cut short ends what is read.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use gix::ObjectId;

/// The first bytes of a blob pack (bumped when its format changes).
const HEAD: &[u8] = b"plinth-blobs-v1\n";

/// A pack larger than this many times what a run used (plus [`SLACK`]) is written again with
/// only that (bounded growth: old revisions' blobs go).
const DEAD_RATIO: usize = 4;
const SLACK: usize = 1 << 20;

/// Blob contents by object id: the pack as read when opened, and blobs kept since (written by
/// [`BlobPack::flush`]).
pub struct BlobPack {
    path: PathBuf,
    /// The pack as read (when first needed, or by the thread reading it since it was opened).
    read: std::sync::OnceLock<Read>,
    /// The thread reading the pack ([`BlobPack::open_beside`]).
    reading: std::sync::Mutex<Option<std::thread::JoinHandle<Read>>>,
    /// A record did not match its checksum.
    damaged: AtomicBool,
    /// Blobs kept since opening.
    fresh: RwLock<BTreeMap<ObjectId, Vec<u8>>>,
}

/// A pack file as read.
struct Read {
    /// The file's bytes.
    bytes: Vec<u8>,
    /// Per blob: its record's range in `bytes`, where its content starts, its checksum, and
    /// whether this run read it (intact); by object id (git's hash of the content: a fast
    /// hasher, randomly seeded).
    index: HashMap<ObjectId, Record, foldhash::fast::RandomState>,
    /// The file is to be written whole (missing, of another format, or damaged).
    rewrite: bool,
}

impl std::fmt::Debug for BlobPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobPack")
            .field("path", &self.path)
            .field("blobs", &self.pack().index.len())
            .finish_non_exhaustive()
    }
}

/// A record of the pack: where it is, where its content starts, its checksum, whether this run
/// read it.
struct Record {
    range: std::ops::Range<usize>,
    start: usize,
    crc: u32,
    used: AtomicBool,
}

/// The checksum of a record.
fn checksum(id: &gix::oid, data: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(id.as_bytes());
    crc.update(data);
    crc.finalize()
}

/// One record: id length, id, content length (u32 LE), CRC-32 of id and content (u32 LE),
/// content.
fn encode(out: &mut Vec<u8>, id: &gix::oid, data: &[u8]) -> Option<()> {
    let len = u32::try_from(data.len()).ok()?;
    let crc = checksum(id, data);
    out.push(u8::try_from(id.as_bytes().len()).ok()?);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(data);
    Some(())
}

/// The record at `at` of `bytes`: its id, where its content starts and ends, and its checksum
/// (`None` when it is cut short; the checksum is checked when the blob is read).
fn decode(bytes: &[u8], at: usize) -> Option<(ObjectId, usize, usize, u32)> {
    let id_len = usize::from(*bytes.get(at)?);
    let id_end = at.checked_add(1 + id_len)?;
    let id = ObjectId::try_from(bytes.get(at + 1..id_end)?).ok()?;
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?))
    };
    let len = usize::try_from(word(id_end)?).ok()?;
    let crc = word(id_end + 4)?;
    let start = id_end + 8;
    let end = start.checked_add(len)?;
    bytes.get(start..end)?;
    Some((id, start, end, crc))
}

impl BlobPack {
    /// The pack at `path` (empty when there is none or it is of another format; read up to
    /// a record cut short).
    pub fn open(path: PathBuf) -> BlobPack {
        let read = Read::of(&path);
        BlobPack {
            path,
            read: read.into(),
            reading: Default::default(),
            damaged: AtomicBool::new(false),
            fresh: RwLock::default(),
        }
    }

    /// [`BlobPack::open`], the pack read on a thread of its own (a plan lists its trees
    /// meanwhile); the first look into the pack waits for it.
    pub fn open_beside(path: PathBuf) -> BlobPack {
        let from = path.clone();
        let reading = std::thread::Builder::new()
            .name("blob pack".into())
            .spawn(move || Read::of(&from))
            .ok();
        BlobPack {
            path,
            read: std::sync::OnceLock::new(),
            reading: std::sync::Mutex::new(reading),
            damaged: AtomicBool::new(false),
            fresh: RwLock::default(),
        }
    }

    /// The pack as read (waiting for the thread reading it; read here when that failed).
    fn pack(&self) -> &Read {
        self.read.get_or_init(|| {
            let reading = self
                .reading
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            reading
                .and_then(|t| t.join().ok())
                .unwrap_or_else(|| Read::of(&self.path))
        })
    }
}

impl Read {
    fn of(path: &std::path::Path) -> Read {
        let bytes = std::fs::read(path).unwrap_or_default();
        let mut index = HashMap::default();
        let mut rewrite = !bytes.starts_with(HEAD);
        let mut at = if rewrite { bytes.len() } else { HEAD.len() };
        while at < bytes.len() {
            match decode(&bytes, at) {
                Some((id, start, end, crc)) => {
                    let record = Record {
                        range: at..end,
                        start,
                        crc,
                        used: AtomicBool::new(false),
                    };
                    index.insert(id, record);
                    at = end;
                }
                None => {
                    // Cut short: the records before it are kept.
                    rewrite = true;
                    break;
                }
            }
        }
        Read {
            bytes,
            index,
            rewrite,
        }
    }
}

impl BlobPack {
    /// Blobs held (read when opening, and kept since).
    pub fn len(&self) -> usize {
        self.pack().index.len() + self.fresh.read().map_or(0, |f| f.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write what was kept since opening: appended to the pack, or the pack written again
    /// (beside, then renamed over it) with only the blobs this run read and kept when it is
    /// mostly blobs of older revisions, or damaged. Nothing is written when nothing was kept.
    pub fn flush(&self) -> std::io::Result<()> {
        let fresh =
            std::mem::take(&mut *self.fresh.write().unwrap_or_else(PoisonError::into_inner));
        let pack = self.pack();
        let rewrite = pack.rewrite || self.damaged.load(Ordering::Relaxed);
        if fresh.is_empty() && !rewrite {
            return Ok(());
        }
        let mut added = Vec::new();
        for (id, data) in &fresh {
            // A blob too large for a record is not kept.
            let mark = added.len();
            if encode(&mut added, id, data).is_none() {
                added.truncate(mark);
            }
        }
        let used: Vec<&std::ops::Range<usize>> = pack
            .index
            .values()
            .filter(|r| r.used.load(Ordering::Relaxed))
            .map(|r| &r.range)
            .collect();
        let live = used.iter().map(|r| r.len()).sum::<usize>() + added.len();
        if !rewrite && pack.bytes.len() + added.len() <= DEAD_RATIO * live + SLACK {
            let mut f = std::fs::File::options().append(true).open(&self.path)?;
            // One write: appends by two runs do not interleave within it.
            return f.write_all(&added);
        }
        let mut whole = Vec::with_capacity(HEAD.len() + live);
        whole.extend_from_slice(HEAD);
        let mut used: Vec<&std::ops::Range<usize>> = used;
        used.sort_by_key(|r| r.start);
        for r in used {
            whole.extend_from_slice(&pack.bytes[r.clone()]);
        }
        whole.extend_from_slice(&added);
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = self
            .path
            .with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&tmp, &whole)?;
        std::fs::rename(&tmp, &self.path)
    }
}

impl BlobPack {
    /// `f` of blob `id` kept since opening, if it was.
    fn with_fresh<R>(&self, id: &gix::oid, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let fresh = self.fresh.read().unwrap_or_else(PoisonError::into_inner);
        fresh.get(id).map(|data| f(data))
    }
}

impl crate::load::Blobs for BlobPack {
    fn blob(&self, id: &gix::oid, limit: usize) -> Option<Vec<u8>> {
        let cut = |data: &[u8]| data[..data.len().min(limit)].to_vec();
        let pack = self.pack();
        if let Some(r) = pack.index.get(id) {
            let data = &pack.bytes[r.start..r.range.end];
            if checksum(id, data) == r.crc {
                // Written once: the flag's cache line is not bounced between threads.
                if !r.used.load(Ordering::Relaxed) {
                    r.used.store(true, Ordering::Relaxed);
                }
                return Some(cut(data));
            }
            // Read from git instead (and kept among the fresh ones).
            self.damaged.store(true, Ordering::Relaxed);
        }
        self.with_fresh(id, cut)
    }

    fn size(&self, id: &gix::oid) -> Option<u64> {
        if let Some(r) = self.pack().index.get(id) {
            return Some((r.range.end - r.start) as u64);
        }
        self.with_fresh(id, |data| data.len() as u64)
    }

    fn keep(&self, id: &gix::oid, bytes: &[u8]) {
        if self
            .pack()
            .index
            .get(id)
            .is_some_and(|r| r.used.load(Ordering::Relaxed))
        {
            return;
        }
        let mut fresh = self.fresh.write().unwrap_or_else(PoisonError::into_inner);
        fresh.entry(id.to_owned()).or_insert_with(|| bytes.to_vec());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::load::Blobs;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_hex(format!("{n:02x}").repeat(20).as_bytes()).unwrap()
    }

    fn pack(dir: &std::path::Path) -> BlobPack {
        BlobPack::open(dir.join("blobs").join("pack"))
    }

    /// A pack in `dir` holding `blobs` (numbered ids); its path and bytes.
    fn packed(dir: &std::path::Path, blobs: &[(u8, &[u8])]) -> (std::path::PathBuf, Vec<u8>) {
        let p = pack(dir);
        for (n, data) in blobs {
            p.keep(&id(*n), data);
        }
        p.flush().unwrap();
        let path = dir.join("blobs/pack");
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    /// A pack read on a thread of its own holds what one read at once does.
    #[test]
    fn a_pack_read_beside_reads_as_one_read_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = packed(dir.path(), &[(1, b"one\n"), (2, b"two\n")]);
        let (now, beside) = (BlobPack::open(path.clone()), BlobPack::open_beside(path));
        for p in [&now, &beside] {
            assert_eq!(p.len(), 2);
            assert_eq!(p.blob(&id(2), usize::MAX).unwrap(), b"two\n");
            assert_eq!(p.size(&id(1)), Some(4));
            assert_eq!(p.blob(&id(3), usize::MAX), None);
        }
        let missing = BlobPack::open_beside(dir.path().join("none"));
        assert!(missing.is_empty());
    }

    #[test]
    fn kept_blobs_read_back_after_a_flush_and_one_more_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let p = pack(dir.path());
        assert!(p.is_empty());
        for n in 0..3 {
            p.keep(&id(n), format!("blob {n}\n").as_bytes());
        }
        // Kept blobs are read before they are written (the base's, by the head).
        assert_eq!(p.blob(&id(1), usize::MAX).unwrap(), b"blob 1\n");
        p.flush().unwrap();
        let path = dir.path().join("blobs/pack");
        let before = std::fs::metadata(&path).unwrap().len();
        let p = pack(dir.path());
        assert_eq!(p.len(), 3);
        for n in 0..3 {
            let text = format!("blob {n}\n");
            assert_eq!(p.blob(&id(n), usize::MAX).unwrap(), text.as_bytes());
            assert_eq!(p.size(&id(n)), Some(text.len() as u64));
        }
        // At most `limit` bytes.
        assert_eq!(p.blob(&id(2), 3).unwrap(), b"blo");
        assert_eq!(p.blob(&id(9), usize::MAX), None);
        p.keep(&id(9), b"nine");
        p.flush().unwrap();
        let record = 1 + 20 + 4 + 4 + 4;
        assert_eq!(std::fs::metadata(&path).unwrap().len(), before + record);
        let p = pack(dir.path());
        assert_eq!(p.len(), 4);
        assert_eq!(p.blob(&id(9), usize::MAX).unwrap(), b"nine");
        // Nothing kept, nothing written.
        let written = std::fs::metadata(&path).unwrap().modified().unwrap();
        p.flush().unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            written
        );
    }

    #[test]
    fn a_damaged_blob_is_a_miss_and_the_pack_is_written_again_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut bytes) = packed(dir.path(), &[(1, b"first blob"), (2, b"second blob")]);
        let at = bytes.windows(6).position(|w| w == b"second").unwrap();
        bytes[at] = b'S';
        std::fs::write(&path, &bytes).unwrap();
        let p = pack(dir.path());
        assert_eq!(p.blob(&id(1), usize::MAX).unwrap(), b"first blob");
        assert_eq!(
            p.blob(&id(2), usize::MAX),
            None,
            "a damaged blob is never served"
        );
        // Read from git instead and kept: the pack is written again, whole and intact.
        p.keep(&id(2), b"second blob");
        assert_eq!(p.blob(&id(2), usize::MAX).unwrap(), b"second blob");
        p.flush().unwrap();
        let p = pack(dir.path());
        assert_eq!(p.blob(&id(1), usize::MAX).unwrap(), b"first blob");
        assert_eq!(p.blob(&id(2), usize::MAX).unwrap(), b"second blob");
        assert_eq!(std::fs::read(&path).unwrap().len(), bytes.len());
    }

    #[test]
    fn a_pack_cut_short_or_of_another_format_reads_what_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = packed(dir.path(), &[(1, b"whole"), (2, b"cut short")]);
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let p = pack(dir.path());
        assert_eq!(p.len(), 1);
        assert_eq!(p.blob(&id(1), usize::MAX).unwrap(), b"whole");
        // Nothing new, but the tail is dropped.
        p.flush().unwrap();
        assert_eq!(pack(dir.path()).len(), 1);
        assert!(std::fs::read(&path).unwrap().len() < bytes.len() - 3);
        let mut other = b"plinth-blobs-v0\n".to_vec();
        other.extend_from_slice(&bytes[HEAD.len()..]);
        std::fs::write(&path, other).unwrap();
        assert!(pack(dir.path()).is_empty());
    }

    #[test]
    fn a_pack_mostly_of_blobs_not_read_is_written_again_with_the_ones_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = pack(dir.path());
        let big = vec![b'x'; 600 << 10];
        for n in 0..8 {
            p.keep(&id(n), &big);
        }
        p.keep(&id(100), b"small");
        p.flush().unwrap();
        let p = pack(dir.path());
        assert_eq!(p.blob(&id(100), usize::MAX).unwrap(), b"small");
        p.keep(&id(101), b"new");
        p.flush().unwrap();
        let p = pack(dir.path());
        assert_eq!(p.len(), 2, "only the blobs this run read or kept");
        assert_eq!(p.blob(&id(100), usize::MAX).unwrap(), b"small");
        assert_eq!(p.blob(&id(101), usize::MAX).unwrap(), b"new");
    }
}
