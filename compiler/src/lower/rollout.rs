//! ModelRollout → KServe InferenceService, or Deployment + Service + HPA (+ Argo Rollout and
//! AnalysisTemplate), and the endpoint's NetworkPolicy.

use super::{Ctx, Sink};
use crate::model::{ModelRolloutSpec, Object};

pub fn lower(_cx: &Ctx<'_>, _r: &Object<ModelRolloutSpec>, _sink: &mut Sink<'_>) {}
