//! Argo Rollouts (`argoproj.io/v1alpha1`): Rollout, AnalysisTemplate.

/// The kinds of this module, for [`super::registry`].
pub(super) fn register() -> Vec<super::Registered> {
    Vec::new()
}
