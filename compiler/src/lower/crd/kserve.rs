//! KServe (`serving.kserve.io`): InferenceService.

/// The kinds of this module, for [`super::registry`].
pub(super) fn register() -> Vec<super::Registered> {
    Vec::new()
}
