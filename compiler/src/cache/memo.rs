//! Memo files: results kept per key in a file of JSON lines ([`MemoFile`]), read on every
//! core, their values parsed only when looked up; and reading a file of lines in pieces
//! ([`parse_lines`]), as the cache writes its indexes, revisions and memos.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// The memo's maps of fresh entries: keys that are hashes already (a fast hasher; the file is
/// this user's own).
pub(super) type MemoMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// A memo kept in a file of JSON lines (a head naming its format, then an entry per line, read
/// on every core), written atomically, and a log of the entries added since (one JSON line
/// each, appended at the end of a run). A run that adds a few entries appends them; one that
/// leaves many stored entries unused, or finds the log long, writes the file again with only
/// the entries it used and empties the log (bounded growth). A corrupt or unreadable file or
/// line is a miss. Used for the policy memo (a file per policy set) and the spec files' reads.
///
/// Reading a memo finds each line's key and where its value is, and sorts the entries by their
/// key's hash; nothing is allocated per entry. A value is parsed when it is looked up, and one
/// written back unchanged is copied as it was read. (Parsing every value into a map of owned
/// keys first had cost a one-file plan at 10,000 projects about 50 ms of CPU for the spec
/// files' reads, and a policy memo a cold compile left behind — 180,000 entries — 0.1 s to read
/// and free.)
pub(super) struct MemoFile<V> {
    path: PathBuf,
    log: PathBuf,
    format: &'static str,
    /// The memo file's text, its log's, and the keys that held an escape, decoded: the stored
    /// keys and values are in them (shared: what a value was read into may keep its text, see
    /// [`MemoFile::with_text`]).
    texts: [Arc<Vec<u8>>; 3],
    /// The stored entries, in the order read (the log's after the file's).
    stored: Vec<Stored>,
    /// Whether this run used each stored entry (lookups from every thread).
    used: Vec<AtomicBool>,
    /// The stored entries by their key's hash, sorted (hash, then position).
    by_hash: Vec<(u64, u32)>,
    /// `fan[b]..fan[b + 1]`: the entries of `by_hash` whose hash's top `fan_bits` bits are `b` (a
    /// lookup reads one bucket, not a binary search's 18 places in a large memo).
    fan: Vec<u32>,
    /// About one entry a bucket (8 to 16 bits): a small memo does not make (and touch) the
    /// 65,537 buckets of a large one.
    fan_bits: u32,
    hasher: foldhash::fast::RandomState,
    /// The entries this run added. Only these and the stored ones used are written back
    /// (bounded growth). A key is never in both: a value is a function of its key, so a run
    /// only adds what was not stored.
    fresh: Mutex<MemoMap<V>>,
    /// Entries this run looks up but does not keep ([`MemoFile::put_scratch`]).
    scratch: Mutex<MemoMap<V>>,
    /// Entries read from the log (appended since the file was last written whole).
    logged: usize,
}

/// Where a stored entry's key and value are.
#[derive(Debug, Clone, Copy)]
struct Stored {
    key: Slot,
    value: Slot,
}

/// A text in a memo's texts: `texts[text][start..end]`.
#[derive(Debug, Clone, Copy)]
struct Slot {
    text: u8,
    start: u32,
    end: u32,
}

impl Slot {
    /// `part` of `whole` (`texts[text]`), when both fit 32-bit places.
    fn of(text: u8, whole: &[u8], part: &str) -> Option<Slot> {
        let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
        Some(Slot {
            text,
            start: u32::try_from(start).ok()?,
            end: u32::try_from(start + part.len()).ok()?,
        })
    }
}

/// A hash's bucket in a memo's fan-out: its top `bits` bits.
fn bucket(h: u64, bits: u32) -> usize {
    (h >> (64 - bits)) as usize
}

/// A text of a memo's, as bytes.
fn slot_bytes(texts: &[Arc<Vec<u8>>; 3], slot: Slot) -> &[u8] {
    texts[usize::from(slot.text)]
        .get(slot.start as usize..slot.end as usize)
        .unwrap_or_default()
}

