//! A unit pack's index (`<pack>.idx`): where each unit's record is in its pack, searched in
//! place. A compile looks up a few tens of thousands of units at scale; the index is read as
//! one buffer and checked whole (its CRC-32, key order, every record within its pack), never
//! decoded into a map — decoding it a line and a string per unit had cost a one-file plan at
//! 10,000 projects about 0.1 s of CPU.
//!
//! The file: the format line, then one fixed-width record per unit in strictly increasing
//! key order — the key (a sha256, 32 bytes), then [`Place`]'s offset, header length, header
//! CRC-32, body length and body CRC-32, little-endian — then the CRC-32 of everything before
//! it (4 bytes, little-endian). Damage anywhere refuses the whole index.

/// The first line of a pack's index.
pub(super) const FORMAT: &str = "plinth-unit-index-v4";

/// Where a unit's record is in its pack ([`super::record`]): its header at `offset`, its body right
/// after, each with the CRC-32 of its bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Place {
    /// The pack's number in `UnitPack::packs` (0 in a pack's own index).
    pub(super) pack: usize,
    pub(super) offset: u64,
    pub(super) head: u64,
    pub(super) head_crc: u32,
    pub(super) body: u64,
    pub(super) body_crc: u32,
}

impl Place {
    pub(super) fn len(&self) -> u64 {
        self.head + self.body
    }
}

/// Bytes per record: key, offset, header length and CRC, body length and CRC.
const RECORD: usize = 32 + 8 + 8 + 4 + 8 + 4;

