# Containers run as a non-root user (pod- or container-level `runAsNonRoot: true`).
package plinth_defaults.run_as_non_root

import data.plinth_defaults.lib

warn_run_as_root contains msg if {
	input.kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "Rollout", "InferenceService"}
	spec := lib.pod_spec(input)
	some c in object.get(spec, "containers", [])
	not c.securityContext.runAsNonRoot == true
	not spec.securityContext.runAsNonRoot == true
	msg := sprintf("container `%s` of %s `%s` may run as root; set `runAsNonRoot: true`", [c.name, input.kind, input.metadata.name])
}