/// A text of a memo's (from a line checked to be UTF-8 when read, cut at ASCII characters).
fn slot_text(texts: &[Arc<Vec<u8>>; 3], slot: Slot) -> &str {
    std::str::from_utf8(slot_bytes(texts, slot)).unwrap_or_default()
}

/// A stored entry's key as read: in the line, or decoded (it held an escape).
enum Key {
    At(Slot),
    Decoded(String),
}

/// An entry's line, `["key",value]` as written (compact JSON), split into its key and its
/// value's text (checked when the value is parsed). A key holding an escape is decoded.
fn split_entry(line: &str) -> Option<(std::borrow::Cow<'_, str>, &str)> {
    let rest = line.strip_prefix("[\"")?.strip_suffix(']')?;
    let close = rest.find('"')?;
    let key = &rest[..close];
    if !key.contains('\\') {
        let value = rest[close + 1..].strip_prefix(',')?;
        return Some((std::borrow::Cow::Borrowed(key), value));
    }
    // The key alone, as JSON (its value is checked when parsed, as any other's).
    let mut stream = serde_json::Deserializer::from_str(&line[1..]).into_iter::<String>();
    let key = stream.next()?.ok()?;
    let value = line[1 + stream.byte_offset()..]
        .strip_prefix(',')?
        .strip_suffix(']')?;
    Some((std::borrow::Cow::Owned(key), value))
}

/// The first line of a memo file; each line after it is one entry, `[key, value]` (as in its
/// log), so that a file is read on every core.
#[derive(Serialize, Deserialize)]
struct MemoFileHead {
    format: String,
}

/// What [`MemoFile::finish`] did.
#[derive(Debug, PartialEq)]
pub(super) enum Finished {
    Unchanged,
    Appended,
    Written,
}

