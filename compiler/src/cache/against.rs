//! Against: an entry written as the difference from the entry of the revision it was compiled
//! against.
//!
//! A plan's head is compiled against its base's units ([`crate::lower::delta`]) and differs
//! from it in a few units and spec files; written whole, its entry repeats the base's unit keys,
//! file digests, GPU capacity, clusters and unit kinds (1.2 MB at 3,000 projects). Written
//! *against* the base — whose entry this process read, whole itself — it holds the base's key,
//! by position the unit keys and file digests that differ, and only those of the capacity,
//! clusters and kinds that differ; the rest is taken from the base's entry when read. A base
//! that is gone (evicted, deleted, damaged) makes the entry a miss, as a unit gone from the
//! unit store does; an entry is only ever written against a whole one, so reading one reads at
//! most two files.

use serde::{Deserialize, Serialize};

/// Digests, by position.
type Digests = [[u8; 32]];

/// What an entry written against another holds instead of what it shares with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Against {
    /// The key of the entry it was written against.
    pub key: String,
    /// How many units it has, and those whose key differs from the other's unit of the same
    /// number (or that the other does not have).
    pub units: u32,
    pub changed_units: Vec<(u32, String)>,
    /// How many spec files and templates its revision has, and those whose digest differs from
    /// the other's file at the same position (hex).
    pub files: u32,
    pub changed_files: Vec<(u32, String)>,
    /// How many projects' policy-data digests it has, and those that differ from the other's
    /// at the same position (hex), when both have them; else its own are written whole, if
    /// it has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<(u32, Vec<(u32, String)>)>,
}

impl Against {
    /// `units` and `digests` against the other entry's (`key`); `None` when a count does not
    /// fit.
    pub(super) fn of(
        key: &str,
        (base_units, units): (&[String], &[String]),
        (base_digests, digests): (&[[u8; 32]], &[[u8; 32]]),
        (base_projects, projects): (Option<&Digests>, Option<&Digests>),
    ) -> Option<Against> {
        let hex = |d: &[u8; 32]| crate::output::hex(d);
        Some(Against {
            key: key.to_owned(),
            units: u32::try_from(units.len()).ok()?,
            changed_units: changed(base_units, units, String::clone)?,
            files: u32::try_from(digests.len()).ok()?,
            changed_files: changed(base_digests, digests, hex)?,
            projects: match (base_projects, projects) {
                (Some(was), Some(now)) => {
                    Some((u32::try_from(now.len()).ok()?, changed(was, now, hex)?))
                }
                _ => None,
            },
        })
    }

    /// Its projects' policy-data digests, when written against the other's (`base`); `None`
    /// when they do not fit it.
    pub(super) fn projects(&self, base: Option<&[[u8; 32]]>) -> Option<Vec<[u8; 32]>> {
        let (n, changed) = self.projects.as_ref()?;
        patched(base?, *n, unhexed(changed)?)
    }

    /// Its units: the other's (`base`), with those it names.
    pub(super) fn units(&self, base: &[String]) -> Option<Vec<String>> {
        patched(base, self.units, self.changed_units.iter().cloned())
    }

    /// Its files' digests: the other's (`base`), with those it names.
    pub(super) fn digests(&self, base: &[[u8; 32]]) -> Option<Vec<[u8; 32]>> {
        patched(base, self.files, unhexed(&self.changed_files)?)
    }
}

/// Positioned digests in hex, read.
fn unhexed(changed: &[(u32, String)]) -> Option<Vec<(u32, [u8; 32])>> {
    changed
        .iter()
        .map(|(i, hex)| Some((*i, super::index::key_bytes(hex)?)))
        .collect()
}

/// The items of `now` that differ from `was`'s at the same position (or that `was` does not
/// have), with their positions.
fn changed<T: PartialEq, W>(
    was: &[T],
    now: &[T],
    write: impl Fn(&T) -> W,
) -> Option<Vec<(u32, W)>> {
    now.iter()
        .enumerate()
        .filter(|&(i, x)| was.get(i) != Some(x))
        .map(|(i, x)| Some((u32::try_from(i).ok()?, write(x))))
        .collect()
}

/// A list of `n` items: `base`'s, with those at the positions `changed` names replaced;
/// `None` when a position is out of range, or one past the base's end is not given.
fn patched<T: Clone>(
    base: &[T],
    n: u32,
    changed: impl IntoIterator<Item = (u32, T)>,
) -> Option<Vec<T>> {
    let n = usize::try_from(n).ok()?;
    let mut out: Vec<Option<T>> = base.iter().take(n).cloned().map(Some).collect();
    out.resize(n, None);
    for (i, item) in changed {
        *out.get_mut(usize::try_from(i).ok()?)? = Some(item);
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_patched_at_its_positions_and_to_its_length() {
        let base = ["a", "b", "c"].map(String::from);
        let p =
            |n, c: &[(u32, &str)]| patched(&base, n, c.iter().map(|(i, s)| (*i, s.to_string())));
        assert_eq!(p(3, &[]), Some(base.to_vec()));
        assert_eq!(
            p(3, &[(1, "x")]),
            Some(vec!["a".into(), "x".into(), "c".into()])
        );
        assert_eq!(p(2, &[]), Some(vec!["a".into(), "b".into()]));
        assert_eq!(
            p(4, &[(3, "d")]),
            Some(vec!["a".into(), "b".into(), "c".into(), "d".into()])
        );
        // Past the base's end and not given, or a position past the length: damaged.
        assert_eq!(p(4, &[]), None);
        assert_eq!(p(2, &[(2, "x")]), None);
    }
}
