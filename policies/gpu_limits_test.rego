package plinth_defaults.gpu_limits

gpu_pod(resources) := {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": resources}]}}

test_differing_gpu_limit_is_denied if {
	count(deny_gpu_requests_differ) == 1 with input as gpu_pod({"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "1"}})
	count(deny_gpu_requests_differ) == 1 with input as gpu_pod({"requests": {"nvidia.com/mig-1g.10gb": "1"}})
}

test_equal_gpu_limit_passes if {
	count(deny_gpu_requests_differ) == 0 with input as gpu_pod({"requests": {"nvidia.com/gpu": "2", "cpu": "1"}, "limits": {"nvidia.com/gpu": "2"}})
}
