//! How a unit's result is kept in a pack ([`super::UnitPack`]): a *header* — what the stages
//! after lowering read of every unit (diagnostics, origins, and per object its key, hashes and
//! the length of its text) — then the *body*, the objects' texts one after another. Each part
//! has its own checksum in the pack's index, so a unit is read by its header alone and its
//! body only when one of its objects is ([`crate::output::Body`]): a one-file change reuses
//! tens of thousands of units and reads the texts of a few.
//!
//! The header is binary (read for every unit a compile reuses): a flag (the body holds the
//! approval annotation), the diagnostics and the origins as JSON (few, usually none and one),
//! then per object `apiVersion`, `kind`, namespace (a flag, then the string), name, origin
//! (its number), `plinth.dev/spec-hash`, sha256 and the length of its text. A string is its
//! length (`u32`, little-endian) and its bytes.

use std::sync::Arc;

use crate::lower::units::UnitOutput;
use crate::output::{Body, Manifest, Obj, ObjectKey, Origin};

/// A unit's result as stored: the header and the body, one after the other in `bytes`.
pub(super) struct Encoded {
    pub bytes: Vec<u8>,
    /// Where the body starts.
    pub head: usize,
}

/// A unit's result in its stored form (`None` when it cannot be serialised: it is then only not
/// kept).
pub(super) fn encode(out: &UnitOutput) -> Option<Encoded> {
    let texts: Vec<std::borrow::Cow<'_, str>> =
        out.objects.iter().map(|m| m.object.text()).collect();
    let mut origins: Vec<&Origin> = Vec::new();
    let mut numbers: std::collections::BTreeMap<&Origin, u32> = Default::default();
    let body_len: usize = texts.iter().map(|t| t.len()).sum();
    let mut head = Vec::with_capacity(64 + out.objects.len() * 200);
    let approves = texts
        .iter()
        .any(|t| t.contains(crate::output::APPROVE_ANNOTATION));
    head.push(u8::from(approves));
    json(&mut head, &out.diagnostics)?;
    let mut objects = Vec::with_capacity(out.objects.len() * 200);
    put_u32(&mut objects, u32::try_from(out.objects.len()).ok()?);
    for (m, text) in out.objects.iter().zip(&texts) {
        let origin = *numbers.entry(&m.origin).or_insert_with(|| {
            origins.push(&m.origin);
            u32::try_from(origins.len() - 1).unwrap_or(u32::MAX)
        });
        put_str(&mut objects, &m.key.api_version)?;
        put_str(&mut objects, &m.key.kind)?;
        match &m.key.namespace {
            Some(ns) => {
                objects.push(1);
                put_str(&mut objects, ns)?;
            }
            None => objects.push(0),
        }
        put_str(&mut objects, &m.key.name)?;
        put_u32(&mut objects, origin);
        put_str(&mut objects, &m.hash)?;
        put_str(&mut objects, m.object.sha())?;
        put_u32(&mut objects, u32::try_from(text.len()).ok()?);
    }
    json(&mut head, &origins)?;
    head.extend_from_slice(&objects);
    let at = head.len();
    let mut bytes = head;
    bytes.reserve_exact(body_len);
    for t in &texts {
        bytes.extend_from_slice(t.as_bytes());
    }
    Some(Encoded { bytes, head: at })
}