/// A unit's key as its 32 bytes (`None` unless it is a sha256 in lowercase or uppercase hex:
/// a key read from anywhere names nothing else).
pub(super) fn key_bytes(key: &str) -> Option<[u8; 32]> {
    let hex = key.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The index file of `entries` (in any order; of a key given twice, the first is kept; a key
/// that is not a sha256 in hex is left out: it could never be looked up).
pub(super) fn encode(entries: &[(String, Place)]) -> Vec<u8> {
    let mut records: Vec<([u8; 32], &Place)> = entries
        .iter()
        .filter_map(|(k, p)| Some((key_bytes(k)?, p)))
        .collect();
    // Stable: of equal keys the first stays first, and `dedup` keeps it.
    records.sort_by_key(|r| r.0);
    records.dedup_by(|b, a| a.0 == b.0);
    let mut out = Vec::with_capacity(FORMAT.len() + 1 + records.len() * RECORD + 4);
    out.extend_from_slice(FORMAT.as_bytes());
    out.push(b'\n');
    for (key, p) in records {
        out.extend_from_slice(&key);
        out.extend_from_slice(&p.offset.to_le_bytes());
        out.extend_from_slice(&p.head.to_le_bytes());
        out.extend_from_slice(&p.head_crc.to_le_bytes());
        out.extend_from_slice(&p.body.to_le_bytes());
        out.extend_from_slice(&p.body_crc.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A pack's index as read: its records, and where the keys of each first `bits` bits begin.
pub(super) struct PackIndex {
    records: Vec<u8>,
    /// `fan[p]..fan[p + 1]`: the records whose key begins with the `bits` bits `p`.
    fan: Vec<u32>,
    /// About one record a bucket (8 to 16 bits): a small index does not make (and touch) the
    /// 65,537 buckets of a large one.
    bits: u32,
}

impl PackIndex {
    /// The index in `bytes`, when it is one of this format and undamaged: its checksum
    /// holds, its keys are in strictly increasing order and, when `pack_len` is known, every
    /// record lies within its pack (a damaged length could otherwise name any size).
    pub(super) fn decode(mut bytes: Vec<u8>, pack_len: Option<u64>) -> Option<PackIndex> {
        let head = FORMAT.len() + 1;
        if bytes.len() < head + 4
            || !bytes.starts_with(FORMAT.as_bytes())
            || bytes[head - 1] != b'\n'
        {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return None;
        }
        bytes.truncate(bytes.len() - 4);
        bytes.drain(..head);
        if !bytes.len().is_multiple_of(RECORD) || bytes.len() / RECORD > u32::MAX as usize {
            return None;
        }
        let records = bytes.len() / RECORD;
        let index = PackIndex {
            fan: Vec::new(),
            records: bytes,
            bits: records.max(1).ilog2().clamp(8, 16),
        };
        let mut counts = vec![0u32; (1 << index.bits) + 1];
        let mut last: Option<&[u8]> = None;
        for i in 0..index.len() {
            let key = index.key(i);
            if last.is_some_and(|l| l >= key) {
                return None;
            }
            last = Some(key);
            if let Some(size) = pack_len {
                let p = index.place(i);
                let end = p.offset.checked_add(p.head)?.checked_add(p.body)?;
                if end > size {
                    return None;
                }
            }
            counts[prefix(key, index.bits) + 1] += 1;
        }
        for p in 1..counts.len() {
            counts[p] += counts[p - 1];
        }
        Some(PackIndex {
            fan: counts,
            ..index
        })
    }

    /// Units listed.
    pub(super) fn len(&self) -> usize {
        self.records.len() / RECORD
    }

    fn record(&self, i: usize) -> &[u8] {
        &self.records[i * RECORD..(i + 1) * RECORD]
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.record(i)[..32]
    }

    /// The keys listed, in order.
    pub(super) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.key(i))
    }

    fn place(&self, i: usize) -> Place {
        let r = &self.record(i)[32..];
        let u64_at = |at: usize| u64::from_le_bytes(r[at..at + 8].try_into().unwrap_or_default());
        let u32_at = |at: usize| u32::from_le_bytes(r[at..at + 4].try_into().unwrap_or_default());
        Place {
            pack: 0,
            offset: u64_at(0),
            head: u64_at(8),
            head_crc: u32_at(16),
            body: u64_at(20),
            body_crc: u32_at(28),
        }
    }

    /// Where the unit `key` is in this index's pack (`pack` 0).
    pub(super) fn find(&self, key: &[u8; 32]) -> Option<Place> {
        let p = prefix(key, self.bits);
        let (mut lo, mut hi) = (*self.fan.get(p)? as usize, *self.fan.get(p + 1)? as usize);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid).cmp(&key[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.place(mid)),
            }
        }
        None
    }
}

/// A key's first `bits` bits (at most 16), as the fan-out's bucket.
fn prefix(key: &[u8], bits: u32) -> usize {
    (usize::from(key[0]) << 8 | usize::from(key[1])) >> (16 - bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(offset: u64, head: u64, head_crc: u32, body: u64, body_crc: u32) -> Place {
        Place {
            pack: 0,
            offset,
            head,
            head_crc,
            body,
            body_crc,
        }
    }

    fn key(i: u32) -> String {
        use sha2::Digest;
        crate::output::hex(&sha2::Sha256::digest(i.to_le_bytes()))
    }

    #[test]
    fn every_key_is_found_where_it_was_written_and_no_other() {
        let entries: Vec<(String, Place)> = (0..3000u32)
            .map(|i| (key(i), place(u64::from(i) * 10, 4, i, 6, !i)))
            .collect();
        let index = PackIndex::decode(encode(&entries), Some(30_000)).expect("reads");
        assert_eq!(index.len(), entries.len());
        for (k, p) in &entries {
            assert_eq!(index.find(&key_bytes(k).expect("key")), Some(*p), "{k}");
        }
        for i in 3000..4000u32 {
            assert_eq!(index.find(&key_bytes(&key(i)).expect("key")), None);
        }
        // Uppercase hex names the same key; anything else names none.
        let upper = entries[7].0.to_uppercase();
        assert_eq!(key_bytes(&upper), key_bytes(&entries[7].0));
        for bad in [
            "",
            "../../etc/passwd",
            &"g".repeat(64),
            &"a".repeat(63),
            &"é".repeat(32),
        ] {
            assert_eq!(key_bytes(bad), None, "{bad:?}");
        }
        let empty = PackIndex::decode(encode(&[]), Some(0)).expect("reads");
        assert_eq!((empty.len(), empty.find(&[0; 32])), (0, None));
        // Every size's fan-out (8 to 16 bits, about a record a bucket) finds every key, the
        // first and last of the key space included.
        for n in [1u32, 2, 255, 256, 257, 4097, 70_000] {
            let mut entries: Vec<(String, Place)> = (0..n)
                .map(|i| (key(i), place(u64::from(i), 1, i, 0, 0)))
                .collect();
            entries.push(("0".repeat(64), place(0, 0, 0, 0, 0)));
            entries.push(("f".repeat(64), place(0, 0, 0, 0, 0)));
            let index = PackIndex::decode(encode(&entries), None).expect("reads");
            assert_eq!(index.fan.len(), (1 << index.bits) + 1, "{n}");
            assert!((8..=16).contains(&index.bits), "{n}");
            for (k, p) in &entries {
                assert_eq!(
                    index.find(&key_bytes(k).expect("key")),
                    Some(*p),
                    "{n}: {k}"
                );
            }
            assert_eq!(index.find(&key_bytes(&key(n)).expect("key")), None, "{n}");
        }
    }

    #[test]
    fn of_a_key_given_twice_the_first_is_kept() {
        let k = key(1);
        let entries = vec![
            (k.clone(), place(0, 1, 1, 1, 1)),
            (key(2), place(2, 1, 1, 1, 1)),
            (k.clone(), place(4, 1, 1, 1, 1)),
        ];
        let index = PackIndex::decode(encode(&entries), None).expect("reads");
        assert_eq!(index.len(), 2);
        assert_eq!(index.find(&key_bytes(&k).expect("key")), Some(entries[0].1));
    }

    /// Damage anywhere — a byte changed, the file cut short or extended, another format, keys
    /// out of order, a record past its pack's end — refuses the whole index.
    #[test]
    fn damage_anywhere_refuses_the_index() {
        let entries: Vec<(String, Place)> = (0..40u32)
            .map(|i| (key(i), place(u64::from(i) * 10, 4, i, 6, !i)))
            .collect();
        let bytes = encode(&entries);
        assert!(PackIndex::decode(bytes.clone(), Some(400)).is_some());
        for at in (0..bytes.len()).step_by(7) {
            let mut d = bytes.clone();
            d[at] ^= 0x10;
            assert!(PackIndex::decode(d, Some(400)).is_none(), "byte {at}");
        }
        for len in [0, 5, FORMAT.len() + 1, bytes.len() - 1] {
            assert!(
                PackIndex::decode(bytes[..len].to_vec(), None).is_none(),
                "{len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(PackIndex::decode(longer, None).is_none());
        let older = [
            b"plinth-unit-index-v3\n".as_slice(),
            &bytes[FORMAT.len() + 1..],
        ]
        .concat();
        assert!(PackIndex::decode(older, None).is_none());
        // Well-formed, checksum right, but out of order: written by hand, not by `encode`.
        let resum = |mut body: Vec<u8>| {
            body.truncate(body.len() - 4);
            let crc = crc32fast::hash(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        let head = FORMAT.len() + 1;
        let mut swapped = bytes.clone();
        let (a, b) = swapped[head..].split_at_mut(RECORD);
        a.swap_with_slice(&mut b[..RECORD]);
        assert!(PackIndex::decode(resum(swapped), None).is_none());
        // A record past its pack's end: refused when the pack's length is known.
        assert!(PackIndex::decode(bytes.clone(), Some(399)).is_none());
        assert!(PackIndex::decode(bytes, None).is_some());
    }
}