impl<V> MemoFile<V>
where
    V: Serialize + serde::de::DeserializeOwned + Clone + PartialEq + Send + Sync + 'static,
{
    /// [`MemoFile::read`] on a pool of threads of its own ([`on_own_pool`]), for a thread
    /// whose result a task on rayon's global pool waits for.
    pub(super) fn read_apart(path: PathBuf, format: &'static str) -> MemoFile<V> {
        on_own_pool(|| MemoFile::read(path, format))
    }

    /// The entries of `path`, then its log's (a later line wins). Without the file, the log
    /// is not read (it extends a file).
    pub(super) fn read(path: PathBuf, format: &'static str) -> MemoFile<V> {
        let log = path.with_extension("log");
        let mut memo = MemoFile {
            path,
            log,
            format,
            texts: Default::default(),
            stored: Vec::new(),
            used: Vec::new(),
            by_hash: Vec::new(),
            fan: Vec::new(),
            fan_bits: 8,
            hasher: Default::default(),
            fresh: Mutex::default(),
            scratch: Mutex::default(),
            logged: 0,
        };
        // Places within a text are 32-bit. (Each line is checked to be UTF-8 as it is split,
        // on every core.)
        let read = |p: &Path| {
            std::fs::read(p)
                .ok()
                .filter(|t| u32::try_from(t.len()).is_ok())
        };
        let Some(text) = read(&memo.path) else {
            return memo;
        };
        let entry = |text: u8, whole: &[u8], line| {
            let (key, value) = split_entry(line)?;
            let key = match key {
                std::borrow::Cow::Borrowed(k) => Key::At(Slot::of(text, whole, k)?),
                std::borrow::Cow::Owned(k) => Key::Decoded(k),
            };
            Some((key, Slot::of(text, whole, value)?))
        };
        let Some(mut entries) =
            parse_lines(&text, |l| entry(0, &text, l)).and_then(|(head, entries)| {
                let head: MemoFileHead = serde_json::from_str(head).ok()?;
                (head.format == format).then_some(entries)
            })
        else {
            return memo;
        };
        let log = read(&memo.log);
        if let Some(log) = &log {
            for line in log.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                // A line cut short (a run stopped while appending) does not split: skipped
                // (one cut inside its value is a miss when looked up).
                if let Some(e) = std::str::from_utf8(line)
                    .ok()
                    .and_then(|l| entry(1, log, l))
                {
                    entries.push(e);
                    memo.logged += 1;
                }
            }
        }
        let mut decoded = Vec::new();
        memo.stored = entries
            .into_iter()
            .map(|(key, value)| {
                let key = match key {
                    Key::At(slot) => slot,
                    Key::Decoded(k) => {
                        let start = decoded.len();
                        decoded.extend_from_slice(k.as_bytes());
                        Slot {
                            text: 2,
                            start: u32::try_from(start).unwrap_or(u32::MAX),
                            end: u32::try_from(decoded.len()).unwrap_or(u32::MAX),
                        }
                    }
                };
                Stored { key, value }
            })
            .collect();
        memo.texts = [text, log.unwrap_or_default(), decoded].map(Arc::new);
        memo.used = memo.stored.iter().map(|_| AtomicBool::new(false)).collect();
        memo.by_hash = {
            use rayon::prelude::*;
            let mut by_hash: Vec<(u64, u32)> = memo
                .stored
                .par_iter()
                .enumerate()
                .map(|(i, e)| {
                    let key = slot_bytes(&memo.texts, e.key);
                    (
                        memo.hasher.hash_one(key),
                        u32::try_from(i).unwrap_or(u32::MAX),
                    )
                })
                .collect();
            by_hash.par_sort_unstable();
            by_hash
        };
        memo.fan_bits = memo.stored.len().max(1).ilog2().clamp(8, 16);
        memo.fan = vec![0; (1 << memo.fan_bits) + 1];
        for &(h, _) in &memo.by_hash {
            memo.fan[bucket(h, memo.fan_bits) + 1] += 1;
        }
        for b in 1..memo.fan.len() {
            memo.fan[b] += memo.fan[b - 1];
        }
        memo
    }

    /// The stored entry of `key` (of two, the later: a log's line wins over the file's).
    fn find(&self, key: &str) -> Option<usize> {
        let h = self.hasher.hash_one(key.as_bytes());
        let b = bucket(h, self.fan_bits);
        let (from, to) = (*self.fan.get(b)? as usize, *self.fan.get(b + 1)? as usize);
        self.by_hash
            .get(from..to)?
            .iter()
            .filter(|&&(k, _)| k == h)
            .map(|&(_, i)| i as usize)
            .filter(|&i| {
                self.stored
                    .get(i)
                    .is_some_and(|e| slot_bytes(&self.texts, e.key) == key.as_bytes())
            })
            .last()
    }

    /// A stored value, parsed (`None` when its text does not parse: a damaged line).
    fn parsed(&self, i: usize) -> Option<V> {
        // From the bytes: the parser checks its strings' UTF-8 as it reads them.
        serde_json::from_slice(slot_bytes(&self.texts, self.stored.get(i)?.value)).ok()
    }

    /// `f` of the value stored or added under `key` (marked used). A stored value that does
    /// not parse is a miss.
    pub(super) fn with<R>(&self, key: &str, f: impl FnOnce(&V) -> R) -> Option<R> {
        if let Some(i) = self.find(key)
            && let Some(hit) = self.parsed(i)
        {
            self.mark_used(i);
            return Some(f(&hit));
        }
        {
            let fresh = self.fresh.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(v) = fresh.get(key) {
                return Some(f(v));
            }
        }
        let scratch = self.scratch.lock().unwrap_or_else(PoisonError::into_inner);
        scratch.get(key).map(f)
    }

    /// Mark stored entry `i` used (written once: the flag's cache line is not bounced between
    /// threads).
    fn mark_used(&self, i: usize) {
        if let Some(used) = self.used.get(i)
            && !used.load(Ordering::Relaxed)
        {
            used.store(true, Ordering::Relaxed);
        }
    }

    /// Hold `value` under `key` for this run's lookups, not written (a stored entry of the
    /// key is not marked used by it).
    pub(super) fn put_scratch(&self, key: String, value: V) {
        let mut scratch = self.scratch.lock().unwrap_or_else(PoisonError::into_inner);
        scratch.insert(key, value);
    }

    /// `f` of the value stored under `key` as its text and the whole text it is in (`Ok`: what
    /// `f` reads may keep that, rather than copy its part), or of the value added under it
    /// (`Err`); a stored value is marked used when `f` takes it (`Some`: one it does not is a
    /// damaged one, a miss).
    pub(super) fn with_text<R>(
        &self,
        key: &str,
        mut f: impl FnMut(Result<(&[u8], &Arc<Vec<u8>>), &V>) -> Option<R>,
    ) -> Option<R> {
        if let Some(i) = self.find(key)
            && let Some(e) = self.stored.get(i)
            && let Some(whole) = self.texts.get(usize::from(e.value.text))
            && let Some(hit) = f(Ok((slot_bytes(&self.texts, e.value), whole)))
        {
            self.mark_used(i);
            return Some(hit);
        }
        let fresh = self.fresh.lock().unwrap_or_else(PoisonError::into_inner);
        fresh.get(key).and_then(|v| f(Err(v)))
    }

    pub(super) fn put(&self, key: String, value: V) {
        match self.find(&key) {
            Some(i) if self.parsed(i).as_ref() == Some(&value) => {
                self.used[i].store(true, Ordering::Relaxed);
            }
            _ => {
                let mut fresh = self.fresh.lock().unwrap_or_else(PoisonError::into_inner);
                fresh.insert(key, value);
            }
        }
    }

    /// Every lookup is over: keep what this run used and added (see the type's
    /// documentation). A memo that cannot be written only costs time.
    pub(super) fn finish(self) -> Finished {
        let fresh = self
            .fresh
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let is_used = |u: &AtomicBool| u.load(Ordering::Relaxed);
        let unused = self.used.iter().filter(|u| !is_used(u)).count();
        // Few entries unused and a short log: nothing new stays as it is, new entries are
        // appended (the file and its log stay a little larger than this run needs).
        let total = self.stored.len() + fresh.len();
        let small = |n: usize| n * 4 <= total;
        if fresh.is_empty() && (unused == 0 || small(unused)) {
            return Finished::Unchanged;
        }
        if !self.stored.is_empty()
            && small(unused)
            && small(self.logged + fresh.len())
            && append_lines(&self.log, &fresh).is_ok()
        {
            return Finished::Appended;
        }
        // A value stored and used is written back as it was read (a key is never both
        // stored and fresh).
        let kept: Vec<(&str, &str)> = self
            .stored
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| is_used(used))
            .map(|(e, _)| {
                (
                    slot_text(&self.texts, e.key),
                    slot_text(&self.texts, e.value),
                )
            })
            .filter(|(k, _)| !fresh.contains_key(*k))
            .collect();
        if write_lines(&self.path, self.format, &fresh, &kept).is_ok() {
            // Its entries are in the file now.
            let _ = std::fs::remove_file(&self.log);
        }
        Finished::Written
    }
}

