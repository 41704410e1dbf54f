package plinth_defaults.gpu_cap

project := {"apiVersion": "plinth.dev/v1alpha1", "kind": "Project", "metadata": {"name": "er"}, "spec": {}}

resolved(total, allocations) := {"resolved": {"projects": {"er": {"gpuTotal": total, "allocations": allocations}}}, "parameters": {"maxGpusPerProject": 8, "gpuCapsByModel": {"H100": 4}}}

test_over_the_cap_is_denied if {
	count(deny_gpu_cap) == 1 with input as project with data.plinth as resolved(10, [])
}

test_at_the_cap_is_allowed if {
	count(deny_gpu_cap) == 0 with input as project with data.plinth as resolved(8, [])
}

test_approval_lifts_the_cap if {
	approved := object.union(project, {"metadata": {"name": "er", "annotations": {"plinth.dev/gpu-cap-approval": "CHG-1"}}})
	count(deny_gpu_cap) == 0 with input as approved with data.plinth as resolved(10, [])
}

test_model_cap if {
	count(deny_gpu_model_cap) == 1 with input as project with data.plinth as resolved(5, [{"model": "H100", "gpu": 5}])
	count(deny_gpu_model_cap) == 0 with input as project with data.plinth as resolved(5, [{"model": "A100", "gpu": 5}])
}
