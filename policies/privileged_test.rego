package plinth_defaults.privileged

pod_with(container, spec) := {"kind": "Pod", "metadata": {"name": "p"}, "spec": object.union({"containers": [container]}, spec)}

test_privileged_is_denied if {
	count(deny_privileged) == 1 with input as pod_with({"name": "c", "securityContext": {"privileged": true}}, {})
	count(deny_privileged) == 0 with input as pod_with({"name": "c"}, {})
}

test_escalation_is_denied if {
	count(deny_privilege_escalation) == 1 with input as pod_with({"name": "c", "securityContext": {"allowPrivilegeEscalation": true}}, {})
}

test_host_network_is_denied if {
	count(deny_host_namespaces) == 1 with input as pod_with({"name": "c"}, {"hostNetwork": true})
	count(deny_host_namespaces) == 0 with input as pod_with({"name": "c"}, {})
}
