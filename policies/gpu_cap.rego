# GPU caps: a project may hold at most `maxGpusPerProject` GPUs (default 16) across pools, and
# at most `gpuCapsByModel[<model>]` GPUs of one GPU model, unless its Project carries the
# annotation `plinth.dev/gpu-cap-approval` (a ticket reference).
package plinth_defaults.gpu_cap

import data.plinth_defaults.lib

gpu_cap_approved(doc) if doc.metadata.annotations["plinth.dev/gpu-cap-approval"]

deny_gpu_cap contains {"msg": msg, "location": {"field": "metadata.name"}} if {
	input.kind == "Project"
	lib.is_spec(input)
	not gpu_cap_approved(input)
	project := lib.project_of(input)
	cap := object.get(data.plinth.parameters, "maxGpusPerProject", 16)
	project.gpuTotal > cap
	msg := sprintf("project `%s` is allocated %d GPUs, over the cap of %d; add the annotation `plinth.dev/gpu-cap-approval` with the approval ticket", [input.metadata.name, project.gpuTotal, cap])
}

deny_gpu_model_cap contains {"msg": msg, "location": {"field": "metadata.name"}} if {
	input.kind == "Project"
	lib.is_spec(input)
	not gpu_cap_approved(input)
	project := lib.project_of(input)
	caps := object.get(data.plinth.parameters, "gpuCapsByModel", {})
	some model, cap in caps
	total := sum([a.gpu | some a in project.allocations; a.model == model])
	total > cap
	msg := sprintf("project `%s` is allocated %d `%s` GPUs, over the cap of %d; add the annotation `plinth.dev/gpu-cap-approval` with the approval ticket", [input.metadata.name, total, model, cap])
}
