package plinth_defaults.production_rollouts

rollout(traffic) := object.union({"apiVersion": "plinth.dev/v1alpha1", "kind": "ModelRollout", "metadata": {"name": "m"}, "spec": {"project": "p"}}, traffic)

view(production) := {"resolved": {"projects": {"p": {"production": production}}}}

test_plain_rollout_in_production_is_denied if {
	count(deny_production_rollout_strategy) == 1 with input as rollout({}) with data.plinth as view(true)
}

test_canary_in_production_is_allowed if {
	count(deny_production_rollout_strategy) == 0 with input as rollout({"spec": {"project": "p", "traffic": {"strategy": "canary"}}}) with data.plinth as view(true)
}

test_plain_rollout_outside_production_is_allowed if {
	count(deny_production_rollout_strategy) == 0 with input as rollout({}) with data.plinth as view(false)
}
