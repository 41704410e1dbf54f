# Images are pinned: a tag other than `latest`, or a digest.
package plinth_defaults.latest_tag

import data.plinth_defaults.lib

deny_latest_tag contains msg if {
	input.kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "Rollout", "InferenceService", "Project", "Platform", "ModelRollout"}
	some image in lib.images(input)
	floating(image)
	msg := sprintf("image `%s` of %s `%s` floats; pin a version tag or a digest", [image, input.kind, input.metadata.name])
}

floating(image) if endswith(image, ":latest")

floating(image) if {
	not contains(image, "@")
	parts := split(image, "/")
	not contains(parts[count(parts) - 1], ":")
}
