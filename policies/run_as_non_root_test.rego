package plinth_defaults.run_as_non_root

test_root_is_warned if {
	count(warn_run_as_root) == 1 with input as {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
}

test_pod_level_non_root_passes if {
	count(warn_run_as_root) == 0 with input as {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "c"}]}}
}

test_container_level_non_root_passes if {
	count(warn_run_as_root) == 0 with input as {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "securityContext": {"runAsNonRoot": true}}]}}
}
