# Model rollouts in projects on production clusters move traffic progressively: canary,
# blue-green or shadow, never a direct replacement.
package plinth_defaults.production_rollouts

import data.plinth_defaults.lib

deny_production_rollout_strategy contains {"msg": msg, "location": {"field": "spec"}} if {
	input.kind == "ModelRollout"
	lib.is_spec(input)
	lib.project_of(input).production
	not input.spec.traffic
	msg := sprintf("model rollout `%s` runs on a production cluster and must use a `canary`, `blueGreen` or `shadow` strategy (`spec.traffic`)", [input.metadata.name])
}