/// `f` on a rayon pool of its own, for a thread outside rayon's global pool whose result a
/// task on that pool waits for: work that needed the global pool's threads could wait for them
/// while they all wait for it (a deadlock the tests met). Run here, on the global pool, only
/// when no pool can be made.
pub(crate) fn on_own_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .build()
    {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

/// Append entries to a memo's log, one line each.
fn append_lines<V: Serialize>(log: &Path, entries: &MemoMap<V>) -> std::io::Result<()> {
    let mut f = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)?;
    let mut line = Vec::new();
    for e in entries {
        line.clear();
        serde_json::to_writer(&mut line, &e)?;
        line.push(b'\n');
        // One write per line: appends by two runs do not interleave within a line.
        f.write_all(&line)?;
    }
    Ok(())
}

/// Write a memo file whole (beside, then renamed over it): `entries`, then `kept` (keys and
/// their values' JSON text).
fn write_lines<V: Serialize>(
    path: &Path,
    format: &str,
    entries: &MemoMap<V>,
    kept: &[(&str, &str)],
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("memo");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        serde_json::to_writer(
            &mut f,
            &MemoFileHead {
                format: format.to_owned(),
            },
        )?;
        for e in entries {
            f.write_all(b"\n")?;
            serde_json::to_writer(&mut f, &e)?;
        }
        for (key, value) in kept {
            f.write_all(b"\n[")?;
            serde_json::to_writer(&mut f, key)?;
            f.write_all(b",")?;
            f.write_all(value.as_bytes())?;
            f.write_all(b"]")?;
        }
        f.write_all(b"\n")?;
        f.flush()?;
    }
    std::fs::rename(&tmp, path)
}

