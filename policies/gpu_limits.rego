# GPUs cannot be overcommitted: a container's GPU request equals its GPU limit.
package plinth_defaults.gpu_limits

import data.plinth_defaults.lib

gpu_resource(name) if endswith(name, "/gpu")

gpu_resource(name) if contains(name, "/mig-")

deny_gpu_requests_differ contains msg if {
	input.kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "Rollout", "InferenceService"}
	some c in lib.containers(input)
	some name, request in object.get(object.get(c, "resources", {}), "requests", {})
	gpu_resource(name)
	object.get(c.resources, ["limits", name], "none") != request
	msg := sprintf("container `%s` of %s `%s` requests %v of `%s` but its limit differs", [object.get(c, "name", "model"), input.kind, input.metadata.name, request, name])
}
