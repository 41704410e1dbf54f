//! Dataset → per consuming project a PV/PVC pair, git-sync and env ConfigMaps; cloud buckets and
//! IAM grants through Crossplane.

use super::{Ctx, Sink};
use crate::model::{DatasetSpec, Object};

pub fn lower(_cx: &Ctx<'_>, _d: &Object<DatasetSpec>, _sink: &mut Sink<'_>) {}
