# Helpers shared by plinth's default policies: where pod specs, containers and images sit in
# the kinds plinth emits and in the specs.
package plinth_defaults.lib

workload_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Rollout"}

# The pod spec of an object, if it has one.
pod_spec(obj) := obj.spec.template.spec if obj.kind in workload_kinds

pod_spec(obj) := obj.spec.jobTemplate.spec.template.spec if obj.kind == "CronJob"

pod_spec(obj) := obj.spec if obj.kind == "Pod"

pod_spec(obj) := obj.spec.predictor if obj.kind == "InferenceService"

# Every container of an object (init containers and KServe's model container included).
containers(obj) := array.concat(
	array.concat(object.get(pod_spec(obj), "containers", []), object.get(pod_spec(obj), "initContainers", [])),
	model_container(obj),
)

model_container(obj) := [obj.spec.predictor.model] if {
	obj.kind == "InferenceService"
	obj.spec.predictor.model
} else := []

# Images named in specs: project and platform images, serving images.
spec_images(doc) := [img |
	some i in object.get(doc.spec, "images", [])
	some img in [i.url, object.get(i, "urlForGpu", i.url)]
] if doc.kind in {"Project", "Platform"}

spec_images(doc) := [doc.spec.model.image] if {
	doc.kind == "ModelRollout"
	doc.spec.model.image
}

# Every image of an input, spec or manifest.
images(doc) := {img | some img in spec_images(doc)} | {c.image | some c in containers(doc); c.image}

# The resolved view of the project a spec or object belongs to.
project_of(doc) := data.plinth.resolved.projects[doc.metadata.name] if doc.kind == "Project"

project_of(doc) := data.plinth.resolved.projects[doc.spec.project] if doc.kind in {"ModelRollout", "App"}

project_of(doc) := data.plinth.resolved.projects[doc.metadata.labels["plinth.dev/project"]] if {
	doc.metadata.labels["plinth.dev/project"]
	not doc.kind in {"Project", "ModelRollout", "App"}
}

is_spec(doc) if startswith(doc.apiVersion, "plinth.dev/")
