//! What a revision's check found, kept with the revision ([`Record`]) so that a revision
//! checked against it re-runs only the rules an edit can reach ([`super::check_against`]).

use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, Diagnostics};
use crate::model::Kind;

/// A revision's check: the diagnostics of the rules over the whole index, and each spec's
/// own rules' (the specs that found none are not listed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The Platform's rule and the instance-type and priority-class names', in order.
    pub whole: Vec<Diagnostic>,
    /// The GPU capacity rollouts ask for (their pools and projects).
    pub capacity: Vec<Diagnostic>,
    /// Per spec with any, its own rules' diagnostics, in order; sorted by kind and name.
    pub specs: Vec<(Kind, String, Vec<Diagnostic>)>,
}

impl Record {
    /// What the rules of the spec `kind`/`name` found.
    pub fn of(&self, kind: Kind, name: &str) -> &[Diagnostic] {
        self.specs
            .binary_search_by(|(k, n, _)| (*k, n.as_str()).cmp(&(kind, name)))
            .map_or(&[], |i| &self.specs[i].2)
    }

    /// Keep what the rules of each spec of `kind` found (in name order, after the kinds kept
    /// before it), and report it in `d`.
    pub fn keep(&mut self, kind: Kind, found: Vec<(&str, Vec<Diagnostic>)>, d: &mut Diagnostics) {
        for (name, found) in found {
            if found.is_empty() {
                continue;
            }
            d.extend(found.iter().cloned());
            self.specs.push((kind, name.to_owned(), found));
        }
    }
}
