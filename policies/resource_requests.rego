# Every container states its CPU and memory requests, so quotas and schedulers can plan.
package plinth_defaults.resource_requests

import data.plinth_defaults.lib

deny_missing_requests contains msg if {
	input.kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "Rollout", "InferenceService"}
	some c in lib.containers(input)
	some resource in ["cpu", "memory"]
	not c.resources.requests[resource]
	msg := sprintf("container `%s` of %s `%s` has no `%s` request", [object.get(c, "name", "model"), input.kind, input.metadata.name, resource])
}