/// A file of lines as the cache writes them (its indexes, revisions and memo): its first line,
/// and every other line parsed by `parse`, on every core (pieces of whole lines, one per task).
/// `None` unless every line parses and the file ends with a newline: a file is written whole or
/// not at all, so one cut short or damaged anywhere is not read.
pub(crate) fn parse_lines<'t, T: Send>(
    bytes: &'t [u8],
    parse: impl Fn(&'t str) -> Option<T> + Sync,
) -> Option<(&'t str, Vec<T>)> {
    use rayon::prelude::*;
    if !bytes.ends_with(b"\n") {
        return None;
    }
    let at = bytes.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&bytes[..at]).ok()?;
    let body = &bytes[at + 1..];
    // Each piece checked to be UTF-8 on its own core (a newline byte is never inside a
    // character, so the pieces are cut at character boundaries).
    // Each list made its size at once (a memo's lines are many: growing them by doubling
    // copied each and touched fresh memory each time).
    let parsed: Vec<Vec<T>> = pieces(body)
        .par_iter()
        .map(|piece| {
            let text = std::str::from_utf8(piece).ok()?;
            let mut lines = Vec::with_capacity(piece.iter().filter(|&&b| b == b'\n').count());
            for line in text.split_terminator('\n') {
                lines.push(parse(line)?);
            }
            Some(lines)
        })
        .collect::<Option<_>>()?;
    let mut all = Vec::with_capacity(parsed.iter().map(Vec::len).sum());
    for lines in parsed {
        all.extend(lines);
    }
    Some((head, all))
}

