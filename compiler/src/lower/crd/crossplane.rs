//! Crossplane providers (AWS, GCP, Azure): buckets and IAM.

/// The kinds of this module, for [`super::registry`].
pub(super) fn register() -> Vec<super::Registered> {
    Vec::new()
}
