package plinth_defaults.resource_requests

deploy(resources) := {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1", "resources": resources}]}}}}

test_missing_requests_are_denied if {
	count(deny_missing_requests) == 2 with input as deploy({})
	count(deny_missing_requests) == 1 with input as deploy({"requests": {"cpu": "1"}})
}

test_full_requests_pass if {
	count(deny_missing_requests) == 0 with input as deploy({"requests": {"cpu": "1", "memory": "1Gi"}})
}

test_kserve_model_container_is_checked if {
	isvc := {"kind": "InferenceService", "metadata": {"name": "m"}, "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}}}
	count(deny_missing_requests) == 2 with input as isvc
}