/// `body` (whole lines, each ending with a newline) cut after newlines into a few pieces per
/// core.
fn pieces(body: &[u8]) -> Vec<&[u8]> {
    let want = rayon::current_num_threads().max(1) * 4;
    let mut pieces = Vec::with_capacity(want);
    let mut rest = body;
    while !rest.is_empty() {
        let from = (body.len() / want).max(1).min(rest.len());
        let at = rest[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |n| from + n + 1);
        let (piece, tail) = rest.split_at(at);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// Every line of `body` (whole lines, each ending with a newline) parsed by `parse`, on every
/// core (pieces of whole lines, one per task), in order; `None` unless every line parses.
pub(crate) fn parse_body<'t, T: Send>(
    body: &'t str,
    parse: impl Fn(&'t str) -> Option<T> + Sync,
) -> Option<Vec<T>> {
    use rayon::prelude::*;
    // Cut after newlines (a byte search: any cut there is a character boundary).
    let mut at = 0;
    let pieces: Vec<&str> = pieces(body.as_bytes())
        .into_iter()
        .map(|p| {
            let piece = &body[at..at + p.len()];
            at += p.len();
            piece
        })
        .collect();
    let parsed: Vec<Vec<T>> = pieces
        .par_iter()
        .map(|piece| piece.split_terminator('\n').map(&parse).collect())
        .collect::<Option<_>>()?;
    Some(parsed.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memo's values are parsed when looked up: keys of any text (escapes included) read
    /// back, a value damaged in the file is a miss for its key only, the log's entries are
    /// read (a line cut short skipped), and values written back unchanged are the text read.
    #[test]
    fn a_memo_reads_its_values_when_looked_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("memo.json");
        let value = |i: usize| vec![format!("v{i}"), "é\"\\\n".repeat(i % 3)];
        let keys: Vec<String> = (0..40)
            .map(|i| match i % 4 {
                0 => format!("plain {i}"),
                1 => format!("quote \" {i}"),
                2 => format!("back \\ slash {i}"),
                _ => format!("line \n é {i}"),
            })
            .collect();
        let memo = MemoFile::<Vec<String>>::read(path.clone(), "test-v1");
        for (i, k) in keys.iter().enumerate() {
            memo.put(k.clone(), value(i));
        }
        assert_eq!(memo.finish(), Finished::Written);
        let get = |m: &MemoFile<Vec<String>>, k: &str| m.with(k, Clone::clone);
        let memo = MemoFile::<Vec<String>>::read(path.clone(), "test-v1");
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(get(&memo, k), Some(value(i)), "{k:?}");
        }
        assert_eq!(get(&memo, "absent"), None);
        // Another format: nothing.
        assert_eq!(
            get(&MemoFile::read(path.clone(), "test-v2"), &keys[0]),
            None
        );
        // One value damaged in the file (still a line of the right form): a miss for it.
        let text = std::fs::read_to_string(&path).expect("memo");
        let damaged = text.replacen("[\"v5\",", "[\"v5\",{", 1);
        assert_ne!(damaged, text);
        std::fs::write(&path, &damaged).expect("write");
        let memo = MemoFile::<Vec<String>>::read(path.clone(), "test-v1");
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(get(&memo, k), (i != 5).then(|| value(i)), "{k:?}");
        }
        drop(memo);
        std::fs::write(&path, &text).expect("write");
        // A few added: appended to the log (one line cut short after them), read back.
        let memo = MemoFile::<Vec<String>>::read(path.clone(), "test-v1");
        for k in &keys {
            get(&memo, k);
        }
        memo.put("new \" one".to_owned(), value(7));
        assert_eq!(memo.finish(), Finished::Appended);
        let log = path.with_extension("log");
        let mut f = std::fs::File::options()
            .append(true)
            .open(&log)
            .expect("log");
        f.write_all(b"[\"cut\",[\"v").expect("append");
        drop(f);
        let memo = MemoFile::<Vec<String>>::read(path.clone(), "test-v1");
        assert_eq!(get(&memo, "new \" one"), Some(value(7)));
        assert_eq!(get(&memo, "cut"), None);
        // Most unused: written again with what was used, as it was read, and the new one.
        get(&memo, &keys[2]);
        memo.put("another".to_owned(), value(8));
        assert_eq!(memo.finish(), Finished::Written);
        assert!(!log.exists());
        let written = std::fs::read_to_string(&path).expect("memo");
        let line = |k: &str, v: &Vec<String>| serde_json::to_string(&(k, v)).expect("json");
        assert!(written.contains(&line(&keys[2], &value(2))), "{written}");
        let memo = MemoFile::<Vec<String>>::read(path, "test-v1");
        assert_eq!(get(&memo, &keys[2]), Some(value(2)));
        assert_eq!(get(&memo, "another"), Some(value(8)));
        assert_eq!(get(&memo, &keys[0]), None, "not used: not kept");
    }

    #[test]
    fn lines_are_read_in_pieces_cut_only_after_a_newline() {
        // Lines of several-byte characters, of every length around the pieces' size.
        let lines: Vec<String> = (0..300).map(|i| "é€😀".repeat(i % 7)).collect();
        let text = format!("head\n{}\n", lines.join("\n"));
        let (head, read) = parse_lines(text.as_bytes(), |l| Some(l.to_owned())).expect("reads");
        assert_eq!((head, read), ("head", lines));
        assert_eq!(parse_lines(b"head\n", Some), Some(("head", Vec::new())));
        // Cut short, not UTF-8, or a line refused: nothing.
        assert_eq!(parse_lines(&text.as_bytes()[..text.len() - 1], Some), None);
        assert_eq!(parse_lines(b"head\n\xff\n", Some), None);
        assert_eq!(
            parse_lines(b"head\na\nb\n", |l| (l == "a").then_some(())),
            None
        );
    }
}
