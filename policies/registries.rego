# Images only from the registries in the Platform's `policies.parameters.allowedRegistries`
# (a list of prefixes such as `registry.example.org/`). No restriction when it is not set.
package plinth_defaults.registries

import data.plinth_defaults.lib

deny_image_registry contains msg if {
	input.kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "Rollout", "InferenceService", "Project", "Platform", "ModelRollout"}
	allowed := data.plinth.parameters.allowedRegistries
	some image in lib.images(input)
	not from_allowed(image, allowed)
	msg := sprintf("image `%s` of %s `%s` is not from an allowed registry (%s)", [image, input.kind, input.metadata.name, concat(", ", allowed)])
}

from_allowed(image, allowed) if {
	some prefix in allowed
	startswith(image, prefix)
}
