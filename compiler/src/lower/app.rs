//! App → the objects its template renders (see issue: third-party apps through templates).

use super::{Ctx, Sink};
use crate::model::{AppSpec, Object};

pub fn lower(_cx: &Ctx<'_>, _a: &Object<AppSpec>, _sink: &mut Sink<'_>) {}
