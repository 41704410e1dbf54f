# No privileged containers, privilege escalation or host namespaces.
package plinth_defaults.privileged

import data.plinth_defaults.lib

deny_privileged contains msg if {
	input.kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "Rollout", "InferenceService"}
	some c in lib.containers(input)
	c.securityContext.privileged == true
	msg := sprintf("container `%s` of %s `%s` is privileged", [c.name, input.kind, input.metadata.name])
}

deny_privilege_escalation contains msg if {
	input.kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "Rollout", "InferenceService"}
	some c in lib.containers(input)
	c.securityContext.allowPrivilegeEscalation == true
	msg := sprintf("container `%s` of %s `%s` allows privilege escalation", [c.name, input.kind, input.metadata.name])
}

deny_host_namespaces contains msg if {
	input.kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "Rollout", "InferenceService"}
	spec := lib.pod_spec(input)
	some field in ["hostNetwork", "hostPID", "hostIPC"]
	spec[field] == true
	msg := sprintf("%s `%s` uses the host's namespaces (`%s`)", [input.kind, input.metadata.name, field])
}