/// A unit's result from its header; its objects' texts are parts of `body` (read when first
/// asked for). `None` when the header is not one this writes or its texts do not make up a
/// body of `body_len` bytes.
pub(super) fn decode(
    head: &[u8],
    body_len: u64,
    body: impl FnOnce(bool) -> Body,
) -> Option<UnitOutput> {
    let mut r = Reader(head);
    let approves = match r.byte()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let diagnostics = serde_json::from_slice(r.bytes()?).ok()?;
    let origins: Vec<Origin> = serde_json::from_slice(r.bytes()?).ok()?;
    let n = usize::try_from(r.u32()?).ok()?;
    let body = Arc::new(body(approves));
    // Bounded by the header's length (an object takes more than a byte of it).
    let mut objects = Vec::with_capacity(n.min(head.len()));
    let mut at = 0usize;
    for _ in 0..n {
        let api_version = r.string()?;
        let kind = r.string()?;
        let namespace = match r.byte()? {
            0 => None,
            1 => Some(r.string()?),
            _ => return None,
        };
        let name = r.string()?;
        let origin = origins.get(usize::try_from(r.u32()?).ok()?)?.clone();
        let hash = r.string()?;
        let sha = r.string()?;
        let len = usize::try_from(r.u32()?).ok()?;
        let range = at..at.checked_add(len)?;
        at = range.end;
        objects.push(Manifest {
            key: ObjectKey {
                api_version,
                kind,
                namespace,
                name,
            },
            object: Obj::from_shared(&body, range, sha),
            origin,
            hash,
        });
    }
    // The texts make up the body exactly, and nothing follows the objects.
    if !r.0.is_empty() || u64::try_from(at).ok()? != body_len {
        return None;
    }
    Some(UnitOutput {
        objects,
        diagnostics,
    })
}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Option<()> {
    put_u32(out, u32::try_from(s.len()).ok()?);
    out.extend_from_slice(s.as_bytes());
    Some(())
}

fn json(out: &mut Vec<u8>, v: &impl serde::Serialize) -> Option<()> {
    let bytes = serde_json::to_vec(v).ok()?;
    put_u32(out, u32::try_from(bytes.len()).ok()?);
    out.extend_from_slice(&bytes);
    Some(())
}

/// Reads a header from its start; every read is bounds-checked (`None` past its end).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = b;
        Some(a)
    }
    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        std::str::from_utf8(self.bytes()?).ok().map(str::to_owned)
    }
}

/// A unit of two objects, the second carrying the approval annotation when `approve` (tests).
#[cfg(test)]
pub(super) fn sample(approve: bool) -> UnitOutput {
    use serde_json::json;
    let origin = Origin {
        file: Arc::from("projects/a.yaml"),
        line: 3,
        kind: crate::model::Kind::Project,
        name: "a".into(),
    };
    let annotations = if approve {
        json!({crate::output::APPROVE_ANNOTATION: "x"})
    } else {
        json!({"a": "b"})
    };
    let objects = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "namespace": "a", "annotations": annotations}}),
    ]
    .into_iter()
    .map(|v| Manifest {
        key: ObjectKey::of(&v),
        object: Obj::from(v),
        origin: origin.clone(),
        hash: "h".into(),
    })
    .collect();
    UnitOutput {
        objects,
        diagnostics: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> UnitOutput {
        sample(true)
    }

    #[test]
    fn a_unit_reads_back_with_its_texts_read_when_asked_for() {
        let u = unit();
        let e = encode(&u).expect("encodes");
        let (head, body) = e.bytes.split_at(e.head);
        let body_text = String::from_utf8(body.to_vec()).expect("utf-8");
        let back = decode(head, body.len() as u64, |approves| {
            assert!(approves, "one object carries the annotation");
            Body::ready(body_text)
        })
        .expect("decodes");
        assert_eq!(back.objects.len(), 2);
        for (a, b) in u.objects.iter().zip(&back.objects) {
            assert_eq!(a.key, b.key);
            assert_eq!(a.hash, b.hash);
            assert_eq!(a.origin, b.origin);
            assert_eq!(a.object.sha(), b.object.sha());
            assert_eq!(*a.object, *b.object);
        }
    }

    #[test]
    fn a_header_cut_short_or_with_other_lengths_is_refused() {
        let e = encode(&unit()).expect("encodes");
        let (head, body) = e.bytes.split_at(e.head);
        let ready = |_| Body::ready(String::from_utf8(body.to_vec()).unwrap_or_default());
        for cut in 0..head.len() {
            assert!(
                decode(&head[..cut], body.len() as u64, ready).is_none(),
                "{cut}"
            );
        }
        assert!(decode(head, body.len() as u64 + 1, ready).is_none());
        let mut longer = head.to_vec();
        longer.push(0);
        assert!(decode(&longer, body.len() as u64, ready).is_none());
    }
}
